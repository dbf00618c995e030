use super::*;
use crate::config::{Config, Mode};

/// The entries the issue asks for, in its order.
const ISSUE_LIST: [&str; 18] = [
    "openai",
    "anthropic",
    "azure-openai",
    "gemini",
    "vertex",
    "bedrock",
    "mistral",
    "cohere",
    "groq",
    "together",
    "deepinfra",
    "deepseek",
    "xai",
    "sambanova",
    "fireworks",
    "openrouter",
    "perplexity",
    "cerebras",
];

fn parse(text: &str) -> Config {
    Config::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn err(text: &str) -> String {
    Config::parse(text).expect_err("config must be rejected").to_string()
}

/// Wildcard hostnames (`*.openai.azure.com`) are validated and matched by the wildcard
/// support of issue 15, not by the catalog: entries that have them are tested with an exact
/// hostname here, and with their own in `wildcard_entries_validate_with_their_own_hostnames`.
fn has_wildcard(e: &Entry) -> bool {
    e.hostnames.iter().any(|h| h.contains('*'))
}

/// `providers[0]` from entry `e`, with what it needs (and an exact hostname for wildcard ones
/// when `exact` is set).
fn provider_yaml(e: &Entry, exact: bool) -> String {
    let mut y = format!("providers:\n  - catalog: {}\n", e.name);
    for need in e.backend.needs.keys() {
        let value = match need {
            Need::Resource => "contoso",
            Need::Region => "us-east-1",
            Need::Project => "proj-1",
        };
        y += &format!("    {}: {value}\n", need.key());
    }
    if exact && has_wildcard(e) {
        y += "    hostnames: [llm.example.com]\n";
    }
    y
}

#[test]
fn the_catalog_has_the_issues_entries_each_citing_its_source() {
    let names: Vec<&str> = entries().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ISSUE_LIST);
    for e in entries() {
        assert!(e.source.starts_with("https://"), "{}: {}", e.name, e.source);
        let date = e.as_of.as_bytes();
        assert!(
            date.len() == 10 && date[4] == b'-' && date[7] == b'-',
            "{}: asOf {:?} is YYYY-MM-DD",
            e.name,
            e.as_of
        );
        assert!(!e.hostnames.is_empty() && !e.title.is_empty(), "{}", e.name);
        assert_eq!(e.ports, [443], "{}", e.name);
        assert!(
            matches!(e.schema, ApiSchema::Openai | ApiSchema::Anthropic),
            "{}: clients speak openai or anthropic",
            e.name
        );
        if let Some(base) = &e.base_path {
            crate::config::check_base_path("basePath", base).unwrap();
        }
        // Every placeholder of the URL is a key the entry needs.
        let mut url = e.backend.url.clone();
        for need in e.backend.needs.keys() {
            url = url.replace(&format!("{{{}}}", need.key()), "x");
        }
        assert!(!url.contains('{'), "{}: {}", e.name, e.backend.url);
    }
}

#[test]
fn every_entry_expands_and_validates() {
    for e in entries() {
        let cfg = parse(&provider_yaml(e, true));
        let p = &cfg.providers[0];
        assert_eq!(
            (p.name.as_str(), p.catalog.as_deref(), p.schema, p.mode),
            (e.name.as_str(), Some(e.name.as_str()), e.schema, Mode::Intercept)
        );
        if !has_wildcard(e) {
            assert_eq!(p.hostnames, e.hostnames);
        }
        assert_eq!(p.base_path, e.base_path);
        let b = &cfg.backends[p.backend.expect("a default backend")];
        assert_eq!((b.name.as_str(), b.schema), (e.name.as_str(), e.backend.schema));
        assert!(!b.url.to_string().contains('{'), "{}", b.url);
        let c = cfg
            .credentials
            .iter()
            .find(|c| Some(&c.name) == b.credential.as_ref())
            .unwrap();
        assert_eq!((c.name.as_str(), c.kind), (e.name.as_str(), e.auth));
        assert_eq!(c.file.as_deref(), Some(credential_file(&e.name).as_path()));
    }
}

#[test]
fn wildcard_entries_validate_with_their_own_hostnames() {
    for e in entries().iter().filter(|e| has_wildcard(e)) {
        let cfg = parse(&provider_yaml(e, false));
        assert_eq!(cfg.providers[0].hostnames, e.hostnames);
    }
}

