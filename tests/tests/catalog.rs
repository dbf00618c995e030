//! Providers declared with one line of the built-in catalog, served end to end by the request
//! pipeline (in-process, see `tests::pipeline`) against fakes of each schema family: an
//! OpenAI-compatible provider under its own path prefix (Groq's `/openai/v1`), Anthropic, and the
//! entries whose default backend speaks another API: Bedrock (Converse, SigV4-signed), Azure
//! OpenAI (deployments) and Vertex AI (`generateContent`, OAuth). Only the backends' URLs (and
//! wildcard hostnames, by the one name each test's client asks for) are overridden, to reach
//! the fakes on loopback. One more test runs the real binary with real capture.

use tests::{
    fake_llm::{FakeLlm, BEDROCK_KEYS},
    pipeline::{Conn, Pipeline},
    TempDir,
};

const GROQ_KEY: &str = "gsk-catalog-SECRET";
const ANTHROPIC_KEY: &str = "sk-ant-catalog-SECRET";

/// Credentials named after the providers (so the catalog uses them rather than its default
/// files), except OpenRouter's, left to the default `/var/run/secrets/tollgate/openrouter/api-key`.
fn setup(groq: &FakeLlm, anthropic: &FakeLlm, bedrock: &FakeLlm, openrouter: &FakeLlm) -> Pipeline {
    let keys = TempDir::new("catalog-keys");
    for (file, value) in [
        ("groq", GROQ_KEY),
        ("anthropic", ANTHROPIC_KEY),
        ("bedrock", BEDROCK_KEYS),
    ] {
        std::fs::write(keys.path(file), value).unwrap();
    }
    let yaml = format!(
        "providers:\n\
         \x20 - {{ catalog: groq, url: \"{}\" }}\n\
         \x20 - {{ catalog: anthropic, url: \"{}\" }}\n\
         \x20 - {{ catalog: bedrock, region: us-east-1, url: \"{}\", hostnames: [bedrock-runtime.us-east-1.amazonaws.com] }}\n\
         \x20 - {{ catalog: openrouter, url: \"{}\" }}\n\
         credentials:\n\
         \x20 - {{ name: groq, kind: bearer, file: {} }}\n\
         \x20 - {{ name: anthropic, kind: xApiKey, file: {} }}\n\
         \x20 - {{ name: bedrock, kind: awsSigV4, file: {} }}\n",
        groq.url(false),
        anthropic.url(false),
        bedrock.url(false),
        openrouter.url(false),
        keys.path("groq").display(),
        keys.path("anthropic").display(),
        keys.path("bedrock").display(),
    );
    let conn = Conn {
        orig: "127.0.0.9:443".parse().unwrap(),
        claimants: ["groq", "anthropic", "bedrock", "openrouter"]
            .map(String::from)
            .to_vec(),
        comm: "python3".into(),
    };
    let p = Pipeline::start(&yaml, conn);
    std::mem::forget(keys); // the credential files must outlive the pipeline's reads
    p
}

