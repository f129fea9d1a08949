//! The files in `systemd/` are valid for the real tools: `systemd-analyze verify` accepts the
//! units without a warning (with `ExecStart=` pointing at the real `anges-meterd` binary),
//! `systemd-sysusers` and `systemd-tmpfiles` apply the sysusers/tmpfiles entries to a scratch
//! root, and `dbus-daemon` loads the D-Bus policy.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anges_e2e::{binary, repo_root};

/// Path the units use for the daemon before `install.sh` rewrites it for the chosen PREFIX.
const INSTALLED_BIN: &str = "/usr/local/bin/anges-meterd";

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        // Plain characters only: the path ends up in a D-Bus address.
        let dir = std::env::temp_dir().join(format!("anges-systemd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn systemd_dir() -> PathBuf {
    repo_root().join("systemd")
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is systemd installed?): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let _turn = crate::turn(module_path!());
    let meterd = binary("anges-meterd", "anges-meterd").unwrap();
    let scratch = Scratch::new("verify");
    let mut units = Vec::new();
    for unit in ["anges-meterd.service", "anges-meterd.socket"] {
        let text = std::fs::read_to_string(systemd_dir().join(unit)).unwrap();
        if unit.ends_with(".service") {
            assert!(
                text.contains(INSTALLED_BIN),
                "{unit} must run {INSTALLED_BIN}"
            );
        }
        let path = scratch.0.join(unit);
        std::fs::write(
            &path,
            text.replace(INSTALLED_BIN, &meterd.display().to_string()),
        )
        .unwrap();
        units.push(path);
    }
    let (ok, text) = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .env("SYSTEMD_LOG_COLOR", "0"));
    assert!(ok, "systemd-analyze verify failed:\n{text}");
    // verify exits 0 on unknown keys and other recoverable problems: any output is a finding.
    assert!(
        text.trim().is_empty(),
        "systemd-analyze verify warned:\n{text}"
    );
}

#[test]
fn verify_would_catch_a_broken_unit() {
    let _turn = crate::turn(module_path!());
    // Guards the test above: the same check fails on a unit with an unknown key.
    let scratch = Scratch::new("broken");
    let text = std::fs::read_to_string(systemd_dir().join("anges-meterd.service")).unwrap();
    let broken = text
        .replace(INSTALLED_BIN, "/bin/true")
        .replace("Type=notify", "Type=notify\nNoSuchDirective=1");
    let path = scratch.0.join("anges-meterd.service");
    std::fs::write(&path, broken).unwrap();
    let (_, text) = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path));
    assert!(text.contains("NoSuchDirective"), "{text}");
}

fn group_id(root: &Path, name: &str) -> u32 {
    let groups = std::fs::read_to_string(root.join("etc/group")).unwrap();
    groups
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(name)).then(|| f.nth(1).and_then(|g| g.parse().ok()))?
        })
        .unwrap_or_else(|| panic!("no group {name} in:\n{groups}"))
}

#[test]
fn sysusers_and_tmpfiles_apply_to_a_scratch_root() {
    let _turn = crate::turn(module_path!());
    let scratch = Scratch::new("root");
    let root = &scratch.0;
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let root_arg = format!("--root={}", root.display());
    let (ok, text) = run(Command::new("systemd-sysusers")
        .arg(&root_arg)
        .arg(systemd_dir().join("anges.sysusers")));
    assert!(ok, "systemd-sysusers failed:\n{text}");
    let anges = group_id(root, "anges");
    let group_line = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(
        group_line.contains(&format!("anges:x:{anges}:anges-meterd")),
        "the daemon's user must be in group anges:\n{group_line}"
    );

    let (ok, text) = run(Command::new("systemd-tmpfiles")
        .args(["--create", &root_arg])
        .arg(systemd_dir().join("anges.tmpfiles")));
    assert!(ok, "systemd-tmpfiles failed:\n{text}");
    for dir in ["run/anges", "var/lib/anges"] {
        let meta = std::fs::metadata(root.join(dir)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o750, "{dir}");
        assert_eq!(meta.gid(), anges, "{dir} must belong to group anges");
    }
}

#[test]
fn dbus_daemon_loads_the_policy() {
    let _turn = crate::turn(module_path!());
    let scratch = Scratch::new("dbus");
    let policy = systemd_dir().join("org.anges.Meter1.conf");
    let config = scratch.0.join("bus.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <include>{}</include>
</busconfig>
"#,
            scratch.0.join("bus").display(),
            policy.display()
        ),
    )
    .unwrap();
    let mut child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--nopidfile", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dbus-daemon must be installed for this test");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        line.starts_with("unix:"),
        "dbus-daemon rejected the configuration: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
