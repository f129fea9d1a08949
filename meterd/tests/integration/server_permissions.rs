//! Peer credentials end to end: a client running under another uid (uid 65534 via `setpriv`,
//! since the test machine runs as root) may meter its own processes but not someone else's, and
//! does not see or remove other users' jobs.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;

use anges_common::client::{Client, ClientConfig};
use anges_common::protocol::JobTarget;
use anges_meterd::server::Server;

use crate::server_common::{TestBackend, test_config};

const NOBODY: &str = "65534";

fn as_nobody(socket: &std::path::Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_anges-meter"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("setpriv (util-linux) must be installed for this test")
}

#[test]
fn another_uid_cannot_register_or_see_what_it_does_not_own() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root to run a client under a second uid"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let backend = TestBackend::start(Duration::from_millis(2));
    let mut cfg = test_config(dir.path());
    cfg.socket_mode = 0o666;
    let server = rt.block_on(Server::start(backend.clone(), cfg)).unwrap();
    let socket = server.socket_path().to_owned();

    // Root's job, for the visibility checks.
    let mut root = Client::connect(ClientConfig::socket(&socket)).unwrap();
    let root_job = root
        .register_job("root-job", JobTarget::Pid(std::process::id()))
        .unwrap();

    // PID 1 and this test's own process belong to root: refused.
    for pid in ["1", &std::process::id().to_string()] {
        let out = as_nobody(&socket, &["attach", "--pid", pid]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "nobody registered PID {pid}: {err}");
        assert!(err.contains("permission denied"), "{err}");
    }
    // Its own child is fine, and `run` reports the job's energy.
    let out = as_nobody(&socket, &["run", "--name", "mine", "--", "sleep", "0.1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("job ") && err.contains("g CO2-eq"), "{err}");

    // Root's job is invisible to nobody and cannot be removed by it.
    let out = as_nobody(&socket, &["jobs"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!listing.contains("root-job"), "{listing}");
    let out = as_nobody(&socket, &["detach", &root_job.job.id.to_string()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such job"));
    assert!(root.job(root_job.job.id, false).is_ok());

    rt.block_on(server.shutdown());
}