#[test]
fn the_shorthand_lists_providers_after_the_written_ones() {
    let names: Vec<&str> = entries()
        .iter()
        .filter(|e| e.backend.needs.is_empty() && !has_wildcard(e))
        .map(|e| e.name.as_str())
        .collect();
    let cfg = parse(&format!(
        "providers:\n  - name: local\n    addresses: [127.0.0.1]\ncatalog: [{}]\n",
        names.join(", ")
    ));
    let got: Vec<&str> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(got[0], "local");
    assert_eq!(&got[1..], names.as_slice());
    assert_eq!(cfg.backends.len(), names.len());
    assert_eq!(cfg.credentials.len(), names.len());
}

#[test]
fn the_expanded_openai_entry_is_what_one_would_write() {
    let cfg = parse("catalog: [openai]\n");
    let p = &cfg.providers[0];
    assert_eq!(
        (p.hostnames.as_slice(), p.ports.as_slice()),
        (&["api.openai.com".to_string()][..], &[443][..])
    );
    let b = &cfg.backends[0];
    assert_eq!(b.url.to_string(), "https://api.openai.com/");
    assert_eq!(b.credential.as_deref(), Some("openai"));
    let c = &cfg.credentials[0];
    assert_eq!(c.kind, CredentialKind::Bearer);
    assert_eq!(
        c.file.as_deref(),
        Some(Path::new("/var/run/secrets/tollgate/openai/api-key"))
    );
    // `/config` shows the credential by name, kind and source, never its file.
    let shown = serde_json::to_string(&cfg).unwrap();
    assert!(shown.contains(r#""catalog":"openai""#), "{shown}");
    assert!(!shown.contains("/var/run/secrets"), "{shown}");
}

#[test]
fn what_the_user_writes_wins_over_the_entry() {
    let cfg = parse(
        "credentials:\n  - { name: groq, kind: bearer, env: GROQ_KEY }\n  - { name: mine, kind: xApiKey, file: /k }\n\
         providers:\n  - catalog: groq\n    name: fast\n    hostnames: [groq.internal]\n    ports: [8443]\n    mode: observe\n    basePath: /v2\n    url: http://127.0.0.1:9\n    credential: groq\n\
         \x20 - catalog: anthropic\n    credential: mine\n\
         \x20 - catalog: mistral\n    backend: own\n\
         backends:\n  - { name: own, url: \"https://mistral.internal\" }\n",
    );
    let p = &cfg.providers[0];
    assert_eq!(
        (
            p.name.as_str(),
            p.hostnames[0].as_str(),
            p.ports[0],
            p.mode,
            p.base_path.as_deref()
        ),
        ("fast", "groq.internal", 8443, Mode::Observe, Some("/v2"))
    );
    let b = &cfg.backends[p.backend.unwrap()];
    assert_eq!(
        (b.name.as_str(), b.url.to_string().as_str()),
        ("fast", "http://127.0.0.1:9/")
    );
    assert_eq!(b.credential.as_deref(), Some("groq"));
    let b = &cfg.backends[cfg.providers[1].backend.unwrap()];
    assert_eq!(b.credential.as_deref(), Some("mine"));
    assert_eq!(cfg.backends[cfg.providers[2].backend.unwrap()].name, "own");
    // An existing credential of the provider's name is used, not made again.
    let names: Vec<&str> = cfg.credentials.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["groq", "mine"]);
    assert_eq!(cfg.backends.len(), 3, "no backend for the provider that names its own");
}

#[test]
fn backends_that_need_user_input_are_made_from_it() {
    let cfg = parse(
        "providers:\n  - catalog: azure-openai\n    resource: contoso\n    hostnames: [contoso.openai.azure.com]\n",
    );
    let b = &cfg.backends[0];
    assert_eq!(b.url.to_string(), "https://contoso.openai.azure.com/");
    assert_eq!(b.schema, ApiSchema::AzureOpenai);
    let cfg = parse("providers:\n  - catalog: bedrock\n    region: eu-west-3\n    hostnames: [bedrock-runtime.eu-west-3.amazonaws.com]\n");
    let b = &cfg.backends[0];
    assert_eq!(
        (b.url.to_string().as_str(), b.region.as_deref()),
        ("https://bedrock-runtime.eu-west-3.amazonaws.com/", Some("eu-west-3"))
    );
    let cfg = parse("providers:\n  - catalog: vertex\n    region: europe-west4\n    project: p-1\n    hostnames: [europe-west4-aiplatform.googleapis.com]\n");
    let b = &cfg.backends[0];
    assert_eq!(
        (b.url.to_string().as_str(), b.region.as_deref(), b.project.as_deref()),
        (
            "https://europe-west4-aiplatform.googleapis.com/",
            Some("europe-west4"),
            Some("p-1")
        )
    );
    // A URL of one's own: a bedrock backend finds its region in the host.
    let cfg = parse("providers:\n  - catalog: bedrock\n    url: https://bedrock-runtime.ap-south-1.amazonaws.com\n    hostnames: [b.example]\n");
    assert_eq!(cfg.backends[0].region.as_deref(), Some("ap-south-1"));
}

#[test]
fn missing_input_unknown_names_and_duplicates_are_errors_naming_the_key() {
    let cases = [
        (
            "providers:\n  - catalog: openai\n  - catalog: azure-openai\n",
            r#"providers[1].resource: catalog entry "azure-openai" needs the Azure OpenAI resource name (or url)"#,
        ),
        (
            "providers:\n  - catalog: bedrock\n",
            r#"providers[0].region: catalog entry "bedrock" needs the AWS region"#,
        ),
        (
            "providers:\n  - catalog: vertex\n    region: us-central1\n",
            r#"providers[0].project: catalog entry "vertex" needs the Google Cloud project"#,
        ),
        (
            "providers:\n  - catalog: vertex\n    project: p\n",
            r#"providers[0].region: catalog entry "vertex" needs the Vertex AI location"#,
        ),
        (
            "catalog: [openai, azure-openai]\n",
            "catalog[1]: catalog entry \"azure-openai\" needs the Azure OpenAI resource name (or url): list it under providers as {catalog: azure-openai, resource: …}",
        ),
        ("catalog: [openai, opneai]\n", "catalog[1]: unknown catalog entry \"opneai\" (known: openai, anthropic, azure-openai"),
        ("providers:\n  - catalog: OpenAI\n", "providers[0].catalog: unknown catalog entry \"OpenAI\" (known: openai,"),
        (
            "providers:\n  - catalog: openai\ncatalog: [anthropic, openai]\n",
            r#"catalog[1]: "openai" is also providers[0]: list it once"#,
        ),
        ("catalog: [groq, groq]\n", r#"catalog[1]: "groq" is also catalog[0]: list it once"#),
        (
            "providers:\n  - { name: groq, addresses: [127.0.0.1] }\ncatalog: [groq]\n",
            r#"catalog[0]: "groq" is also providers[0]"#,
        ),
        (
            "providers:\n  - { name: x, addresses: [127.0.0.1], url: \"http://a\" }\n",
            "providers[0].url: only with `catalog`",
        ),
        (
            "providers:\n  - { catalog: groq, backend: b, credential: c }\nbackends:\n  - { name: b, url: \"http://a\" }\n",
            "providers[0].credential: not with `backend`",
        ),
        (
            "providers:\n  - catalog: groq\nbackends:\n  - { name: groq, url: \"http://a\" }\n",
            "providers[0].backend: a backend named \"groq\" exists: set `backend: groq` to use it",
        ),
        ("providers:\n  - { catalog: groq, credential: nope }\n", r#"providers[0].credential: no credential named "nope""#),
        ("providers:\n  - { catalog: groq, resource: r }\n", r#"providers[0].resource: catalog entry "groq" takes no resource"#),
        (
            "providers:\n  - { catalog: bedrock, region: \"us-east-1.evil.com/x\" }\n",
            "providers[0].region: \"us-east-1.evil.com/x\": letters, digits and '-' only",
        ),
        // Errors of the created backend name the provider key that configures it.
        (
            "providers:\n  - { catalog: groq, region: us-east-1 }\n",
            "providers[0].region: only bedrock and vertex backends take a region",
        ),
        (
            "providers:\n  - { catalog: groq, url: \"ftp://x\" }\n",
            "providers[0].url: \"ftp://x\": scheme must be http or https",
        ),
        (
            "credentials:\n  - { name: k, kind: bearer, file: /k }\nproviders:\n  - { catalog: bedrock, region: us-east-1, credential: k, hostnames: [b.example] }\n",
            "providers[0].credential: \"k\": bedrock backends, and only they, use a credential of kind awsSigV4",
        ),
        ("providers:\n  - { addresses: [127.0.0.1] }\n", "providers[0].name: required (or give `catalog`)"),
        (
            "providers:\n  - { catalog: groq, basePath: \"openai/v1\" }\n",
            "providers[0].basePath: \"openai/v1\": a path such as /openai/v1",
        ),
        (
            "providers:\n  - { catalog: groq, basePath: \"/a/../v1\" }\n",
            "providers[0].basePath",
        ),
    ];
    for (yaml, want) in cases {
        let e = err(yaml);
        assert!(e.contains(want), "{yaml}\ngot:  {e}\nwant: {want}");
    }
}

#[test]
fn price_names_say_what_the_shipped_table_finds() {
    let prices = crate::accounting::PriceTable::new(&Default::default()).unwrap();
    // A model name each provider's clients send, and the table entry it is priced as.
    let examples: [(&str, &str, Option<&str>); 18] = [
        ("openai", "gpt-4o-2024-08-06", Some("gpt-4o")),
        ("anthropic", "claude-sonnet-4-5-20250929", Some("claude-sonnet-4-5")),
        ("azure-openai", "gpt-4o-mini-2024-07-18", Some("gpt-4o-mini")),
        ("gemini", "gemini-2.5-flash", Some("gemini-2.5-flash")),
        ("vertex", "google/gemini-2.5-pro", Some("gemini-2.5-pro")),
        (
            "bedrock",
            "us.anthropic.claude-3-5-haiku-20241022-v1:0",
            Some("claude-3-5-haiku"),
        ),
        ("mistral", "mistral-large-latest", Some("mistral-large")),
        ("cohere", "command-a-03-2025", None),
        ("groq", "llama-3.3-70b-versatile", None),
        ("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo", None),
        ("deepinfra", "deepseek-ai/DeepSeek-V3", None),
        ("deepseek", "deepseek-chat", None),
        ("xai", "grok-4", None),
        ("sambanova", "Meta-Llama-3.3-70B-Instruct", None),
        ("fireworks", "accounts/fireworks/models/llama-v3p1-8b-instruct", None),
        ("openrouter", "openai/gpt-4o-mini", Some("gpt-4o-mini")),
        ("perplexity", "sonar-pro", None),
        ("cerebras", "llama-3.3-70b", None),
    ];
    for (name, model, want) in examples {
        let e = find(name).unwrap();
        let got = prices.lookup(model).map(|p| p.entry);
        assert_eq!(got, want, "{name}: {model}");
        let expected = match (want, model.contains('/')) {
            (None, _) => PriceNames::Unpriced,
            (Some(_), true) => PriceNames::VendorPrefixed,
            (Some(_), false) => PriceNames::Table,
        };
        assert_eq!(e.price_names, expected, "{name}: priceNames");
    }
}

#[test]
fn the_listing_names_every_entry_and_its_source() {
    let table = render_table();
    for e in entries() {
        let line = table.lines().find(|l| l.starts_with(&format!("{} ", e.name))).unwrap();
        assert!(line.contains(&e.source) && line.contains(&e.hostnames[0]), "{line}");
    }
    assert!(table.contains("xApiKey") && table.contains("awsSigV4"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&render_json()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 18);
    assert_eq!(json[1]["auth"], "xApiKey");
    assert_eq!(
        json[2]["backend"]["needs"]["resource"],
        "the Azure OpenAI resource name (or url)"
    );
}

#[test]
fn the_docs_table_lists_every_entry_with_its_source() {
    let docs = include_str!("../../../docs/config.md");
    for e in entries() {
        assert!(
            docs.contains(&format!("| `{}` |", e.name)) && docs.contains(&e.source),
            "docs/config.md#provider-catalog misses {} or its source",
            e.name
        );
    }
}
