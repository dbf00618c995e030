//! BackendSecurityPolicy → `credentials`; AIServiceBackend + Backend + BackendTLSPolicy →
//! `backends`; the backends' hosts → `providers`.

use std::collections::HashMap;

use super::{find, raw, unknown_fields, Objects, EG_GROUP};
use crate::{
    config::{ApiSchema, CredentialKind},
    import::{Backend, Credential, Item, Options, Output, Provider, Report},
    route::config::{credential_fits, region_in_host},
};

/// What a BackendSecurityPolicy became.
#[derive(Debug)]
pub(super) struct CredInfo {
    name: String,
    kind: &'static str,
    /// AWSCredentials `region`, GCPCredentials `region`.
    region: Option<String>,
    /// GCPCredentials `projectName`.
    project: Option<String>,
}

/// What an AIServiceBackend became.
#[derive(Debug)]
pub(super) struct Converted {
    /// The Tollgate backend's name.
    pub name: String,
    pub schema: &'static str,
    host: String,
    ip: bool,
    port: u16,
    from: String,
}

/// Every BackendSecurityPolicy as a credential, by (namespace, name).
pub(super) fn credentials(
    objs: &Objects,
    opts: &Options,
    out: &mut Output,
    report: &mut Report,
) -> HashMap<(String, String), CredInfo> {
    let mut made = HashMap::new();
    for p in &objs.policies {
        let object = format!("BackendSecurityPolicy/{}", p.name);
        unknown_fields(report, &object, "spec.", &p.spec.extra);
        if p.spec.credential_override.is_some() {
            report.gap(
                &object,
                "spec.credentialOverride",
                "Tollgate injects its own credential on every request; per-request credentials are not supported",
            );
        }
        let name = objs.tg_name(&p.namespace, &p.name);
        // Mounted as the chart mounts a credential: <dir>/<credential name>/<key>.
        let dir = opts.secrets_dir.join(&name);
        let Some((kind, file, region, project)) = credential(&object, &p.spec, &dir, report) else {
            continue;
        };
        report.converted.push(format!("{object} → credential {name} ({kind})"));
        out.credentials.push(Item {
            from: object,
            value: Credential {
                name: name.clone(),
                kind,
                file,
            },
        });
        made.insert(
            (p.namespace.clone(), p.name.clone()),
            CredInfo {
                name,
                kind,
                region,
                project,
            },
        );
    }
    made
}

/// `<dir>/<key>` for `spec.<field>.secretRef`, or a gap.
fn secret_file(
    dir: &std::path::Path,
    report: &mut Report,
    object: &str,
    field: &str,
    secret: Option<&raw::Ref>,
    key: &str,
) -> Option<String> {
    match secret {
        Some(r) if !r.name.is_empty() => Some(dir.join(key).display().to_string()),
        _ => {
            report.gap(object, field, "no secretRef: nothing to read the secret from");
            None
        }
    }
}

type CredParts = (&'static str, Option<String>, Option<String>, Option<String>);

/// A policy's credential kind, file, region and project.
fn credential(
    object: &str,
    s: &raw::SecurityPolicySpec,
    dir: &std::path::Path,
    report: &mut Report,
) -> Option<CredParts> {
    let simple = |holder: &Option<raw::SecretHolder>, field: &str, kind: &'static str, report: &mut Report| {
        let secret = holder.as_ref().and_then(|h| h.secret_ref.as_ref());
        secret_file(
            dir,
            report,
            object,
            &format!("spec.{field}.secretRef"),
            secret,
            "apiKey",
        )
        .map(|f| (kind, Some(f), None, None))
    };
    match s.kind.as_str() {
        // Envoy AI Gateway sends an APIKey as `Authorization: Bearer` whatever the backend.
        "APIKey" => simple(&s.api_key, "apiKey", "bearer", report),
        "AnthropicAPIKey" => simple(&s.anthropic_api_key, "anthropicAPIKey", "xApiKey", report),
        "AzureAPIKey" => simple(&s.azure_api_key, "azureAPIKey", "apiKey", report),
        "AWSCredentials" => aws(object, s.aws_credentials.as_ref()?, dir, report),
        "AzureCredentials" => azure(object, s.azure_credentials.as_ref()?, dir, report),
        "GCPCredentials" => gcp(object, s.gcp_credentials.as_ref()?, dir, report),
        other => {
            report.gap(
                object,
                "spec.type",
                format!("{other:?} is not a type the importer knows"),
            );
            None
        }
    }
}

