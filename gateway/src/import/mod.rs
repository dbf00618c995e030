//! `tollgate import`: configuration written for another gateway, turned into a Tollgate
//! config. One submodule per source ([`envoy_ai_gateway`]); what they share is here: the
//! report of what was and was not converted, the output model and its YAML (one comment per
//! converted object), and the check that the result is a valid Tollgate config.
//!
//! A leaf above `config`: it reads nothing at run time and only uses `config` to validate.

pub mod envoy_ai_gateway;

use std::{fmt::Write as _, path::PathBuf};

use serde::Serialize;

/// Where Kubernetes Secrets are expected to be mounted: `<dir>/<credential>/<key>` (as the
/// Helm chart mounts its `credentials`), the credential named after the policy.
/// The same directory the catalog's credentials are read from.
pub const DEFAULT_SECRETS_DIR: &str = crate::config::catalog::CREDENTIAL_DIR;
/// Where CA ConfigMaps (BackendTLSPolicy `caCertificateRefs`) are expected to be mounted:
/// `<dir>/<configmap>/ca.crt`.
pub const DEFAULT_CONFIG_MAPS_DIR: &str = "/etc/tollgate/configmaps";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}, document {doc}: {message}")]
    Document { file: String, doc: usize, message: String },
    #[error("{file}, document {doc} ({object}): {message}")]
    Object {
        file: String,
        doc: usize,
        object: String,
        message: String,
    },
    #[error("no Envoy AI Gateway object (AIGatewayRoute, AIServiceBackend) in the input")]
    Nothing,
    #[error("the imported configuration is not valid (a bug in the importer, or input it misread): {0}")]
    Invalid(String),
}

/// Where a converted file's secrets and CA bundles are expected.
#[derive(Clone, Debug)]
pub struct Options {
    /// Secrets: `<dir>/<credential>/<key>` (default [`DEFAULT_SECRETS_DIR`]).
    pub secrets_dir: PathBuf,
    /// CA ConfigMaps: `<dir>/<configmap>/<key>` (default [`DEFAULT_CONFIG_MAPS_DIR`]).
    pub config_maps_dir: PathBuf,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            secrets_dir: DEFAULT_SECRETS_DIR.into(),
            config_maps_dir: DEFAULT_CONFIG_MAPS_DIR.into(),
        }
    }
}

/// What an import made and what it could not.
#[derive(Debug)]
pub struct Imported {
    /// The Tollgate config (YAML with a comment per converted object), valid.
    pub yaml: String,
    pub report: Report,
}

/// What was converted, what was not, and what was left aside.
#[derive(Debug, Default)]
pub struct Report {
    /// `Kind/name → what it became`.
    pub converted: Vec<String>,
    /// What the config cannot express, or expresses only once the operator acts.
    pub gaps: Vec<Gap>,
    /// Objects of kinds the importer does not read (`Kind/name`).
    pub skipped: Vec<String>,
    /// Differences worth knowing that lose nothing the request path relies on.
    pub notes: Vec<String>,
}

/// One thing the import could not carry over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// `Kind/name`.
    pub object: String,
    /// The field, as written in the object (`spec.rules[0].matches[1].headers[0]`).
    pub field: String,
    pub why: String,
    /// Converted, but only works once the operator does what `why` says.
    pub action: bool,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.field, self.why)
    }
}

impl Report {
    /// Everything was expressed and needs nothing more than the documented mounts.
    pub fn complete(&self) -> bool {
        self.gaps.is_empty()
    }

    /// Process exit status: 0 complete, 1 written but incomplete.
    pub fn exit_code(&self) -> i32 {
        if self.complete() {
            0
        } else {
            1
        }
    }

    pub(crate) fn gap(&mut self, object: &str, field: impl Into<String>, why: impl Into<String>) {
        let gap = Gap {
            object: object.into(),
            field: field.into(),
            why: why.into(),
            action: false,
        };
        // A policy that targets several backends is met once per backend: one line is enough.
        if !self.gaps.contains(&gap) {
            self.gaps.push(gap);
        }
    }

