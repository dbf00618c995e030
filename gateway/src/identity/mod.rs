//! Who connected: the kernel's record (pid, tgid, uid, gid, comm, cgroup id, netns cookie)
//! enriched in userspace with the executable and the cgroup path.
//!
//! The cgroup path is taken from `/proc/<tgid>/cgroup` and checked against the kernel's cgroup
//! id (the inode number of the cgroup directory); when the process is already gone, the cgroup
//! tree is searched for that inode. Paths are cached by cgroup id, which the kernel never
//! reuses. For containers, [`cri`] asks the node's container runtime for the pod (namespace,
//! name, uid, labels, container name).

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

pub mod cri;

use gateway_common::ConnRecord;
use serde::Serialize;

/// How deep the fallback search walks below the cgroup root.
const MAX_WALK_DEPTH: usize = 12;
/// How many directories the fallback search visits at most.
const MAX_WALK_DIRS: usize = 50_000;
/// cgroup paths kept (a few hundred bytes each). When full, one is evicted per new cgroup, the
/// least recently used by the second-chance clock of [`PathCache`] (short-lived job cgroups come
/// and go by the thousand, are never looked up again, and go first).
const MAX_CACHED_CGROUPS: usize = 8192;

/// The workload behind a captured connection.
#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    /// `/proc/<tgid>/exe`, when the process was still there.
    pub exe: Option<String>,
    pub cgroup_id: u64,
    /// cgroup v2 path relative to the cgroup2 root, e.g. `/kubepods.slice/...`.
    pub cgroup: Option<String>,
    pub netns_cookie: u64,
    /// `false` for sockets of another network namespace (a pod).
    pub host_netns: bool,
    /// Parsed from the cgroup path (containerd, CRI-O, Docker, kubepods, systemd).
    #[serde(flatten)]
    pub container: ContainerInfo,
    /// The pod, from the container runtime (`identity.criSocket`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Arc<cri::PodInfo>>,
    /// Why the runtime could not say which pod (the cgroup's facts stand alone then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_error: Option<Arc<str>>,
}

impl Workload {
    /// What routes and limits match a workload on.
    pub fn facts(&self) -> crate::matching::WorkloadFacts<'_> {
        crate::matching::WorkloadFacts {
            comm: &self.comm,
            uid: self.uid,
            cgroup: self.cgroup.as_deref(),
            namespace: self.pod.as_ref().map(|p| p.namespace.as_str()),
            pod: self.pod.as_ref().map(|p| p.name.as_str()),
            labels: self.pod.as_ref().map(|p| &*p.labels),
        }
    }
}

/// What a cgroup path says about the container around a process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    /// 64-hex container id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// `containerd`, `cri-o`, `docker`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    /// Kubernetes pod UID (dashed form).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// Kubernetes QoS class from the path (`guaranteed`, `burstable`, `besteffort`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos_class: Option<String>,
    /// systemd unit (`nginx.service`, `session-3.scope`) when not a container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses the common cgroup layouts:
