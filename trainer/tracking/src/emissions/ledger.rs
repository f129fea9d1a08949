//! The per-epoch accounting of a run's energy: which source covers each epoch, and by how much.
//!
//! A [`Ledger`] turns, epoch after epoch, two cumulative readings — the daemon's job totals (or
//! why there are none) and the in-process engine's job totals — into one [`EpochEnergy`]. It is
//! pure: no I/O, no clock, so every rule below is tested on hand-made sequences.
//!
//! The ledger keeps, for each source, a *mark*: the source's cumulative reading at the moment the
//! accounted part of the run ends (the end of the last "closed" epoch). An epoch is closed by one
//! source, whose increment is its reading minus its mark; both marks then move to this epoch's
//! readings, so the next epoch starts where this one ended, whichever source covers it.
//!
//! - **Daemon** (steady state): the daemon's reading continues the one at its mark (same daemon
//!   instance, same job) and grew: the increment is the daemon's.
//! - **Gap** ([`EnergySource::LocalGap`]): the daemon could not be read, or its reading does not
//!   continue the marked one (it restarted, lost the job, was re-attached, or its total went
//!   backwards): the increment is the local engine's over the epoch. A daemon reading taken in
//!   such an epoch becomes the daemon's new mark (it is *re-baselined*), so the epoch after it is
//!   the daemon's again; without a reading the daemon has no mark, and the first epoch it answers
//!   again is still filled locally (its jump spans part of the gap).
//! - **Stale** daemon (its total did not grow): the epoch is recorded with a fault and a zero
//!   increment and stays *open*: neither mark moves, so the next epoch's increment includes it.
//! - **Local** ([`EnergySource::Local`], `--meter local`): the local increment; a zero increment
//!   is a fault and leaves the epoch open, as above.
//!
//! - **Tail** ([`Ledger::tail`]): what the job was charged after the last epoch's reading, from
//!   the final totals (the daemon's unregistration answer when it continues the daemon's mark,
//!   else the local engine's): part of the run's total, in no epoch.
//!
//! Hence every epoch's energy is counted by exactly one source, once: nothing lost, nothing counted
//! twice, and the cumulative figures never go down (increments are never negative).

use serde::{Deserialize, Serialize};

/// How far (J) a daemon total may fall below its mark and still count as "did not grow" (float
/// noise of summed domains) rather than "went backwards".
const BACKWARDS_TOLERANCE_J: f64 = 1e-6;

/// Which source an epoch's increment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnergySource {
    /// The meter daemon's job totals.
    Daemon,
    /// The in-process meter (`--meter local`, or `auto` without a daemon).
    Local,
    /// The in-process meter filling a gap in the daemon's readings.
    LocalGap,
}

impl std::fmt::Display for EnergySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EnergySource::Daemon => "daemon",
            EnergySource::Local => "local",
            EnergySource::LocalGap => "local-gap",
        })
    }
}

/// The energy and CO2-eq of one epoch, read after its training and validation work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochEnergy {
    /// This epoch's energy, joules (≥ 0).
    pub energy_j: f64,
    /// This epoch's CO2-eq, grams (≥ 0).
    pub co2_g: f64,
    /// Energy since metering started, joules (never decreases; the sum of the increments).
    pub cumulative_j: f64,
    /// CO2-eq since metering started, grams (never decreases; the sum of the increments).
    pub cumulative_g: f64,
    /// Where this epoch's increment came from.
    pub source: EnergySource,
    /// `true` when the increment comes from hardware energy counters only (no estimate).
    pub measured: bool,
    /// What went wrong with this epoch's reading, if anything (the figures are still usable).
    pub fault: Option<String>,
}

/// What the meter charged a run's job after its last epoch's reading ([`Ledger::tail`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tail {
    /// Joules (≥ 0).
    pub energy_j: f64,
    /// Grams of CO2-eq (≥ 0).
    pub co2_g: f64,
    /// Which source's final totals gave it.
    pub source: EnergySource,
}

