//! Providers declared with one line of the built-in catalog, served end to end by the request
//! pipeline (in-process, see `tests::pipeline`) against fakes of each schema family: an
//! OpenAI-compatible provider under its own path prefix (Groq's `/openai/v1`), Anthropic, and
//! Bedrock, whose default backend speaks another API (Converse, SigV4-signed). Only the backends'
//! URLs (and Bedrock's wildcard hostname) are overridden, to reach the fakes on loopback.

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