fn aws(object: &str, c: &raw::AwsCredentials, dir: &std::path::Path, report: &mut Report) -> Option<CredParts> {
    let region = Some(c.region.clone()).filter(|r| !r.is_empty());
    if c.oidc_exchange_token.is_some() {
        report.gap(
            object,
            "spec.awsCredentials.oidcExchangeToken",
            "Tollgate does not exchange tokens from an OIDC provider for AWS keys (awsMetadata covers IRSA, \
             EKS Pod Identity and instance roles): not converted",
        );
        return None;
    }
    let Some(file) = &c.credentials_file else {
        // Envoy AI Gateway then uses the AWS SDK's default chain, as awsMetadata does (IRSA,
        // Pod Identity, instance role; not AWS_ACCESS_KEY_ID in the environment).
        return Some(("awsMetadata", None, region, None));
    };
    if let Some(profile) = file.profile.as_deref().filter(|p| !p.is_empty() && *p != "default") {
        report.gap(
            object,
            "spec.awsCredentials.credentialsFile.profile",
            format!("Tollgate reads the [default] profile of a credentials file, not {profile:?}"),
        );
        return None;
    }
    let path = secret_file(
        dir,
        report,
        object,
        "spec.awsCredentials.credentialsFile.secretRef",
        file.secret_ref.as_ref(),
        "credentials",
    )?;
    Some(("awsSigV4", Some(path), region, None))
}

fn azure(object: &str, c: &raw::AzureCredentials, dir: &std::path::Path, report: &mut Report) -> Option<CredParts> {
    if c.oidc_exchange_token.is_some() {
        report.gap(
            object,
            "spec.azureCredentials.oidcExchangeToken",
            "Tollgate does not exchange tokens from an OIDC provider for Entra ID tokens: not converted",
        );
        return None;
    }
    let secret = secret_file(
        dir,
        report,
        object,
        "spec.azureCredentials.clientSecretRef",
        c.client_secret_ref.as_ref(),
        "azure-entra.json",
    )?;
    let secret_name = c
        .client_secret_ref
        .as_ref()
        .map(|r| r.name.as_str())
        .unwrap_or_default();
    report.action(
        object,
        "spec.azureCredentials.clientSecretRef",
        format!(
            "Tollgate's azureEntra credential reads one JSON value: add the key azure-entra.json to Secret \
             {secret_name} holding {{\"tenantId\": \"{}\", \"clientId\": \"{}\", \"clientSecret\": <its client-secret>}}",
            c.tenant_id, c.client_id
        ),
    );
    Some(("azureEntra", Some(secret), None, None))
}

fn gcp(object: &str, c: &raw::GcpCredentials, dir: &std::path::Path, report: &mut Report) -> Option<CredParts> {
    let region = Some(c.region.clone()).filter(|r| !r.is_empty());
    let project = Some(c.project_name.clone()).filter(|r| !r.is_empty());
    if c.workload_identity_federation_config.is_some() {
        report.gap(
            object,
            "spec.gcpCredentials.workloadIdentityFederationConfig",
            "Tollgate does not federate an OIDC provider's tokens into Google credentials: not converted",
        );
        return None;
    }
    let Some(file) = &c.credentials_file else {
        // Application Default Credentials: on GKE, the metadata server, as gcpMetadata.
        return Some(("gcpMetadata", None, region, project));
    };
    let path = secret_file(
        dir,
        report,
        object,
        "spec.gcpCredentials.credentialsFile.secretRef",
        file.secret_ref.as_ref(),
        "service_account.json",
    )?;
    Some(("gcpServiceAccount", Some(path), region, project))
}

/// Envoy AI Gateway's schema name → Tollgate's backend schema.
fn schema(object: &str, name: &str, report: &mut Report) -> Option<&'static str> {
    Some(match name {
        "OpenAI" => "openai",
        "Anthropic" => "anthropic",
        "AzureOpenAI" => "azureOpenai",
        "AWSBedrock" => "bedrock",
        "AWSAnthropic" => {
            report.notes.push(format!(
                "{object}: AWSAnthropic is served through Bedrock's Converse API (schema bedrock), \
                 not InvokeModel's Anthropic body: same models and credential, Anthropic-only request \
                 features Converse lacks are refused by name"
            ));
            "bedrock"
        }
        "GCPVertexAI" => "vertex",
        other => {
            report.gap(
                object,
                "spec.schema.name",
                format!("{other:?}: Tollgate has no backend schema for it; the backend is not converted"),
            );
            return None;
        }
    })
}