/// One cumulative reading of one source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Cumulative energy, joules.
    pub joules: f64,
    /// Cumulative CO2-eq, grams.
    pub grams: f64,
    /// Every domain of the reading comes from a hardware counter.
    pub measured: bool,
}

impl Sample {
    /// A sample of `joules` and `grams`.
    pub fn new(joules: f64, grams: f64, measured: bool) -> Self {
        Sample {
            joules,
            grams,
            measured,
        }
    }

    fn check(self, what: &str) -> Result<Sample, String> {
        if self.joules.is_finite() && self.grams.is_finite() {
            Ok(self)
        } else {
            Err(format!(
                "{what} reading is not a number ({} J, {} g)",
                self.joules, self.grams
            ))
        }
    }
}

/// What the daemon gave at an epoch's end, as the ledger needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonObservation {
    /// A reading of the same daemon instance and job as the previous observation.
    Continuous(Sample),
    /// A reading that does not continue the previous one (`why`: the daemon restarted, the job
    /// was re-registered, the client re-attached, …); it becomes the daemon's new mark.
    Rebased {
        /// The reading.
        sample: Sample,
        /// Why it cannot be compared with the previous reading.
        why: String,
    },
    /// No reading (the daemon is unreachable or failed); why.
    Failed(String),
}

/// A ledger's running totals: what a resumed run carries over from its earlier process
/// ([`Ledger::carry_over`]), so that its cumulative figures continue instead of restarting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerTotals {
    /// Cumulative energy, joules.
    pub cumulative_j: f64,
    /// Cumulative CO2-eq, grams.
    pub cumulative_g: f64,
    /// Epochs recorded.
    pub epochs: usize,
    /// Epochs the local engine filled in for the daemon.
    pub gap_epochs: usize,
    /// Positive increments recorded.
    pub counted: usize,
    /// Measured positive increments.
    pub counted_measured: usize,
    /// Σ of the daemon's increments, joules.
    pub daemon_j: f64,
}

/// Per-epoch accounting of one run; see the module documentation for the rules.
#[derive(Debug, Clone)]
pub struct Ledger {
    with_daemon: bool,
    daemon_mark: Option<Sample>,
    local_mark: Option<Sample>,
    cumulative_j: f64,
    cumulative_g: f64,
    epochs: usize,
    gap_epochs: usize,
    gap_start: Option<usize>,
    counted: usize,
    counted_measured: usize,
    daemon_j: f64,
}

impl Ledger {
    /// A ledger of a run metered in-process only, starting at the local reading `start`.
    pub fn local(start: Sample) -> Self {
        Self::new(false, None, Some(start))
    }

    /// A ledger of a run metered by the daemon (starting at `daemon_start`, the reading of the
    /// job's registration), with the in-process meter as gap filler when it has a reading
    /// (`local_start`).
    pub fn with_daemon(daemon_start: Sample, local_start: Option<Sample>) -> Self {
        Self::new(true, Some(daemon_start), local_start)
    }

    fn new(with_daemon: bool, daemon_mark: Option<Sample>, local_mark: Option<Sample>) -> Self {
        Ledger {
            with_daemon,
            daemon_mark: daemon_mark.and_then(|s| s.check("daemon").ok()),
            local_mark: local_mark.and_then(|s| s.check("local").ok()),
            cumulative_j: 0.0,
            cumulative_g: 0.0,
            epochs: 0,
            gap_epochs: 0,
            gap_start: None,
            counted: 0,
            counted_measured: 0,
            daemon_j: 0.0,
        }
    }

    /// Epochs recorded so far.
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// Epochs whose increment the local engine gave in place of the daemon.
    pub fn gap_epochs(&self) -> usize {
        self.gap_epochs
    }

    /// Cumulative energy (J) and CO2-eq (g) so far.
    pub fn cumulative(&self) -> (f64, f64) {
        (self.cumulative_j, self.cumulative_g)
    }

