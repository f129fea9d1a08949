//! End to end: the real `anges-meterd` binary in `--user` mode, reading a fixture powercap tree
//! whose counter the test advances (`/proc` is the real one, linked into the tree), serves three
//! clients that each meter their own process over the real socket. Then the daemon restarts in
//! the middle: the clients reconnect by themselves and re-attach to their jobs by id, the machine
//! total continues exactly from the persisted figure, and no job's energy goes backwards or is
//! counted twice.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anges_common::client::{Client, ClientConfig};
use anges_common::protocol::{JobId, JobTarget};
use anges_e2e::{MeterDaemon, PowercapFixture};

/// The daemon under test (killed if a test fails half-way) and its socket.
fn start_daemon(home: &Path, sysfs: &Path) -> (MeterDaemon, PathBuf) {
    let daemon = MeterDaemon::start(home, sysfs, &[]).expect("start anges-meterd");
    let socket = daemon.socket().to_owned();
    (daemon, socket)
}

/// A child process that burns CPU (`busy`) or sleeps, killed on drop.
struct Worker(Child);

impl Worker {
    fn spawn(busy: bool) -> Worker {
        let script = if busy {
            "while :; do :; done"
        } else {
            "exec sleep 600"
        };
        Worker(
            Command::new("sh")
                .args(["-c", script])
                .spawn()
                .expect("spawn sh"),
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn joules(client: &mut Client, job: JobId) -> f64 {
    client
        .job(job, true)
        .expect("fresh job reading")
        .reading
        .totals
        .joules()
}

/// Polls the machine total until it equals `want` joules (the daemon re-reads the counter at its
/// sampling rate); panics with the last figure after a few seconds.
fn await_machine_joules(client: &mut Client, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = client
            .machine(true)
            .expect("machine reading")
            .totals
            .joules();
        if (got - want).abs() < 1e-6 {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "machine total {got} J, injected {want} J"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn three_clients_meter_their_jobs_across_a_daemon_restart() {
    let _turn = crate::turn(module_path!());
    let home = tempfile::tempdir().unwrap();
    let fixture = PowercapFixture::new(&home.path().join("sysfs")).expect("fixture tree");
    let (daemon, socket) = start_daemon(home.path(), fixture.root());
    let workers = [
        Worker::spawn(true),
        Worker::spawn(true),
        Worker::spawn(false),
    ];
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for (i, w) in workers.iter().enumerate() {
        let mut c = Client::connect(ClientConfig::socket(&socket)).expect("connect");
        assert_eq!(c.info().peer_uid, unsafe { libc::geteuid() });
        let job = c
            .register_job(&format!("job-{i}"), JobTarget::Pid(w.0.id()))
            .expect("register");
        ids.push(job.job.id);
        clients.push(c);
    }
    assert_eq!(
        ids.iter().collect::<std::collections::BTreeSet<_>>().len(),
        3,
        "job ids are distinct: {ids:?}"
    );
    // 5 J, injected in steps while the three processes run.
    for step in 1..=10 {
        std::thread::sleep(Duration::from_millis(150));
        fixture.set_uj(1_000_000 + step * 500_000).unwrap();
    }
    let machine_before = await_machine_joules(&mut clients[0], 5.0);
    let before: Vec<f64> = (0..3).map(|i| joules(&mut clients[i], ids[i])).collect();
    assert!(
        before[0] > 0.0 && before[1] > 0.0,
        "busy jobs got energy: {before:?}"
    );
    assert!(
        before[2] < 0.05 * before[0].min(before[1]),
        "a sleeping job gets (almost) nothing: {before:?}"
    );
    assert!(
        before.iter().sum::<f64>() <= machine_before * (1.0 + 1e-9),
        "jobs never exceed the machine: {before:?} vs {machine_before}"
    );
    // Jobs are visible per uid, not per connection: all three belong to this test's uid.
    assert_eq!(clients[2].jobs().unwrap().len(), 3);

    daemon.stop().expect("clean stop");
    // Energy spent while no daemon runs cannot be known; the restarted one starts from here.
    fixture.set_uj(7_000_000).unwrap();
    let (daemon, _) = start_daemon(home.path(), fixture.root());
    for step in 1..=6 {
        std::thread::sleep(Duration::from_millis(150));
        fixture.set_uj(7_000_000 + step * 500_000).unwrap();
    }

    // Same clients, same job ids: each reconnects and re-attaches on its own. The machine total
    // continues exactly: 5 J persisted + 3 J injected after the restart.
    let machine_after = await_machine_joules(&mut clients[0], 8.0);
    let after: Vec<f64> = (0..3).map(|i| joules(&mut clients[i], ids[i])).collect();
    for i in 0..3 {
        assert!(
            after[i] >= before[i],
            "job {i} went backwards: {before:?} -> {after:?}"
        );
        assert!(
            after[i] - before[i] <= machine_after - machine_before + 1e-6,
            "job {i} gained more than the machine did: {before:?} -> {after:?}, machine {machine_before} -> {machine_after}"
        );
    }
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "busy jobs keep counting after the restart"
    );
    let last = clients[0].unregister_job(ids[0]).expect("unregister");
    assert!(last.reading.totals.joules() >= after[0]);
    assert!(
        clients[0].job(ids[0], false).is_err(),
        "an unregistered job is gone"
    );
    daemon.stop().expect("clean stop");
}
