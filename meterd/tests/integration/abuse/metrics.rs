//! The Prometheus endpoint under abuse (issue 27, items 2 and 10): a second uid scrapes it and
//! must not learn other users' jobs unless the operator opted in to per-job series, and idle
//! connections must not keep a scrape from being answered.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::{ALICE, BOB, SystemDaemon, UserProcess, as_uid, meter_cli};

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A daemon serving metrics on a free loopback port, with `extra_toml` in its configuration.
fn daemon_with_metrics(extra_toml: &str) -> (SystemDaemon, u16) {
    let port = free_port();
    let daemon = SystemDaemon::start(
        &format!("metrics_listen = \"127.0.0.1:{port}\"\n{extra_toml}"),
        &[],
    );
    (daemon, port)
}

/// `GET /metrics` as `uid`, through bash's `/dev/tcp` (no curl on CI); the whole HTTP answer.
fn scrape_as(uid: u32, port: u16) -> String {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"
    );
    let out = as_uid(uid, "timeout")
        .args(["10", "bash", "-c", &script])
        .output()
        .expect("setpriv, timeout and bash must be installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Alice meters a sleeping process of hers as `name`; returns the process and the job's id once
/// a publication includes the job (so a scrape from now on would show it if it showed jobs).
fn alice_job(daemon: &SystemDaemon, name: &str) -> (UserProcess, u64) {
    let sleeper = UserProcess::shell(ALICE, "exec sleep 30");
    let out = meter_cli(ALICE, daemon.socket())
        .args(["attach", "--name", name, "--pid"])
        .arg(sleeper.pid().to_string())
        .output()
        .expect("run anges-meter as alice");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("attach prints the job id");
    // A fresh reading waits for the next publication, which includes the job.
    daemon
        .root_client()
        .job(anges_common::protocol::JobId(id), true)
        .expect("root sees alice's job");
    (sleeper, id)
}

#[test]
fn another_uid_scraping_metrics_does_not_see_alices_jobs() {
    let (daemon, port) = daemon_with_metrics("");
    let (_sleeper, id) = alice_job(&daemon, "alice-secret-job");
    let text = scrape_as(BOB, port);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.contains("anges_machine_energy_joules_total{"),
        "the machine series stay: {text}"
    );
    assert!(text.contains("anges_sampler_ticks_total"), "{text}");
    for leak in [
        "alice-secret-job".to_owned(),
        format!("uid=\"{ALICE}\""),
        format!("job_id=\"{id}\""),
        "anges_job_".to_owned(),
    ] {
        assert!(!text.contains(&leak), "bob learns {leak:?}: {text}");
    }
}

#[test]
fn per_job_series_appear_only_when_the_operator_opts_in() {
    let (daemon, port) = daemon_with_metrics("metrics_per_job = true\n");
    let (_sleeper, id) = alice_job(&daemon, "alice-public-job");
    let text = scrape_as(BOB, port);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.contains(&format!(
            "anges_job_co2_grams_total{{job_id=\"{id}\",job=\"alice-public-job\",uid=\"{ALICE}\"}}"
        )),
        "{text}"
    );
    assert!(text.contains("anges_machine_co2_grams_total"), "{text}");
}

#[test]
fn idle_connections_do_not_block_a_scrape() {
    let (_daemon, port) = daemon_with_metrics("");
    let idle: Vec<TcpStream> = (0..24)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("open an idle connection"))
        .collect();
    // Let the server accept them all (it takes each connection as it comes).
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to scrape");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("send the request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let took = started.elapsed();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{took:?}: {out:?}");
    assert!(
        took < Duration::from_secs(1),
        "a scrape behind {} idle connections took {took:?}",
        idle.len()
    );
    drop(idle);
}
