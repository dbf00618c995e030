//! The Redis side of the limit store, on the `redis` crate: runs the two Lua scripts limits need,
//! with a timeout on every call.
//!
//! - Single node: one multiplexed connection. Requests are pipelined on one socket and every
//!   reply is matched to its request, so a caller that gives up (timeout, dropped future) never
//!   leaves a reply behind for the next caller to read.
//! - Redis Cluster (`cluster: true`): the crate's cluster connection (slot map, MOVED/ASK, one
//!   multiplexed connection per primary). Every script call names keys of one slot; the caller
//!   groups keys with [`slot`].
//!
//! The connection is opened on first use, and again after a connection error or a timeout
//! (connecting counts against the timeout). Scripts run by `EVALSHA`; on `NOSCRIPT` the crate
//! loads them (`SCRIPT LOAD`, on every primary in a cluster) and retries.

use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use redis::{
    aio::MultiplexedConnection, cluster::ClusterClient, cluster_async::ClusterConnection, io::tcp::TcpSettings,
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo as _, RedisConnectionInfo, RedisError,
    Script, ScriptInvocation,
};

use super::StoreConfig;

/// Retries of one cluster request (MOVED/ASK redirections, a reconnection); the store's timeout
/// bounds them all.
const CLUSTER_RETRIES: u32 = 2;

/// A failed call: Redis could not be reached, did not answer in time, or answered an error.
/// Holds no secret.
#[derive(Debug)]
pub(crate) struct Unreachable(pub(crate) String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

enum Kind {
    Single {
        client: redis::Client,
        config: AsyncConnectionConfig,
    },
    Cluster(ClusterClient),
}

#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn invoke<T: redis::FromRedisValue>(&mut self, call: &ScriptInvocation<'_>) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => call.invoke_async(c).await,
            Conn::Cluster(c) => call.invoke_async(c).await,
        }
    }
}

/// A Redis server or cluster, and the scripts to run there.
pub(crate) struct Remote {
    /// Where to connect; an error when the configuration could not make a client (every call
    /// then fails with it).
    kind: Result<Kind, String>,
    /// What `/config` and logs may show: the addresses.
    target: String,
    timeout: Duration,
    /// The connection in use and its generation (to forget only the one that failed).
    current: Mutex<Option<(u64, Conn)>>,
    /// Held while connecting, so that concurrent callers wait for one new connection.
    connecting: tokio::sync::Mutex<u64>,
    reserve: Script,
    adjust: Script,
}