/// Every AIServiceBackend Tollgate can express, by (namespace, name).
pub(super) fn backends(
    objs: &Objects,
    opts: &Options,
    credentials: &HashMap<(String, String), CredInfo>,
    out: &mut Output,
    report: &mut Report,
) -> super::Converted {
    let mut made = Vec::new();
    for s in &objs.services {
        let object = format!("AIServiceBackend/{}", s.name);
        unknown_fields(report, &object, "spec.", &s.spec.extra);
        for (field, set) in [
            ("headerMutation", s.spec.header_mutation.is_some()),
            ("bodyMutation", s.spec.body_mutation.is_some()),
            ("timeouts", s.spec.timeouts.is_some()),
        ] {
            if set {
                report.gap(&object, format!("spec.{field}"), not_expressible(field));
            }
        }
        let Some(schema) = schema(&object, &s.spec.schema.name, report) else {
            continue;
        };
        let cred = policy_of(objs, s).and_then(|(ns, name)| credentials.get(&(ns, name)));
        if let Some(c) = backend(objs, opts, s, &object, schema, cred, out, report) {
            made.push(((s.namespace.clone(), s.name.clone()), c));
        }
    }
    made
}

fn not_expressible(field: &str) -> String {
    match field {
        "headerMutation" | "bodyMutation" => {
            "Tollgate does not rewrite request headers or bodies besides the model".into()
        }
        _ => "Tollgate's timeouts are per route: see the routes".into(),
    }
}

/// The policy attached to `s`: its own `backendSecurityPolicyRef` (v1alpha1), or one whose
/// `targetRefs` name it.
fn policy_of(objs: &Objects, s: &super::Obj<raw::AiServiceBackendSpec>) -> Option<(String, String)> {
    if let Some(r) = &s.spec.backend_security_policy_ref {
        return Some((s.namespace.clone(), r.name.clone()));
    }
    objs.policies
        .iter()
        .find(|p| {
            p.namespace == s.namespace
                && p.spec
                    .target_refs
                    .iter()
                    .any(|t| t.name == s.name && t.kind.as_deref().unwrap_or("AIServiceBackend") == "AIServiceBackend")
        })
        .map(|p| (p.namespace.clone(), p.name.clone()))
}

/// One AIServiceBackend with its Backend, TLS and credential.
#[expect(clippy::too_many_arguments, reason = "one call site; the pieces are all different")]
fn backend(
    objs: &Objects,
    opts: &Options,
    s: &super::Obj<raw::AiServiceBackendSpec>,
    object: &str,
    schema: &'static str,
    cred: Option<&CredInfo>,
    out: &mut Output,
    report: &mut Report,
) -> Option<Converted> {
    let r = &s.spec.backend_ref;
    let ns = r.namespace.clone().unwrap_or_else(|| s.namespace.clone());
    if r.kind.as_deref().unwrap_or("Backend") != "Backend" || r.group.as_deref().unwrap_or(EG_GROUP) != EG_GROUP {
        report.gap(
            object,
            "spec.backendRef",
            "only Envoy Gateway Backends (FQDN or IP endpoints) are converted",
        );
        return None;
    }
    let Some(b) = find(&objs.backends, &ns, &r.name) else {
        report.gap(
            object,
            "spec.backendRef",
            format!("Backend/{} is not in the input", r.name),
        );
        return None;
    };
    let backend_object = format!("Backend/{}", b.name);
    let (host, ip, port) = endpoint(&backend_object, &b.spec, report)?;
    let tls = tls(objs, b, &backend_object, &host, ip, opts, report);
    let prefix = url_prefix(object, schema, &s.spec.schema, report)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let default_port = if tls.is_some() { 443 } else { 80 };
    let host_text = if ip && host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let url = match port == default_port {
        true => format!("{scheme}://{host_text}{prefix}"),
        false => format!("{scheme}://{host_text}:{port}{prefix}"),
    };
    let name = objs.tg_name(&s.namespace, &s.name);
    let mut value = Backend {
        name: name.clone(),
        url,
        schema,
        ..Backend::default()
    };
    if let Some(t) = &tls {
        value.ca_file = t.ca_file.clone();
    }
    if schema == "azureOpenai" {
        value.api_version = s.spec.schema.version.clone();
    }
    if !attach(object, &mut value, cred, &host, report) {
        return None;
    }
    let mut from = format!("{object}, {backend_object}");
    if let Some(t) = &tls {
        from += &t.from;
    }
    if let Some(c) = cred {
        from += &format!(" (credential {})", c.name);
    }
    report.converted.push(format!("{object} → backend {name} ({schema})"));
    out.backends.push(Item {
        from: from.clone(),
        value,
    });
    Some(Converted {
        name,
        schema,
        host,
        ip,
        port,
        from,
    })
}

