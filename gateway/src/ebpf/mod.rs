//! Loads the embedded eBPF object, fills its maps, attaches its programs to a cgroup, and owns
//! the handles the rest of the daemon uses (endpoint maps, connection records, counters).
//!
//! Lifetime: the maps and the program links are pinned under `capture.pinPath`, so that a new
//! instance can take over from a running one with no gap (docs/upgrades.md): it opens the same
//! maps (`maps-v<MAPS_ABI>/`) and swaps its programs into the pinned links with
//! `BPF_LINK_UPDATE`. When no live listener sits in `LISTENERS` (the proxy is gone: stopped,
//! crashed), the connect programs let captured connects through in fail-open mode and refuse
//! them in fail-closed mode. A fail-open instance that stops without a successor removes its
//! pins (the programs detach); a fail-closed one leaves them until a new instance replaces them
//! or `tollgate detach` removes them. A start that fails before its programs are attached
//! removes the pins it created (never those it found: a running predecessor's stay).

pub mod endpoints;
pub mod learned;
mod sys;

use std::{
    fs, io,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::Mutex,
};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, SockMap},
    programs::{
        links::{FdLink, PinnedLink},
        CgroupAttachMode,
    },
    Ebpf,
};
use gateway_common::{
    program, ConnRecord, PeerKey, RedirectConfig, ALL_MAPS, CONFIG_MAP, CONNS_MAP, DNS_FLOWS_MAP, LISTENERS_MAP,
    MAPS_ABI, STATS_LEN, STATS_MAP,
};

/// The object `build.rs` produced from `gateway-ebpf`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tollgate"));

