//! `tollgate trust`: adds the node CA to the host's system trust store, or takes it out, so
//! that host workloads accept the certificates Tollgate presents for intercepted TLS. A leaf:
//! it imports nothing of the crate.
//!
//! The stores are the distributions' own anchors directories and their refresh commands:
//! Debian, Ubuntu and Alpine (`/usr/local/share/ca-certificates`, `update-ca-certificates`),
//! Fedora, RHEL and SUSE-like (`/etc/pki/ca-trust/source/anchors`, `update-ca-trust`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The file name Tollgate's CA gets in the anchors directory (packaging removes it by name).
pub const ANCHOR_NAME: &str = "tollgate-ca.crt";

/// A system trust store: where anchors go and what rebuilds the bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    pub anchors: PathBuf,
    pub refresh: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no known system trust store on this host (looked for /usr/local/share/ca-certificates with update-ca-certificates, and /etc/pki/ca-trust/source/anchors with update-ca-trust)")]
    NoStore,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {message}")]
    Refresh { command: String, message: String },
    #[error("{0} is not a PEM certificate")]
    NotACertificate(PathBuf),
}

impl Store {
    /// The store of this host, if it has a known one.
    pub fn detect() -> Result<Store, Error> {
        let candidates = [
            ("/usr/local/share/ca-certificates", vec!["update-ca-certificates"]),
            ("/etc/pki/ca-trust/source/anchors", vec!["update-ca-trust", "extract"]),
        ];
        for (dir, command) in candidates {
            if Path::new(dir).is_dir() && on_path(command[0]) {
                return Ok(Store {
                    anchors: dir.into(),
                    refresh: command.into_iter().map(String::from).collect(),
                });
            }
        }
        Err(Error::NoStore)
    }

    fn anchor(&self) -> PathBuf {
        self.anchors.join(ANCHOR_NAME)
    }

    /// Copies `ca_cert` in as an anchor and rebuilds the bundle. Returns the anchor's path.
    pub fn install(&self, ca_cert: &Path) -> Result<PathBuf, Error> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        let pem = std::fs::read_to_string(ca_cert).map_err(io(ca_cert))?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(Error::NotACertificate(ca_cert.into()));
        }
        let anchor = self.anchor();
        std::fs::write(&anchor, pem).map_err(io(&anchor))?;
        self.refresh()?;
        Ok(anchor)
    }

    /// Removes the anchor (if there) and rebuilds the bundle. Returns whether it was there.
    pub fn remove(&self) -> Result<bool, Error> {
        let anchor = self.anchor();
        match std::fs::remove_file(&anchor) {
            Ok(()) => {
                self.refresh()?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(Error::Io { path: anchor, source }),
        }
    }

    fn refresh(&self) -> Result<(), Error> {
        let command = self.refresh.join(" ");
        let mut args = self.refresh.iter();
        let program = args.next().ok_or(Error::NoStore)?;
        // `--fresh` on Debian also drops the links of anchors that were removed.
        let mut cmd = Command::new(program);
        cmd.args(args);
        if program == "update-ca-certificates" {
            cmd.arg("--fresh");
        }
        let out = cmd.output().map_err(|e| Error::Refresh {
            command: command.clone(),
            message: e.to_string(),
        })?;
        if !out.status.success() {
            return Err(Error::Refresh {
                command,
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_writes_the_anchor_and_runs_the_refresh_and_remove_undoes_it() {
        let dir = std::env::temp_dir().join(format!("tollgate-truststore-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("refreshed");
        let store = Store {
            anchors: dir.clone(),
            refresh: vec!["sh".into(), "-c".into(), format!("echo x >> {}", log.display())],
        };
        let cert = dir.join("in.pem");
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n").unwrap();
        let anchor = store.install(&cert).unwrap();
        assert_eq!(anchor, dir.join(ANCHOR_NAME));
        assert!(std::fs::read_to_string(&anchor).unwrap().contains("BEGIN CERTIFICATE"));
        assert!(store.remove().unwrap());
        assert!(!anchor.exists());
        assert!(!store.remove().unwrap(), "a second remove finds nothing");
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);

        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(matches!(store.install(&cert), Err(Error::NotACertificate(_))));
        let failing = Store {
            anchors: dir.clone(),
            refresh: vec!["false".into()],
        };
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n").unwrap();
        assert!(matches!(failing.install(&cert), Err(Error::Refresh { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