/// - systemd driver: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope`
///   (`crio-<id>.scope` for CRI-O, `docker-<id>.scope` for Docker);
/// - cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>`;
/// - Docker: `/docker/<id>`, `/system.slice/docker-<id>.scope`;
/// - plain systemd units: `/system.slice/nginx.service`.
pub fn parse_cgroup(path: &str) -> ContainerInfo {
    let mut info = ContainerInfo::default();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let stem = part
            .strip_suffix(".slice")
            .or_else(|| part.strip_suffix(".scope"))
            .unwrap_or(part);
        // Pod: `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid_with_underscores>` (systemd).
        if let Some(at) = stem.rfind("pod") {
            let uid = &stem[at + 3..];
            if uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_') {
                info.pod_uid = Some(uid.replace('_', "-"));
            }
        }
        for qos in ["burstable", "besteffort", "guaranteed"] {
            if stem == qos || stem.starts_with(&format!("kubepods-{qos}")) {
                info.qos_class = Some(qos.to_string());
            }
        }
        for (prefix, runtime) in [
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
            ("docker-", "docker"),
        ] {
            if let Some(id) = stem.strip_prefix(prefix) {
                if is_container_id(id) {
                    info.container_id = Some(id.to_string());
                    info.container_runtime = Some(runtime.to_string());
                }
            }
        }
        if is_container_id(stem) && info.container_id.is_none() {
            info.container_id = Some(stem.to_string());
            let runtime = match parts.first() {
                Some(&"docker") => "docker",
                _ if parts.iter().any(|p| p.starts_with("kubepods")) => "containerd",
                _ => "unknown",
            };
            info.container_runtime = Some(runtime.to_string());
        }
        if i == parts.len() - 1
            && info.container_id.is_none()
            && (part.ends_with(".service") || part.ends_with(".scope"))
        {
            info.systemd_unit = Some(part.to_string());
        }
    }
    if info.qos_class.is_none() && info.pod_uid.is_some() {
        info.qos_class = Some("guaranteed".into());
    }
    info
}

/// Resolves kernel records to [`Workload`]s.
pub struct Resolver {
    cgroup_root: PathBuf,
    host_netns_cookie: u64,
    cache: Mutex<PathCache>,
}

/// cgroup paths by cgroup id, at most `cap` of them, evicted by CLOCK (second chance), an
/// approximation of least recently used: a lookup that hits marks its entry; a new entry, when
/// the cache is full, takes the slot of the first unmarked entry the hand finds, clearing the
/// marks it passes. Each insert moves the hand at most once around (amortised: about once per
/// insert), never a pass that clears or stats the whole cache.
struct PathCache {
    slots: Vec<Slot>,
    /// cgroup id → index in `slots`.
    index: HashMap<u64, usize>,
    hand: usize,
    cap: usize,
    /// Slots the hand looked at (for tests: eviction must not walk the whole cache each time).
    #[cfg(test)]
    visited: usize,
}

struct Slot {
    id: u64,
    path: Arc<str>,
    /// Looked up since the hand last passed.
    used: bool,
}

impl PathCache {
    fn new(cap: usize) -> PathCache {
        PathCache {
            slots: Vec::new(),
            index: HashMap::new(),
            hand: 0,
            cap: cap.max(1),
            #[cfg(test)]
            visited: 0,
        }
    }

    fn get(&mut self, id: u64) -> Option<Arc<str>> {
        let slot = &mut self.slots[*self.index.get(&id)?];
        slot.used = true;
        Some(slot.path.clone())
    }

    fn insert(&mut self, id: u64, path: Arc<str>) {
        if let Some(&i) = self.index.get(&id) {
            self.slots[i].path = path;
            return;
        }
        // A new entry starts unmarked: one that is never looked up again goes at the next pass.
        let slot = Slot { id, path, used: false };
        if self.slots.len() < self.cap {
            self.index.insert(id, self.slots.len());
            self.slots.push(slot);
            return;
        }
        // Ends within one turn: the hand clears every mark it passes.
        while self.slots[self.hand].used {
            self.slots[self.hand].used = false;
            self.advance();
        }
        let victim = self.hand;
        self.index.remove(&self.slots[victim].id);
        self.index.insert(id, victim);
        self.slots[victim] = slot;
        self.advance();
    }

