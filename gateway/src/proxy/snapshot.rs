//! The configuration a request reads once and keeps for its whole life: the validated
//! config and one pooled upstream client per backend, swapped whole on a valid reload.

use std::sync::Arc;

use crate::{
    accounting::audit::GatewayInfo,
    client::{self, UpstreamClient},
    config::Config,
};

/// Everything a request needs from the configuration, read once per request.
pub struct Snapshot {
    pub config: Arc<Config>,
    /// Index-aligned with `config.backends`.
    pub clients: Vec<UpstreamClient>,
    /// The instance and this config's generation and hash, for the records made under it.
    pub gateway: Arc<GatewayInfo>,
}

impl Snapshot {
    /// The snapshot of configuration `generation` (1 at start, +1 per applied reload), its
    /// `config` record written to `audit` first: the log holds the policy before any request
    /// made under it.
    pub fn applied(
        config: Arc<Config>,
        generation: u64,
        node: &str,
        audit: &crate::telemetry::jsonl::Sink,
    ) -> Result<Snapshot, client::Error> {
        let (gateway, record) = crate::config::generation::applied(&config, generation, node);
        let snapshot = Snapshot::build(config, gateway)?;
        if snapshot.config.audit_enabled {
            audit.write_json(&record);
        }
        Ok(snapshot)
    }

    pub fn build(config: Arc<Config>, gateway: Arc<GatewayInfo>) -> Result<Snapshot, client::Error> {
        let clients = config
            .backends
            .iter()
            .map(|b| {
                client::build(&client::Spec {
                    name: &b.name,
                    ca_file: b.ca_file.as_deref(),
                    http2: b.http2,
                    mark: config.capture.mark,
                    connect_timeout: config.capture.connect_timeout,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Snapshot {
            config,
            clients,
            gateway,
        })
    }
}
