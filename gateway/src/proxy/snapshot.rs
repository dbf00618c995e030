//! The configuration a request reads once and keeps for its whole life: the validated
//! config and one pooled upstream client per backend, swapped whole on a valid reload.

use std::sync::Arc;

use crate::{
    client::{self, UpstreamClient},
    config::Config,
};

/// Everything a request needs from the configuration, read once per request.
pub struct Snapshot {
    pub config: Arc<Config>,
    /// Index-aligned with `config.backends`.
    pub clients: Vec<UpstreamClient>,
}

impl Snapshot {
    pub fn build(config: Arc<Config>) -> Result<Snapshot, client::Error> {
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
        Ok(Snapshot { config, clients })
    }
}
