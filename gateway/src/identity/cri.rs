//! Pod identity from the node's container runtime: container id (from the cgroup path) →
//! CRI `ListContainers` (its sandbox, its name) → `PodSandboxStatus` (pod name, namespace, uid,
//! labels, annotations). No Kubernetes API server is asked: the runtime on the node already
//! knows every pod it runs (containerd and CRI-O both serve the CRI over a Unix socket).
//!
//! Answers are cached by container id (random, never reused): a pod's CRI metadata does not
//! change while its containers live. The cache is bounded; when it is full the entries used
//! least recently go first, so containers that exited age out. A failed lookup (runtime down,
//! container unknown) is remembered briefly so that a flood of connections does not become a
//! flood of calls; the record then keeps the cgroup-derived fields and says why.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_cri::v1::{
    runtime_service_client::RuntimeServiceClient, ContainerFilter, ListContainersRequest, PodSandboxStatusRequest,
};
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::matching::Glob;

/// Longest a lookup may take (both calls) before the connection goes on without a pod.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a failed lookup is remembered before the runtime is asked again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Containers remembered (a few hundred bytes each, labels included).
const MAX_CACHED: usize = 4096;
/// Labels and annotations kept per pod; the runtime's own (`io.kubernetes.*`) are dropped.
const MAX_LABELS: usize = 64;

/// The pod around a workload's container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The container's name in the pod spec.
    pub container: Option<String>,
    /// The pod's labels (what routes and limits match on).
    pub labels: Arc<BTreeMap<String, String>>,
    /// The labels audit records carry (`identity.recordLabels`; shared with the records).
    pub record_labels: Arc<BTreeMap<String, String>>,
    /// The controller that made the pod, as its labels tell.
    pub owner: Option<Owner>,
}

/// A pod's controller: `Deployment`, `StatefulSet`, `DaemonSet` or `Job`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// The controller behind a pod, inferred from the labels the built-in controllers put on the
/// pods they make (the runtime passes pod labels through; owner references it does not know):
/// a Job's `batch.kubernetes.io/job-name` (or `job-name`); a StatefulSet's
/// `statefulset.kubernetes.io/pod-name` (the set is the pod's name less `-<ordinal>`); a
/// Deployment's `pod-template-hash` (pods are named `<deployment>-<hash>-<5 chars>`); a
/// DaemonSet's `pod-template-generation` with `controller-revision-hash` (`<daemonset>-<5
/// chars>`). `None` for a bare pod, another controller, or a name too long for its controller
/// to have kept whole (generated names are cut at 58 characters).
pub fn owner_from_labels(pod: &str, labels: &HashMap<String, String>) -> Option<Owner> {
    let owner = |kind: &str, name: &str| {
        (!name.is_empty()).then(|| Owner {
            kind: kind.into(),
            name: name.into(),
        })
    };
    /// `<base>-<suffix>` → `base` when the suffix has `len` characters.
    fn strip(name: &str, len: usize) -> Option<&str> {
        let (base, suffix) = name.rsplit_once('-')?;
        (suffix.len() == len).then_some(base)
    }
    if let Some(job) = labels
        .get("batch.kubernetes.io/job-name")
        .or_else(|| labels.get("job-name"))
    {
        return owner("Job", job);
    }
    if labels
        .get("statefulset.kubernetes.io/pod-name")
        .is_some_and(|n| n == pod)
    {
        let (set, ordinal) = pod.rsplit_once('-')?;
        return ordinal
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| owner("StatefulSet", set))?;
    }
    let generated = pod.len() < 63;
    if let Some(hash) = labels.get("pod-template-hash") {
        let replica_set = strip(pod, 5).filter(|_| generated)?;
        let deployment = replica_set.strip_suffix(hash.as_str())?.strip_suffix('-')?;
        return owner("Deployment", deployment);
    }
    if labels.contains_key("pod-template-generation") && labels.contains_key("controller-revision-hash") {
        return owner("DaemonSet", strip(pod, 5).filter(|_| generated)?);
    }
    None
}

