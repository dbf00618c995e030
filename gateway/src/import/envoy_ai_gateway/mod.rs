//! `tollgate import envoy-ai-gateway`: the Kubernetes objects of an Envoy AI Gateway install
//! (AIGatewayRoute, AIServiceBackend, BackendSecurityPolicy, Envoy Gateway's Backend and
//! BackendTrafficPolicy, Gateway API's BackendTLSPolicy) as a Tollgate config. The mapping is
//! in docs/config.md (`## Importing from Envoy AI Gateway`); what does not map is reported as
//! `Kind/name: field: why`, never dropped in silence.
//!
//! Reading is two steps: every document into its typed `raw` shape (unknown kinds are listed
//! as skipped), then conversion in dependency order: credentials (from policies), backends
//! (each AIServiceBackend with its Backend, TLS policy and credential), the providers their
//! hosts become, routes, limits.

mod backends;
mod raw;
mod routes;
#[cfg(test)]
mod tests;

use serde::Deserialize as _;
use serde_yaml_ng::Value;

use super::{validate, Error, Imported, Options, Output, Report};

/// The API group of Envoy AI Gateway's kinds.
const AIGW_GROUP: &str = "aigateway.envoyproxy.io";
/// Envoy Gateway's API group (Backend, BackendTrafficPolicy).
const EG_GROUP: &str = "gateway.envoyproxy.io";
/// Gateway API's group (BackendTLSPolicy, Gateway, HTTPRoute).
const GWAPI_GROUP: &str = "gateway.networking.k8s.io";
/// The request header Envoy AI Gateway fills with the request's model.
const MODEL_HEADER: &str = "x-ai-eg-model";
/// The dynamic metadata namespace Envoy AI Gateway writes its costs in.
const COST_NAMESPACE: &str = "io.envoy.ai_gateway";

/// One object of a kind the importer reads.
#[derive(Debug)]
struct Obj<T> {
    name: String,
    namespace: String,
    spec: T,
}

/// Every object read, in input order.
#[derive(Debug, Default)]
struct Objects {
    routes: Vec<Obj<raw::AiGatewayRouteSpec>>,
    services: Vec<Obj<raw::AiServiceBackendSpec>>,
    policies: Vec<Obj<raw::SecurityPolicySpec>>,
    backends: Vec<Obj<raw::BackendSpec>>,
    tls_policies: Vec<Obj<raw::TlsPolicySpec>>,
    traffic_policies: Vec<Obj<raw::TrafficPolicySpec>>,
    /// More than one namespace: Tollgate names are `namespace.name`.
    qualify: bool,
}

impl Objects {
    /// The Tollgate name of an object.
    fn tg_name(&self, namespace: &str, name: &str) -> String {
        match self.qualify {
            true => format!("{namespace}.{name}"),
            false => name.to_string(),
        }
    }
}

fn find<'a, T>(objs: &'a [Obj<T>], namespace: &str, name: &str) -> Option<&'a Obj<T>> {
    objs.iter().find(|o| o.name == name && o.namespace == namespace)
}

/// Imports `inputs` (file label, text): the config, validated, and the report.
pub fn import(inputs: &[(String, String)], opts: &Options) -> Result<Imported, Error> {
    let mut report = Report::default();
    let mut objs = Objects::default();
    for (file, text) in inputs {
        read_file(file, text, &mut objs, &mut report)?;
    }
    if objs.routes.is_empty() && objs.services.is_empty() {
        return Err(Error::Nothing);
    }
    let namespaces: std::collections::HashSet<&str> = (objs.routes.iter().map(|o| o.namespace.as_str()))
        .chain(objs.services.iter().map(|o| o.namespace.as_str()))
        .chain(objs.policies.iter().map(|o| o.namespace.as_str()))
        .chain(objs.backends.iter().map(|o| o.namespace.as_str()))
        .collect();
    objs.qualify = namespaces.len() > 1;
    let mut out = Output::default();
    let credentials = backends::credentials(&objs, opts, &mut out, &mut report);
    let converted = backends::backends(&objs, opts, &credentials, &mut out, &mut report);
    backends::providers(&converted, &mut out, &mut report);
    let route_names = routes::routes(&objs, &converted, &mut out, &mut report);
    routes::limits(&objs, &route_names, &mut out, &mut report);
    let header = format!(
        "Imported from Envoy AI Gateway by `tollgate import envoy-ai-gateway` ({}).\n\
         Secrets are read from {}/<credential>/<key>, CA bundles from {}/<configmap>/ca.crt:\n\
         see docs/config.md#importing-from-envoy-ai-gateway. Import {}.",
        inputs.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>().join(", "),
        opts.secrets_dir.display(),
        opts.config_maps_dir.display(),
        if report.complete() {
            "complete"
        } else {
            "incomplete (see the report it printed)"
        }
    );
    let yaml = out.to_yaml(&header, false);
    // caFile must exist where `validate` runs; the mounts exist only where Tollgate runs.
    validate(&out.to_yaml(&header, true))?;
    Ok(Imported { yaml, report })
}

