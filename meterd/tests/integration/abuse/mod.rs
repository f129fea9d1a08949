//! The adversarial suite (issue 27): the real `anges-meterd` binary in system mode, attacked by
//! clients that run under other uids through `setpriv`, as two users of a shared machine would.
//!
//! The test process runs as root (as CI does). [`SystemDaemon::start`] runs the daemon in system
//! mode with its socket, state and configuration in a temporary folder, then opens the socket to
//! every uid (`0666`, standing in for membership of the group `anges`). [`as_uid`] runs a program
//! under [`ALICE`] or [`BOB`], two uids without a passwd entry and without supplementary groups.
//!
//! One module per attack; each test fails on a daemon without the matching defence.

// One module per attack (item numbers of issue 27 in each module doc).
mod crash;
mod flood;
mod metrics;
mod pools;
mod protocol;
mod run_without_daemon;
mod shares;
mod stall;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anges_common::client::{Client, ClientConfig};

/// The honest user.
pub const ALICE: u32 = 61001;
/// The attacker.
pub const BOB: u32 = 61002;

/// `program args…` under `uid` (same gid, no supplementary groups).
pub fn as_uid(uid: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid",
        &uid.to_string(),
        "--regid",
        &uid.to_string(),
        "--clear-groups",
        "--",
    ])
    .arg(program);
    cmd
}

/// The real `anges-meter` CLI under `uid`, talking to `socket`.
pub fn meter_cli(uid: u32, socket: &Path) -> Command {
    let mut cmd = as_uid(uid, env!("CARGO_BIN_EXE_anges-meter"));
    cmd.arg("--socket").arg(socket);
    cmd
}

/// A real `anges-meterd` in system mode, with its files in a temporary folder.
pub struct SystemDaemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    socket: PathBuf,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl SystemDaemon {
    /// Starts the daemon (estimated sensor, no GPU, no D-Bus) with `config_toml` as its
    /// configuration file and `extra_args` after the standard flags; waits until the socket
    /// answers.
    pub fn start(config_toml: &str, extra_args: &[&str]) -> Self {
        let dir = daemon_folder(config_toml);
        let socket = dir.path().join("meter.sock");
        let (_, lines) = mpsc::channel();
        let mut daemon = SystemDaemon {
            child: None,
            dir,
            socket,
            lines,
            log: Vec::new(),
        };
        daemon.spawn(extra_args);
        daemon
    }

    /// Starts the daemon again on the same folder, state and configuration (after
    /// [`SystemDaemon::kill9`] or a crash); the log continues.
    pub fn restart(&mut self, extra_args: &[&str]) {
        assert!(self.child.is_none(), "stop the daemon first");
        self.spawn(extra_args);
    }

    fn spawn(&mut self, extra_args: &[&str]) {
        let mut child = daemon_command(self.dir.path())
            .arg("--socket")
            .arg(&self.socket)
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn anges-meterd");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.child = Some(child);
        self.lines = lines;
        self.wait_for_socket();
        std::fs::set_permissions(&self.socket, std::fs::Permissions::from_mode(0o666))
            .expect("open the socket to the test uids");
    }