const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// Every program, in attach order: connect last, so that by the time a connect is redirected
/// the programs that complete its record are already in place.
const PROGRAMS: [&str; 11] = [
    program::SOCK_RELEASE,
    program::SOCK_OPS,
    program::GETPEERNAME4,
    program::GETPEERNAME6,
    program::RECVMSG4,
    program::RECVMSG6,
    program::DNS_EGRESS,
    program::SENDMSG4,
    program::SENDMSG6,
    program::CONNECT4,
    program::CONNECT6,
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to load the eBPF object (needs root: CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {0} not found in the eBPF object")]
    MissingProgram(&'static str),
    #[error("map {0} not found in the eBPF object")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("map {name} is full: it holds {capacity} entries")]
    MapFull { name: &'static str, capacity: usize },
    #[error("program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot open cgroup {path:?} (is it a cgroup v2 directory?): {source}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no cgroup2 mount found in /proc/self/mountinfo: mount one or set capture.cgroupPath")]
    NoCgroup2,
    #[error("pinning under {path:?}: {message}")]
    Pin { path: PathBuf, message: String },
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map { name, source }
}

/// The loaded object: programs, their links, and the maps only start-up writes.
pub struct Loaded {
    ebpf: Ebpf,
    listeners: SockMap<MapData>,
    config: Array<MapData, RedirectConfig>,
    /// Removed if the start fails before `attach` succeeds.
    new_pins: NewPins,
}

/// Pins this start created: the map pins `load` made (none when a predecessor's maps were
/// there, running or not) and the link pins `attach` made where there were none, with the
/// directories made for them. Dropped before [`NewPins::keep`] (a start that failed), it removes
/// them, so a failed start leaves the pin directory as it found it; what a running instance
/// pinned is never in it.
#[derive(Default)]
struct NewPins {
    dirs: Vec<PathBuf>,
    maps: Vec<PathBuf>,
    links: Vec<PathBuf>,
}

impl NewPins {
    /// What `load` is about to create under `pin_dir` (before it creates anything).
    fn before_load(pin_dir: &Path) -> NewPins {
        let dir = maps_dir(pin_dir);
        NewPins {
            dirs: [pin_dir, dir.as_path()]
                .into_iter()
                .filter(|d| !d.exists())
                .map(Path::to_path_buf)
                .collect(),
            maps: ALL_MAPS.iter().map(|m| dir.join(m)).filter(|p| !p.exists()).collect(),
            links: Vec::new(),
        }
    }

    /// The instance runs: its pins are `detach`'s (or a successor's) from now on.
    fn keep(&mut self) {
        self.dirs.clear();
        self.maps.clear();
        self.links.clear();
    }
}

impl Drop for NewPins {
    fn drop(&mut self) {
        // Links first (the programs detach), then the maps, then the directories, innermost
        // first (a directory that holds anything else stays).
        let files = self.links.iter().chain(&self.maps);
        let removed = files.filter(|p| fs::remove_file(p).is_ok()).count();
        self.dirs.iter().rev().for_each(|d| drop(fs::remove_dir(d)));
        if removed > 0 {
            tracing::info!(removed, "start failed: removed the pins it had created");
        }
    }
}

/// Where the maps of this layout version are pinned.
fn maps_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join(format!("maps-v{MAPS_ABI}"))
}

/// How `attach` found the hooks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Attached {
    /// Programs swapped into links a predecessor pinned (an upgrade or a restart).
    pub replaced: usize,
    /// Links created.
    pub created: usize,
}

impl Loaded {
    /// Loads the object into the kernel with its maps pinned under `pin_dir`: maps already
    /// pinned there (by a running predecessor, or one that stopped in fail-closed mode) are
    /// opened and shared, so records, listeners and counters carry over. Nothing is attached
    /// yet. The maps that other components own from then on come back separately.
    pub fn load(pin_dir: &Path) -> Result<(Loaded, Maps), Error> {
        ensure_bpffs()?;
        let new_pins = NewPins::before_load(pin_dir);
        let dir = maps_dir(pin_dir);
        fs::create_dir_all(&dir).map_err(|e| pin_error(&dir, e))?;
        if crate::sysfs::statfs_type(&dir) != Some(crate::sysfs::BPF_FS_MAGIC) {
            return Err(pin_error(
                &dir,
                "capture.pinPath must be on a bpf file system (e.g. under /sys/fs/bpf)",
            ));
        }
        let mut loader = aya::EbpfLoader::new();
        for name in ALL_MAPS {
            loader.map_pin_path(name, dir.join(name));
        }
        let mut ebpf = loader.load(OBJECT)?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(Error::MissingMap(name));
        let config = Array::try_from(take(CONFIG_MAP)?).map_err(map_err(CONFIG_MAP))?;
        let conns = HashMap::try_from(take(CONNS_MAP)?).map_err(map_err(CONNS_MAP))?;
        let dns_flows = HashMap::try_from(take(DNS_FLOWS_MAP)?).map_err(map_err(DNS_FLOWS_MAP))?;
        let listeners = SockMap::try_from(take(LISTENERS_MAP)?).map_err(map_err(LISTENERS_MAP))?;
        let stats = PerCpuArray::try_from(take(STATS_MAP)?).map_err(map_err(STATS_MAP))?;
        let endpoints = endpoints::EndpointMaps::take(&mut take)?;
        let maps = Maps {
            endpoints,
            conns: ConnTable(Mutex::new(conns)),
            dns_flows: ConnTable(Mutex::new(dns_flows)),
            stats: Stats(Mutex::new(stats)),
        };
        Ok((
            Loaded {
                ebpf,
                listeners,
                config,
                new_pins,
            },
            maps,
        ))
    }

    /// Tells the programs where the proxy listens.
    pub fn set_config(&mut self, config: &RedirectConfig) -> Result<(), Error> {
        self.config.set(0, config, 0).map_err(map_err(CONFIG_MAP))
    }

    /// Registers a listening socket under `LISTENER_*` index `slot`: its presence in the
    /// SOCKMAP is what the connect programs take as "the proxy is alive".
    pub fn register_listener(&mut self, slot: u32, socket: &impl AsRawFd) -> Result<(), Error> {
        self.listeners.set(slot, socket, 0).map_err(map_err(LISTENERS_MAP))
    }

    /// Attaches every program to `cgroup`, each through a link pinned under `pin_dir`. Where a
    /// predecessor's link to the same cgroup is pinned, the program inside it is swapped
    /// (`BPF_LINK_UPDATE`): the hook is never empty and never runs both. A pin on another
    /// cgroup (the config changed) is replaced after the new link is attached.
    pub fn attach(&mut self, cgroup: &Path, pin_dir: &Path) -> Result<Attached, Error> {
        use std::os::fd::AsFd as _;
        use std::os::unix::fs::MetadataExt as _;
        let cgroup_file = fs::File::open(cgroup).map_err(|source| Error::Cgroup {
            path: cgroup.to_owned(),
            source,
        })?;
        let cgroup_id = cgroup_file
            .metadata()
            .map_err(|source| Error::Cgroup {
                path: cgroup.to_owned(),
                source,
            })?
            .ino();
        fs::create_dir_all(pin_dir).map_err(|e| pin_error(pin_dir, e))?;
        let mut attached = Attached::default();
        for name in PROGRAMS {
            let path = pin_dir.join(name);
            let prog = self.ebpf.program_mut(name).ok_or(Error::MissingProgram(name))?;
            let perr = |source| Error::Program { program: name, source };
            let previous = sys::obj_get(&path).ok();
            let pinned_before = path.exists();
            let same_cgroup = previous
                .as_ref()
                .is_some_and(|link| sys::link_cgroup_id(link.as_fd()).ok() == Some(cgroup_id));
            // The same steps for each program type (aya has no trait over their `attach`).
            macro_rules! hook {
                ($p:expr) => {
                    hook!($p, &cgroup_file, CgroupAttachMode::Single)
                };
                ($p:expr, $($attach:expr),+) => {{
                    load_once($p.load()).map_err(perr)?;
                    match (same_cgroup, &previous) {
                        (true, Some(link)) => {
                            sys::link_update(link.as_fd(), $p.fd().map_err(perr)?.as_fd())
                                .map_err(|e| pin_error(&path, format!("BPF_LINK_UPDATE: {e}")))?;
                            None
                        }
                        _ => {
                            let id = $p.attach($($attach),+).map_err(perr)?;
                            Some(take_fd_link($p.take_link(id).map_err(perr)?, name, pin_dir)?)
                        }
                    }
                }};
            }
            let link: Option<FdLink> = match prog {
                aya::programs::Program::CgroupSockAddr(p) => hook!(p),
                aya::programs::Program::SockOps(p) => hook!(p),
                aya::programs::Program::CgroupSock(p) => hook!(p),
                aya::programs::Program::CgroupSkb(p) => hook!(
                    p,
                    &cgroup_file,
                    aya::programs::CgroupSkbAttachType::Egress,
                    CgroupAttachMode::Single
                ),
                _ => return Err(Error::MissingProgram(name)),
            };
            let Some(link) = link else {
                attached.replaced += 1;
                continue;
            };
            // A pin on another cgroup detaches only once ours is in place.
            if path.exists() {
                let old = PinnedLink::from_pin(&path).map_err(|e| pin_error(&path, e))?;
                drop(old.unpin().map_err(|e| pin_error(&path, e))?);
            }
            drop(link.pin(&path).map_err(|e| pin_error(&path, e))?);
            if !pinned_before {
                self.new_pins.links.push(path);
            }
            attached.created += 1;
        }
        self.new_pins.keep();
        Ok(attached)
    }
}

/// Program loads are idempotent for us: `attach` may run after a failed attempt.
fn load_once(result: Result<(), aya::programs::ProgramError>) -> Result<(), aya::programs::ProgramError> {
    match result {
        Err(aya::programs::ProgramError::AlreadyLoaded) => Ok(()),
        other => other,
    }
}

fn take_fd_link(
    link: impl TryInto<FdLink, Error = aya::programs::links::LinkError>,
    name: &str,
    pin_dir: &Path,
) -> Result<FdLink, Error> {
    link.try_into().map_err(|e| Error::Pin {
        path: pin_dir.into(),
        message: format!("{name}: {e}"),
    })
}

fn pin_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Pin {
        path: path.into(),
        message: e.to_string(),
    }
}