    /// Σ of the increments that came from the daemon, joules.
    pub fn daemon_joules(&self) -> f64 {
        self.daemon_j
    }

    /// Whether every positive increment so far was measured; `None` before any.
    pub fn all_measured(&self) -> Option<bool> {
        (self.counted > 0).then_some(self.counted_measured == self.counted)
    }

    /// The running totals ([`LedgerTotals`]).
    pub fn totals(&self) -> LedgerTotals {
        LedgerTotals {
            cumulative_j: self.cumulative_j,
            cumulative_g: self.cumulative_g,
            epochs: self.epochs,
            gap_epochs: self.gap_epochs,
            counted: self.counted,
            counted_measured: self.counted_measured,
            daemon_j: self.daemon_j,
        }
    }

    /// Continues the totals of an earlier process of the same run (`--resume`): the increments
    /// recorded from now on add to them. The marks (the last readings) stay this process's own.
    pub fn carry_over(&mut self, earlier: LedgerTotals) {
        self.cumulative_j += earlier.cumulative_j;
        self.cumulative_g += earlier.cumulative_g;
        self.epochs += earlier.epochs;
        self.gap_epochs += earlier.gap_epochs;
        self.counted += earlier.counted;
        self.counted_measured += earlier.counted_measured;
        self.daemon_j += earlier.daemon_j;
    }

    /// Records one epoch: `daemon` is `None` for a run without daemon (ignored then), `local` the
    /// in-process engine's cumulative reading or why there is none.
    pub fn record(
        &mut self,
        daemon: Option<DaemonObservation>,
        local: Result<Sample, String>,
    ) -> EpochEnergy {
        self.epochs += 1;
        let local = local.and_then(|s| s.check("local"));
        if !self.with_daemon {
            return self.local_epoch(local);
        }
        let daemon = match daemon {
            Some(DaemonObservation::Continuous(s)) => match s.check("daemon") {
                Ok(s) => DaemonObservation::Continuous(s),
                Err(e) => DaemonObservation::Failed(e),
            },
            Some(DaemonObservation::Rebased { sample, why }) => match sample.check("daemon") {
                Ok(sample) => DaemonObservation::Rebased { sample, why },
                Err(e) => DaemonObservation::Failed(e),
            },
            Some(failed @ DaemonObservation::Failed(_)) => failed,
            None => DaemonObservation::Failed("no daemon reading".into()),
        };
        match daemon {
            DaemonObservation::Continuous(s) => match self.daemon_mark {
                Some(mark) => {
                    let dj = s.joules - mark.joules;
                    if dj > 0.0 {
                        let dg = (s.grams - mark.grams).max(0.0);
                        self.daemon_mark = Some(s);
                        self.local_mark = local.ok();
                        self.daemon_j += dj;
                        self.close(dj, dg, EnergySource::Daemon, s.measured, None)
                    } else if dj >= -BACKWARDS_TOLERANCE_J {
                        self.open_epoch(
                            EnergySource::Daemon,
                            s.measured,
                            "no fresh energy since the previous epoch (the daemon's total did not \
                             grow); the next epoch includes it"
                                .into(),
                        )
                    } else {
                        self.fill(
                            local,
                            Some(s),
                            format!(
                                "the daemon's total went back by {:.6} J (an unnoticed restart?)",
                                -dj
                            ),
                        )
                    }
                }
                None => self.fill(
                    local,
                    Some(s),
                    "the meter answers again; its reading spans part of the gap".into(),
                ),
            },
            DaemonObservation::Rebased { sample, why } => self.fill(local, Some(sample), why),
            DaemonObservation::Failed(e) => {
                self.fill(local, None, format!("meter unreachable: {e}"))
            }
        }
    }