    fn wait_for_socket(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            self.drain_log();
            if let Some(status) = self.child_mut().try_wait().expect("wait on the daemon") {
                panic!(
                    "anges-meterd exited at start ({status}); log:\n{}",
                    self.log.join("\n")
                );
            }
            if Client::connect(ClientConfig::socket(&self.socket)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("anges-meterd never answered; log:\n{}", self.log.join("\n"));
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the daemon is running")
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon is running").id()
    }

    /// A client as root (the test process itself).
    pub fn root_client(&self) -> Client {
        Client::connect(ClientConfig::socket(&self.socket)).expect("connect as root")
    }

    /// Moves the daemon's log lines received so far into [`SystemDaemon::log`].
    pub fn drain_log(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
    }

    /// Every log line received so far.
    pub fn log(&mut self) -> &[String] {
        self.drain_log();
        &self.log
    }

    /// Waits up to `timeout` for a log line containing `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        self.drain_log();
        if self.log.iter().any(|l| l.contains(needle)) {
            return true;
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.log.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Resident memory of the daemon, KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the daemon's status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// CPU time the daemon has used (user + system, all threads), seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read the daemon's stat");
        let after = &stat[stat.rfind(')').expect("comm in stat") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks as f64 / hz
    }

    /// `kill -9`, then waits for the process; the folder stays for a restart.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the daemon is running");
        child.kill().expect("SIGKILL the daemon");
        let _ = child.wait();
        self.drain_log();
    }
}

impl Drop for SystemDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A process of `uid` that sleeps until killed (killed on drop).
pub struct UserProcess(pub Child);

impl UserProcess {
    /// Runs `sh -c script` under `uid`, and returns once the process runs as `uid`, exec'd: until `setpriv` has changed its uids and exec'd, the PID is root's, and the
    /// daemon rightly refuses to let `uid` register it (a race a loaded machine loses).
    pub fn shell(uid: u32, script: &str) -> Self {
        let child = as_uid(uid, "sh")
            .args(["-c", script])
            .stdout(Stdio::null())
            .spawn()
            .expect("setpriv (util-linux) must be installed");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let ready = || {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let real_uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned));
            // (The shell may exec a lone command itself: any program but setpriv will do.)
            !matches!(comm.trim(), "" | "setpriv") && real_uid == Some(uid.to_string())
        };
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "sh under uid {uid} did not start"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        UserProcess(child)
    }

    /// Its PID (`setpriv` execs, so this is the shell's).
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for UserProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The harness itself: a second uid reaches the system daemon and registers its own process,
/// and root sees that uid's job.
#[test]
fn a_second_uid_registers_its_own_process_with_the_system_daemon() {
    let daemon = SystemDaemon::start("", &[]);
    let sleeper = UserProcess::shell(ALICE, "exec sleep 30");
    let out = meter_cli(ALICE, daemon.socket())
        .args(["attach", "--name", "alice-sleep", "--pid"])
        .arg(sleeper.pid().to_string())
        .output()
        .expect("setpriv (util-linux) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs = daemon.root_client().jobs().expect("root lists every job");
    assert!(
        jobs.iter()
            .any(|j| j.job.name == "alice-sleep" && j.job.owner_uid == ALICE),
        "{jobs:?}"
    );
}

/// A temporary folder for a daemon (mode 0755) holding `config_toml` as `meterd.toml`.
pub fn daemon_folder(config_toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the temporary folder");
    std::fs::write(dir.path().join("meterd.toml"), config_toml).expect("write the configuration");
    dir
}

/// The daemon's command line on a [`daemon_folder`] `dir`, as [`SystemDaemon::start`] runs it
/// but without `--socket`: configuration `dir/meterd.toml`, state `dir/state`, estimated
/// sensor, no GPU, no D-Bus, `ANGES_METER_SOCKET` and `NOTIFY_SOCKET` unset, `info` logs.
pub fn daemon_command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anges-meterd"));
    cmd.arg("--config")
        .arg(dir.join("meterd.toml"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--sensor", "estimate", "--gpus", "none", "--no-dbus"])
        .env_remove("NOTIFY_SOCKET")
        .env_remove("ANGES_METER_SOCKET")
        .env("ANGES_LOG", "info");
    cmd
}

/// How a daemon that was expected to refuse to start ended.
#[derive(Debug)]
pub struct FailedStart {
    /// Its exit status.
    pub status: std::process::ExitStatus,
    /// Everything it wrote on stderr.
    pub stderr: String,
}

impl SystemDaemon {
    /// Runs the daemon exactly as [`SystemDaemon::start`] would (system mode unless
    /// `extra_args` says `--user`), expecting it to exit at start; panics if it is still
    /// running after `timeout` (then killed) or if its socket answers.
    pub fn start_expecting_exit(
        config_toml: &str,
        extra_args: &[&str],
        timeout: Duration,
    ) -> FailedStart {
        let dir = daemon_folder(config_toml);
        let socket = dir.path().join("meter.sock");
        let log = dir.path().join("stderr.log");
        let mut child = daemon_command(dir.path())
            .arg("--socket")
            .arg(&socket)
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the stderr log"))
            .spawn()
            .expect("spawn anges-meterd");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait on the daemon") {
                break status;
            }
            if Instant::now() >= deadline || Client::connect(ClientConfig::socket(&socket)).is_ok()
            {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "anges-meterd did not refuse to start; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        FailedStart {
            status,
            stderr: std::fs::read_to_string(&log).expect("read the stderr log"),
        }
    }
}

/// `anges-meter-loadgen` (the attack tool) under `uid`, aimed at `socket`.
pub fn loadgen(uid: u32, socket: &Path) -> Command {
    let mut cmd = as_uid(uid, env!("CARGO_BIN_EXE_anges-meter-loadgen"));
    cmd.arg("--socket").arg(socket);
    cmd
}

/// A running `anges-meter-loadgen` whose summary lines are read as they come (killed on drop).
pub struct Attack {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Attack {
    /// Starts `loadgen(uid, socket) args…`.
    pub fn start(uid: u32, socket: &Path, args: &[&str]) -> Self {
        let mut child = loadgen(uid, socket)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("setpriv (util-linux) must be installed");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Attack { child, lines }
    }

    /// The next summary line, waiting up to `timeout`.
    pub fn line(&mut self, timeout: Duration) -> String {
        self.lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no line from anges-meter-loadgen within {timeout:?}: {e}"))
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `key=value` in a loadgen summary line.
pub fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

impl SystemDaemon {
    /// Peak resident memory of the daemon since it started, KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the daemon's status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }
}
