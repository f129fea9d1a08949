//! Emissions of a fine-tuning run, read after every epoch (`--meter auto|daemon|local|off`).
//!
//! [`EpochMeter`] meters this process as a job and gives, after each epoch's training and
//! validation work, a fresh [`EpochEnergy`]: the epoch's joules and grams of CO2-eq, the
//! cumulative figures AN-GES reads as `E_i`, where they came from and whether they were measured.
//!
//! - `daemon`: the run is registered as a job with `anges-meterd` (blocking client, short
//!   timeouts) and each epoch asks for the next publication of its totals. An in-process engine
//!   runs beside it at a low rate as the standby gap filler.
//! - `local`: the daemon's own [`anges_meter_engine::Engine`] runs in this process (same sensors and
//!   accounting; no second implementation); each epoch waits for its next accounting tick.
//! - `auto`: the daemon when one answers, else local; the start-up log says which, and whether
//!   the figures are measured or estimated.
//!
//! The meter vanishing mid-run never stops training: reads fail fast, the client reconnects (and
//! re-attaches the job by id) when the daemon is back, and the [`Ledger`] covers every epoch by
//! exactly one source — the daemon's increment while its readings continue one another, the
//! standby's increment for an epoch the daemon cannot vouch for (a *gap*: unreachable, restarted,
//! job lost, totals gone back), marked in the log and in [`EpochEnergy::fault`]. See
//! [`ledger`] for the precise rules.
//!
//! Carbon: the in-process meter applies the carbon options of [`crate::config::CarbonConfig`]
//! (the daemon's flags and its file's `[carbon]` section); a daemon applies its own, and a run that
//! asked for others is warned with both values. The run states what was applied, with the
//! machine and its sensors ([`facts`]), and writes a CodeCarbon-compatible `emissions.csv`
//! ([`codecarbon`]).

pub mod codecarbon;
mod daemon;
pub mod facts;
pub mod ledger;
mod local;

use std::time::Duration;

use anges_common::client::{ClientConfig, ClientError};
use anges_meter_engine::carbon::{Carbon, CarbonError, IntensitySource};
use anges_meter_engine::engine::unix_now;
use anges_meter_engine::sensors::SensorChoice;
use anges_meter_engine::sensors::detect::GpuSelection;
use anges_meter_engine::{EngineConfig, EngineError};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, MeterConfig, MeterMode, ResolvedCarbon};
use daemon::DaemonLink;
pub use facts::{CarbonInfo, Hardware};
pub use ledger::{
    DaemonObservation, EnergySource, EpochEnergy, Ledger, LedgerTotals, Sample, Tail,
};
use local::LocalMeter;

/// "measured" or "estimated".
fn provenance_word(measured: bool) -> &'static str {
    if measured { "measured" } else { "estimated" }
}

/// Why metering could not start.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// `--meter daemon` and no daemon answered on any candidate socket.
    #[error(
        "--meter daemon: no meter daemon answered; tried: {}. Start one (`systemctl start \
         anges-meterd`, or `anges-meterd --user`), name its socket with --socket or \
         $ANGES_METER_SOCKET, or use --meter auto or --meter local",
        tried.join("; ")
    )]
    DaemonUnreachable {
        /// Each socket tried and why it failed.
        tried: Vec<String>,
    },
    /// `--meter daemon`: a daemon answered but the handshake or the job's registration failed.
    #[error("--meter daemon: {0}")]
    Daemon(ClientError),
    /// The in-process meter could not start (or could not register this process).
    #[error("the in-process meter failed to start: {0}")]
    Local(EngineError),
    /// The carbon options are unusable (an unknown region, a PUE < 1, a bad file).
    #[error("{0}")]
    Options(#[from] ConfigError),
    /// The carbon intensity could not be set up (an unreadable or malformed time series).
    #[error("carbon intensity: {0}")]
    Carbon(#[from] CarbonError),
}

/// The meter's figures at the end of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterFinal {
    /// Σ of the epochs' energy, joules.
    pub cumulative_j: f64,
    /// Σ of the epochs' CO2-eq, grams.
    pub cumulative_g: f64,
    /// What the meter charged the job after the last epoch's reading ([`Ledger::tail`]); `None`
    /// when no source had final totals that continue its readings.
    pub tail: Option<Tail>,
    /// The daemon's own final total of the job (from the unregistration answer), joules; `None`
    /// without a daemon, or when it could not be unregistered. After a re-registration it is the
    /// total of the last job only.
    pub daemon_job_joules: Option<f64>,
    /// The same in grams of CO2-eq.
    pub daemon_job_grams: Option<f64>,
    /// Epochs filled by the local estimator in place of the daemon.
    pub gap_epochs: usize,
    /// Epochs read.
    pub epochs: usize,
    /// [`EpochMeter::describe`] of the meter.
    pub describe: String,
    /// Every epoch's energy came from hardware counters (before any epoch: the meter's sources
    /// are all counters).
    pub measured: bool,
    /// The carbon intensity and PUE applied (absent from figures recorded before it).
    #[serde(default)]
    pub carbon: Option<CarbonInfo>,
    /// The machine and the meter's sensors.
    #[serde(default)]
    pub hardware: Option<Hardware>,
    /// Shares of the job's energy by kind of domain (CPU, memory, GPU), from the in-process
    /// meter's per-domain totals (the daemon's standby beside a daemon); `None` when unknown.
    #[serde(default)]
    pub kind_shares: Option<[f64; 3]>,
}

