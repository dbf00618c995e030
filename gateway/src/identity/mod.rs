//! Who connected: the kernel's record (pid, tgid, uid, gid, comm, cgroup id, netns cookie)
//! enriched in userspace with the executable and the cgroup path.
//!
//! The cgroup path is taken from `/proc/<tgid>/cgroup` and checked against the kernel's cgroup
//! id (the inode number of the cgroup directory); when the process is already gone, the cgroup
//! tree is searched for that inode. Paths are cached by cgroup id, which the kernel never
//! reuses.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use gateway_common::ConnRecord;
use serde::Serialize;

/// How deep the fallback search walks below the cgroup root.
const MAX_WALK_DEPTH: usize = 12;
/// How many directories the fallback search visits at most.
const MAX_WALK_DIRS: usize = 50_000;

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
}

/// Resolves kernel records to [`Workload`]s.
pub struct Resolver {
    cgroup_root: PathBuf,
    host_netns_cookie: u64,
    cache: Mutex<HashMap<u64, Arc<str>>>,
}

impl Resolver {
    pub fn new(cgroup_root: PathBuf, host_netns_cookie: u64) -> Resolver {
        Resolver {
            cgroup_root,
            host_netns_cookie,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Blocking file-system reads (a few µs when cached); call from `spawn_blocking` or accept
    /// the cost on a connection task.
    pub fn resolve(&self, record: &ConnRecord) -> Workload {
        let comm_len = record.comm.iter().position(|b| *b == 0).unwrap_or(record.comm.len());
        let exe = std::fs::read_link(format!("/proc/{}/exe", record.tgid))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        Workload {
            pid: record.pid,
            tgid: record.tgid,
            uid: record.uid,
            gid: record.gid,
            comm: String::from_utf8_lossy(&record.comm[..comm_len]).into_owned(),
            exe,
            cgroup_id: record.cgroup_id,
            cgroup: self.cgroup_path(record.cgroup_id, record.tgid).map(|p| p.to_string()),
            netns_cookie: record.netns_cookie,
            host_netns: record.netns_cookie == self.host_netns_cookie,
        }
    }

    fn cgroup_path(&self, id: u64, tgid: u32) -> Option<Arc<str>> {
        if let Some(p) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Some(p.clone());
        }
        let found = from_proc(&self.cgroup_root, id, tgid).or_else(|| walk(&self.cgroup_root, id))?;
        let found: Arc<str> = found.into();
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, found.clone());
        Some(found)
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