    /// `--meter local`: the local increment, or an open epoch when there is none.
    fn local_epoch(&mut self, local: Result<Sample, String>) -> EpochEnergy {
        let (l, mark) = match (local, self.local_mark) {
            (Ok(l), Some(mark)) => (l, mark),
            (Ok(l), None) => {
                self.local_mark = Some(l);
                return self.open_epoch(
                    EnergySource::Local,
                    l.measured,
                    "the local meter had no earlier reading; energy counts from now".into(),
                );
            }
            (Err(e), _) => {
                return self.open_epoch(
                    EnergySource::Local,
                    false,
                    format!("local meter: {e}; the next epoch includes this one"),
                );
            }
        };
        let dj = l.joules - mark.joules;
        if dj > 0.0 {
            let dg = (l.grams - mark.grams).max(0.0);
            self.local_mark = Some(l);
            self.close(dj, dg, EnergySource::Local, l.measured, None)
        } else {
            self.open_epoch(
                EnergySource::Local,
                l.measured,
                "no fresh energy since the previous epoch; the next epoch includes it".into(),
            )
        }
    }

    /// The daemon gives no usable increment (`why`): the local engine covers the epoch, and the
    /// daemon's mark becomes `rebase` (or is dropped when there is no reading).
    fn fill(
        &mut self,
        local: Result<Sample, String>,
        rebase: Option<Sample>,
        why: String,
    ) -> EpochEnergy {
        let epoch = self.epochs;
        self.gap_epochs += 1;
        let gap_start = *self.gap_start.get_or_insert(epoch);
        let (energy, fault) = match (local, self.local_mark) {
            (Ok(l), Some(mark)) => {
                let dj = (l.joules - mark.joules).max(0.0);
                let dg = (l.grams - mark.grams).max(0.0);
                self.local_mark = Some(l);
                self.daemon_mark = rebase;
                let mut fault = format!("{why}; filled by the local estimator");
                if dj == 0.0 {
                    fault.push_str(" (which saw no fresh energy either)");
                }
                (Some((dj, dg, l.measured)), fault)
            }
            (Ok(l), None) => {
                // The local engine missed the previous epoch's end: this epoch cannot be measured
                // by it. A daemon that answers anew is re-based (the epoch is lost); one that did
                // not answer keeps its mark, so that if it comes back unbroken its increment
                // covers this epoch.
                self.local_mark = Some(l);
                if rebase.is_some() {
                    self.daemon_mark = rebase;
                }
                (
                    None,
                    format!("{why}; the local estimator has no earlier reading to fill the gap"),
                )
            }
            (Err(e), _) => {
                if rebase.is_some() {
                    self.daemon_mark = rebase;
                }
                (None, format!("{why}; the local estimator failed too: {e}"))
            }
        };
        if epoch == gap_start {
            tracing::warn!(epoch, "emissions gap starts: {fault}");
        } else {
            tracing::warn!(epoch, gap_start, "emissions gap continues: {fault}");
        }
        if rebase.is_some() {
            tracing::info!(
                epoch,
                "the meter answers again: epochs {gap_start}–{epoch} were filled by the local \
                 estimator; daemon readings count again from epoch {}",
                epoch + 1
            );
            self.gap_start = None;
        }
        match energy {
            Some((dj, dg, measured)) => {
                self.close(dj, dg, EnergySource::LocalGap, measured, Some(fault))
            }
            None => self.open_epoch(EnergySource::LocalGap, false, fault),
        }
    }

    /// An epoch closed with an increment.
    fn close(
        &mut self,
        dj: f64,
        dg: f64,
        source: EnergySource,
        measured: bool,
        fault: Option<String>,
    ) -> EpochEnergy {
        self.cumulative_j += dj;
        self.cumulative_g += dg;
        if dj > 0.0 {
            self.counted += 1;
            self.counted_measured += usize::from(measured);
        }
        EpochEnergy {
            energy_j: dj,
            co2_g: dg,
            cumulative_j: self.cumulative_j,
            cumulative_g: self.cumulative_g,
            source,
            measured,
            fault,
        }
    }