impl MeterFinal {
    /// The run's whole charge, joules and grams: the epochs' plus the [`tail`](Self::tail).
    pub fn total(&self) -> (f64, f64) {
        let (tail_j, tail_g) = self.tail.map_or((0.0, 0.0), |t| (t.energy_j, t.co2_g));
        (self.cumulative_j + tail_j, self.cumulative_g + tail_g)
    }
}

/// How the meter is tuned; [`Default`] is what `anges-train` uses.
#[derive(Debug, Clone)]
pub struct MeterOptions {
    /// The in-process engine of `--meter local` (and of `auto` without a daemon).
    pub local_engine: EngineConfig,
    /// The standby engine beside the daemon (its carbon intensity is replaced by the one the
    /// daemon reports at registration, so that filled gaps use the same grid figure).
    pub standby_engine: EngineConfig,
    /// Limit of one request to the daemon (a fresh reading waits one publication).
    pub request_timeout: Duration,
    /// Reconnection attempts per read while the daemon is gone (each read retries anew).
    pub reconnect_attempts: u32,
    /// First delay between reconnection attempts.
    pub reconnect_backoff: Duration,
}

impl Default for MeterOptions {
    fn default() -> Self {
        MeterOptions {
            local_engine: EngineConfig::default(),
            standby_engine: EngineConfig {
                rate_hz: 20,
                attribution_hz: 4.0,
                ..EngineConfig::default()
            },
            // A fresh reading waits one publication (100 ms by default); a daemon that takes 2 s
            // is treated as gone for this epoch.
            request_timeout: Duration::from_secs(2),
            // One quick attempt per read: a daemon that is not back yet is tried again at the
            // next epoch, and the epoch in between is filled locally (nothing is lost).
            reconnect_attempts: 1,
            reconnect_backoff: Duration::from_millis(100),
        }
    }
}

impl MeterOptions {
    /// The defaults, with both in-process engines forced to the utilisation estimate without
    /// GPUs at 50 Hz / 10 ticks per second: the same figures' provenance on any machine (tests,
    /// CI, benchmarks).
    pub fn estimated() -> Self {
        let engine = EngineConfig {
            sensor: SensorChoice::Estimate,
            gpus: GpuSelection::None,
            rate_hz: 50,
            attribution_hz: 10.0,
            ..EngineConfig::default()
        };
        MeterOptions {
            local_engine: engine.clone(),
            standby_engine: engine,
            ..MeterOptions::default()
        }
    }
}

/// Where the readings come from.
#[derive(Debug)]
enum Backend {
    /// The daemon, with the in-process standby when it could start.
    Daemon {
        link: Box<DaemonLink>,
        standby: Option<LocalMeter>,
    },
    /// The in-process engine only.
    Local(LocalMeter),
}

/// Meters this process during a run and reads its energy after every epoch.
#[derive(Debug)]
pub struct EpochMeter {
    backend: Backend,
    ledger: Ledger,
    describe: String,
    measured: bool,
    carbon: CarbonInfo,
    hardware: Hardware,
}

