//! End to end, a campaign as a Slurm job array: `scripts/results --slurm` writes the batch script
//! of two 1-epoch BACE runs, and the test submits it to a real single-node Slurm that it starts
//! itself (Debian's `munged`, `slurmctld -D` and `slurmd -D` on a private configuration, ports and
//! munge socket in a temporary folder), beside a user-mode `anges-meterd` on a fixture powercap
//! tree as the node's meter. Both tasks must finish with complete run folders whose energy came
//! from the node's daemon (`--meter auto` found it through `ANGES_METER_SOCKET`, which `sbatch`
//! passes on to the tasks), and a second `--slurm` must find nothing left to run.
//!
//! Slurm missing is a failure that says to run `scripts/setup`, never a silent skip. Every daemon
//! the test starts is stopped when it ends, pass or fail (the array cancelled first).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anges_e2e::{MeterDaemon, PowerFeed, PowercapFixture};
use serde_json::Value;

/// Longest the two tasks may take, queueing included (each is ≈ 20 s on 2 busy cores).
const ARRAY_DEADLINE: Duration = Duration::from_secs(240);
/// Longest a daemon may take to come up.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// A Slurm or munge program: on `PATH`, else in `/usr/sbin` or `/sbin` (where Debian puts the
/// daemons, off a user's `PATH`). Missing means the machine was not set up: the test fails.
fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: run scripts/setup (it installs Debian's slurm-wlm \
                 and munge, which this test needs)"
            )
        })
}

/// A free TCP port on the loopback interface (free when asked; Slurm binds it moments later).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// The output of a command that must succeed.
fn ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The last `n` lines of a file, for failure messages.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A daemon in the foreground, its stdout and stderr in a log file; SIGTERM, then SIGKILL after
/// 5 s, when dropped.
struct Daemon {
    name: &'static str,
    child: Child,
}

impl Daemon {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Daemon {
        let file = fs::File::create(log).expect("daemon log");
        let err = file.try_clone().expect("daemon log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Daemon { name, child }
    }

