//! The meter's serving side: everything between the engine and its clients.
//!
//! | module | owns |
//! | --- | --- |
//! | [`backend`] | the narrow trait the servers need from the engine |
//! | [`publish`] | rate-limited snapshots of the engine's totals (CVE-2020-8694) |
//! | [`access`] | peer credentials and who may register, see and remove what |
//! | [`service`] | request semantics shared by the socket and D-Bus |
//! | [`socket`] | the local stream socket: framing, handshake, bounds |
//! | [`dbus`] | `org.anges.Meter1` on the system or session bus |
//! | [`metrics`] | the loopback Prometheus endpoint |
//! | [`notify`] | `sd_notify`: READY, STATUS, WATCHDOG, STOPPING |
//! | [`activation`] | socket activation (`LISTEN_FDS`) |
//!
//! [`Server::start`] starts the servers inside a Tokio runtime (the daemon's `main`, tests,
//! benchmarks); `engine_backend` puts the real [`anges_meter_engine::Engine`] behind [`MeterBackend`].

pub mod access;
pub mod activation;
pub mod backend;
pub mod dbus;
mod engine_backend;
pub mod metrics;
pub mod notify;
pub mod publish;
pub mod service;
pub mod socket;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use backend::{BackendError, JobSpec, JobTotals, MeterBackend};
pub use dbus::Bus;
pub use service::ServiceLimits;
pub use socket::{SocketLimits, SocketStats};

use access::AccessPolicy;
use notify::Notifier;
use publish::Publisher;
use service::Service;

/// Shortest accepted publication interval.
pub const MIN_PUBLISH_INTERVAL: Duration = Duration::from_millis(1);

/// Everything the servers need to know.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Socket path to bind (unless a socket-activated one is passed).
    pub socket: PathBuf,
    /// Mode of the socket file (0o660: owner and group `anges`; 0o666 in `--user` mode).
    pub socket_mode: u32,
    /// Group of the socket file (the `anges` group), if any.
    pub socket_group: Option<u32>,
    /// Adopt a socket passed by systemd (`LISTEN_FDS`) when there is one.
    pub socket_activation: bool,
    /// Minimum interval between published readings (default 100 ms; CVE-2020-8694).
    pub publish_interval: Duration,
    /// Root under which `/proc` and `/sys/fs/cgroup` are looked up for permission checks.
    pub access_root: PathBuf,
    /// Members of this group see and remove every job.
    pub admin_gid: Option<u32>,
    /// Bounds of the socket server.
    pub socket_limits: SocketLimits,
    /// Bounds of the request semantics.
    pub service_limits: ServiceLimits,
    /// Publish `org.anges.Meter1` on this bus.
    pub dbus: Option<Bus>,
    /// Serve Prometheus metrics on this loopback address.
    pub metrics_listen: Option<SocketAddr>,
    /// Also serve per-job series there (every user's jobs, to anyone reaching the port).
    pub metrics_per_job: bool,
    /// `$NOTIFY_SOCKET`, if the daemon runs under systemd.
    pub notify_socket: Option<OsString>,
    /// Watchdog ping period (half of `$WATCHDOG_USEC`).
    pub watchdog: Option<Duration>,
}

impl ServerConfig {
    /// Defaults for a socket at `socket`, with sd-notify settings from the environment.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        ServerConfig {
            socket: socket.into(),
            socket_mode: 0o660,
            socket_group: None,
            socket_activation: true,
            publish_interval: Duration::from_millis(100),
            access_root: PathBuf::from("/"),
            admin_gid: None,
            socket_limits: SocketLimits::default(),
            service_limits: ServiceLimits::default(),
            dbus: None,
            metrics_listen: None,
            metrics_per_job: false,
            notify_socket: std::env::var_os("NOTIFY_SOCKET"),
            watchdog: notify::watchdog_period(
                std::env::var_os("WATCHDOG_USEC"),
                std::env::var_os("WATCHDOG_PID"),
            ),
        }
    }
}

/// A failure to start or run the servers.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is unusable.
    #[error("invalid server configuration: {0}")]
    Config(String),
    /// The socket could not be bound.
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A passed socket could not be adopted.
    #[error("socket activation: {0}")]
    Activation(#[source] std::io::Error),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    /// D-Bus failed.
    #[error("D-Bus: {0}")]
    Dbus(#[from] zbus::Error),
    /// The runtime, a thread or a signal handler could not be set up.
    #[error("runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Running servers; [`Server::shutdown`] stops them.
#[derive(Debug)]
pub struct Server {
    socket_path: PathBuf,
    owns_socket: bool,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    publisher: Option<Publisher>,
    dbus: Option<zbus::Connection>,
    metrics_addr: Option<SocketAddr>,
    notifier: Arc<Notifier>,
    stats: Arc<SocketStats>,
}

/// The `STATUS=` line: sources, jobs, clients and sampling rate.
fn status_line(service: &Service, stats: &SocketStats, rate_hz: Option<f64>) -> String {
    let snap = service.latest();
    let join = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(",")
        }
    };
    let mut s = format!(
        "measured: {}; estimated: {}; {} jobs; {} clients",
        join(&snap.health.sources_measured),
        join(&snap.health.sources_estimated),
        snap.jobs.len(),
        stats.open.load(Ordering::Relaxed),
    );
    if let Some(r) = rate_hz {
        s.push_str(&format!("; sampling at {r:.0} Hz"));
    }
    s
}

