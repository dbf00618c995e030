//! Loads the embedded eBPF object, fills its maps, attaches its programs to a cgroup, and owns
//! the handles the rest of the daemon uses (endpoint maps, connection records, counters).
//!
//! Lifetime: in fail-open mode the links are owned by this process, so they detach when it
//! exits for any reason, a crash included, and workloads then connect directly. In fail-closed
//! mode the links are pinned on bpffs and outlive the process; the connect programs then find
//! no live listener in `LISTENERS` and refuse captured connects until a new instance replaces
//! the pins (or `tollgate detach` removes them).

pub mod endpoints;

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
    program, ConnRecord, PeerKey, RedirectConfig, CONFIG_MAP, CONNS_MAP, LISTENERS_MAP, STATS_LEN, STATS_MAP,
};

use crate::config::FailMode;

/// The object `build.rs` produced from `gateway-ebpf`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tollgate"));

const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// Every program, in attach order: connect last, so that by the time a connect is redirected
/// the programs that complete its record are already in place.
const PROGRAMS: [&str; 6] = [
    program::SOCK_RELEASE,
    program::SOCK_OPS,
    program::GETPEERNAME4,
    program::GETPEERNAME6,
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
    /// Fail-open links, owned here so that they detach with the process.
    links: Vec<(&'static str, FdLink)>,
}

impl Loaded {
    /// Loads the object into the kernel. Nothing is attached yet. The maps that other
    /// components own from then on come back separately.
    pub fn load() -> Result<(Loaded, Maps), Error> {
        let mut ebpf = Ebpf::load(OBJECT)?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(Error::MissingMap(name));
        let config = Array::try_from(take(CONFIG_MAP)?).map_err(map_err(CONFIG_MAP))?;
        let conns = HashMap::try_from(take(CONNS_MAP)?).map_err(map_err(CONNS_MAP))?;
        let listeners = SockMap::try_from(take(LISTENERS_MAP)?).map_err(map_err(LISTENERS_MAP))?;
        let stats = PerCpuArray::try_from(take(STATS_MAP)?).map_err(map_err(STATS_MAP))?;
        let endpoints = endpoints::EndpointMaps::take(&mut take)?;
        let maps = Maps {
            endpoints,
            conns: ConnTable(Mutex::new(conns)),
            stats: Stats(Mutex::new(stats)),
        };
        Ok((
            Loaded {
                ebpf,
                listeners,
                config,
                links: Vec::new(),
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

    /// Attaches every program to `cgroup`. In fail-closed mode the links are pinned under
    /// `pin_dir`, replacing (after the new ones are attached) any left by an earlier instance;
    /// in fail-open mode stale pins are removed so they cannot refuse connects.
    pub fn attach(&mut self, cgroup: &Path, fail_mode: FailMode, pin_dir: &Path) -> Result<(), Error> {
        let cgroup_file = fs::File::open(cgroup).map_err(|source| Error::Cgroup {
            path: cgroup.to_owned(),
            source,
        })?;
        let mut fresh: Vec<(&'static str, FdLink)> = Vec::new();
        for name in PROGRAMS {
            let prog = self.ebpf.program_mut(name).ok_or(Error::MissingProgram(name))?;
            let perr = |source| Error::Program { program: name, source };
            let link: FdLink = match prog {
                aya::programs::Program::CgroupSockAddr(p) => {
                    load_once(p.load()).map_err(perr)?;
                    let id = p.attach(&cgroup_file, CgroupAttachMode::Single).map_err(perr)?;
                    take_fd_link(p.take_link(id).map_err(perr)?, name, pin_dir)?
                }
                aya::programs::Program::SockOps(p) => {
                    load_once(p.load()).map_err(perr)?;
                    let id = p.attach(&cgroup_file, CgroupAttachMode::Single).map_err(perr)?;
                    take_fd_link(p.take_link(id).map_err(perr)?, name, pin_dir)?
                }
                aya::programs::Program::CgroupSock(p) => {
                    load_once(p.load()).map_err(perr)?;
                    let id = p.attach(&cgroup_file, CgroupAttachMode::Single).map_err(perr)?;
                    take_fd_link(p.take_link(id).map_err(perr)?, name, pin_dir)?
                }
                _ => return Err(Error::MissingProgram(name)),
            };
            fresh.push((name, link));
        }
        match fail_mode {
            FailMode::Open => {
                remove_pins(pin_dir)?;
                self.links = fresh;
            }
            FailMode::Closed => {
                ensure_bpffs()?;
                fs::create_dir_all(pin_dir).map_err(|e| pin_error(pin_dir, e))?;
                for (name, link) in fresh {
                    let path = pin_dir.join(name);
                    // The old link (if any) detaches only after ours is attached: during the
                    // overlap both run, and a dead predecessor refuses, as fail-closed should.
                    if path.exists() {
                        let old = PinnedLink::from_pin(&path).map_err(|e| pin_error(&path, e))?;
                        drop(old.unpin().map_err(|e| pin_error(&path, e))?);
                    }
                    link.pin(&path).map_err(|e| pin_error(&path, e))?;
                }
            }
        }
        Ok(())
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

/// Removes the links an earlier fail-closed instance pinned under `pin_dir` (detaching them).
pub fn remove_pins(pin_dir: &Path) -> Result<usize, Error> {
    let Ok(entries) = fs::read_dir(pin_dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
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