    pub(crate) fn action(&mut self, object: &str, field: impl Into<String>, why: impl Into<String>) {
        self.gaps.push(Gap {
            object: object.into(),
            field: field.into(),
            why: why.into(),
            action: true,
        });
    }

    /// The summary printed on stderr.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut section = |title: &str, lines: Vec<String>| {
            if !lines.is_empty() {
                let _ = writeln!(out, "{title} ({}):", lines.len());
                for l in lines {
                    let _ = writeln!(out, "  {l}");
                }
            }
        };
        section("converted", self.converted.clone());
        let (actions, lost): (Vec<&Gap>, Vec<&Gap>) = self.gaps.iter().partition(|g| g.action);
        section("not converted", lost.iter().map(|g| g.to_string()).collect());
        section("needs action", actions.iter().map(|g| g.to_string()).collect());
        section("notes", self.notes.clone());
        section("skipped (kinds not imported)", self.skipped.clone());
        let _ = writeln!(
            out,
            "import {}",
            if self.complete() {
                "complete"
            } else {
                "incomplete: see above"
            }
        );
        out
    }
}

// === the output model ===

/// A converted entry of one section, with the objects it came from.
#[derive(Debug)]
pub(crate) struct Item<T> {
    /// `AIServiceBackend/x, Backend/y`: written as `# from …` above the entry.
    pub from: String,
    pub value: T,
}

/// The sections an import writes; everything else keeps Tollgate's defaults.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub providers: Vec<Item<Provider>>,
    pub backends: Vec<Item<Backend>>,
    pub credentials: Vec<Item<Credential>>,
    pub routes: Vec<Item<Route>>,
    pub limits: Vec<Item<Limit>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Provider {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    pub ports: Vec<u16>,
    pub schema: &'static str,
    pub backend: String,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Backend {
    pub name: String,
    pub url: String,
    pub schema: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Credential {
    pub name: String,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RouteMatch {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BackendRef {
    pub backend: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Timeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_byte: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Route {
    pub name: String,
    #[serde(rename = "match", skip_serializing_if = "is_any")]
    pub matches: RouteMatch,
    pub backends: Vec<BackendRef>,
    pub timeouts: Timeouts,
}

fn is_any(m: &RouteMatch) -> bool {
    m.models.is_empty() && m.headers.is_empty()
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LimitMatch {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Limit {
    pub name: String,
    #[serde(rename = "match")]
    pub matches: LimitMatch,
    pub key: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
}

impl Output {
    /// The config text: a header, then each section with `# from …` above every entry.
    /// `without_ca_files` leaves `caFile` out (to validate where the mounts are not).
    pub(crate) fn to_yaml(&self, header: &str, without_ca_files: bool) -> String {
        let mut out = String::new();
        for line in header.lines() {
            let _ = writeln!(out, "# {line}");
        }
        section(&mut out, "providers", &self.providers);
        match without_ca_files {
            false => section(&mut out, "backends", &self.backends),
            true => {
                let stripped: Vec<Item<Backend>> = (self.backends.iter())
                    .map(|b| Item {
                        from: b.from.clone(),
                        value: Backend {
                            ca_file: None,
                            ..b.value.clone()
                        },
                    })
                    .collect();
                section(&mut out, "backends", &stripped);
            }
        }
        section(&mut out, "credentials", &self.credentials);
        section(&mut out, "routes", &self.routes);
        section(&mut out, "limits", &self.limits);
        out
    }
}

fn section<T: Serialize>(out: &mut String, key: &str, items: &[Item<T>]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{key}:");
    for item in items {
        let _ = writeln!(out, "  # from {}", item.from);
        // One entry as a one-element list, indented under the key: serde writes the values
        // (quoting what needs it), the comments stay ours.
        let text = serde_yaml_ng::to_string(&[&item.value]).expect("plain data serializes");
        for line in text.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
}

/// Checks `yaml` the way `tollgate validate` does.
pub(crate) fn validate(yaml: &str) -> Result<(), Error> {
    crate::config::Config::parse(yaml)
        .map(drop)
        .map_err(|e| Error::Invalid(e.to_string()))
}