/// Removes the links and maps pinned under `pin_dir` (detaching the programs).
pub fn remove_pins(pin_dir: &Path) -> Result<usize, Error> {
    let Ok(entries) = fs::read_dir(pin_dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("maps-v") && path.is_dir() {
            // Maps go when their last user does: unpinning cannot break a running instance.
            for map in fs::read_dir(&path).map_err(|e| pin_error(&path, e))?.flatten() {
                fs::remove_file(map.path()).map_err(|e| pin_error(&map.path(), e))?;
            }
            fs::remove_dir(&path).map_err(|e| pin_error(&path, e))?;
            continue;
        }
        if !PROGRAMS.iter().any(|p| name == *p) {
            continue;
        }
        match PinnedLink::from_pin(&path) {
            Ok(link) => drop(link.unpin().map_err(|e| pin_error(&path, e))?),
            Err(_) => fs::remove_file(&path).map_err(|e| pin_error(&path, e))?,
        }
        removed += 1;
    }
    let _ = fs::remove_dir(pin_dir);
    Ok(removed)
}

/// Mounts bpffs at /sys/fs/bpf when nothing is mounted there (fail-closed needs it).
fn ensure_bpffs() -> Result<(), Error> {
    let path = Path::new(BPFFS_MOUNT);
    if crate::sysfs::statfs_type(path) == Some(crate::sysfs::BPF_FS_MAGIC) {
        return Ok(());
    }
    fs::create_dir_all(path).map_err(|e| pin_error(path, e))?;
    let target = std::ffi::CString::new(BPFFS_MOUNT).expect("no NUL");
    #[expect(unsafe_code, reason = "mount(2) has no safe wrapper in std")]
    // SAFETY: NUL-terminated strings that outlive the call; no data argument.
    let rc = unsafe { libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(pin_error(
            path,
            format!("mounting bpffs: {}", io::Error::last_os_error()),
        ));
    }
    Ok(())
}