impl EpochMeter {
    /// Starts metering this process (a job = this PID) as `args` says; `Ok(None)` for
    /// `--meter off`. `auto` uses the daemon when one answers, else the in-process meter, and
    /// logs which one it used and whether the figures are measured or estimated.
    pub fn start(args: &MeterConfig, job_name: &str) -> Result<Option<EpochMeter>, MeterError> {
        Self::start_with(args, job_name, &MeterOptions::default())
    }

    /// [`EpochMeter::start`] with explicit tuning (tests, benchmarks).
    pub fn start_with(
        args: &MeterConfig,
        job_name: &str,
        opts: &MeterOptions,
    ) -> Result<Option<EpochMeter>, MeterError> {
        if args.mode == MeterMode::Off {
            tracing::info!("emissions: not metered (--meter off)");
            return Ok(None);
        }
        let carbon = args.carbon.resolve()?;
        match args.mode {
            MeterMode::Off => Ok(None),
            MeterMode::Local => {
                let meter = Self::local(job_name, opts, &carbon)?;
                tracing::info!(
                    "emissions: {} (--meter local): figures are {}",
                    meter.describe,
                    provenance_word(meter.measured)
                );
                Ok(Some(meter))
            }
            MeterMode::Daemon => Self::daemon(args, job_name, opts, &carbon).map(Some),
            MeterMode::Auto => match Self::daemon(args, job_name, opts, &carbon) {
                Ok(m) => Ok(Some(m)),
                Err(MeterError::DaemonUnreachable { tried }) => {
                    let meter = Self::local(job_name, opts, &carbon)?;
                    tracing::info!(
                        "--meter auto: no meter daemon answered (tried: {}); emissions: {}: \
                         figures are {}",
                        tried.join("; "),
                        meter.describe,
                        provenance_word(meter.measured)
                    );
                    Ok(Some(meter))
                }
                Err(e) => {
                    let meter = Self::local(job_name, opts, &carbon)?;
                    tracing::warn!(
                        "--meter auto: the meter daemon is unusable ({e}); emissions: {}: \
                         figures are {}",
                        meter.describe,
                        provenance_word(meter.measured)
                    );
                    Ok(Some(meter))
                }
            },
        }
    }

    fn local(
        job_name: &str,
        opts: &MeterOptions,
        resolved: &ResolvedCarbon,
    ) -> Result<EpochMeter, MeterError> {
        let mut engine = opts.local_engine.clone();
        engine.intensity = resolved.intensity.clone();
        engine.pue = resolved.pue;
        let carbon = CarbonInfo::local(resolved, &Carbon::new(&engine.intensity, engine.pue)?);
        let meter = LocalMeter::start(engine, job_name).map_err(MeterError::Local)?;
        let start = meter
            .current()
            .unwrap_or_else(|_| Sample::new(0.0, 0.0, meter.measured()));
        let describe = format!("local ({})", meter.provenance());
        let measured = meter.measured();
        let hardware = Hardware::detect(meter.gpu_domains(), meter.provenance().to_owned());
        tracing::info!("emissions: carbon intensity {}", carbon.describe());
        Ok(EpochMeter {
            backend: Backend::Local(meter),
            ledger: Ledger::local(start),
            describe,
            measured,
            carbon,
            hardware,
        })
    }