#[test]
fn catalog_providers_serve_each_schema_family_end_to_end() {
    let groq = FakeLlm::start("groq", "127.0.0.1", None);
    let anthropic = FakeLlm::start("anthropic", "127.0.0.1", None);
    let bedrock = FakeLlm::start("bedrock", "127.0.0.1", None);
    let openrouter = FakeLlm::start("openrouter", "127.0.0.1", None);
    let p = setup(&groq, &anthropic, &bedrock, &openrouter);
    let client_key = ("authorization", "Bearer sk-client-dummy");

    // OpenAI-compatible under the provider's own prefix, passed through as the client sent it.
    let chat = r#"{"model":"llama-3.3-70b-versatile","messages":[{"role":"user","content":"hi"}]}"#;
    let (status, v) = p.request(
        "POST",
        "/openai/v1/chat/completions",
        &[client_key, ("host", "api.groq.com")],
        chat,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "hello from groq");
    let got = groq.received();
    assert_eq!(got[0].path, "/openai/v1/chat/completions");
    assert_eq!(got[0].headers["authorization"], format!("Bearer {GROQ_KEY}"));

    // Anthropic Messages with the x-api-key credential.
    let messages = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;
    let (status, v) = p.request(
        "POST",
        "/v1/messages",
        &[("x-api-key", "sk-ant-client-dummy"), ("host", "api.anthropic.com")],
        messages,
    );
    assert_eq!(status, 200, "{v}");
    let got = anthropic.received();
    assert_eq!(got[0].headers["x-api-key"], ANTHROPIC_KEY);

    // Bedrock's OpenAI-compatible path, translated to Converse and signed (the fake checks the
    // SigV4 signature and refuses a wrong one with 403).
    let chat = r#"{"model":"us.anthropic.claude-3-5-haiku-20241022-v1:0","messages":[{"role":"user","content":"hi"}]}"#;
    let (status, v) = p.request(
        "POST",
        "/openai/v1/chat/completions",
        &[client_key, ("host", "bedrock-runtime.us-east-1.amazonaws.com")],
        chat,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "hello from bedrock");
    let got = bedrock.received();
    assert_eq!(
        got[0].path,
        "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    );
    assert!(got[0].headers["authorization"].starts_with("AWS4-HMAC-SHA256 "));

    let r = p.wait_records(3);
    let seen: Vec<(&str, &str, &str, &str)> = r
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("-");
            (s("provider"), s("backend"), s("operation"), s("translation"))
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("groq", "groq", "chat_completions", "none"),
            ("anthropic", "anthropic", "messages", "none"),
            (
                "bedrock",
                "bedrock",
                "chat_completions",
                "openai_chat->bedrock_converse"
            ),
        ],
        "{r:#?}"
    );
    assert!(
        r.iter().all(|r| r["tokens"]["total"].as_u64().unwrap_or(0) > 0),
        "{r:#?}"
    );
    // Priced per the entries' price names: Groq's open model is not in the table; Bedrock's
    // Claude is, under its normalised name.
    assert!(r[0]["cost_usd"].is_null(), "{}", r[0]);
    assert_eq!(r[2]["policy"]["price"]["entry"], "claude-3-5-haiku", "{}", r[2]);
    let text = r.iter().map(|r| r.to_string()).collect::<String>();
    for secret in [GROQ_KEY, ANTHROPIC_KEY, BEDROCK_KEYS] {
        assert!(!text.contains(secret), "a secret reached the audit log");
    }
}

#[test]
fn a_catalog_credential_whose_file_is_missing_is_reported_and_not_fatal() {
    let groq = FakeLlm::start("groq", "127.0.0.1", None);
    let anthropic = FakeLlm::start("anthropic", "127.0.0.1", None);
    let bedrock = FakeLlm::start("bedrock", "127.0.0.1", None);
    let openrouter = FakeLlm::start("openrouter", "127.0.0.1", None);
    let p = setup(&groq, &anthropic, &bedrock, &openrouter);
    let errors = p.l7.credentials.errors();
    assert_eq!(errors.keys().collect::<Vec<_>>(), ["openrouter"], "{errors:?}");
    assert!(
        errors["openrouter"].contains("/var/run/secrets/tollgate/openrouter/api-key"),
        "{errors:?}"
    );
    // Its requests are refused without reaching the backend; the others are served.
    let chat = r#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let auth = ("authorization", "Bearer sk-client-dummy");
    let (status, v) = p.request(
        "POST",
        "/api/v1/chat/completions",
        &[auth, ("host", "openrouter.ai")],
        chat,
    );
    assert!(status >= 500, "{status} {v}");
    assert!(openrouter.received().is_empty());
    let (status, v) = p.request(
        "POST",
        "/openai/v1/chat/completions",
        &[auth, ("host", "api.groq.com")],
        chat,
    );
    assert_eq!(status, 200, "{v}");
}

