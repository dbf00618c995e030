//! Tollgate: a node-level AI gateway. The eBPF programs in `gateway-ebpf` redirect the
//! connects that workloads open to known LLM endpoints; this crate loads them, runs the proxy
//! that receives those connections, and reports what it saw.
//!
//! One folder per runtime component (see ARCHITECTURE.md):
//! - [`config`]: the YAML file, `RawConfig` → validated `Config`.
//! - [`ebpf`]: load and attach the programs, own and sync their maps.
//! - [`capture`]: the redirect listeners, original-destination lookup, relay, connection log.
//! - [`identity`]: kernel identity → process, executable, cgroup; pods from the node's CRI.
//! - [`handover`]: listening sockets passed to a successor (zero-gap upgrades).
//! - [`proxy`]: the L7 request pipeline (phases over one request context).
//! - [`llm`]: provider API knowledge: operations, body parsing, error shapes.
//! - [`route`]: routes, backend choice, pooled upstream clients.
//! - [`auth`]: backend credentials: loading, rotation, injection.
//! - [`accounting`]: prices, exact costs, the audit record.
//! - [`limits`]: requests/tokens/money limits, local or in Redis.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`, the operator views' JSON and `/ui`, on
//!   their own runtime.
//! - [`console`]: `tollgate status` and `tollgate top`, reading a running instance's admin port.
//! - [`telemetry`]: metrics registry and log setup; the audit log's hash chain (`tollgate audit`).
//! - [`app`]: wires the above together for `tollgate run`.
//! - [`explain`]: `tollgate explain`, the pipeline's decisions for a described request.
//! - [`import`]: `tollgate import`, another gateway's configuration as a Tollgate config.
//!
//! Leaves: [`socket`], [`matching`], [`validation`], [`sysfs`], [`truststore`]
//! (`tollgate trust`), [`keyfile`] (private key files: the node CA's, the audit signing key).

pub mod accounting;
pub mod admin;
pub mod app;
pub mod auth;
pub mod capture;
pub mod client;
pub mod config;
pub mod console;
pub mod dns;
pub mod ebpf;
pub mod explain;
pub mod handover;
pub mod hostname;
pub mod identity;
pub mod import;
pub mod keyfile;
pub mod limits;
pub mod llm;
pub mod matching;
pub mod mcp;
pub mod proxy;
pub mod route;
pub mod socket;
pub mod sysfs;
pub mod telemetry;
pub mod truststore;
pub mod validation;
