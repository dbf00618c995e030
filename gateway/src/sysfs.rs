//! File-system facts the daemon checks: the cgroup2 mount, and what file system a path is on.
//! A leaf: it imports nothing of the crate.

use std::path::{Path, PathBuf};

/// `CGROUP2_SUPER_MAGIC` from linux/magic.h.
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// `BPF_FS_MAGIC` from linux/magic.h.
pub const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// `statfs(2)`'s `f_type` of `path` (`None` when it cannot be read).
pub fn statfs_type(path: &Path) -> Option<i64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    #[expect(unsafe_code, reason = "statfs(2) has no safe wrapper in std")]
    // SAFETY: valid NUL-terminated path and a zeroed out-struct, read only on success.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        // `__fsword_t`: a C `long` with glibc, an unsigned one with musl; the magic numbers fit
        // either way.
        #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
        Some(st.f_type as i64)
    }
}

/// Whether `path` is on a cgroup2 file system (`None`: it cannot be checked).
pub fn is_cgroup2(path: &Path) -> Option<bool> {
    statfs_type(path).map(|t| t == CGROUP2_SUPER_MAGIC)
}

/// The cgroup2 mount point, from `/proc/self/mountinfo` (on hybrid hosts
/// `/sys/fs/cgroup/unified` beside the v1 controllers; on most current distributions
/// `/sys/fs/cgroup`).
pub fn cgroup2_root() -> Option<PathBuf> {
    cgroup2_in(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)
}

/// The first cgroup2 mount point in a mountinfo text (proc(5): the mount point is the fifth
/// field; the file system type follows the ` - ` separator).
fn cgroup2_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let fstype = after.split_whitespace().next()?;
        let mount_point = before.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(unescape(mount_point)))
    })
}

/// Mount points escape space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            match u8::from_str_radix(&code, 8) {
                Ok(b) => out.push(b as char),
                Err(_) => {
                    out.push('\\');
                    out.push_str(&code);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_is_found_on_hybrid_hosts() {
        let hybrid = "\
25 30 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/cpu rw,nosuid shared:11 - cgroup cgroup rw,cpu
";
        assert_eq!(cgroup2_in(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let optional_fields = "30 1 0:26 / /my\\040cgroups rw shared:1 master:2 - cgroup2 none rw\n";
        assert_eq!(cgroup2_in(optional_fields), Some(PathBuf::from("/my cgroups")));
        assert_eq!(
            cgroup2_in("25 30 0:23 / /sys/fs/cgroup rw - cgroup cgroup rw,cpu\n"),
            None
        );
    }

    #[test]
    fn this_machines_cgroup2_mount_is_cgroup2() {
        if let Some(root) = cgroup2_root() {
            assert_eq!(is_cgroup2(&root), Some(true), "{}", root.display());
        }
        assert_eq!(is_cgroup2(Path::new("/proc")), Some(false));
    }
}