impl Remote {
    /// Builds the client; connects on first use. `None` when the store is local.
    pub(crate) fn new(cfg: &StoreConfig, reserve: &str, adjust: &str) -> Option<Remote> {
        let seeds: Vec<&str> = match (&cfg.redis, cfg.nodes.is_empty()) {
            (Some(a), _) => vec![a.as_str()],
            (None, false) => cfg.nodes.iter().map(String::as_str).collect(),
            (None, true) => return None,
        };
        let infos: Vec<ConnectionInfo> = seeds.iter().map(|a| connection_info(cfg, a)).collect();
        let kind = if cfg.cluster {
            ClusterClient::builder(infos)
                .retries(CLUSTER_RETRIES)
                .connection_timeout(cfg.timeout)
                .response_timeout(cfg.timeout)
                .overall_response_timeout(Some(cfg.timeout))
                .tcp_settings(TcpSettings::default().set_nodelay(true))
                .build()
                .map(Kind::Cluster)
        } else {
            redis::Client::open(infos.into_iter().next().expect("one address")).map(|client| Kind::Single {
                client,
                config: AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(cfg.timeout))
                    .set_response_timeout(Some(cfg.timeout)),
            })
        };
        let target = seeds.join(",");
        let kind = kind.map_err(|e| {
            tracing::error!(redis = %target, error = %e, "limit store: cannot make a redis client");
            format!("redis {target}: {e}")
        });
        Some(Remote {
            kind,
            target,
            timeout: cfg.timeout,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(0),
            reserve: Script::new(reserve),
            adjust: Script::new(adjust),
        })
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.kind, Ok(Kind::Cluster(_)))
    }

    /// Runs the reserve script over `charges` (one slot in a cluster): `Ok(Ok(after))` when all
    /// were taken, with each counter's value once taken; `Ok(Err(i))` when `charges[i]` would
    /// exceed its limit (nothing taken).
    pub(crate) async fn reserve(&self, charges: &[&super::Charge]) -> Result<Result<Vec<u64>, usize>, Unreachable> {
        let mut call = self.reserve.prepare_invoke();
        for c in charges {
            call.key(&c.key);
        }
        for c in charges {
            call.arg(c.amount).arg(c.max).arg(c.window_left);
        }
        let reply: Vec<i64> = self.run(&call).await?;
        match reply.split_first() {
            Some((0, after)) if after.len() == charges.len() => {
                Ok(Ok(after.iter().map(|v| (*v).max(0) as u64).collect()))
            }
            Some((&i, [])) if i >= 1 && (i as usize) <= charges.len() => Ok(Err(i as usize - 1)),
            _ => Err(Unreachable(format!(
                "redis {}: unexpected reply {reply:?}",
                self.target
            ))),
        }
    }

    /// Moves counters by signed deltas (one slot in a cluster).
    pub(crate) async fn adjust(&self, deltas: &[&super::Delta]) -> Result<(), Unreachable> {
        let mut call = self.adjust.prepare_invoke();
        for d in deltas {
            call.key(&d.0);
        }
        for d in deltas {
            call.arg(d.1).arg(d.2);
        }
        self.run::<i64>(&call).await.map(|_| ())
    }

    async fn run<T: redis::FromRedisValue>(&self, call: &ScriptInvocation<'_>) -> Result<T, Unreachable> {
        let mut used = None;
        let attempt = async {
            let (generation, mut conn) = self.connection().await?;
            used = Some(generation);
            conn.invoke(call).await
        };
        let result = tokio::time::timeout(self.timeout, attempt).await;
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if breaks_connection(&e) {
                    self.forget(used);
                }
                Err(Unreachable(format!("redis {}: {e}", self.target)))
            }
            Err(_) => {
                self.forget(used);
                Err(Unreachable(format!(
                    "redis {} did not answer in {:?}",
                    self.target, self.timeout
                )))
            }
        }
    }

    /// The connection in use, or a new one.
    async fn connection(&self) -> redis::RedisResult<(u64, Conn)> {
        if let Some(c) = self.current.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            return Ok(c);
        }
        let mut generation = self.connecting.lock().await;
        if let Some(c) = self.current.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            return Ok(c);
        }
        let conn = match &self.kind {
            Ok(Kind::Single { client, config }) => {
                Conn::Single(client.get_multiplexed_async_connection_with_config(config).await?)
            }
            Ok(Kind::Cluster(client)) => Conn::Cluster(client.get_async_connection().await?),
            Err(e) => {
                return Err(RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "no client",
                    e.clone(),
                )))
            }
        };
        *generation += 1;
        let c = (*generation, conn);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(c.clone());
        tracing::debug!(redis = %self.target, generation = c.0, "limit store: connected to redis");
        Ok(c)
    }

    /// Drops the connection of `generation` (if still in use): the next call opens a new one.
    /// Requests still in flight on it finish on their own.
    fn forget(&self, generation: Option<u64>) {
        let Some(generation) = generation else { return };
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
        }
    }
}

/// Whether an error means the connection must be replaced (rather than a server error reply).
fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_timeout()
}

fn connection_info(cfg: &StoreConfig, addr: &str) -> ConnectionInfo {
    let (host, port) = super::split_host_port(addr).unwrap_or((addr, 6379));
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let addr = if cfg.tls {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host, port)
    };
    let mut redis = RedisConnectionInfo::default();
    if let Some(user) = &cfg.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = &cfg.password {
        redis = redis.set_password(password.expose());
    }
    addr.into_connection_info()
        .expect("an address is connection info")
        .set_redis_settings(redis)
        .set_tcp_settings(TcpSettings::default().set_nodelay(true))
}

/// The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag (the part between the first
/// `{` and the next `}`, when not empty) or of the whole key, modulo 16384.
pub(crate) fn slot(key: &str) -> u16 {
    let key = key.as_bytes();
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter().position(|&b| b == b'}').map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    crc16(hashed) % 16_384
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(
            slot("foo{}{bar}"),
            crc16(b"foo{}{bar}") % 16_384,
            "empty tag: the whole key"
        );
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
        assert_eq!(slot("foo{bar}{zap}"), slot("bar"));
    }
}
