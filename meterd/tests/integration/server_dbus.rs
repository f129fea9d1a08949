//! `org.anges.Meter1` on a private `dbus-daemon` that the test starts and kills, checked with
//! `busctl`: introspection lists the properties and methods, properties carry the published
//! totals, and the job methods work for the caller.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anges_meterd::server::{Bus, Server};

use crate::server_common::{TestBackend, test_config};

/// A private bus, killed on drop.
struct PrivateBus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .arg(format!(
                "--address=unix:path={}",
                dir.path().join("bus").display()
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dbus-daemon must be installed for this test (apt-get install dbus-daemon)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line.trim().to_owned();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed {address:?}"
        );
        PrivateBus {
            child,
            address,
            _dir: dir,
        }
    }

    fn busctl(&self, args: &[&str]) -> String {
        let out = Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(args)
            .output()
            .expect("busctl must be installed for this test (systemd)");
        assert!(
            out.status.success(),
            "busctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const DEST: &str = "org.anges.Meter1";
const PATH: &str = "/org/anges/Meter1";

#[test]
fn meter1_is_introspectable_and_serves_totals_and_jobs() {
    let bus = PrivateBus::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backend = TestBackend::start(Duration::from_millis(2));
    let mut cfg = test_config(dir.path());
    cfg.dbus = Some(Bus::Address(bus.address.clone()));
    let server = rt.block_on(Server::start(backend, cfg)).unwrap();
    std::thread::sleep(Duration::from_millis(100));

    let intro = bus.busctl(&["introspect", DEST, PATH, DEST]);
    for member in [
        ".MachineJoules",
        ".MachineGramsCo2",
        ".IntensityGPerKwh",
        ".Domains",
        ".SourcesMeasured",
        ".SourcesEstimated",
        ".Tick",
        ".Counters",
        ".RegisterJob",
        ".RegisterCgroup",
        ".Job",
        ".ListJobs",
        ".UnregisterJob",
    ] {
        assert!(intro.contains(member), "{member} missing:\n{intro}");
    }

    let joules = bus.busctl(&["get-property", DEST, PATH, DEST, "MachineJoules"]);
    let value: f64 = joules.trim().trim_start_matches("d ").parse().unwrap();
    assert!(value > 0.0, "{joules}");
    let sources = bus.busctl(&["get-property", DEST, PATH, DEST, "SourcesMeasured"]);
    assert!(sources.contains("test-rapl"), "{sources}");
    // The aggregate abuse counters (issue 27), as a{st}: every counter, by name.
    let counters = bus.busctl(&["get-property", DEST, PATH, DEST, "Counters"]);
    assert!(counters.starts_with("a{st} "), "{counters}");
    for name in ["bad_frames", "rate_limited", "refused", "dropped_updates"] {
        assert!(counters.contains(&format!("\"{name}\" 0")), "{counters}");
    }

    let pid = std::process::id().to_string();
    let reply = bus.busctl(&[
        "call",
        DEST,
        PATH,
        DEST,
        "RegisterJob",
        "su",
        "bus-job",
        &pid,
    ]);
    let id: u64 = reply.trim().trim_start_matches("t ").parse().unwrap();
    let listed = bus.busctl(&["call", DEST, PATH, DEST, "ListJobs"]);
    assert!(listed.contains("\"bus-job\""), "{listed}");
    let job = bus.busctl(&[
        "call",
        DEST,
        PATH,
        DEST,
        "Job",
        "tb",
        &id.to_string(),
        "true",
    ]);
    assert!(job.contains("\"bus-job\""), "{job}");
    let gone = bus.busctl(&[
        "call",
        DEST,
        PATH,
        DEST,
        "UnregisterJob",
        "t",
        &id.to_string(),
    ]);
    assert!(gone.contains("\"bus-job\""), "{gone}");

    // Unknown jobs are a standard D-Bus error.
    let out = Command::new("busctl")
        .arg(format!("--address={}", bus.address))
        .args(["call", DEST, PATH, DEST, "Job", "tb", "999999", "false"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job 999999"));

    rt.block_on(server.shutdown());
}
