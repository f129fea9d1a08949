//! Offline replay (`anges-train replay RUN_DIR`): the policies of [`anges_tracking::replay`]
//! applied to a logged run of the trainer, whose `summary.json` is read whole ([`Summary`]).
//!
//! The replay itself (loading `epochs.jsonl`, the policies over the `(P_i, E_i)` trajectory,
//! the trade-off of docs/spec.md §1.9, the parameter grid and the table) lives in the
//! `anges-tracking` crate, which the Python package shares; this module names the trainer's
//! [`LoggedRun`] (for `evaluate` and `study`, which read its summary) and checks that the runs
//! committed under docs/results still replay.

use crate::train::Summary;
pub use anges_tracking::replay::{
    Outcome, ReplayError, ReplayGrid, RunSummary, SummaryHead, format_table, grid, replay,
    replay_within, tradeoff,
};
use anges_tracking::{metrics::Metric, policy::StopPolicy};

/// A logged run of the trainer: its whole summary (when it finished) and its epochs.
pub type LoggedRun = anges_tracking::replay::LoggedRun<Summary>;

impl RunSummary for Summary {
    fn metric(&self) -> Metric {
        self.metric
    }
    fn stop(&self) -> StopPolicy {
        self.stop
    }
}

/// `anges-train replay`: loads the run and replays every policy of the grid. It reads only the
/// [`SummaryHead`] of `summary.json`, so that it replays the runs of the Python package too
/// (whose summaries are not the trainer's).
pub fn run_replay(
    run_dir: &std::path::Path,
    args: &ReplayGrid,
) -> Result<(anges_tracking::replay::LoggedRun, Vec<Outcome>), ReplayError> {
    anges_tracking::replay::run_replay(run_dir, args)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// The run folders committed under docs/results (written by earlier versions of the
    /// trainer) still read, migrate and replay to the figures they were published with: their
    /// `summarize` table is byte-for-byte the committed `runs.csv`, and replaying each run's own
    /// policy stops where it stopped and delivers its summary's epoch, test metric and CO2.
    #[test]
    fn committed_runs_replay_to_their_published_figures() {
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/results");
        let runs = results.join("runs");
        let found = crate::report::runs::find_runs(std::slice::from_ref(&runs)).unwrap();
        assert!(found.skipped.is_empty(), "{:?}", found.skipped);
        assert!(found.summaries.len() >= 21, "{}", found.summaries.len());
        let groups = crate::report::runs::group_runs(&found.rows());
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("runs.csv");
        crate::report::runs::write_csv(&groups, &csv).unwrap();
        assert_eq!(
            std::fs::read_to_string(&csv).unwrap(),
            std::fs::read_to_string(results.join("runs.csv")).unwrap(),
            "summarize no longer reproduces docs/results/runs.csv"
        );

        let mut folders: Vec<PathBuf> = std::fs::read_dir(&runs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        folders.extend(
            std::fs::read_dir(results.join("partial"))
                .unwrap()
                .map(|e| e.unwrap().path()),
        );
        for folder in folders {
            let run = LoggedRun::load(&folder).unwrap();
            let config: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(folder.join("config.json")).unwrap())
                    .unwrap();
            let migrated = crate::config::legacy::recorded_config(&config)
                .unwrap_or_else(|e| panic!("{}: {e}", folder.display()));
            let Some(summary) = &run.summary else {
                // A run cut short (docs/results/partial): its log replays all the same.
                let out = replay(&run, migrated.stop);
                assert_eq!(out.stop_epoch, run.epochs.len(), "{}", folder.display());
                continue;
            };
            assert_eq!(migrated.stop.kind(), summary.stop, "{}", folder.display());
            let name = folder.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.ends_with(&format!("-s{}", migrated.data.seed)),
                "{name}"
            );
            let own = summary.policy.unwrap_or(migrated.stop);
            let out = replay(&run, own);
            assert_eq!(out.stop_epoch, summary.epochs_run, "{}", folder.display());
            assert_eq!(out.best_epoch, summary.best_epoch, "{}", folder.display());
            assert_eq!(
                out.test_metric,
                summary.best_test.get(summary.metric),
                "{}",
                folder.display()
            );
            assert_eq!(
                out.co2_g,
                run.epochs.last().and_then(|e| e.cumulative_co2_g),
                "{}",
                folder.display()
            );
        }
    }
}