/// Reads every document of one file.
fn read_file(file: &str, text: &str, objs: &mut Objects, report: &mut Report) -> Result<(), Error> {
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc_error = |message: String| Error::Document {
            file: file.to_string(),
            doc: i + 1,
            message,
        };
        let value = Value::deserialize(doc).map_err(|e| doc_error(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        add(file, i + 1, value, objs, report)?;
    }
    Ok(())
}

/// Adds one object (or each item of a `List`).
fn add(file: &str, doc: usize, value: Value, objs: &mut Objects, report: &mut Report) -> Result<(), Error> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let (Some(api_version), Some(kind)) = (text("apiVersion"), text("kind")) else {
        return Err(Error::Document {
            file: file.to_string(),
            doc,
            message: "not a Kubernetes object: `apiVersion` and `kind` are required".into(),
        });
    };
    if kind == "List" || kind.ends_with("List") && value.get("items").is_some() {
        if let Some(Value::Sequence(items)) = value.get("items") {
            for item in items.clone() {
                add(file, doc, item, objs, report)?;
            }
        }
        return Ok(());
    }
    let meta: raw::Meta = value
        .get("metadata")
        .cloned()
        .map(serde_yaml_ng::from_value)
        .transpose()
        .ok()
        .flatten()
        .unwrap_or_default();
    let object = format!("{kind}/{}", meta.name);
    let object_error = |message: String| Error::Object {
        file: file.to_string(),
        doc,
        object: object.clone(),
        message,
    };
    if meta.name.is_empty() {
        return Err(object_error("metadata.name is required".into()));
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version.as_str()));
    let known = matches!(
        (group, kind.as_str()),
        (
            AIGW_GROUP,
            "AIGatewayRoute" | "AIServiceBackend" | "BackendSecurityPolicy"
        ) | (EG_GROUP, "Backend" | "BackendTrafficPolicy")
            | (GWAPI_GROUP, "BackendTLSPolicy")
    );
    if !known {
        report.skipped.push(object);
        return Ok(());
    }
    if group == AIGW_GROUP && !matches!(version, "v1alpha1" | "v1beta1") {
        return Err(object_error(format!(
            "apiVersion {api_version}: only v1alpha1 and v1beta1 are known"
        )));
    }
    let spec = value.get("spec").cloned().unwrap_or(Value::Null);
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let o = (meta.name.as_str(), namespace.as_str(), spec);
    let parse_error = |e: serde_yaml_ng::Error| object_error(format!("spec: {e}"));
    match kind.as_str() {
        "AIGatewayRoute" => objs.routes.push(obj(o).map_err(parse_error)?),
        "AIServiceBackend" => objs.services.push(obj(o).map_err(parse_error)?),
        "BackendSecurityPolicy" => objs.policies.push(obj(o).map_err(parse_error)?),
        "Backend" => objs.backends.push(obj(o).map_err(parse_error)?),
        "BackendTLSPolicy" => objs.tls_policies.push(obj(o).map_err(parse_error)?),
        _ => objs.traffic_policies.push(obj(o).map_err(parse_error)?),
    }
    Ok(())
}

/// An object's spec in its typed shape.
fn obj<T: serde::de::DeserializeOwned>(
    (name, namespace, spec): (&str, &str, Value),
) -> Result<Obj<T>, serde_yaml_ng::Error> {
    Ok(Obj {
        name: name.to_string(),
        namespace: namespace.to_string(),
        spec: serde_yaml_ng::from_value(spec)?,
    })
}

/// Reports every key of `extra` as not converted.
fn unknown_fields(report: &mut Report, object: &str, path: &str, extra: &raw::Extra) {
    for key in extra.keys() {
        report.gap(
            object,
            format!("{path}{key}"),
            "a field the importer does not know: not converted",
        );
    }
}

/// Gateway API durations (`1h`, `30s`, `500ms`, `1h30m`) as Tollgate writes them.
fn duration(text: &str) -> Option<String> {
    let d = humantime::parse_duration(text).ok()?;
    Some(humantime::format_duration(d).to_string().replace(' ', ""))
}

/// The converted AIServiceBackends, by (namespace, name), in input order.
type Converted = Vec<((String, String), backends::Converted)>;