/// The credential, region and project of a backend; false when the backend cannot be written.
fn attach(object: &str, b: &mut Backend, cred: Option<&CredInfo>, host: &str, report: &mut Report) -> bool {
    if let Some(c) = cred {
        let fits = match (named::<ApiSchema>(b.schema), named::<CredentialKind>(c.kind)) {
            (Some(schema), Some(kind)) => credential_fits(schema, kind),
            _ => false,
        };
        match fits {
            true => b.credential = Some(c.name.clone()),
            false => report.gap(
                object,
                "BackendSecurityPolicy",
                format!(
                    "credential {} ({}) cannot sign for a {} backend: the backend has no credential",
                    c.name, c.kind, b.schema
                ),
            ),
        }
    }
    let region = cred.and_then(|c| c.region.clone());
    match b.schema {
        "bedrock" => {
            if region.is_none() && region_in_host(ApiSchema::Bedrock, host).is_none() {
                report.gap(
                    object,
                    "spec.backendRef",
                    "a Bedrock backend needs a region: none in its policy or host",
                );
                return false;
            }
            b.region = region;
        }
        "vertex" => {
            let project = cred.and_then(|c| c.project.clone());
            if project.is_none() || region.is_none() {
                report.gap(
                    object,
                    "BackendSecurityPolicy",
                    "a GCPVertexAI backend needs GCPCredentials with projectName and region",
                );
                return false;
            }
            b.region = region;
            b.project = project;
        }
        _ => {}
    }
    true
}

/// The config type a name written in the output stands for (`"bedrock"` → `ApiSchema::Bedrock`).
fn named<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// The Backend's one endpoint: host, whether it is an IP, port.
fn endpoint(object: &str, spec: &raw::BackendSpec, report: &mut Report) -> Option<(String, bool, u16)> {
    unknown_fields(report, object, "spec.", &spec.extra);
    if spec.kind.as_deref().is_some_and(|k| k != "Endpoints") {
        report.gap(
            object,
            "spec.type",
            "only Endpoints backends are converted (a DynamicResolver follows the Host header)",
        );
        return None;
    }
    if !spec.app_protocols.is_empty() {
        report.gap(
            object,
            "spec.appProtocols",
            "Tollgate speaks HTTP/1.1 (or h2 by ALPN) to backends; not converted",
        );
    }
    if spec.fallback == Some(true) {
        report.notes.push(format!(
            "{object}: spec.fallback: tiers come from the routes' backend priorities"
        ));
    }
    if spec.endpoints.len() > 1 {
        report.gap(
            object,
            "spec.endpoints[1:]",
            "a Tollgate backend has one URL: only the first endpoint is used",
        );
    }
    let Some(e) = spec.endpoints.first() else {
        report.gap(object, "spec.endpoints", "no endpoint");
        return None;
    };
    match (&e.fqdn, &e.ip) {
        (Some(f), _) => Some((f.hostname.clone(), false, f.port)),
        (None, Some(ip)) => Some((ip.address.clone(), true, ip.port)),
        (None, None) => {
            report.gap(object, "spec.endpoints[0]", "only fqdn and ip endpoints are converted");
            None
        }
    }
}

/// TLS toward a backend: from a BackendTLSPolicy that targets it, or its own `spec.tls`.
struct Tls {
    ca_file: Option<String>,
    /// `, BackendTLSPolicy/x` when one applied.
    from: String,
}