    fn advance(&mut self) {
        #[cfg(test)]
        {
            self.visited += 1;
        }
        self.hand = (self.hand + 1) % self.slots.len();
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

impl Resolver {
    pub fn new(cgroup_root: PathBuf, host_netns_cookie: u64) -> Resolver {
        Resolver {
            cgroup_root,
            host_netns_cookie,
            cache: Mutex::new(PathCache::new(MAX_CACHED_CGROUPS)),
        }
    }

    /// Blocking file-system reads (a few µs when cached, a bounded directory walk at worst):
    /// the capture path calls it from `spawn_blocking`, off the data-plane runtime.
    pub fn resolve(&self, record: &ConnRecord) -> Workload {
        let comm_len = record.comm.iter().position(|b| *b == 0).unwrap_or(record.comm.len());
        let exe = std::fs::read_link(format!("/proc/{}/exe", record.tgid))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let cgroup = self.cgroup_path(record.cgroup_id, record.tgid).map(|p| p.to_string());
        Workload {
            container: cgroup.as_deref().map(parse_cgroup).unwrap_or_default(),
            pid: record.pid,
            tgid: record.tgid,
            uid: record.uid,
            gid: record.gid,
            comm: String::from_utf8_lossy(&record.comm[..comm_len]).into_owned(),
            exe,
            cgroup_id: record.cgroup_id,
            cgroup,
            netns_cookie: record.netns_cookie,
            host_netns: record.netns_cookie == self.host_netns_cookie,
            pod: None,
            pod_error: None,
        }
    }

    fn cgroup_path(&self, id: u64, tgid: u32) -> Option<Arc<str>> {
        if let Some(p) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Some(p);
        }
        let found = from_proc(&self.cgroup_root, id, tgid).or_else(|| walk(&self.cgroup_root, id))?;
        let found: Arc<str> = found.into();
        self.remember(id, found.clone());
        Some(found)
    }

    /// Caches a cgroup's path; when the cache is full, the least recently used one makes room.
    fn remember(&self, id: u64, path: Arc<str>) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(id, path);
    }

