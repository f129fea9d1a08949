//! Helpers for the end-to-end tests: locating the workspace's binaries and shared inputs.
//!
//! The tests run the real `anges-meterd` and `anges-train` executables that Cargo built for the
//! same profile as the test itself (`target/<profile>/`). When one is missing (e.g. only this
//! package's tests were asked for), it is built with the same Cargo and profile first.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Failure to find or build a workspace binary.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// The test executable's own path could not be read.
    #[error("cannot locate the test executable: {0}")]
    CurrentExe(#[source] std::io::Error),
    /// Building the missing binary failed.
    #[error("building {bin} failed: {detail}")]
    Build {
        /// The binary that was being built.
        bin: String,
        /// What went wrong.
        detail: String,
    },
}

/// `target/<profile>` of the running test executable (`target/<profile>/deps/<test>`).
pub fn profile_dir() -> Result<PathBuf, LocateError> {
    let exe = std::env::current_exe().map_err(LocateError::CurrentExe)?;
    let deps = exe.parent().unwrap_or(Path::new("."));
    Ok(deps.parent().unwrap_or(deps).to_path_buf())
}

/// Path of the workspace binary `bin` from package `package`, built for this test's profile.
pub fn binary(package: &str, bin: &str) -> Result<PathBuf, LocateError> {
    let dir = profile_dir()?;
    let path = dir.join(bin);
    if path.is_file() {
        return Ok(path);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", package, "--bin", bin]);
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(|e| LocateError::Build {
        bin: bin.to_owned(),
        detail: e.to_string(),
    })?;
    if !status.success() || !path.is_file() {
        return Err(LocateError::Build {
            bin: bin.to_owned(),
            detail: format!("cargo: {status}"),
        });
    }
    Ok(path)
}

/// The repository root (parent of this package's folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new(".."))
        .to_path_buf()
}

/// `../shared` beside the repository: datasets, checkpoints and corpora the tests read.
pub fn shared_dir() -> PathBuf {
    repo_root()
        .parent()
        .unwrap_or(Path::new(".."))
        .join("shared")
}

/// Failure of a fixture or of a daemon started for a test.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The binary could not be found or built.
    #[error(transparent)]
    Locate(#[from] LocateError),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The daemon did not listen on its socket in time.
    #[error("anges-meterd never listened on {0}")]
    NeverListened(PathBuf),
    /// The daemon did not exit cleanly when asked to.
    #[error("anges-meterd exited with {0}")]
    BadExit(std::process::ExitStatus),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FixtureError {
    let what = what.into();
    move |source| FixtureError::Io { what, source }
}

/// A sysfs/procfs tree for `anges-meterd --sysfs-root`: one powercap package zone
/// (`sys/class/powercap/intel-rapl:0`, range 262143328850 µJ) whose counter the test sets, and
/// the real `/proc` linked in (so that jobs are real processes).
#[derive(Debug)]
pub struct PowercapFixture {
    root: PathBuf,
}

impl PowercapFixture {
    /// Creates the tree under `dir` with the counter at 1 000 000 µJ.
    pub fn new(dir: &Path) -> Result<PowercapFixture, FixtureError> {
        let zone = dir.join("sys/class/powercap/intel-rapl:0");
        std::fs::create_dir_all(&zone).map_err(io_err(zone.display().to_string()))?;
        std::fs::write(zone.join("name"), "package-0\n").map_err(io_err("zone name"))?;
        std::fs::write(zone.join("max_energy_range_uj"), "262143328850\n")
            .map_err(io_err("zone range"))?;
        std::os::unix::fs::symlink("/proc", dir.join("proc")).map_err(io_err("link /proc"))?;
        let f = PowercapFixture {
            root: dir.to_owned(),
        };
        f.set_uj(1_000_000)?;
        Ok(f)
    }

    /// The tree's root (the daemon's `--sysfs-root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Sets the package counter to `uj` microjoules.
    pub fn set_uj(&self, uj: u64) -> Result<(), FixtureError> {
        let path = self.root.join("sys/class/powercap/intel-rapl:0/energy_uj");
        // The daemon keeps the counter open and re-reads it (as it does on real sysfs), so the
        // file is rewritten in place, never replaced; a fixed width with one write(2) keeps every
        // read whole.
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(path.display().to_string()))?;
        file.write_all(format!("{uj:020}\n").as_bytes())
            .map_err(io_err(path.display().to_string()))
    }
}