fn tls(
    objs: &Objects,
    b: &super::Obj<raw::BackendSpec>,
    object: &str,
    host: &str,
    ip: bool,
    opts: &Options,
    report: &mut Report,
) -> Option<Tls> {
    let policy = objs.tls_policies.iter().find(|p| {
        p.namespace == b.namespace
            && (p.spec.target_refs.iter().chain(&p.spec.target_ref))
                .any(|t| t.name == b.name && t.kind.as_deref() == Some("Backend"))
    });
    let validation = policy.and_then(|p| p.spec.validation.as_ref().or(p.spec.tls.as_ref()));
    if policy.is_none() && b.spec.tls.is_none() {
        return None;
    }
    let mut from = String::new();
    let mut refs: Vec<&raw::Ref> = Vec::new();
    if let Some(p) = policy {
        let pobject = format!("BackendTLSPolicy/{}", p.name);
        unknown_fields(report, &pobject, "spec.", &p.spec.extra);
        from = format!(", {pobject}");
        if let Some(v) = validation {
            refs.extend(&v.ca_certificate_refs);
            tls_name(
                &pobject,
                "spec.validation.hostname",
                v.hostname.as_deref(),
                host,
                ip,
                report,
            );
            if !v.subject_alt_names.is_empty() {
                report.gap(
                    &pobject,
                    "spec.validation.subjectAltNames",
                    "Tollgate checks the certificate for the URL's host only",
                );
            }
        }
    }
    if let Some(t) = &b.spec.tls {
        unknown_fields(report, object, "spec.tls.", &t.extra);
        refs.extend(&t.ca_certificate_refs);
        tls_name(object, "spec.tls.sni", t.sni.as_deref(), host, ip, report);
        if t.insecure_skip_verify == Some(true) {
            report.gap(
                object,
                "spec.tls.insecureSkipVerify",
                "Tollgate always verifies backends' certificates",
            );
        }
    }
    if refs.len() > 1 {
        report.gap(
            object,
            "caCertificateRefs[1:]",
            "a Tollgate backend takes one CA bundle: only the first is used",
        );
    }
    let ca_file = refs.first().map(|r| {
        let dir = match r.kind.as_deref() {
            Some("Secret") => &opts.secrets_dir,
            _ => &opts.config_maps_dir,
        };
        dir.join(&r.name).join("ca.crt").display().to_string()
    });
    Some(Tls { ca_file, from })
}

/// A TLS server name other than the URL's host cannot be expressed.
fn tls_name(object: &str, field: &str, name: Option<&str>, host: &str, ip: bool, report: &mut Report) {
    match name {
        Some(n) if !n.eq_ignore_ascii_case(host) => report.gap(
            object,
            field,
            format!(
                "Tollgate sends the URL's host ({host}) as SNI and checks the certificate for it, not {n:?}{}",
                if ip { " (an IP endpoint)" } else { "" }
            ),
        ),
        _ => {}
    }
}

/// The path Tollgate puts before the client's path (`/v1/chat/completions`): Envoy AI
/// Gateway's `prefix` (or an OpenAI `version`, which older releases used as the prefix)
/// replaces `/v1`, so `/compatibility/v1` becomes `/compatibility`.
fn url_prefix(object: &str, schema: &str, vs: &raw::VersionedSchema, report: &mut Report) -> Option<String> {
    let given = match schema {
        "openai" => vs.prefix.clone().or_else(|| vs.version.clone()),
        "anthropic" => vs.prefix.clone(),
        _ => {
            if vs.prefix.is_some() {
                report.gap(
                    object,
                    "spec.schema.prefix",
                    format!("a {schema} backend's paths are fixed"),
                );
            }
            None
        }
    };
    let Some(p) = given else {
        return Some(String::new());
    };
    let p = format!("/{}", p.trim().trim_matches('/'));
    match p.strip_suffix("/v1") {
        Some(rest) => Some(rest.to_string()),
        None if p == "/" => Some(String::new()),
        None => {
            report.gap(
                object,
                "spec.schema.prefix",
                format!("{p:?}: Tollgate appends the client's /v1/… path to the URL, so only prefixes ending in /v1 map; the backend is not converted"),
            );
            None
        }
    }
}

/// Each distinct host of an OpenAI or Anthropic backend becomes a provider (so workloads that
/// call it directly are captured), whose unrouted requests go to that backend.
pub(super) fn providers(converted: &super::Converted, out: &mut Output, report: &mut Report) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (_, c) in converted {
        let client_schema = match c.schema {
            "openai" | "anthropic" => c.schema,
            other => {
                report.notes.push(format!(
                    "backend {}: workloads that call {} directly are not captured (its API, {other}, is not one a Tollgate provider serves)",
                    c.name, c.host
                ));
                continue;
            }
        };
        if let Some(&i) = seen.get(c.host.as_str()) {
            let p = &mut out.providers[i].value;
            if !p.ports.contains(&c.port) {
                p.ports.push(c.port);
            }
            continue;
        }
        seen.insert(&c.host, out.providers.len());
        let name = c.host.replace(':', "-");
        report
            .converted
            .push(format!("backend {} host {} → provider {name}", c.name, c.host));
        out.providers.push(Item {
            from: c.from.clone(),
            value: Provider {
                name,
                hostnames: if c.ip { vec![] } else { vec![c.host.clone()] },
                addresses: if c.ip { vec![c.host.clone()] } else { vec![] },
                ports: vec![c.port],
                schema: client_schema,
                backend: c.name.clone(),
            },
        });
    }
}
