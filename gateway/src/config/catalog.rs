//! The built-in provider catalog: for each common provider, its hostnames, the API its clients
//! speak (and under which path), its default backend, the credential kind that backend takes and
//! how its model names meet the shipped price table. The data is `catalog.yaml`, each entry citing
//! the provider's API reference it was written from; `tollgate catalog` prints it.
//!
//! [`expand`] runs first in `Config::from_raw`: a provider with `catalog: NAME` (or a name in the
//! top-level `catalog:` list) gets every key the user left out from the entry, and, unless it
//! names a `backend`, a backend and a credential named after it. What it writes is raw config: the
//! same validation as hand-written providers, backends and credentials follows (a catalog
//! hostname passes the same hostname check as a user's), and errors in the created backend name
//! the provider key that configures it.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::LazyLock,
};

use serde::{Deserialize, Serialize};

use super::{invalid, Error, RawConfig, RawProvider};
use crate::{
    auth::config::{CredentialKind, RawCredential},
    llm::ApiSchema,
    route::config::RawBackend,
    validation::Invalid,
};

/// Where the credential a catalog provider creates reads its value:
/// `/var/run/secrets/tollgate/<provider>/api-key` (a Kubernetes Secret mount).
pub const CREDENTIAL_DIR: &str = "/var/run/secrets/tollgate";
/// The file in the provider's directory of [`CREDENTIAL_DIR`].
pub const CREDENTIAL_FILE: &str = "api-key";

const CATALOG_YAML: &str = include_str!("catalog.yaml");

/// The entries, parsed once (a test checks the file).
static ENTRIES: LazyLock<Vec<Entry>> =
    LazyLock::new(|| serde_yaml_ng::from_str(CATALOG_YAML).expect("catalog.yaml is valid (checked by a unit test)"));

/// One provider of the catalog.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    /// The catalog name, and the provider's name by default.
    pub name: String,
    /// Who it is, for people.
    pub title: String,
    /// What its clients connect to (`*` as in a provider's `hostnames`).
    pub hostnames: Vec<String>,
    /// Destination ports. Default `[443]`.
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// The API its clients speak.
    pub schema: ApiSchema,
    /// Where its clients put that API besides `/v1` (a provider's `basePath`).
    pub base_path: Option<String>,
    /// The backend a provider without `backend` gets.
    pub backend: EntryBackend,
    /// The credential kind that backend takes.
    pub auth: CredentialKind,
    /// How its model names meet the shipped price table.
    pub price_names: PriceNames,
    /// The provider's API reference the entry was written from.
    pub source: String,
    /// When the entry was checked against `source`.
    pub as_of: String,
}

/// The default backend of an entry.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntryBackend {
    /// The URL, `{resource}` and `{region}` filled from the provider's keys of that name.
    pub url: String,
    /// The API the backend speaks.
    pub schema: ApiSchema,
    /// Provider keys the backend cannot be made without, with what they are.
    #[serde(default)]
    pub needs: BTreeMap<Need, String>,
}

/// A provider key a catalog backend may need from the user.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum Need {
    /// The Azure OpenAI resource (`https://{resource}.openai.azure.com`).
    Resource,
    /// The AWS region or Vertex AI location.
    Region,
    /// The Google Cloud project.
    Project,
}

impl Need {
    /// The provider key.
    pub fn key(self) -> &'static str {
        match self {
            Need::Resource => "resource",
            Need::Region => "region",
            Need::Project => "project",
        }
    }

    fn given(self, p: &RawProvider) -> Option<&str> {
        match self {
            Need::Resource => p.resource.as_deref(),
            Need::Region => p.region.as_deref(),
            Need::Project => p.project.as_deref(),
        }
    }
}

/// How a provider's model names meet the shipped price table (`accounting::PriceTable`, which
/// looks a name up as given, then normalised: no `vendor/` path, Bedrock region and vendor
/// prefixes, version and date suffixes).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum PriceNames {
    /// The table's own names (`gpt-4o-2024-08-06`, `mistral-large-latest` normalise to them).
    Table,
    /// `vendor/model`: the part after the last `/` (`openai/gpt-4o` → `gpt-4o`).
    VendorPrefixed,
    /// Models the table does not price (open-weight models at the host's own prices): add
    /// them under `pricing`.
    Unpriced,
}

impl PriceNames {
    pub fn as_str(self) -> &'static str {
        match self {
            PriceNames::Table => "table",
            PriceNames::VendorPrefixed => "vendorPrefixed",
            PriceNames::Unpriced => "unpriced",
        }
    }
}

fn default_ports() -> Vec<u16> {
    super::DEFAULT_PORTS.to_vec()
}

/// Every entry, in catalog order.
pub fn entries() -> &'static [Entry] {
    &ENTRIES
}

/// The entry called `name`.
pub fn find(name: &str) -> Option<&'static Entry> {
    entries().iter().find(|e| e.name == name)
}