/// How many programs a running instance has.
pub const PROGRAM_COUNT: usize = PROGRAMS.len();

/// How many of the programs are attached through the links pinned under `pin_dir`. The pins
/// are what keeps them attached (a running instance holds no link fd of its own once it
/// pinned them), so a pin removed by `tollgate detach` or a cleanup of bpffs is a program
/// detached. Read at every `/metrics` scrape (`tollgate_programs_attached`).
pub fn attached_programs(pin_dir: &Path) -> usize {
    PROGRAMS
        .iter()
        .filter(|name| sys::obj_get(&pin_dir.join(name)).is_ok())
        .count()
}

/// The cgroup2 mount point (see [`crate::sysfs::cgroup2_root`]).
pub fn cgroup2_root() -> Result<PathBuf, Error> {
    crate::sysfs::cgroup2_root().ok_or(Error::NoCgroup2)
}

/// Maps handed to their owners after loading.
pub struct Maps {
    /// Owned by the endpoint sync task.
    pub endpoints: endpoints::EndpointMaps,
    /// Shared by the connection tasks.
    pub conns: ConnTable,
    /// Read by the DNS forwarder: which server each datagram's sender asked.
    pub dns_flows: ConnTable,
    /// Read by the admin server.
    pub stats: Stats,
}

/// The redirect records, keyed by the client's address; the proxy takes each one once.
pub struct ConnTable(Mutex<HashMap<MapData, PeerKey, ConnRecord>>);

impl ConnTable {
    /// Looks up and deletes the record of a just-accepted client.
    pub fn take(&self, key: &PeerKey) -> Option<ConnRecord> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let record = map.get(key, 0).ok()?;
        let _ = map.remove(key);
        Some(record)
    }

    /// Looks up a record and leaves it (a DNS client may send again from the same port).
    pub fn get(&self, key: &PeerKey) -> Option<ConnRecord> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key, 0).ok()
    }
}

/// The per-CPU outcome counters of the programs.
pub struct Stats(Mutex<PerCpuArray<MapData, u64>>);

impl Stats {
    /// Sums over CPUs, by `STAT_*` index.
    pub fn read(&self) -> [u64; STATS_LEN as usize] {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        std::array::from_fn(|i| map.get(&(i as u32), 0).map(|values| values.iter().sum()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_count_as_attached_only_through_live_pins() {
        let dir = std::env::temp_dir().join(format!("tollgate-pins-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(attached_programs(&dir), 0, "no pins");
        // A plain file where a pin should be (bpffs gone, a stale copy) is no link.
        fs::write(dir.join(program::CONNECT4), b"").unwrap();
        assert_eq!(attached_programs(&dir), 0);
        assert_eq!(attached_programs(&dir.join("missing")), 0);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(PROGRAM_COUNT, 11);
    }
}
