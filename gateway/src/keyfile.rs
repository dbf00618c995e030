//! Files holding private keys (the node CA's, the audit log's signing key): created once with
//! the mode they must have, and refused when group or others can read them.

use std::{
    io::{self, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

/// Writes a new file (its directory too) with `mode`, failing if it exists, and syncs it.
pub fn create(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// `Err` with what to do when the file at `path` can be read by anyone but its owner (whoever
/// reads a private key can use it), or cannot be looked at.
pub fn check_private(path: &Path) -> Result<(), String> {
    let mode = std::fs::metadata(path).map_err(|e| e.to_string())?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "the key is readable by group or others (mode {:o}); chmod 600 it",
            mode & 0o777
        ));
    }
    Ok(())
}