/// The file the credential of catalog provider `provider` is read from.
pub fn credential_file(provider: &str) -> PathBuf {
    Path::new(CREDENTIAL_DIR).join(provider).join(CREDENTIAL_FILE)
}

fn known() -> String {
    entries().iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
}

// === expansion ===

/// What [`expand`] did, for the errors of what follows it.
#[derive(Debug)]
pub(super) struct Expanded {
    /// Where each provider was written: `providers[i]`, or `catalog[j]` for the shorthand.
    pub(super) origins: Vec<String>,
    /// Backends the user wrote (the created ones follow them).
    user_backends: usize,
    /// The origin of the provider each created backend belongs to, in order.
    created: Vec<String>,
}

impl Expanded {
    /// `e` with a created backend's field (`backends[7].region`) named as the provider key that
    /// configures it (`providers[2].region`).
    pub(super) fn blame(&self, e: Invalid) -> Error {
        let index = e
            .field
            .strip_prefix("backends[")
            .and_then(|r| r.split_once(']'))
            .and_then(|(k, rest)| Some((k.parse::<usize>().ok()?.checked_sub(self.user_backends)?, rest)));
        match index.and_then(|(k, rest)| Some((self.created.get(k)?, rest))) {
            Some((origin, rest)) => invalid(format!("{origin}{rest}"), e.message),
            None => Error::Invalid(e),
        }
    }
}

/// Appends the top-level `catalog` names to the providers, then fills every provider that
/// names a catalog entry, adding the backends and credentials it creates to `raw`.
pub(super) fn expand(raw: &mut RawConfig) -> Result<Expanded, Error> {
    let mut origins: Vec<String> = (0..raw.providers.len()).map(|i| format!("providers[{i}]")).collect();
    for (j, name) in std::mem::take(&mut raw.catalog).into_iter().enumerate() {
        let same = |p: &RawProvider| p.name.as_deref().or(p.catalog.as_deref()) == Some(name.as_str());
        if let Some(i) = raw.providers.iter().position(same) {
            return Err(invalid(
                format!("catalog[{j}]"),
                format!("{name:?} is also {}: list it once", origins[i]),
            ));
        }
        origins.push(format!("catalog[{j}]"));
        raw.providers.push(RawProvider {
            catalog: Some(name),
            ..RawProvider::default()
        });
    }
    let user_backends = raw.backends.len();
    let mut created = Vec::new();
    for (p, origin) in raw.providers.iter_mut().zip(&origins) {
        if fill(origin, p, &mut raw.backends, &mut raw.credentials)? {
            created.push(origin.clone());
        }
    }
    Ok(Expanded {
        origins,
        user_backends,
        created,
    })
}

/// The provider keys that configure a created backend, set on `p`.
fn backend_keys(p: &RawProvider) -> Vec<&'static str> {
    let set = [
        ("url", p.url.is_some()),
        ("credential", p.credential.is_some()),
        ("region", p.region.is_some()),
        ("project", p.project.is_some()),
        ("resource", p.resource.is_some()),
    ];
    set.into_iter().filter(|(_, on)| *on).map(|(k, _)| k).collect()
}

/// Fills provider `p` (written at `origin`) from its catalog entry, if it names one; returns
/// whether it created a backend.
fn fill(
    origin: &str,
    p: &mut RawProvider,
    backends: &mut Vec<RawBackend>,
    credentials: &mut Vec<RawCredential>,
) -> Result<bool, Error> {
    let overrides = backend_keys(p);
    let Some(name) = p.catalog.clone() else {
        return match overrides.first() {
            Some(key) => Err(invalid(
                format!("{origin}.{key}"),
                "only with `catalog`: it configures the backend a catalog entry creates",
            )),
            None => Ok(false),
        };
    };
    let entry = find(&name).ok_or_else(|| {
        let field = match origin.starts_with("catalog[") {
            true => origin.to_string(),
            false => format!("{origin}.catalog"),
        };
        invalid(field, format!("unknown catalog entry {name:?} (known: {})", known()))
    })?;
    let provider = p.name.get_or_insert_with(|| entry.name.clone()).clone();
    if p.hostnames.is_empty() {
        p.hostnames = entry.hostnames.clone();
    }
    p.ports.get_or_insert_with(|| entry.ports.clone());
    p.schema.get_or_insert(entry.schema);
    if p.base_path.is_none() {
        p.base_path = entry.base_path.clone();
    }
    if p.backend.is_some() {
        return match overrides.first() {
            Some(key) => Err(invalid(
                format!("{origin}.{key}"),
                format!("not with `backend`: {key} configures the backend the catalog creates"),
            )),
            None => Ok(false),
        };
    }
    if backends.iter().any(|b| b.name == provider) {
        return Err(invalid(
            format!("{origin}.backend"),
            format!("a backend named {provider:?} exists: set `backend: {provider}` to use it, or rename it"),
        ));
    }
    let url = backend_url(origin, entry, p)?;
    let credential = credential(origin, entry, p, &provider, credentials)?;
    backends.push(RawBackend {
        name: provider.clone(),
        url,
        schema: Some(entry.backend.schema),
        credential: Some(credential),
        ca_file: None,
        deployment: None,
        api_version: None,
        region: p.region.take(),
        project: p.project.take(),
        http2: None,
    });
    p.backend = Some(provider);
    Ok(true)
}