    /// The run's *tail*: what the meter charged the job after the last epoch's reading (saving
    /// that epoch's weights, unregistering; an epoch left open), from the sources' final totals
    /// (the daemon's unregistration answer, the local engine's last figures). The daemon closes
    /// it when its final totals continue its mark; else the local engine when it has a mark and
    /// final totals; else there is none. Never negative.
    pub fn tail(&self, daemon_final: Option<Sample>, local_final: Option<Sample>) -> Option<Tail> {
        let increment = |fin: Option<Sample>, mark: Option<Sample>, what: &str| {
            let (fin, mark) = (fin?.check(what).ok()?, mark?);
            (fin.joules >= mark.joules - BACKWARDS_TOLERANCE_J).then(|| {
                (
                    (fin.joules - mark.joules).max(0.0),
                    (fin.grams - mark.grams).max(0.0),
                )
            })
        };
        let from_daemon = if self.with_daemon {
            increment(daemon_final, self.daemon_mark, "daemon")
        } else {
            None
        };
        let ((energy_j, co2_g), source) = match from_daemon {
            Some(jg) => (jg, EnergySource::Daemon),
            None if self.with_daemon => (
                increment(local_final, self.local_mark, "local")?,
                EnergySource::LocalGap,
            ),
            None => (
                increment(local_final, self.local_mark, "local")?,
                EnergySource::Local,
            ),
        };
        Some(Tail {
            energy_j,
            co2_g,
            source,
        })
    }