impl Server {
    /// Starts the publication thread, the socket server, D-Bus and metrics when configured, then
    /// tells systemd `READY=1` (the socket already accepts connections) and starts the watchdog.
    pub async fn start(
        backend: Arc<dyn MeterBackend>,
        cfg: ServerConfig,
    ) -> Result<Server, ServerError> {
        if cfg.publish_interval < MIN_PUBLISH_INTERVAL {
            return Err(ServerError::Config(format!(
                "the publication interval must be at least {MIN_PUBLISH_INTERVAL:?}"
            )));
        }
        if cfg.socket_limits.max_frame > anges_common::codec::MAX_FRAME {
            return Err(ServerError::Config(format!(
                "max_frame may not exceed {} bytes",
                anges_common::codec::MAX_FRAME
            )));
        }
        let publisher = Publisher::start(backend.clone(), cfg.publish_interval)
            .map_err(ServerError::Runtime)?;
        let service = Service::new(
            backend.clone(),
            publisher.subscribe(),
            AccessPolicy::new(&cfg.access_root, cfg.admin_gid),
            cfg.service_limits.clone(),
            cfg.publish_interval,
        );
        let activated = if cfg.socket_activation {
            activation::activated_listener().map_err(ServerError::Activation)?
        } else {
            None
        };
        let owns_socket = activated.is_none();
        let std_listener = match activated {
            Some(l) => l,
            None => {
                let l = socket::bind(&cfg.socket, cfg.socket_mode, cfg.socket_group).map_err(
                    |source| ServerError::Bind {
                        path: cfg.socket.clone(),
                        source,
                    },
                )?;
                l.set_nonblocking(true).map_err(ServerError::Runtime)?;
                l
            }
        };
        let listener =
            tokio::net::UnixListener::from_std(std_listener).map_err(ServerError::Runtime)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let stats = service.stats().clone();
        let mut tasks = vec![tokio::spawn(socket::serve(
            listener,
            service.clone(),
            cfg.socket_limits.clone(),
            stats.clone(),
            shutdown_rx.clone(),
        ))];
        let dbus = match &cfg.dbus {
            Some(bus) => Some(dbus::publish(bus, service.clone()).await?),
            None => None,
        };
        let metrics_addr = match cfg.metrics_listen {
            Some(addr) => {
                let l = metrics::bind(addr).await?;
                let bound = l.local_addr().ok();
                let mut source = metrics::MetricsSource::new(service.receiver(), stats.clone());
                source.per_job = cfg.metrics_per_job;
                tasks.push(tokio::spawn(metrics::serve(l, source, shutdown_rx.clone())));
                bound
            }
            None => None,
        };
        let notifier = Arc::new(Notifier::from_value(cfg.notify_socket.clone()));
        notifier.ready(&status_line(&service, &stats, None));
        if let Some(period) = cfg.watchdog {
            let (svc, st) = (service.clone(), stats.clone());
            tasks.push(tokio::spawn(notify::watchdog(
                notifier.clone(),
                backend,
                period,
                move |rate| status_line(&svc, &st, Some(rate)),
                shutdown_rx,
            )));
        }
        tracing::info!(socket = %cfg.socket.display(), ?metrics_addr, dbus = ?cfg.dbus, "serving");
        Ok(Server {
            socket_path: cfg.socket,
            owns_socket,
            shutdown,
            tasks,
            publisher: Some(publisher),
            dbus,
            metrics_addr,
            notifier,
            stats,
        })
    }

    /// The socket path (as configured; a socket-activated listener may have another).
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Where the metrics endpoint listens, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Counters of the socket server.
    pub fn stats(&self) -> &Arc<SocketStats> {
        &self.stats
    }

    /// Sends `STOPPING=1`, stops every server and the publication thread, removes the socket.
    pub async fn shutdown(mut self) {
        self.notifier.stopping();
        self.shutdown.send_replace(true);
        for t in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                tracing::warn!("a server task did not stop in time");
            }
        }
        if let Some(conn) = self.dbus.take() {
            conn.graceful_shutdown().await;
        }
        if let Some(publisher) = self.publisher.take() {
            let _ = tokio::task::spawn_blocking(move || drop(publisher)).await;
        }
        if self.owns_socket
            && let Err(e) = std::fs::remove_file(&self.socket_path)
        {
            tracing::debug!(error = %e, "socket already gone");
        }
    }
}

/// Completes when `shutdown` turns true (or its sender is gone); holds no borrow of the channel
/// afterwards, so it can sit in a `select!` of a `Send` task.
pub(crate) async fn until_stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (each client holds a descriptor); returns
/// the new soft limit.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(lim.rlim_cur)
}