    /// Fails the test (with the daemon's log) if the daemon has exited.
    fn check_alive(&mut self, log: &Path) {
        if let Some(status) = self.child.try_wait().expect("wait") {
            panic!("{} exited: {status}\n{}", self.name, tail(log, 30));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet (so not reused).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A single-node Slurm (this host, all its CPUs as one partition) on a private configuration in
/// `dir`. Dropped in order: the array cancelled, then slurmd, slurmctld and munged.
struct Cluster {
    conf: PathBuf,
    dir: PathBuf,
    /// The job submitted, cancelled on drop.
    job: Option<String>,
    slurmd: Option<Daemon>,
    slurmctld: Option<Daemon>,
    _munged: Daemon,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let (munged, slurmctld, slurmd) =
            (program("munged"), program("slurmctld"), program("slurmd"));
        // munged wants its socket's folder (and the folders above) searchable by all, its key
        // private.
        fs::create_dir_all(dir).expect("slurm folder");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let munge = dir.join("munge");
        fs::create_dir(&munge).expect("munge folder");
        fs::set_permissions(&munge, fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut key = vec![0u8; 1024];
        use std::io::Read;
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .expect("munge key");
        let key_file = munge.join("munge.key");
        fs::write(&key_file, &key).expect("munge key");
        fs::set_permissions(&key_file, fs::Permissions::from_mode(0o400)).expect("chmod key");
        let socket = munge.join("munge.sock");
        let munged_log = dir.join("munged.log");
        let mut munged = Daemon::spawn(
            "munged",
            Command::new(munged)
                .arg("--foreground")
                .arg(format!("--key-file={}", key_file.display()))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--pid-file={}", munge.join("munged.pid").display()))
                .arg(format!(
                    "--seed-file={}",
                    munge.join("munged.seed").display()
                ))
                .arg(format!(
                    "--log-file={}",
                    munge.join("munged.file.log").display()
                )),
            &munged_log,
        );
        let deadline = Instant::now() + START_DEADLINE;
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            munged.check_alive(&munged_log);
            assert!(
                Instant::now() < deadline,
                "munged never listened on {socket:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }

        let conf = dir.join("slurm.conf");
        fs::write(&conf, slurm_conf(dir, &socket)).expect("slurm.conf");
        for sub in ["state", "spool"] {
            fs::create_dir(dir.join(sub)).expect("slurm folder");
        }
        let mut cluster = Cluster {
            conf: conf.clone(),
            dir: dir.to_owned(),
            job: None,
            slurmd: None,
            slurmctld: None,
            _munged: munged,
        };
        cluster.slurmctld = Some(Daemon::spawn(
            "slurmctld",
            Command::new(slurmctld)
                .arg("-D")
                .arg("-f")
                .arg(&conf)
                .env("SLURM_CONF", &conf),
            &dir.join("slurmctld.out"),
        ));
        cluster.slurmd = Some(Daemon::spawn(
            "slurmd",
            Command::new(slurmd)
                .arg("-D")
                .arg("-f")
                .arg(&conf)
                .args(["-N", NODE])
                .env("SLURM_CONF", &conf),
            &dir.join("slurmd.out"),
        ));
        // Up when the node is idle (slurmd registered with slurmctld).
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let state = cluster
                .command("sinfo")
                .args(["-h", "-n", NODE, "-o", "%T"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            if state == "idle" {
                break;
            }
            for (daemon, log) in [
                (&mut cluster.slurmctld, "slurmctld.out"),
                (&mut cluster.slurmd, "slurmd.out"),
            ] {
                if let Some(d) = daemon {
                    d.check_alive(&dir.join(log));
                }
            }
            assert!(
                Instant::now() < deadline,
                "the Slurm node never became idle (state {state:?})\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        cluster
    }

    /// A Slurm client command on this cluster's configuration.
    fn command(&self, program_name: &str) -> Command {
        let mut cmd = Command::new(program(program_name));
        cmd.env("SLURM_CONF", &self.conf);
        cmd
    }

    /// The daemons' logs, for failure messages.
    fn logs(&self) -> String {
        ["slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"]
            .iter()
            .map(|f| format!("--- {f}:\n{}", tail(&self.dir.join(f), 15)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Processes that carry this cluster's `SLURM_CONF` but are neither its slurmctld or slurmd
    /// nor their children (slurmctld's `slurmscriptd`): the job's step daemons (`slurmstepd`,
    /// which outlive the job's last line in the queue by a moment) and whatever the tasks
    /// started.
    fn leftovers(&self) -> Vec<u32> {
        let mut needle = b"SLURM_CONF=".to_vec();
        needle.extend_from_slice(self.conf.as_os_str().as_encoded_bytes());
        needle.push(0);
        let ours: Vec<u32> = [&self.slurmctld, &self.slurmd]
            .into_iter()
            .flatten()
            .map(|d| d.child.id())
            .collect();
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| !ours.contains(pid) && !ours.contains(&parent(*pid)))
            .filter(|pid| {
                // Processes that exit meanwhile, or are not ours to read, are not leftovers.
                fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_slice()))
            })
            .collect()
    }

    /// Waits (bounded) until no process of the job is left, then kills any that remain.
    fn wait_for_leftovers(&self) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = self.leftovers();
            if left.is_empty() || Instant::now() >= deadline {
                for pid in &left {
                    // SAFETY: kill(2) has no memory effects; the pid may have exited meanwhile.
                    unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
                }
                return left;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the job has left the queue (finished, failed or cancelled).
    fn job_gone(&self, job: &str) -> bool {
        let out = ok(
            self.command("squeue")
                .args(["-h", "-j", job, "-o", "%i %T"]),
            "squeue",
        );
        String::from_utf8_lossy(&out.stdout).trim().is_empty()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A job still running when the test fails is cancelled while slurmd can still kill its
        // steps, so that no trainer outlives the test.
        if let Some(job) = self.job.take() {
            let _ = self.command("scancel").arg(&job).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && !self.job_gone(&job) {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        self.wait_for_leftovers();
        self.slurmd.take();
        self.slurmctld.take();
    }
}

/// The parent of process `pid` (0 when it has gone).
fn parent(pid: u32) -> u32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so after the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// The Slurm name of the test's one node.
const NODE: &str = "anges-node";

/// A slurm.conf for one node, this host, with every file in `dir`, the munge socket `socket`,
/// free ports, no accounting and no cgroups (the daemons run as the test's user).
fn slurm_conf(dir: &Path, socket: &Path) -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let host = host
        .trim()
        .split('.')
        .next()
        .unwrap_or("localhost")
        .to_owned();
    let user = String::from_utf8(ok(Command::new("id").arg("-un"), "id -un").stdout)
        .expect("user name")
        .trim()
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let d = dir.display();
    format!(
        "ClusterName=anges-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=anges Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
",
        ctld_port = free_port(),
        d_port = free_port(),
        socket = socket.display(),
    )
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `scripts/results` with the test's binary, data, cache and meter; `args` appended.
fn results(dir: &Path, socket: &Path, args: &[&str]) -> Command {
    let train = anges_e2e::binary("anges-trainer", "anges-train").expect("anges-train");
    let mut cmd = Command::new(anges_e2e::repo_root().join("scripts/results"));
    cmd.args([
        "--datasets",
        "bace",
        "--seeds",
        "0,1",
        "--models",
        "gin-random",
    ])
    .args(["--epochs", "1", "--threads", "1"])
    .arg("--out")
    .arg(dir.join("runs"))
    .args(args)
    .env("ANGES_TRAIN", train)
    .env("ANGES_COMMIT", "e2e-slurm")
    .env(
        "ANGES_DATA_DIR",
        anges_e2e::shared_dir().join("datasets/moleculenet"),
    )
    .env("XDG_CACHE_HOME", dir.join("cache"))
    // The node's meter: `sbatch` passes the submitter's environment on to the tasks.
    .env("ANGES_METER_SOCKET", socket)
    .env_remove("ANGES_RESULTS_EXTRA");
    cmd
}

#[test]
fn a_campaign_runs_as_a_slurm_array_each_task_metered_by_its_node() {
    let _turn = crate::turn(module_path!());
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // munged serves only a socket whose folders are all searchable by everyone.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let fixture = PowercapFixture::new(&dir.join("sysfs")).unwrap();
    let meter_home = dir.join("meter");
    let daemon = MeterDaemon::start(&meter_home, fixture.root(), &[]).expect("anges-meterd");
    let _feed = PowerFeed::start(Arc::new(fixture), 20.0);
    let socket = daemon.socket().to_owned();
    let mut cluster = Cluster::start(&dir.join("slurm"));
    eprintln!("slurm up after {:?}", started.elapsed());

    // The array: two runs not yet finished, one CPU each.
    let batch = dir.join("campaign.sbatch");
    let out = ok(
        results(dir, &socket, &["--slurm"]).arg(&batch),
        "scripts/results --slurm",
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.trim() == format!("sbatch {}", batch.display()),
        "{printed}"
    );
    let script = fs::read_to_string(&batch).unwrap();
    // The run list, in the script (bash's %q quoting), task i running runs[i].
    let list = "runs=(\n    bace\\ gin-random\\ 0\n    bace\\ gin-random\\ 1\n)\n";
    assert!(script.contains(list), "{list} in\n{script}");
    for line in ["#SBATCH --array=0-1", "#SBATCH --cpus-per-task=1"] {
        assert!(script.lines().any(|l| l == line), "{line} in\n{script}");
    }

    let out = ok(
        cluster
            .command("sbatch")
            .arg("--parsable")
            .arg(&batch)
            .env("ANGES_METER_SOCKET", &socket)
            .env("XDG_CACHE_HOME", dir.join("cache")),
        "sbatch",
    );
    let job = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(job.parse::<u32>().is_ok(), "sbatch printed {job:?}");
    cluster.job = Some(job.clone());

    let logs = |task: u32| dir.join(format!("campaign.sbatch.logs/{job}_{task}.log"));
    let deadline = Instant::now() + ARRAY_DEADLINE;
    while !cluster.job_gone(&job) {
        assert!(
            Instant::now() < deadline,
            "the array is still queued or running after {ARRAY_DEADLINE:?}\n--- task 0:\n{}\n\
             --- task 1:\n{}\n{}",
            tail(&logs(0), 20),
            tail(&logs(1), 20),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    cluster.job = None;
    eprintln!("array done after {:?}", started.elapsed());

    for seed in 0..2u32 {
        let log = tail(&logs(seed), 40);
        let run = dir.join(format!("runs/bace-gin-random-s{seed}"));
        assert!(
            run.join("summary.json").is_file(),
            "task {seed} left no summary:\n{log}\n{}",
            cluster.logs()
        );
        assert!(
            log.contains(&format!("task {seed} on "))
                && log.contains(&format!(": bace gin-random {seed}\n"))
                && log.contains("finished"),
            "task {seed}'s log:\n{log}"
        );
        for file in ["config.json", "split.json", "epochs.csv", "commit"] {
            assert!(run.join(file).is_file(), "{file} missing in {run:?}");
        }
        assert_eq!(
            fs::read_to_string(run.join("commit")).unwrap(),
            "e2e-slurm\n"
        );
        let weights: Vec<_> = fs::read_dir(&run)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
            .map(|e| e.file_name())
            .collect();
        assert!(weights.is_empty(), "weights left behind: {weights:?}");
        let config = read_json(&run.join("config.json"));
        // Task i ran runs[i]: the seed its folder names.
        assert_eq!(
            config.pointer("/config/data/seed"),
            Some(&seed.into()),
            "{config}"
        );

        let epochs: Vec<Value> = fs::read_to_string(run.join("epochs.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(epochs.len(), 1, "one epoch: {epochs:?}");
        assert_eq!(epochs[0]["meter_source"], "daemon", "{}", epochs[0]);
        assert_eq!(epochs[0]["measured"], true, "{}", epochs[0]);

        let summary = read_json(&run.join("summary.json"));
        assert_eq!(summary["epochs_run"], 1, "{summary}");
        let meter = summary["meter"].as_str().unwrap_or_default();
        assert!(
            meter.starts_with(&format!("daemon {}", socket.display())),
            "task {seed} was not metered by the node's daemon: {meter:?}"
        );
        assert_eq!(summary["measured"], true, "{summary}");
        let energy = summary["energy_j"].as_f64().unwrap_or(0.0);
        let daemon_j = summary["daemon_job_joules"].as_f64().unwrap_or(0.0);
        assert!(energy > 0.0 && daemon_j > 0.0, "{summary}");
    }

    // Resubmitting: nothing is left to run, so no second array is written.
    let again = dir.join("again.sbatch");
    let out = ok(
        results(dir, &socket, &["--slurm"]).arg(&again),
        "scripts/results --slurm, again",
    );
    assert!(!again.exists(), "a second array was written");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("every planned run has finished"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The step daemons finish after the job leaves the queue; none may outlive the test.
    let left = cluster.wait_for_leftovers();
    assert!(
        left.is_empty(),
        "processes of the job still running after 15 s: {left:?}"
    );
    drop(cluster);
    daemon.stop().expect("anges-meterd stops cleanly");
    eprintln!("done after {:?}", started.elapsed());
}
