//! Acceptance: the real `anges-meterd` binary in `--user` mode persists on SIGTERM, and after a
//! restart its totals continue from where they were (never backwards); a corrupt state file is
//! moved aside with a log line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anges_meter_engine::persist::{STATE_FILE, State};

struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

fn start(state: &Path, home: &Path) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_anges-meterd"))
        .args([
            "--user",
            "--sensor",
            "estimate",
            "--rate-hz",
            "200",
            "--gpus",
            "none",
            "--state-dir",
        ])
        .arg(state)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env("ANGES_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut d = Daemon {
        child,
        lines,
        log: Vec::new(),
    };
    d.wait_for("sampler running");
    d
}

impl Daemon {
    fn wait_for(&mut self, needle: &str) {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.log.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no {needle:?} from the daemon; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    fn terminate(mut self) -> Vec<String> {
        // SAFETY: plain kill(2) on our own child's PID.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) },
            0
        );
        let status = self.child.wait().unwrap();
        self.log.extend(self.lines.iter());
        assert!(
            status.success(),
            "daemon exit {status:?}; log:\n{}",
            self.log.join("\n")
        );
        self.log
    }
}

fn saved(state: &Path) -> State {
    serde_json::from_slice(&std::fs::read(state.join(STATE_FILE)).unwrap()).unwrap()
}

#[test]
fn totals_continue_across_sigterm_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = start(&state, dir.path());
    std::thread::sleep(Duration::from_millis(800));
    let log = d.terminate();
    assert!(
        log.iter().any(|l| l.contains("SIGTERM received")),
        "{log:#?}"
    );
    assert!(log.iter().any(|l| l.contains("ESTIMATED")), "{log:#?}");
    let first = saved(&state);
    let j1 = first.machine["cpu:estimated"].joules;
    assert!(j1 > 0.0 && first.tick > 0);

    let d = start(&state, dir.path());
    assert!(
        d.log.iter().any(|l| l.contains("restored totals")),
        "{:#?}",
        d.log
    );
    std::thread::sleep(Duration::from_millis(800));
    let _ = d.terminate();
    let second = saved(&state);
    assert!(
        second.tick > first.tick,
        "{} -> {}",
        first.tick,
        second.tick
    );
    for (id, d1) in &first.machine {
        let d2 = &second.machine[id];
        assert!(
            d2.joules > d1.joules && d2.grams > d1.grams,
            "{id}: {d1:?} -> {d2:?}"
        );
        assert!(second.unattributed[id].joules >= first.unattributed[id].joules);
    }
    // The second run added about 0.8 s worth, not a restart from zero: total > first + something.
    assert!(second.machine["cpu:estimated"].joules > j1);
}

#[test]
fn corrupt_state_is_moved_aside_with_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join(STATE_FILE), "{ this is not json").unwrap();
    let d = start(&state, dir.path());
    let log = d.terminate();
    assert!(log.iter().any(|l| l.contains("moved aside")), "{log:#?}");
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("state.json.corrupt-")),
        "{names:?}"
    );
    assert!(saved(&state).tick > 0);
}
