//! Zero-gap upgrades, the listener half (docs/upgrades.md): a new instance asks the running one
//! for its listening sockets over a Unix socket (`capture.handoverPath`) and gets the very
//! same sockets (SCM_RIGHTS). Connections queued on them are never dropped and the kernel's
//! `LISTENERS` entries stay valid, because no listening socket ever closes; the programs and
//! maps are shared through their pins (`ebpf`). Once the new instance serves, it says so and
//! the old one stops accepting, finishes its connections, and waits to be stopped.
//!
//! Protocol, one exchange per connection:
//! 1. new → old: `TOLLGATE-HANDOVER 1\n`
//! 2. old → new: one message whose data is JSON `{"pid":…,"slots":["host4",…]}` and whose
//!    SCM_RIGHTS carry one listening socket per slot, in order
//! 3. new → old: `READY\n` when its programs are attached and it accepts; a connection that
//!    closes without it leaves the old instance serving as before.
//!
//! Only a peer with the same uid may connect (SO_PEERCRED), and the socket file is 0600.

use std::{
    io::{self, Write as _},
    net::SocketAddr,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
        unix::net::UnixStream,
    },
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

const HELLO: &str = "TOLLGATE-HANDOVER 1\n";
const READY: &str = "READY\n";
/// How many sockets one message carries at most (host4, host6, node4, node6, admin).
const MAX_FDS: usize = 5;
/// How long the new instance waits for the old one's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the old instance waits for `READY` (the new one syncs endpoints and attaches).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Serialize, Deserialize)]
struct Offer {
    pid: u32,
    slots: Vec<String>,
}

/// The sockets a predecessor handed over, and the line back to it.
pub struct Inherited {
    /// The predecessor's pid.
    pub pid: u32,
    sockets: Vec<(String, OwnedFd)>,
    stream: UnixStream,
}

impl std::fmt::Debug for Inherited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inherited")
            .field("pid", &self.pid)
            .field("slots", &self.sockets.iter().map(|(s, _)| s).collect::<Vec<_>>())
            .finish()
    }
}

impl Inherited {
    /// Takes the listening socket of `slot` (`host4`, `host6`, `node4`, `node6`, `admin`) when
    /// it was handed over and listens on `configured` (port 0: whatever port it has). A socket
    /// on another address is closed here: the config changed, the caller binds anew.
    pub fn take(&mut self, slot: &str, configured: SocketAddr) -> Option<std::net::TcpListener> {
        let at = self.sockets.iter().position(|(s, _)| s == slot)?;
        let (_, fd) = self.sockets.remove(at);
        let socket = std::net::TcpListener::from(fd);
        let local = socket.local_addr().ok()?;
        if local.ip() == configured.ip() && (configured.port() == 0 || configured.port() == local.port()) {
            tracing::info!(component = "handover", %local, slot, "listening on the socket the predecessor handed over");
            Some(socket)
        } else {
            tracing::warn!(component = "handover", %local, %configured, slot, "the handed-over socket is not the configured address: binding anew");
            None
        }
    }

    /// Tells the predecessor that this instance serves: it stops accepting and drains.
    pub fn ready(mut self) -> io::Result<()> {
        self.stream.write_all(READY.as_bytes())
    }
}

/// Asks whoever serves `path` for its listeners. `Ok(None)`: nobody does (a first start, or
/// a predecessor that is gone).
pub fn take_over(path: &Path) -> io::Result<Option<Inherited>> {
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => return Ok(None),
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.write_all(HELLO.as_bytes())?;
    let (data, fds) = recv_with_fds(stream.as_raw_fd())?;
    let offer: Offer = serde_json::from_slice(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if offer.slots.len() != fds.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} slots but {} sockets", offer.slots.len(), fds.len()),
        ));
    }
    stream.set_read_timeout(None)?;
    Ok(Some(Inherited {
        pid: offer.pid,
        sockets: offer.slots.into_iter().zip(fds).collect(),
        stream,
    }))
}

/// Serves successors on `path` with the listening sockets `slots`. Returns the pid of the
/// successor that took over (after its `READY`), or `None` when `stop` fired first.
pub async fn serve(
    path: PathBuf,
    slots: Vec<(&'static str, RawFd)>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> io::Result<Option<u32>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // The predecessor (if any) has handed over: its socket file is ours to replace.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => accepted?.0,
            _ = stop.changed() => {
                // Stopping without a successor: the socket file goes with us.
                let _ = std::fs::remove_file(&path);
                return Ok(None);
            }
        };
        match offer(stream, &slots).await {
            Ok(pid) => {
                tracing::info!(
                    component = "handover",
                    successor = pid,
                    "a new instance took over the listeners"
                );
                return Ok(Some(pid));
            }
            Err(e) => tracing::warn!(component = "handover", error = %e, "a handover did not complete: still serving"),
        }
    }
}