struct Cached {
    answer: Result<Arc<PodInfo>, Arc<str>>,
    at: Instant,
    used: Instant,
}

/// CRI lookups with their cache. Cheap to share (`Arc`).
pub struct Pods {
    socket: PathBuf,
    client: RuntimeServiceClient<Channel>,
    cache: Mutex<HashMap<String, Cached>>,
    /// Labels records carry (`None`: all).
    record_labels: Option<Vec<Glob>>,
}

impl Pods {
    /// A client of the runtime at `socket`. Connects lazily (and again after a failure): a
    /// runtime that starts after Tollgate is found once it is up.
    pub fn new(socket: &Path, record_labels: Option<Vec<Glob>>) -> Pods {
        Pods {
            socket: socket.to_owned(),
            client: RuntimeServiceClient::new(channel(socket)),
            cache: Mutex::new(HashMap::new()),
            record_labels,
        }
    }

    /// The pod of container `id`, or why it is not known.
    pub async fn lookup(&self, id: &str) -> Result<Arc<PodInfo>, Arc<str>> {
        let now = Instant::now();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = cache.get_mut(id) {
                if c.answer.is_ok() || now.duration_since(c.at) < RETRY_AFTER {
                    c.used = now;
                    return c.answer.clone();
                }
            }
        }
        let answer = match tokio::time::timeout(LOOKUP_TIMEOUT, self.query(id)).await {
            Ok(Ok(pod)) => Ok(Arc::new(pod)),
            Ok(Err(why)) => Err(format!("container runtime {}: {why}", self.socket.display()).into()),
            Err(_) => Err(format!(
                "container runtime {}: no answer within {LOOKUP_TIMEOUT:?}",
                self.socket.display()
            )
            .into()),
        };
        self.remember(id, answer.clone(), now);
        answer
    }

    fn remember(&self, id: &str, answer: Result<Arc<PodInfo>, Arc<str>>, now: Instant) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED && !cache.contains_key(id) {
            // Drop the quarter used least recently (exited containers are never used again).
            let mut used: Vec<Instant> = cache.values().map(|c| c.used).collect();
            used.sort_unstable();
            let cutoff = used[used.len() / 4];
            cache.retain(|_, c| c.used > cutoff);
        }
        cache.insert(
            id.to_string(),
            Cached {
                answer,
                at: now,
                used: now,
            },
        );
    }

    /// Containers remembered now.
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    async fn query(&self, id: &str) -> Result<PodInfo, String> {
        let mut client = self.client.clone();
        let request = ListContainersRequest {
            filter: Some(ContainerFilter {
                id: id.to_string(),
                ..Default::default()
            }),
        };
        let containers = client
            .list_containers(request)
            .await
            .map_err(|s| format!("ListContainers: {}", s.message()))?
            .into_inner()
            .containers;
        let container = containers
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| format!("no container {id}"))?;
        let sandbox = client
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: container.pod_sandbox_id.clone(),
                verbose: false,
            })
            .await
            .map_err(|s| format!("PodSandboxStatus: {}", s.message()))?
            .into_inner()
            .status
            .ok_or("PodSandboxStatus: no status")?;
        let meta = sandbox.metadata.ok_or("PodSandboxStatus: no metadata")?;
        let owner = owner_from_labels(&meta.name, &sandbox.labels);
        let labels = Arc::new(user_labels(sandbox.labels));
        let record_labels = match &self.record_labels {
            None => labels.clone(),
            Some(chosen) => Arc::new(
                labels
                    .iter()
                    .filter(|(k, _)| chosen.iter().any(|g| g.matches(k)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        };
        Ok(PodInfo {
            namespace: meta.namespace,
            name: meta.name,
            uid: meta.uid,
            container: container.metadata.map(|m| m.name),
            labels,
            record_labels,
            owner,
        })
    }
}

/// A gRPC channel to the runtime's Unix socket, connected on first use (and again after a
/// failure). Must be created inside a tokio runtime.
pub fn channel(socket: &Path) -> Channel {
    let path = socket.to_owned();
    Endpoint::from_static("http://cri.invalid")
        .connect_timeout(LOOKUP_TIMEOUT)
        .connect_with_connector_lazy(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
}

/// The pod's own labels: what the kubelet adds for itself (`io.kubernetes.*`) is dropped, and
/// at most [`MAX_LABELS`] are kept.
fn user_labels(labels: HashMap<String, String>) -> BTreeMap<String, String> {
    labels
        .into_iter()
        .filter(|(k, _)| !k.starts_with("io.kubernetes."))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .take(MAX_LABELS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_from_the_labels_their_controllers_set() {
        let labels = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let owner = |kind: &str, name: &str| {
            Some(Owner {
                kind: kind.into(),
                name: name.into(),
            })
        };
        let deployment = labels(&[("app", "chat"), ("pod-template-hash", "7f9c6d5b8")]);
        assert_eq!(
            owner_from_labels("chat-api-7f9c6d5b8-x2k4q", &deployment),
            owner("Deployment", "chat-api")
        );
        // Not the hash of its name: not guessed.
        assert_eq!(owner_from_labels("chat-api-1234abcd-x2k4q", &deployment), None);
        assert_eq!(
            owner_from_labels(
                "db-12",
                &labels(&[
                    ("statefulset.kubernetes.io/pod-name", "db-12"),
                    ("controller-revision-hash", "db-5d")
                ])
            ),
            owner("StatefulSet", "db")
        );
        assert_eq!(
            owner_from_labels(
                "agent-9xk2p",
                &labels(&[("pod-template-generation", "3"), ("controller-revision-hash", "6c8f")])
            ),
            owner("DaemonSet", "agent")
        );
        assert_eq!(
            owner_from_labels(
                "nightly-eval-29384756-abcde",
                &labels(&[
                    ("batch.kubernetes.io/job-name", "nightly-eval-29384756"),
                    ("job-name", "x")
                ])
            ),
            owner("Job", "nightly-eval-29384756")
        );
        assert_eq!(
            owner_from_labels("scratch", &labels(&[("app", "scratch")])),
            None,
            "a bare pod"
        );
        // A name at the length limit may have been cut: no guess.
        let long = format!("{}-7f9c6d5b8-x2k4q", "d".repeat(47));
        assert_eq!(long.len(), 63);
        assert_eq!(owner_from_labels(&long, &deployment), None);
    }

    #[test]
    fn kubelet_labels_are_dropped_and_user_labels_kept_and_bounded() {
        let mut raw: HashMap<String, String> = (0..100).map(|i| (format!("l{i:03}"), "v".to_string())).collect();
        raw.insert("io.kubernetes.pod.name".into(), "p".into());
        let kept = user_labels(raw);
        assert_eq!(kept.len(), MAX_LABELS);
        assert!(!kept.keys().any(|k| k.starts_with("io.kubernetes.")));
        assert!(kept.contains_key("l000"));
    }

    #[tokio::test]
    async fn an_unreachable_runtime_is_an_answer_remembered_for_a_while() {
        let pods = Pods::new(Path::new("/nonexistent/cri.sock"), None);
        let e = pods.lookup("abc").await.unwrap_err();
        assert!(e.contains("/nonexistent/cri.sock"), "{e}");
        let started = Instant::now();
        let again = pods.lookup("abc").await.unwrap_err();
        assert_eq!(e, again);
        assert!(started.elapsed() < Duration::from_millis(50), "answered from the cache");
        assert_eq!(pods.cached(), 1);
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let pods = Pods::new(Path::new("/nonexistent/cri.sock"), None);
        let now = Instant::now();
        for i in 0..MAX_CACHED * 2 {
            pods.remember(&format!("{i}"), Err("x".into()), now + Duration::from_micros(i as u64));
        }
        assert!(pods.cached() <= MAX_CACHED, "{}", pods.cached());
    }
}