/// A real `anges-meterd --user` reading a [`PowercapFixture`], with its home, config, state and
/// runtime folders under one test folder; killed when dropped.
#[derive(Debug)]
pub struct MeterDaemon {
    child: std::process::Child,
    socket: PathBuf,
}

impl MeterDaemon {
    /// Starts the daemon with `HOME=home` (`XDG_CONFIG_HOME=home/config`, `XDG_STATE_HOME=
    /// home/state`, `XDG_RUNTIME_DIR=home/run`) on the fixture tree `sysfs`: powercap sensor, no
    /// GPU, no D-Bus, 200 Hz sampling, 20 ms publications, 100 g/kWh; `extra` flags are appended.
    /// Waits until the socket accepts connections.
    pub fn start(home: &Path, sysfs: &Path, extra: &[&str]) -> Result<MeterDaemon, FixtureError> {
        let bin = binary("anges-meterd", "anges-meterd")?;
        let run = home.join("run");
        std::fs::create_dir_all(&run).map_err(io_err(run.display().to_string()))?;
        let child = Command::new(bin)
            .args([
                "--user",
                "--no-dbus",
                "--sensor",
                "powercap",
                "--gpus",
                "none",
                "--rate-hz",
                "200",
                "--publish-interval-ms",
                "20",
                "--intensity",
                "100",
            ])
            .arg("--sysfs-root")
            .arg(sysfs)
            .args(extra)
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_STATE_HOME", home.join("state"))
            .env("XDG_RUNTIME_DIR", &run)
            .env_remove("ANGES_METER_SOCKET")
            .env("ANGES_LOG", "info")
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .map_err(io_err("spawn anges-meterd"))?;
        let mut daemon = MeterDaemon {
            child,
            socket: run.join("anges/meterd.sock"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&daemon.socket).is_err() {
            let exited = daemon.child.try_wait().ok().flatten();
            if exited.is_some() || std::time::Instant::now() >= deadline {
                return Err(FixtureError::NeverListened(daemon.socket.clone()));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(daemon)
    }

    /// The daemon's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and a clean exit (totals persisted).
    pub fn stop(mut self) -> Result<(), FixtureError> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .map_err(io_err("kill -TERM"))?;
        if !status.success() {
            return Err(FixtureError::BadExit(status));
        }
        let status = self.child.wait().map_err(io_err("wait for anges-meterd"))?;
        if status.success() {
            Ok(())
        } else {
            Err(FixtureError::BadExit(status))
        }
    }

    /// SIGKILL (nothing persisted since the last periodic save), and reaps the process.
    pub fn kill(mut self) -> Result<(), FixtureError> {
        self.child.kill().map_err(io_err("kill anges-meterd"))?;
        self.child
            .wait()
            .map_err(io_err("wait for anges-meterd"))
            .map(drop)
    }
}

impl Drop for MeterDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Advances a [`PowercapFixture`]'s counter at a constant power, in steps every 20 ms, until
/// dropped; [`pause`](Self::pause) freezes it (a machine drawing nothing).
#[derive(Debug)]
pub struct PowerFeed {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PowerFeed {
    /// Starts feeding `watts` into `fixture` (from its initial 1 000 000 µJ).
    pub fn start(fixture: std::sync::Arc<PowercapFixture>, watts: f64) -> PowerFeed {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let paused = std::sync::Arc::new(AtomicBool::new(false));
        let (s, p) = (stop.clone(), paused.clone());
        let step_uj = (watts * 0.02 * 1e6) as u64;
        let thread = std::thread::spawn(move || {
            let mut uj = 1_000_000u64;
            while !s.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(20));
                if !p.load(Ordering::SeqCst) {
                    uj += step_uj;
                    // A test whose folder is already gone just stops feeding.
                    if fixture.set_uj(uj).is_err() {
                        return;
                    }
                }
            }
        });
        PowerFeed {
            stop,
            paused,
            thread: Some(thread),
        }
    }

    /// Freezes (`true`) or resumes (`false`) the counter.
    pub fn pause(&self, paused: bool) {
        self.paused
            .store(paused, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for PowerFeed {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Burns one CPU for `d` (a test's stand-in for training work).
pub fn burn(d: std::time::Duration) {
    let end = std::time::Instant::now() + d;
    let mut x = 0u64;
    while std::time::Instant::now() < end {
        for i in 0..10_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
}