async fn offer(stream: tokio::net::UnixStream, slots: &[(&'static str, RawFd)]) -> io::Result<u32> {
    use tokio::io::AsyncBufReadExt as _;
    // Only our own uid may take the sockets.
    let peer = stream.peer_cred()?;
    #[expect(unsafe_code, reason = "geteuid has no safe wrapper in std")]
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if peer.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("uid {} may not take over (ours is {me})", peer.uid()),
        ));
    }
    let pid = peer.pid().map(|p| p as u32).unwrap_or(0);
    let timed_out = |what: &str| io::Error::new(io::ErrorKind::TimedOut, format!("no {what} in time"));
    // The successor writes nothing after its greeting until it has the offer, so the buffer
    // holds exactly one line.
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(ANSWER_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| timed_out("greeting"))??;
    if line != HELLO {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected greeting {line:?}"),
        ));
    }
    let offer = Offer {
        pid: std::process::id(),
        slots: slots.iter().map(|(s, _)| s.to_string()).collect(),
    };
    let data = serde_json::to_vec(&offer).map_err(io::Error::other)?;
    let fds: Vec<RawFd> = slots.iter().map(|(_, fd)| *fd).collect();
    let stream = reader.get_ref();
    loop {
        stream.writable().await?;
        match stream.try_io(tokio::io::Interest::WRITABLE, || {
            send_with_fds(stream.as_raw_fd(), &data, &fds)
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => break other?,
        }
    }
    // The successor syncs endpoints and attaches before it says READY.
    line.clear();
    tokio::time::timeout(READY_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| timed_out("READY"))??;
    if line == READY {
        Ok(pid)
    } else {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the new instance went away before it was ready",
        ))
    }
}

fn send_with_fds(socket: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    #[expect(unsafe_code, reason = "sendmsg(2) with SCM_RIGHTS has no safe wrapper in std")]
    // SAFETY: the control buffer is sized with CMSG_SPACE for `fds`, the header and data
    // pointers are built with the CMSG_* macros inside it, and every pointer outlives the call.
    unsafe {
        let payload = std::mem::size_of_val(fds) as u32;
        let mut control = vec![0u8; libc::CMSG_SPACE(payload) as usize];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = control.as_mut_ptr().cast();
            // The field widths differ between glibc and musl: `as _` fits either.
            msg.msg_controllen = control.len() as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast::<RawFd>(), fds.len());
        }
        if libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn recv_with_fds(socket: RawFd) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut data = vec![0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    #[expect(unsafe_code, reason = "recvmsg(2) with SCM_RIGHTS has no safe wrapper in std")]
    // SAFETY: as in send_with_fds; received descriptors are taken into OwnedFd at once (with
    // MSG_CMSG_CLOEXEC), so none leaks.
    unsafe {
        let space = libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) as usize;
        let mut control = vec![0u8; space];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() as _;
        let n = libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut fds = Vec::new();
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let count = bytes / std::mem::size_of::<RawFd>();
                let first = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(first.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "too many sockets offered"));
        }
        data.truncate(n as usize);
        Ok((data, fds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_pass_to_a_successor_which_then_accepts_on_them() {
        let dir = std::env::temp_dir().join(format!("tollgate-handover-{}", std::process::id()));
        let path = dir.join("handover.sock");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve(path.clone(), vec![("host4", listener.as_raw_fd())], stop_rx));
        while !path.exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A client queued before the handover is served by the successor.
        let mut early = std::net::TcpStream::connect(addr).unwrap();
        let successor = tokio::task::spawn_blocking(move || {
            let mut inherited = take_over(&path).unwrap().expect("an offer");
            assert_eq!(inherited.pid, std::process::id());
            assert!(inherited.take("node4", addr).is_none());
            let taken = inherited.take("host4", "127.0.0.1:0".parse().unwrap()).expect("host4");
            assert_eq!(taken.local_addr().unwrap(), addr);
            inherited.ready().unwrap();
            taken
        })
        .await
        .unwrap();
        assert_eq!(server.await.unwrap().unwrap(), Some(std::process::id()));
        drop(listener);
        let (mut conn, _) = successor.accept().unwrap();
        use std::io::{Read as _, Write as _};
        early.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        conn.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
        drop(stop_tx);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nobody_serving_means_no_handover() {
        let path = std::env::temp_dir().join(format!("tollgate-handover-none-{}.sock", std::process::id()));
        assert!(take_over(&path).unwrap().is_none());
    }
}