    fn daemon(
        args: &MeterConfig,
        job_name: &str,
        opts: &MeterOptions,
        resolved: &ResolvedCarbon,
    ) -> Result<EpochMeter, MeterError> {
        let mut cfg = ClientConfig::discover(args.socket.clone());
        cfg.request_timeout = opts.request_timeout;
        cfg.reconnect_attempts = opts.reconnect_attempts;
        cfg.reconnect_backoff = opts.reconnect_backoff;
        let (link, start) = DaemonLink::connect(cfg, job_name).map_err(|e| match e {
            ClientError::NoDaemon { tried } => MeterError::DaemonUnreachable { tried },
            other => MeterError::Daemon(other),
        })?;
        let mut standby_cfg = opts.standby_engine.clone();
        let intensity = link.intensity();
        let carbon = CarbonInfo::daemon(intensity);
        let asked = &args.carbon;
        if asked.intensity.is_some() || asked.pue.is_some() || asked.meter_config.is_some() {
            tracing::warn!(
                "the meter daemon applies its own carbon intensity ({intensity} g/kWh now, with                  the PUE of its configuration), not the one asked for ({} g/kWh from {}, PUE {}                  from {}); use --meter local to apply yours",
                Carbon::new(&resolved.intensity, resolved.pue).map_or_else(
                    |_| "?".to_owned(),
                    |c| c.intensity_at(unix_now()).to_string()
                ),
                resolved.intensity_origin,
                resolved.pue,
                resolved.pue_origin
            );
        }
        if intensity.is_finite() && intensity > 0.0 {
            standby_cfg.intensity = IntensitySource::Constant(intensity);
        }
        let standby = match LocalMeter::start(standby_cfg, job_name) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(
                    "the in-process standby meter failed to start ({e}); epochs the daemon \
                     misses will have no energy"
                );
                None
            }
        };
        let local_start = standby.as_ref().and_then(|m| m.current().ok());
        let describe = format!("daemon {} ({})", link.socket().display(), link.provenance());
        let measured = link.measured();
        let hardware = Hardware::detect(
            standby.as_ref().map_or(0, LocalMeter::gpu_domains),
            link.provenance().to_owned(),
        );
        tracing::info!(
            "emissions: {describe}, job {}: figures are {}; gap filler: {}",
            link.job(),
            provenance_word(measured),
            standby.as_ref().map_or_else(
                || "none".to_owned(),
                |m| format!("local ({})", m.provenance())
            )
        );
        Ok(EpochMeter {
            backend: Backend::Daemon {
                link: Box::new(link),
                standby,
            },
            ledger: Ledger::with_daemon(start, local_start),
            describe,
            measured,
            carbon,
            hardware,
        })
    }

    /// One line for logs and reports, e.g. `daemon /run/anges/meterd.sock (measured: perf)` or
    /// `local (estimated: estimate)`.
    pub fn describe(&self) -> String {
        self.describe.clone()
    }

    /// Whether the meter's energy sources are all hardware counters.
    pub fn measured(&self) -> bool {
        self.measured
    }

    /// Shares of the job's energy so far by kind of domain (CPU, memory, GPU), from the
    /// in-process meter's per-domain totals (the standby's beside a daemon); `None` when unknown.
    pub fn kind_shares(&self) -> Option<[f64; 3]> {
        let by_kind = match &self.backend {
            Backend::Daemon { standby, .. } => standby.as_ref().and_then(LocalMeter::by_kind),
            Backend::Local(meter) => meter.by_kind(),
        };
        by_kind.and_then(|k| {
            let sum: f64 = k.iter().sum();
            (sum > 0.0).then(|| k.map(|j| j / sum))
        })
    }

    /// The carbon intensity and PUE the meter applies, and where they came from.
    pub fn carbon(&self) -> &CarbonInfo {
        &self.carbon
    }

    /// The job's id with the daemon (`None` for the in-process meter).
    pub fn daemon_job(&self) -> Option<u64> {
        match &self.backend {
            Backend::Daemon { link, .. } => Some(link.job().0),
            Backend::Local(_) => None,
        }
    }

    /// The running totals of the run so far (what `--resume` carries over).
    pub fn totals(&self) -> LedgerTotals {
        self.ledger.totals()
    }

    /// Continues the totals of the run's earlier process (`--resume`): cumulative figures go on
    /// from there.
    pub fn carry_over(&mut self, earlier: LedgerTotals) {
        self.ledger.carry_over(earlier);
    }

    /// A fresh reading that includes the work done so far (the daemon's next publication; the
    /// local engine's next accounting tick) turned into this epoch's figures. Never blocks more
    /// than a few seconds and never fails: faults are recorded in the result.
    pub fn read_epoch(&mut self) -> EpochEnergy {
        self.read(true)
    }

    /// A reading turned into the figures since the previous one: with `fresh`, as
    /// [`EpochMeter::read_epoch`]; without, the latest figures already published (the daemon's
    /// last publication, the local engine's last tick), which may miss up to one publication
    /// interval of work (it goes to the next reading: the figures are cumulative) and never
    /// wait for a tick.
    pub fn read(&mut self, fresh: bool) -> EpochEnergy {
        let (daemon, local) = match &mut self.backend {
            Backend::Local(meter) if fresh => (None, meter.fresh()),
            Backend::Local(meter) => (None, meter.current().map(|s| (s, None))),
            Backend::Daemon { link, standby } => {
                let before = standby.as_ref().map(LocalMeter::tick);
                let observed = link.observe(fresh);
                let local = match (standby.as_ref(), before) {
                    (Some(m), Some(t)) if fresh => m.fresh_after(t),
                    (Some(m), Some(_)) => m.current().map(|s| (s, None)),
                    _ => Err("no local estimator (it failed to start)".to_owned()),
                };
                (Some(observed), local)
            }
        };
        let (local, note) = match local {
            Ok((s, note)) => (Ok(s), note),
            Err(e) => (Err(e), None),
        };
        let mut epoch = self.ledger.record(daemon, local);
        if let Some(note) = note
            && epoch.source != EnergySource::Daemon
        {
            epoch.fault = Some(match epoch.fault.take() {
                Some(f) => format!("{f}; {note}"),
                None => note,
            });
        }
        tracing::debug!(
            energy_j = epoch.energy_j,
            co2_g = epoch.co2_g,
            cumulative_g = epoch.cumulative_g,
            source = %epoch.source,
            "epoch emissions"
        );
        epoch
    }

    /// Ends metering: unregisters the job(s) and stops the in-process engine; returns the run's
    /// figures, with the daemon's own final totals of the job when there was a daemon.
    pub fn finish(self) -> MeterFinal {
        let kind_shares = self.kind_shares();
        let (daemon_final, standby_final) = match self.backend {
            Backend::Daemon { link, standby } => {
                let job = link.job();
                let fin = match link.finish() {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(
                            "could not unregister job {job} from the meter ({e}); the daemon \
                             marks it finished when this process exits"
                        );
                        None
                    }
                };
                (fin, standby.and_then(LocalMeter::finish))
            }
            Backend::Local(meter) => (None, meter.finish()),
        };
        let (cumulative_j, cumulative_g) = self.ledger.cumulative();
        let tail = self.ledger.tail(daemon_final, standby_final);
        let mut out = MeterFinal {
            cumulative_j,
            cumulative_g,
            tail,
            daemon_job_joules: daemon_final.map(|s| s.joules),
            daemon_job_grams: daemon_final.map(|s| s.grams),
            gap_epochs: self.ledger.gap_epochs(),
            epochs: self.ledger.epochs(),
            describe: self.describe,
            measured: self.ledger.all_measured().unwrap_or(self.measured),
            carbon: None,
            hardware: Some(self.hardware),
            kind_shares,
        };
        let (joules, grams) = out.total();
        let mut carbon = self.carbon;
        carbon.settle(joules, grams);
        out.carbon = Some(carbon);
        tracing::info!(
            "emissions: {:.3} J, {:.6} g CO2-eq over {} epoch(s), {} after the last one ({}{}); \
             local meter total {}",
            out.cumulative_j,
            out.cumulative_g,
            out.epochs,
            tail.map_or_else(
                || "nothing known".to_owned(),
                |t| format!("{:.3} J ({})", t.energy_j, t.source)
            ),
            out.describe,
            if out.gap_epochs > 0 {
                format!(
                    ", {} epoch(s) filled by the local estimator",
                    out.gap_epochs
                )
            } else {
                String::new()
            },
            standby_final.map_or_else(|| "n/a".to_owned(), |s| format!("{:.3} J", s.joules))
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use super::*;

    /// Burns one CPU for `d`.
    fn burn(d: Duration) {
        let end = Instant::now() + d;
        let mut x = 0u64;
        while Instant::now() < end {
            for i in 0..10_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
    }

    fn args(mode: MeterMode, socket: Option<std::path::PathBuf>) -> MeterConfig {
        MeterConfig {
            mode,
            socket,
            ..MeterConfig::default()
        }
    }

    /// Without `fresh`, a reading is the engine's latest publication, taken without waiting for
    /// the next accounting tick; the work it misses goes to the next fresh reading.
    #[test]
    fn a_reading_that_need_not_be_fresh_does_not_wait_for_a_tick() {
        let mut options = MeterOptions::estimated();
        // One accounting tick per second: a fresh reading waits up to a second for one.
        options.local_engine.attribution_hz = 1.0;
        let mut meter =
            EpochMeter::start_with(&args(MeterMode::Local, None), "unit-stale", &options)
                .expect("local meter")
                .expect("not off");
        // The engine's first tick may only set its baseline: read until energy has been charged.
        let mut readings = 0;
        let fresh = loop {
            burn(Duration::from_millis(300));
            let r = meter.read(true);
            readings += 1;
            if r.cumulative_j > 0.0 || readings == 5 {
                break r;
            }
        };
        assert!(fresh.cumulative_j > 0.0, "{fresh:?}");
        let t = Instant::now();
        let latest = meter.read(false);
        readings += 1;
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(
            latest.cumulative_j, fresh.cumulative_j,
            "no tick was published since the fresh reading"
        );
        burn(Duration::from_millis(300));
        let next = meter.read(true);
        readings += 1;
        assert!(next.cumulative_j > fresh.cumulative_j, "{next:?}");
        assert_eq!(meter.finish().epochs, readings);
    }

    #[test]
    fn local_meter_counts_burnt_cpu_per_epoch() {
        let mut meter = EpochMeter::start_with(
            &args(MeterMode::Local, None),
            "unit-local",
            &MeterOptions::estimated(),
        )
        .expect("local meter")
        .expect("not off");
        assert!(
            meter.describe().starts_with("local (estimated"),
            "{}",
            meter.describe()
        );
        assert!(!meter.measured());
        assert_eq!(meter.daemon_job(), None);
        let mut epochs = Vec::new();
        for _ in 0..3 {
            burn(Duration::from_millis(600));
            let e = meter.read_epoch();
            assert_eq!(e.source, EnergySource::Local);
            assert!(!e.measured);
            assert!(
                e.energy_j > 0.0 && e.co2_g > 0.0,
                "burnt CPU has energy: {e:?}"
            );
            assert!(e.fault.is_none(), "{e:?}");
            epochs.push(e);
        }
        for w in epochs.windows(2) {
            assert!(w[1].cumulative_j > w[0].cumulative_j);
            assert!(w[1].cumulative_g > w[0].cumulative_g);
        }
        let sum: f64 = epochs.iter().map(|e| e.energy_j).sum();
        let fin = meter.finish();
        assert_eq!(fin.cumulative_j, sum);
        assert_eq!(fin.epochs, 3);
        assert_eq!(fin.gap_epochs, 0);
        assert_eq!(fin.daemon_job_joules, None);
        assert!(!fin.measured);
    }

    #[test]
    fn off_meters_nothing() {
        assert!(
            EpochMeter::start(&args(MeterMode::Off, None), "unit-off")
                .expect("off")
                .is_none()
        );
    }

    /// A writer into a shared buffer, for capturing logs.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn daemon_mode_without_daemon_names_the_socket_and_auto_falls_back_to_local() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("absent.sock");
        let err = EpochMeter::start_with(
            &args(MeterMode::Daemon, Some(socket.clone())),
            "unit-daemon",
            &MeterOptions::estimated(),
        )
        .expect_err("no daemon");
        let text = err.to_string();
        assert!(
            matches!(err, MeterError::DaemonUnreachable { .. }),
            "{err:?}"
        );
        assert!(text.contains(&socket.display().to_string()), "{text}");
        assert!(text.contains("--meter auto"), "{text}");

        let logs = Capture::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let meter = tracing::subscriber::with_default(subscriber, || {
            EpochMeter::start_with(
                &args(MeterMode::Auto, Some(socket.clone())),
                "unit-auto",
                &MeterOptions::estimated(),
            )
        })
        .expect("auto falls back")
        .expect("not off");
        assert!(
            meter.describe().starts_with("local"),
            "{}",
            meter.describe()
        );
        let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        // One line says that the daemon was tried (where), what is used instead, and that its
        // figures are estimates.
        let line = logs
            .lines()
            .find(|l| l.contains("--meter auto: no meter daemon answered"))
            .unwrap_or_else(|| panic!("no fallback line in {logs}"));
        assert!(line.contains(&socket.display().to_string()), "{line}");
        assert!(line.contains("emissions: local (estimated"), "{line}");
        assert!(line.contains("figures are estimated"), "{line}");
        meter.finish();
    }
}