/// The created backend's URL: the provider's `url`, else the entry's with `{resource}` and
/// `{region}` filled. A key the entry needs and the user did not give is an error naming it.
fn backend_url(origin: &str, entry: &Entry, p: &mut RawProvider) -> Result<String, Error> {
    let shorthand = origin.starts_with("catalog[");
    for (need, what) in &entry.backend.needs {
        // A URL of the user's own has no placeholders to fill, and a bedrock or vertex backend
        // finds its region in it (or says it needs one); a project is needed whatever the URL.
        let covered = p.url.is_some() && *need != Need::Project;
        if need.given(p).is_none() && !covered {
            let (field, hint) = match shorthand {
                true => (
                    origin.to_string(),
                    format!(
                        ": list it under providers as {{catalog: {}, {}: …}}",
                        entry.name,
                        need.key()
                    ),
                ),
                false => (format!("{origin}.{}", need.key()), String::new()),
            };
            return Err(invalid(
                field,
                format!("catalog entry {:?} needs {what}{hint}", entry.name),
            ));
        }
    }
    if p.resource.is_some() && !entry.backend.needs.contains_key(&Need::Resource) {
        return Err(invalid(
            format!("{origin}.resource"),
            format!("catalog entry {:?} takes no resource", entry.name),
        ));
    }
    if let Some(url) = p.url.take() {
        return Ok(url);
    }
    let mut url = entry.backend.url.clone();
    for need in [Need::Resource, Need::Region] {
        let Some(value) = need.given(p) else { continue };
        // The value becomes part of a host name: one DNS label, nothing that could end the host.
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(invalid(
                format!("{origin}.{}", need.key()),
                format!("{value:?}: letters, digits and '-' only"),
            ));
        }
        url = url.replace(&format!("{{{}}}", need.key()), value);
    }
    p.resource = None;
    Ok(url)
}

/// The created backend's credential: the provider's `credential` (which must exist), else the
/// one named after the provider, created (kind from the entry, value from
/// [`credential_file`]) unless a credential of that name exists.
fn credential(
    origin: &str,
    entry: &Entry,
    p: &mut RawProvider,
    provider: &str,
    credentials: &mut Vec<RawCredential>,
) -> Result<String, Error> {
    if let Some(c) = p.credential.take() {
        if !credentials.iter().any(|k| k.name == c) {
            return Err(invalid(
                format!("{origin}.credential"),
                format!("no credential named {c:?}"),
            ));
        }
        return Ok(c);
    }
    if !credentials.iter().any(|k| k.name == provider) {
        credentials.push(RawCredential {
            name: provider.to_string(),
            kind: entry.auth,
            file: Some(credential_file(provider)),
            env: None,
            token_url: None,
        });
    }
    Ok(provider.to_string())
}

// === `tollgate catalog` ===

/// The catalog as a table: name, hostnames, client API, backend, auth, price names, source.
pub fn render_table() -> String {
    let header = ["NAME", "HOSTNAMES", "CLIENTS", "BACKEND", "AUTH", "PRICES", "SOURCE"].map(String::from);
    let rows: Vec<[String; 7]> = entries()
        .iter()
        .map(|e| {
            let clients = match &e.base_path {
                Some(base) => format!("{} {} and /v1", e.schema.as_str(), base),
                None => format!("{} /v1", e.schema.as_str()),
            };
            [
                e.name.clone(),
                e.hostnames.join(","),
                clients,
                format!("{} {}", e.backend.schema.as_str(), e.backend.url),
                kind_name(e.auth),
                e.price_names.as_str().to_string(),
                e.source.clone(),
            ]
        })
        .collect();
    let mut widths = [0usize; 7];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            match i {
                6 => line.push_str(cell),
                _ => {
                    let _ = write!(line, "{cell:<w$}  ");
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\nCredentials are read from {CREDENTIAL_DIR}/<provider>/{CREDENTIAL_FILE} unless the config says otherwise \
         (docs/config.md#provider-catalog)."
    );
    out
}

/// A credential kind as the config spells it (`xApiKey`).
fn kind_name(kind: CredentialKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{kind:?}"),
    }
}

/// The catalog as JSON: every entry with all its keys.
pub fn render_json() -> String {
    serde_json::to_string_pretty(entries()).unwrap_or_default()
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
