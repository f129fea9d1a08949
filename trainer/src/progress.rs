//! Progress bars on the terminal, and the log writer that keeps them intact.
//!
//! Every bar of the process (the whole run's, [`run_bar`], and a training pass's) lives in one
//! [`MultiProgress`] drawn on stderr, and only when stderr is a terminal and INFO logs are shown
//! (not under `anges-train -q`): in a file, a pipe or a quiet run they are hidden and write
//! nothing. Log lines go through [`StderrWriter`], which lifts the bars off the screen while a
//! line is written, so that a log line never lands in the middle of a bar.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressFinish, ProgressStyle};

/// The process's bars, drawn together on stderr (created with the first bar shown).
static BARS: OnceLock<MultiProgress> = OnceLock::new();

fn bars() -> &'static MultiProgress {
    BARS.get_or_init(MultiProgress::new)
}

/// Whether bars are drawn: stderr is a terminal and INFO-level lines are shown.
pub fn shown() -> bool {
    std::io::stderr().is_terminal() && tracing::enabled!(tracing::Level::INFO)
}

/// `bar` drawn with the process's other bars when they are [`shown`], else a hidden bar.
pub fn attach(bar: ProgressBar) -> ProgressBar {
    if shown() {
        bars().add(bar)
    } else {
        ProgressBar::hidden()
    }
}

/// The whole run's bar: epochs `first..=last` out of `last` (a resumed run starts part way),
/// with the elapsed time and the estimated time left. It clears itself when dropped (the run
/// ended or failed).
pub fn run_bar(first: usize, last: usize) -> ProgressBar {
    let bar = ProgressBar::new(last as u64)
        .with_position(first.saturating_sub(1) as u64)
        .with_finish(ProgressFinish::AndClear);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] epoch {pos}/{len}, ETA {eta} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let bar = attach(bar);
    // Drawn at once, and its elapsed time kept current through long epochs.
    if !bar.is_hidden() {
        bar.enable_steady_tick(Duration::from_secs(1));
    }
    bar
}

/// stderr for log lines, with the bars lifted while a line is written (a `tracing-subscriber`
/// writer: `fmt().with_writer(|| StderrWriter)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrWriter;

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match BARS.get() {
            Some(bars) => bars.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
