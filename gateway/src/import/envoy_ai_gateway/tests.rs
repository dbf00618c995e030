//! One test per mapping, on small inputs; the whole fixtures are imported by the CLI tests
//! (tests/tests/import.rs).

use super::{import, routes::regex_glob};
use crate::import::{Error, Imported, Options};

fn run(yaml: &str) -> Imported {
    import(&[("test.yaml".into(), yaml.into())], &Options::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn gaps(i: &Imported) -> Vec<String> {
    i.report.gaps.iter().map(|g| g.to_string()).collect()
}

const OPENAI: &str = "apiVersion: aigateway.envoyproxy.io/v1beta1\nkind: AIServiceBackend\nmetadata: { name: oa }\n\
spec:\n  schema: { name: OpenAI }\n  backendRef: { name: oa, kind: Backend, group: gateway.envoyproxy.io }\n---\n\
apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: { name: oa }\nspec:\n  endpoints: [{ fqdn: { hostname: api.openai.com, port: 443 } }]\n---\n\
apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: { name: t }\n\
spec:\n  targetRefs: [{ group: gateway.envoyproxy.io, kind: Backend, name: oa }]\n  validation: { wellKnownCACertificates: System, hostname: api.openai.com }\n";

fn route(rules: &str) -> String {
    format!("{OPENAI}---\napiVersion: aigateway.envoyproxy.io/v1beta1\nkind: AIGatewayRoute\nmetadata: {{ name: r }}\nspec:\n  rules:\n{rules}")
}

#[test]
fn a_backend_with_tls_becomes_an_https_backend_and_a_provider() {
    let i = run(OPENAI);
    assert!(i.report.complete(), "{:?}", gaps(&i));
    assert!(
        i.yaml
            .contains("# from AIServiceBackend/oa, Backend/oa, BackendTLSPolicy/t"),
        "{}",
        i.yaml
    );
    assert!(i.yaml.contains("url: https://api.openai.com\n"), "{}", i.yaml);
    assert!(
        i.yaml
            .contains("  - name: api.openai.com\n    hostnames:\n    - api.openai.com"),
        "{}",
        i.yaml
    );
}

#[test]
fn a_backend_without_tls_is_plaintext_and_keeps_its_port() {
    let i = run(&OPENAI.replace("kind: BackendTLSPolicy", "kind: Ignored"));
    assert!(i.yaml.contains("url: http://api.openai.com:443\n"), "{}", i.yaml);
}

#[test]
fn model_header_matches_weights_priorities_and_overrides_become_a_route() {
    let i = run(&(route(
        "    - matches: [{ headers: [{ name: x-ai-eg-model, value: gpt-4o }] }, { headers: [{ name: x-ai-eg-model, type: RegularExpression, value: \"^o1-.*$\" }] }]\n",
        ) + "      backendRefs: [{ name: oa, weight: 2, priority: 1, modelNameOverride: gpt-4o-mini }]\n      timeouts: { request: 2m }\n"));
    assert!(i.report.complete(), "{:?}", gaps(&i));
    for want in [
        "- name: r-0\n",
        "models:\n      - gpt-4o\n      - o1-*\n",
        "- backend: oa\n      weight: 2\n      priority: 1\n      model: gpt-4o-mini\n",
        "total: 2m\n",
    ] {
        assert!(i.yaml.contains(want), "{want:?} in\n{}", i.yaml);
    }
}

#[test]
fn matches_that_differ_beyond_the_model_become_one_route_each() {
    let i = run(&route(
        "    - name: split\n      matches: [{ headers: [{ name: x-team, value: a }] }, { headers: [{ name: x-team, value: b }] }]\n      backendRefs: [{ name: oa }]\n",
    ));
    assert!(i.yaml.contains("- name: r-split-m0\n"), "{}", i.yaml);
    assert!(i.yaml.contains("headers:\n        x-team: b\n"), "{}", i.yaml);
}

#[test]
fn what_routes_cannot_express_is_listed_by_field() {
    let i = run(&route(
        "    - matches: [{ headers: [{ name: x-ai-eg-model, type: RegularExpression, value: \"gpt-(4|5)\" }] }]\n      backendRefs: [{ name: oa, headerMutation: { remove: [x] } }]\n      timeouts: { backendRequest: 10s }\n",
    ));
    let g = gaps(&i);
    assert!(
        g.iter()
            .any(|g| g.starts_with("AIGatewayRoute/r: spec.rules[0].matches[0].headers[0]: regular expression")),
        "{g:?}"
    );
    assert!(
        g.iter()
            .any(|g| g.starts_with("AIGatewayRoute/r: spec.rules[0].backendRefs[0].headerMutation")),
        "{g:?}"
    );
    assert!(
        g.iter()
            .any(|g| g.starts_with("AIGatewayRoute/r: spec.rules[0].timeouts.backendRequest")),
        "{g:?}"
    );
    // The only match was not converted: no route wider than the rule.
    assert!(!i.yaml.contains("routes:"), "{}", i.yaml);
}

#[test]
fn security_policies_map_to_credential_kinds_and_secret_mounts() {
    let policy = |kind: &str, body: &str| {
        format!("{OPENAI}---\napiVersion: aigateway.envoyproxy.io/v1beta1\nkind: BackendSecurityPolicy\nmetadata: {{ name: p }}\nspec:\n  targetRefs: [{{ kind: AIServiceBackend, name: oa }}]\n  type: {kind}\n{body}")
    };
    let i = run(&policy("APIKey", "  apiKey: { secretRef: { name: s } }\n"));
    assert!(
        i.yaml
            .contains("kind: bearer\n    file: /var/run/secrets/tollgate/p/apiKey\n"),
        "{}",
        i.yaml
    );
    assert!(i.yaml.contains("credential: p\n"), "{}", i.yaml);
    let i = run(&policy(
        "AnthropicAPIKey",
        "  anthropicAPIKey: { secretRef: { name: s } }\n",
    ));
    assert!(i.yaml.contains("kind: xApiKey\n"), "{}", i.yaml);
    let i = run(&policy(
        "APIKey",
        "  apiKey: { secretRef: { name: s } }\n  credentialOverride: { fromRequestHeaders: {} }\n",
    ));
    assert_eq!(gaps(&i).len(), 1, "{:?}", gaps(&i));
    // An AWS credential cannot sign for an OpenAI backend: listed, and left off the backend.
    let i = run(&policy("AWSCredentials", "  awsCredentials: { region: us-east-1 }\n"));
    assert!(
        gaps(&i)[0].contains("cannot sign for a openai backend"),
        "{:?}",
        gaps(&i)
    );
    assert!(!i.yaml.contains("credential: p\n"), "{}", i.yaml);
}

#[test]
fn token_limits_need_total_tokens_per_minute() {
    let btp = |unit: &str, key: &str, kind: &str| {
        route("    - backendRefs: [{ name: oa }]\n")
            + &format!("  llmRequestCosts: [{{ metadataKey: {key}, type: {kind} }}]\n---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {{ name: l }}\nspec:\n  targetRefs: [{{ kind: HTTPRoute, name: r }}]\n  rateLimit:\n    global:\n      rules:\n        - limit: {{ requests: 500, unit: {unit} }}\n          cost:\n            request: {{ from: Number, number: 0 }}\n            response: {{ from: Metadata, metadata: {{ namespace: io.envoy.ai_gateway, key: {key} }} }}\n")
    };
    let i = run(&btp("Minute", "t", "TotalToken"));
    assert!(i.report.complete(), "{:?}", gaps(&i));
    assert!(
        i.yaml
            .contains("- name: l-0\n    match:\n      routes:\n      - r-0\n    key: []\n    tokensPerMinute: 500\n"),
        "{}",
        i.yaml
    );
    let i = run(&btp("Hour", "t", "TotalToken"));
    assert!(gaps(&i)[0].contains("limit.unit: Hour"), "{:?}", gaps(&i));
    let i = run(&btp("Minute", "t", "OutputToken"));
    assert!(gaps(&i)[0].contains("costs OutputToken"), "{:?}", gaps(&i));
    assert!(!i.yaml.contains("limits:"));
}

#[test]
fn unknown_fields_and_kinds_are_reported_not_dropped() {
    let i = run(&OPENAI.replace("spec:\n  schema:", "spec:\n  futureField: 1\n  schema:"));
    assert_eq!(
        gaps(&i),
        ["AIServiceBackend/oa: spec.futureField: a field the importer does not know: not converted"]
    );
    assert_eq!(i.report.skipped, Vec::<String>::new());
    let i = run(&format!(
        "{OPENAI}---\napiVersion: v1\nkind: Service\nmetadata: {{ name: svc }}\n"
    ));
    assert_eq!(i.report.skipped, ["Service/svc"]);
}

#[test]
fn bad_input_names_the_file_and_document() {
    let e = import(
        &[("a.yaml".into(), format!("{OPENAI}---\n[1, 2\n"))],
        &Options::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Document { doc: 4, .. }), "{e}");
    let e = import(
        &[("a.yaml".into(), OPENAI.replace("schema: { name: OpenAI }", "schema: 7"))],
        &Options::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("a.yaml, document 1 (AIServiceBackend/oa): spec"),
        "{e}"
    );
    let e = import(
        &[(
            "a.yaml".into(),
            "apiVersion: v1\nkind: Secret\nmetadata: { name: s }\n".into(),
        )],
        &Options::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Nothing));
}

#[test]
fn simple_regexes_become_globs() {
    assert_eq!(regex_glob("gpt-4o.*").as_deref(), Some("gpt-4o*"));
    assert_eq!(regex_glob("^claude-.*-sonnet$").as_deref(), Some("claude-*-sonnet"));
    assert_eq!(regex_glob(r"gpt-4\.1").as_deref(), Some("gpt-4.1"));
    assert_eq!(regex_glob("gpt-4.1"), None);
    assert_eq!(regex_glob("a|b"), None);
}