    /// An epoch with a zero increment and a fault.
    fn open_epoch(&mut self, source: EnergySource, measured: bool, fault: String) -> EpochEnergy {
        EpochEnergy {
            energy_j: 0.0,
            co2_g: 0.0,
            cumulative_j: self.cumulative_j,
            cumulative_g: self.cumulative_g,
            source,
            measured,
            fault: Some(fault),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(j: f64) -> Sample {
        Sample::new(j, j / 10.0, true)
    }

    fn est(j: f64) -> Sample {
        Sample::new(j, j / 10.0, false)
    }

    fn cont(j: f64) -> Option<DaemonObservation> {
        Some(DaemonObservation::Continuous(s(j)))
    }

    fn failed() -> Option<DaemonObservation> {
        Some(DaemonObservation::Failed("connection refused".into()))
    }

    fn rebased(j: f64, why: &str) -> Option<DaemonObservation> {
        Some(DaemonObservation::Rebased {
            sample: s(j),
            why: why.into(),
        })
    }

    /// The invariants every sequence must keep.
    fn check(epochs: &[EpochEnergy], ledger: &Ledger) {
        let mut sum_j = 0.0;
        let mut sum_g = 0.0;
        let mut prev = 0.0;
        for e in epochs {
            assert!(e.energy_j >= 0.0 && e.co2_g >= 0.0, "{e:?}");
            sum_j += e.energy_j;
            sum_g += e.co2_g;
            assert_eq!(e.cumulative_j, sum_j, "{e:?}");
            assert_eq!(e.cumulative_g, sum_g, "{e:?}");
            assert!(e.cumulative_j >= prev);
            prev = e.cumulative_j;
        }
        assert_eq!(ledger.cumulative(), (sum_j, sum_g));
        assert_eq!(ledger.epochs(), epochs.len());
        assert_eq!(
            ledger.gap_epochs(),
            epochs
                .iter()
                .filter(|e| e.source == EnergySource::LocalGap)
                .count()
        );
    }

    fn increments(epochs: &[EpochEnergy]) -> Vec<f64> {
        epochs.iter().map(|e| e.energy_j).collect()
    }

    fn sources(epochs: &[EpochEnergy]) -> Vec<EnergySource> {
        epochs.iter().map(|e| e.source).collect()
    }

    use EnergySource::{Daemon, Local, LocalGap};

    #[test]
    fn steady_daemon_gives_the_daemon_increments() {
        let mut l = Ledger::with_daemon(s(0.0), Some(est(0.0)));
        let out: Vec<_> = [(10.0, 7.0), (25.0, 20.0), (26.0, 30.0)]
            .iter()
            .map(|&(d, loc)| l.record(cont(d), Ok(est(loc))))
            .collect();
        check(&out, &l);
        assert_eq!(increments(&out), vec![10.0, 15.0, 1.0]);
        assert_eq!(sources(&out), vec![Daemon; 3]);
        assert!(out.iter().all(|e| e.measured && e.fault.is_none()));
        assert_eq!(l.daemon_joules(), 26.0);
        assert!((l.cumulative().1 - 2.6).abs() < 1e-12);
        assert_eq!(l.all_measured(), Some(true));
    }

    #[test]
    fn a_gap_is_filled_locally_and_the_reattached_daemon_is_rebaselined() {
        // Daemon: 10, 20, down, down, 70 (re-attached, continued totals: its jump 20→70 spans
        // the gap), 80. Local: 12, 25, 40, 52, 61, 75.
        let mut l = Ledger::with_daemon(s(0.0), Some(est(0.0)));
        let out = vec![
            l.record(cont(10.0), Ok(est(12.0))),
            l.record(cont(20.0), Ok(est(25.0))),
            l.record(failed(), Ok(est(40.0))),
            l.record(failed(), Ok(est(52.0))),
            l.record(cont(70.0), Ok(est(61.0))),
            l.record(cont(80.0), Ok(est(75.0))),
        ];
        check(&out, &l);
        assert_eq!(
            sources(&out),
            vec![Daemon, Daemon, LocalGap, LocalGap, LocalGap, Daemon]
        );
        // Gap epochs: local increments 25→40, 40→52, 52→61; then the daemon from its new mark 70.
        assert_eq!(increments(&out), vec![10.0, 10.0, 15.0, 12.0, 9.0, 10.0]);
        assert_eq!(l.gap_epochs(), 3);
        assert_eq!(l.daemon_joules(), 30.0);
        for e in &out[2..4] {
            let f = e.fault.as_deref().unwrap();
            assert!(
                f.contains("meter unreachable") && f.contains("local estimator"),
                "{f}"
            );
            assert!(!e.measured, "a local estimate is not measured");
        }
        assert!(out[4].fault.as_deref().unwrap().contains("answers again"));
        assert!(out[5].fault.is_none());
        assert_eq!(l.all_measured(), Some(false));
    }

    #[test]
    fn a_daemon_restarted_from_zero_or_a_new_job_is_rebaselined() {
        // After the gap the daemon lost the job: re-registered, its totals start again from 0
        // (then 3, 9): the re-registration reading is the new mark.
        let mut l = Ledger::with_daemon(s(0.0), Some(est(0.0)));
        let out = vec![
            l.record(cont(5.0), Ok(est(4.0))),
            l.record(failed(), Ok(est(10.0))),
            l.record(
                rebased(0.0, "the meter lost job 1; re-registered as job 2"),
                Ok(est(13.0)),
            ),
            l.record(cont(3.0), Ok(est(20.0))),
            l.record(cont(9.0), Ok(est(22.0))),
        ];
        check(&out, &l);
        assert_eq!(
            sources(&out),
            vec![Daemon, LocalGap, LocalGap, Daemon, Daemon]
        );
        assert_eq!(increments(&out), vec![5.0, 6.0, 3.0, 3.0, 6.0]);
        assert!(out[2].fault.as_deref().unwrap().contains("re-registered"));

        // A restart noticed without a failed read (the client reconnected within the read): the
        // reading after it is re-based, whatever its value (here below the old mark).
        let mut l = Ledger::with_daemon(s(0.0), Some(est(0.0)));
        let out = vec![
            l.record(cont(50.0), Ok(est(40.0))),
            l.record(rebased(45.0, "the meter restarted"), Ok(est(47.0))),
            l.record(cont(49.0), Ok(est(55.0))),
        ];
        check(&out, &l);
        assert_eq!(sources(&out), vec![Daemon, LocalGap, Daemon]);
        assert_eq!(increments(&out), vec![50.0, 7.0, 4.0]);
    }

    #[test]
    fn a_daemon_that_did_not_grow_is_a_fault_and_the_next_epoch_includes_it() {
        let mut l = Ledger::with_daemon(s(0.0), Some(est(0.0)));
        let out = vec![
            l.record(cont(10.0), Ok(est(9.0))),
            l.record(cont(10.0), Ok(est(14.0))),
            l.record(cont(18.0), Ok(est(20.0))),
            // Stale again, then a gap: the local fill covers both open epochs (from 20).
            l.record(cont(18.0), Ok(est(24.0))),
            l.record(failed(), Ok(est(31.0))),
        ];
        check(&out, &l);
        assert_eq!(
            sources(&out),
            vec![Daemon, Daemon, Daemon, Daemon, LocalGap]
        );
        assert_eq!(increments(&out), vec![10.0, 0.0, 8.0, 0.0, 11.0]);
        assert!(out[1].fault.as_deref().unwrap().contains("no fresh energy"));
        assert!(out[3].fault.is_some());
    }

    #[test]
    fn a_daemon_total_that_goes_back_is_treated_as_a_restart() {
        let mut l = Ledger::with_daemon(s(0.0), Some(est(0.0)));
        let out = vec![
            l.record(cont(10.0), Ok(est(10.0))),
            l.record(cont(4.0), Ok(est(16.0))),
            l.record(cont(9.0), Ok(est(30.0))),
        ];
        check(&out, &l);
        assert_eq!(sources(&out), vec![Daemon, LocalGap, Daemon]);
        assert_eq!(increments(&out), vec![10.0, 6.0, 5.0]);
        assert!(out[1].fault.as_deref().unwrap().contains("went back"));
    }

    #[test]
    fn without_a_local_reading_the_gap_stays_open_until_the_daemon_covers_it() {
        let mut l = Ledger::with_daemon(s(0.0), None);
        let out = vec![
            l.record(cont(10.0), Err("no local meter".into())),
            l.record(failed(), Err("no local meter".into())),
            // Same daemon instance (no restart): its increment covers the open epoch too.
            l.record(cont(30.0), Err("no local meter".into())),
        ];
        check(&out, &l);
        assert_eq!(sources(&out), vec![Daemon, LocalGap, Daemon]);
        assert_eq!(increments(&out), vec![10.0, 0.0, 20.0]);
        assert!(out[1].fault.as_deref().unwrap().contains("failed too"));
    }

    #[test]
    fn a_resumed_ledger_continues_the_earlier_totals() {
        let mut first = Ledger::local(est(1.0));
        let a = first.record(None, Ok(est(3.0)));
        let earlier = first.totals();
        assert_eq!(
            (earlier.cumulative_j, earlier.epochs, earlier.counted),
            (2.0, 1, 1)
        );
        // The new process reads its own meter from zero; its increments add to the carried totals.
        let mut second = Ledger::local(est(0.0));
        second.carry_over(earlier);
        let b = second.record(None, Ok(est(4.0)));
        assert_eq!(
            (a.cumulative_j, b.energy_j, b.cumulative_j),
            (2.0, 4.0, 6.0)
        );
        assert_eq!(second.cumulative().0, 6.0);
        assert_eq!(second.epochs(), 2);
        assert_eq!(second.all_measured(), Some(false));
        assert_eq!(second.totals().counted, 2);
    }

    #[test]
    fn local_mode_counts_local_increments_and_keeps_stale_epochs_open() {
        let mut l = Ledger::local(est(1.0));
        let out = vec![
            l.record(None, Ok(est(3.0))),
            l.record(None, Ok(est(3.0))),
            l.record(None, Err("sampler stopped".into())),
            l.record(None, Ok(est(8.5))),
        ];
        check(&out, &l);
        assert_eq!(sources(&out), vec![Local; 4]);
        assert_eq!(increments(&out), vec![2.0, 0.0, 0.0, 5.5]);
        assert!(out[1].fault.is_some() && out[2].fault.is_some());
        assert!(out[3].fault.is_none() && !out[3].measured);
        assert_eq!(l.gap_epochs(), 0);
        assert_eq!(l.all_measured(), Some(false));
    }

    #[test]
    fn non_numbers_are_faults_not_figures() {
        let mut l = Ledger::with_daemon(s(0.0), Some(est(0.0)));
        let out = vec![
            l.record(cont(f64::NAN), Ok(est(2.0))),
            l.record(cont(5.0), Ok(est(4.0))),
            l.record(cont(7.0), Ok(est(f64::INFINITY))),
            l.record(failed(), Ok(est(9.0))),
        ];
        check(&out, &l);
        // NaN → gap filled locally (0→2); 5 → re-based; 7 → daemon 2, local unknown; failed →
        // no local mark: open.
        assert_eq!(increments(&out), vec![2.0, 2.0, 2.0, 0.0]);
        assert_eq!(sources(&out), vec![LocalGap, LocalGap, Daemon, LocalGap]);
    }

    fn tail_j(t: Option<Tail>) -> Option<(f64, EnergySource)> {
        t.map(|t| (t.energy_j, t.source))
    }

    #[test]
    fn the_tail_is_what_the_daemon_charged_after_the_last_reading() {
        let mut l = Ledger::with_daemon(s(0.0), Some(est(0.0)));
        l.record(cont(10.0), Ok(est(9.0)));
        l.record(cont(20.0), Ok(est(18.0)));
        // The unregistration answer says 22 J: 2 J after the last epoch's reading.
        assert_eq!(
            tail_j(l.tail(Some(s(22.0)), Some(est(21.0)))),
            Some((2.0, Daemon))
        );
        let t = l.tail(Some(s(22.0)), None).unwrap();
        assert!((t.co2_g - 0.2).abs() < 1e-12, "{t:?}");
        // No answer, or one that does not continue the mark (a re-registered job): the local
        // engine's final totals close it.
        assert_eq!(tail_j(l.tail(None, Some(est(21.0)))), Some((3.0, LocalGap)));
        assert_eq!(
            tail_j(l.tail(Some(s(1.0)), Some(est(21.0)))),
            Some((3.0, LocalGap))
        );
        assert_eq!(tail_j(l.tail(Some(s(f64::NAN)), None)), None);
        assert_eq!(tail_j(l.tail(None, None)), None);
        // A local engine that went backwards gives no tail rather than a negative one.
        assert_eq!(tail_j(l.tail(None, Some(est(5.0)))), None);
    }

    #[test]
    fn an_epoch_left_open_at_the_end_goes_to_the_tail() {
        let mut l = Ledger::with_daemon(s(0.0), Some(est(0.0)));
        l.record(cont(10.0), Ok(est(9.0)));
        let stale = l.record(cont(10.0), Ok(est(9.5)));
        assert_eq!(stale.energy_j, 0.0);
        assert_eq!(tail_j(l.tail(Some(s(14.0)), None)), Some((4.0, Daemon)));
        // --meter local: the local engine's final figures.
        let mut l = Ledger::local(est(0.0));
        l.record(None, Ok(est(5.0)));
        assert_eq!(
            tail_j(l.tail(Some(s(99.0)), Some(est(6.5)))),
            Some((1.5, Local))
        );
    }

    #[test]
    fn energy_source_serialises_in_kebab_case() {
        assert_eq!(
            serde_json::to_string(&EnergySource::LocalGap).unwrap(),
            "\"local-gap\""
        );
        assert_eq!(serde_json::to_string(&Daemon).unwrap(), "\"daemon\"");
    }
}
