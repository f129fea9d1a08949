//! systemd's notification protocol (`sd_notify`), implemented directly: one datagram of
//! `KEY=VALUE` lines sent to the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a path, or an
//! abstract name written with a leading `@`). Twenty lines of code do not justify a dependency.
//!
//! The daemon sends `READY=1` once its socket listens, `STATUS=…` with its sources and rate,
//! `WATCHDOG=1` only while the sampler's tick advances (see [`watchdog`]), and `STOPPING=1` when
//! it shuts down.

use std::ffi::OsString;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::backend::MeterBackend;
use super::until_stopped;

/// A connection to the service manager, or nothing when not run under systemd.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Notifier { target: None }
    }

    /// A notifier for the socket `addr` as written in `$NOTIFY_SOCKET`.
    pub fn new(addr: &std::ffi::OsStr) -> io::Result<Self> {
        let bytes = addr.as_bytes();
        let sockaddr = match bytes.split_first() {
            Some((b'@', name)) => SocketAddr::from_abstract_name(name)?,
            Some((b'/', _)) => SocketAddr::from_pathname(std::path::Path::new(addr))?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "NOTIFY_SOCKET must be an absolute path or an abstract name (@…)",
                ));
            }
        };
        Ok(Notifier {
            target: Some((UnixDatagram::unbound()?, sockaddr)),
        })
    }

    /// From a `$NOTIFY_SOCKET` value, if any; an unusable value is logged and ignored.
    pub fn from_value(value: Option<OsString>) -> Self {
        match value {
            None => Notifier::disabled(),
            Some(v) => Notifier::new(&v).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "ignoring NOTIFY_SOCKET");
                Notifier::disabled()
            }),
        }
    }

    /// `true` when notifications go somewhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines). Failures are logged, not fatal.
    pub fn notify(&self, state: &str) {
        if let Some((sock, addr)) = &self.target
            && let Err(e) = sock.send_to_addr(state.as_bytes(), addr)
        {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STATUS=…`.
    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={}", one_line(status)));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping");
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// The watchdog period requested by systemd (`$WATCHDOG_USEC`, for this process when
/// `$WATCHDOG_PID` is set), halved as systemd recommends.
pub fn watchdog_period(usec: Option<OsString>, pid: Option<OsString>) -> Option<Duration> {
    if let Some(pid) = pid {
        let ours = std::process::id().to_string();
        if pid.as_bytes() != ours.as_bytes() {
            return None;
        }
    }
    let usec: u64 = usec?.to_str()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Pings `WATCHDOG=1` every `period` while the backend's tick advances; a stalled sampler gets
/// no ping, so systemd restarts the daemon. Every `status_every` pings it also refreshes
/// `STATUS=` with `status()`. Ends when `shutdown` turns true.
pub async fn watchdog(
    notifier: Arc<Notifier>,
    backend: Arc<dyn MeterBackend>,
    period: Duration,
    status: impl Fn(f64) -> String + Send + 'static,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = backend.tick();
    let mut last_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = until_stopped(&mut shutdown) => return,
        }
        let tick = backend.tick();
        let now = tokio::time::Instant::now();
        if tick > last {
            let rate = (tick - last) as f64 / now.duration_since(last_at).as_secs_f64().max(1e-9);
            notifier.notify(&format!("WATCHDOG=1\nSTATUS={}", one_line(&status(rate))));
            last = tick;
            last_at = now;
        } else {
            tracing::warn!(
                tick,
                "the sampler has not advanced; withholding the watchdog ping"
            );
            notifier.status("sampler stalled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.as_os_str()).unwrap();
        n.ready("up");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");

        let name = format!("anges-notify-test-{}", std::process::id());
        let abs = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&abs).unwrap();
        let n = Notifier::new(std::ffi::OsStr::new(&format!("@{name}"))).unwrap();
        n.stopping();
        let len = rx.recv(&mut buf).unwrap();
        assert!(buf[..len].starts_with(b"STOPPING=1"));
    }

    #[test]
    fn rejects_relative_addresses_and_disabled_is_silent() {
        assert!(Notifier::new(std::ffi::OsStr::new("relative")).is_err());
        let n = Notifier::from_value(None);
        assert!(!n.is_enabled());
        n.ready("nothing happens");
    }

    #[test]
    fn watchdog_period_is_half_and_pid_checked() {
        assert_eq!(
            watchdog_period(Some("2000000".into()), None),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_period(Some("2000000".into()), Some("1".into())),
            None
        );
        let me = std::process::id().to_string();
        assert!(watchdog_period(Some("10".into()), Some(me.into())).is_some());
        assert_eq!(watchdog_period(None, None), None);
        assert_eq!(watchdog_period(Some("x".into()), None), None);
    }
}