/// The entries whose default backends translate to another API than their clients': Azure
/// OpenAI deployments (api-key) and Vertex AI (`generateContent`, an OAuth token from the
/// metadata server, here the fake's). Wildcard hostnames replaced by one name each.
#[test]
fn catalog_backends_translate_for_azure_openai_and_vertex() {
    let azure = FakeLlm::start("azure", "127.0.0.1", None);
    let vertex = FakeLlm::start("vertex", "127.0.0.1", None);
    let keys = TempDir::new("catalog-keys-2");
    std::fs::write(keys.path("azure"), "azure-catalog-SECRET").unwrap();
    let yaml = format!(
        "providers:\n\
         \x20 - {{ catalog: azure-openai, resource: contoso, url: \"{}\", hostnames: [contoso.openai.azure.com] }}\n\
         \x20 - {{ catalog: vertex, region: us-central1, project: p-1, url: \"{}\", hostnames: [us-central1-aiplatform.googleapis.com] }}\n\
         credentials:\n\
         \x20 - {{ name: azure-openai, kind: apiKey, file: {} }}\n\
         \x20 - {{ name: vertex, kind: gcpMetadata, tokenUrl: \"{}/computeMetadata/v1/instance/service-accounts/default/token\" }}\n",
        azure.url(false),
        vertex.url(false),
        keys.path("azure").display(),
        vertex.url(false),
    );
    let conn = Conn {
        orig: "127.0.0.9:443".parse().unwrap(),
        claimants: ["azure-openai", "vertex"].map(String::from).to_vec(),
        comm: "python3".into(),
    };
    let p = Pipeline::start(&yaml, conn);
    let auth = ("authorization", "Bearer client-dummy");

    let chat = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let (status, v) = p.request(
        "POST",
        "/openai/v1/chat/completions",
        &[auth, ("host", "contoso.openai.azure.com")],
        chat,
    );
    assert_eq!(status, 200, "{v}");
    let got = azure.received();
    assert_eq!(got[0].path, "/openai/deployments/gpt-4o-mini/chat/completions");
    assert_eq!(got[0].headers["api-key"], "azure-catalog-SECRET");

    let chat = r#"{"model":"google/gemini-2.5-flash","messages":[{"role":"user","content":"hi"}]}"#;
    let (status, v) = p.request(
        "POST",
        "/v1/projects/p-1/locations/us-central1/endpoints/openapi/chat/completions",
        &[auth, ("host", "us-central1-aiplatform.googleapis.com")],
        chat,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "hello from vertex");
    let got: Vec<_> = vertex
        .received()
        .into_iter()
        .filter(|r| r.path.contains(":generate"))
        .collect();
    assert_eq!(
        got[0].path,
        "/v1/projects/p-1/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
    );

    let r = p.wait_records(2);
    assert_eq!(r[0]["translation"], "openai->azure_openai", "{}", r[0]);
    assert_eq!(r[1]["translation"], "openai_chat->gemini", "{}", r[1]);
    assert_eq!(r[1]["policy"]["price"]["entry"], "gemini-2.5-flash", "{}", r[1]);
    std::mem::forget(keys);
}

/// The real binary with real capture: `catalog: groq` gives the provider its hostname (the SNI
/// that gets intercepted), its `/openai/v1` API and its backend; only the address it is captured
/// at and the backend's URL are the test's.
#[test]
fn a_catalog_provider_is_intercepted_through_real_capture() {
    if !tests::privileged("a_catalog_provider_is_intercepted_through_real_capture") {
        return;
    }
    let dir = TempDir::new("catalog-capture");
    let groq = FakeLlm::start("groq", "127.20.80.2", None);
    std::fs::write(dir.path("groq-key"), GROQ_KEY).unwrap();
    let cg = tests::Cgroup::new("catalog-capture");
    let captured_ip = "127.20.80.1";
    let url = format!("url: \"{}\"", groq.url(false));
    let gw = tests::GatewayBuilder::new(&cg)
        .llm_provider("groq", &[], &[captured_ip], &[443], &["catalog: groq", &url])
        .yaml(&format!(
            "credentials:\n  - {{ name: groq, kind: bearer, file: {} }}\n",
            dir.path("groq-key").display()
        ))
        .start();
    let body = r#"{"model":"llama-3.3-70b-versatile","messages":[{"role":"user","content":"hi"}]}"#;
    let (status, v) = tests::l7::curl(
        &cg,
        &dir,
        "api.groq.com",
        captured_ip,
        &gw.ca_cert(),
        &[
            "-H",
            "authorization: Bearer gsk-client-dummy",
            "-H",
            "content-type: application/json",
            "-d",
            body,
            "https://api.groq.com/openai/v1/chat/completions",
        ],
    );
    assert_eq!(status, "200 2", "{v}\n{}", gw.log());
    assert_eq!(v["choices"][0]["message"]["content"], "hello from groq");
    let got = groq.received();
    assert_eq!(got[0].path, "/openai/v1/chat/completions");
    assert_eq!(got[0].headers["authorization"], format!("Bearer {GROQ_KEY}"));
    let r = tests::l7::wait_records(&gw, 1);
    assert_eq!(
        (
            r[0]["provider"].as_str(),
            r[0]["backend"].as_str(),
            r[0]["operation"].as_str()
        ),
        (Some("groq"), Some("groq"), Some("chat_completions"))
    );
}