    /// cgroup paths cached now.
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

fn from_proc(root: &Path, id: u64, tgid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let full = root.join(rel.trim_start_matches('/'));
    (inode(&full) == Some(id)).then(|| rel.to_string())
}

fn walk(root: &Path, id: u64) -> Option<String> {
    if inode(root) == Some(id) {
        return Some("/".into());
    }
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    let mut visited = 0;
    while let Some((dir, depth)) = stack.pop() {
        visited += 1;
        if visited > MAX_WALK_DIRS {
            return None;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_dir() {
                continue;
            }
            let path = entry.path();
            if meta.ino() == id {
                let rel = path.strip_prefix(root).ok()?;
                return Some(format!("/{}", rel.display()));
            }
            if depth < MAX_WALK_DEPTH {
                stack.push((path, depth + 1));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_layouts_yield_container_and_pod() {
        let id = "3f1c2bd0e7a9a5b1c4d8e6f7a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9";
        let systemd = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f8a4e6c_1b2d_4c3e_9f5a_6b7c8d9e0f1a.slice/cri-containerd-{id}.scope"
        );
        let i = parse_cgroup(&systemd);
        assert_eq!(i.container_id.as_deref(), Some(id));
        assert_eq!(i.container_runtime.as_deref(), Some("containerd"));
        assert_eq!(i.pod_uid.as_deref(), Some("0f8a4e6c-1b2d-4c3e-9f5a-6b7c8d9e0f1a"));
        assert_eq!(i.qos_class.as_deref(), Some("burstable"));
        assert_eq!(i.systemd_unit, None);

        let cgroupfs = format!("/kubepods/besteffort/pod0f8a4e6c-1b2d-4c3e-9f5a-6b7c8d9e0f1a/{id}");
        let i = parse_cgroup(&cgroupfs);
        assert_eq!(i.container_id.as_deref(), Some(id));
        assert_eq!(i.pod_uid.as_deref(), Some("0f8a4e6c-1b2d-4c3e-9f5a-6b7c8d9e0f1a"));
        assert_eq!(i.qos_class.as_deref(), Some("besteffort"));

        let guaranteed =
            format!("/kubepods.slice/kubepods-pod0f8a4e6c_1b2d_4c3e_9f5a_6b7c8d9e0f1a.slice/crio-{id}.scope");
        let i = parse_cgroup(&guaranteed);
        assert_eq!(i.container_runtime.as_deref(), Some("cri-o"));
        assert_eq!(i.qos_class.as_deref(), Some("guaranteed"));

        assert_eq!(
            parse_cgroup(&format!("/docker/{id}")).container_runtime.as_deref(),
            Some("docker")
        );
        assert_eq!(
            parse_cgroup(&format!("/system.slice/docker-{id}.scope"))
                .container_id
                .as_deref(),
            Some(id)
        );
        let unit = parse_cgroup("/system.slice/nginx.service");
        assert_eq!(
            (unit.systemd_unit.as_deref(), unit.container_id),
            (Some("nginx.service"), None)
        );
        assert_eq!(parse_cgroup("/"), ContainerInfo::default());
    }

    #[test]
    fn thirty_thousand_short_lived_cgroups_keep_the_cache_full_and_the_used_ones() {
        let r = Resolver::new(std::env::temp_dir(), 0);
        let live = |r: &Resolver| r.cache.lock().unwrap().get(1);
        r.remember(1, "/live".into());
        // The hand goes round the cache more than three times.
        for i in 0..30_000u64 {
            r.remember(100 + i, format!("/job-{i}").into());
            assert!(r.cached() <= MAX_CACHED_CGROUPS);
            // The live cgroup keeps connecting now and then.
            if i % 1_000 == 0 {
                assert!(live(&r).is_some(), "the live cgroup was evicted at job {i}");
            }
        }
        assert_eq!(r.cached(), MAX_CACHED_CGROUPS, "full, not cleared");
        assert_eq!(live(&r).as_deref(), Some("/live"), "a used cgroup survives eviction");
        let cache = r.cache.lock().unwrap();
        // The newest jobs are kept, the oldest went.
        assert!(cache.index.contains_key(&(100 + 29_999)));
        assert!(!cache.index.contains_key(&100));
        // Each insert past the capacity moved the hand about once, not over the whole cache.
        let evictions = 30_001 - MAX_CACHED_CGROUPS;
        assert!(
            cache.visited <= 2 * evictions + MAX_CACHED_CGROUPS,
            "the hand visited {} slots for {evictions} evictions",
            cache.visited
        );
    }

    #[test]
    fn a_full_cache_evicts_the_first_entry_not_used_since_the_hand_passed() {
        let mut cache = PathCache::new(4);
        for id in 1..=4 {
            cache.insert(id, format!("/{id}").into());
        }
        cache.get(1);
        cache.get(3);
        // The hand starts at 1: used, so it gets a second chance; 2 is not used: evicted.
        cache.insert(5, "/5".into());
        let kept = |c: &PathCache| {
            let mut ids: Vec<u64> = c.index.keys().copied().collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(kept(&cache), vec![1, 3, 4, 5]);
        // 3 was used; 4 was not: evicted next, then 1 (its mark was cleared by the pass).
        cache.insert(6, "/6".into());
        assert_eq!(kept(&cache), vec![1, 3, 5, 6]);
        cache.insert(7, "/7".into());
        assert_eq!(kept(&cache), vec![3, 5, 6, 7]);
        assert_eq!(cache.len(), 4);
        for (id, slot) in cache.index.iter().map(|(id, i)| (id, &cache.slots[*i])) {
            assert_eq!(*id, slot.id, "index and slots agree");
        }
        // Inserting a cached id again replaces its path and evicts nothing.
        cache.insert(7, "/seven".into());
        assert_eq!(cache.get(7).as_deref(), Some("/seven"));
        assert_eq!(kept(&cache), vec![3, 5, 6, 7]);
    }

    #[test]
    fn walk_finds_a_directory_by_inode() {
        let root = std::env::temp_dir().join(format!("tollgate-walk-{}", std::process::id()));
        let leaf = root.join("kubepods.slice/pod-x/container");
        std::fs::create_dir_all(&leaf).unwrap();
        let id = inode(&leaf).unwrap();
        assert_eq!(walk(&root, id).as_deref(), Some("/kubepods.slice/pod-x/container"));
        assert_eq!(walk(&root, u64::MAX), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
