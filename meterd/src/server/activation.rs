//! Socket activation: adopting the listening socket systemd passes (`LISTEN_FDS`/`LISTEN_PID`,
//! e.g. from `anges-meterd.socket`) instead of binding one, through the `listenfd` crate.

use std::io;
use std::os::unix::net::UnixListener;

/// The first passed file descriptor as a Unix listener, if systemd passed one to this process.
///
/// `Ok(None)` when the daemon was not socket-activated; an error when a descriptor was passed
/// but is not a listening Unix stream socket.
pub fn activated_listener() -> io::Result<Option<UnixListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    if fds.len() > 1 {
        tracing::warn!(count = fds.len(), "several sockets passed; using the first");
    }
    let listener = fds.take_unix_listener(0)?;
    if let Some(l) = &listener {
        l.set_nonblocking(true)?;
        tracing::info!(addr = ?l.local_addr().ok(), "using the socket passed by systemd");
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_activation_without_listen_fds() {
        // The test harness is not socket-activated (LISTEN_PID, if set, is not ours).
        assert!(activated_listener().unwrap().is_none());
    }
}
