//! Prometheus/OpenMetrics endpoint: `GET /metrics` on a loopback address, rendered with
//! `prometheus-client` from the latest published snapshot (so a scrape never touches the sampler
//! and sees nothing finer than the publication interval).
//!
//! Anyone who can reach the port can scrape it (there are no peer credentials on TCP), so by
//! default it shows machine-level series only: `anges_machine_energy_joules_total{domain,measured}`,
//! `anges_machine_co2_grams_total`, `anges_carbon_intensity_grams_per_kwh`,
//! `anges_sampler_ticks_total`, `anges_sampler_read_errors_total`, the socket server's counters
//! (`anges_meter_socket_<counter>_total`, `anges_meter_socket_connections`) and the endpoint's own
//! (`anges_meter_metrics_refused_total`). Per-job series
//! (`anges_job_energy_joules_total{job_id,job,uid,domain,measured}`,
//! `anges_job_co2_grams_total{job_id,job,uid}`) name every user's jobs, so they are rendered only
//! when the operator opts in ([`MetricsSource::per_job`], `metrics_per_job = true`).
//!
//! Each connection is served in its own task with a deadline for the request head
//! ([`HEAD_TIMEOUT`]) and for the whole exchange ([`SCRAPE_TIMEOUT`]); at most [`MAX_SCRAPERS`]
//! are served at once and any connection beyond is answered `503` and closed at once, never
//! queued, so idle connections cannot hold scrapes back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anges_common::protocol::Totals;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::publish::Snapshot;
use super::socket::SocketStats;
use super::until_stopped;

/// Largest HTTP request head read from a scraper.
const MAX_REQUEST: usize = 8192;
/// Connections served at once; more are refused with `503` at once. Far above what a real
/// scraper uses, so that a few idle connections cannot starve it.
pub const MAX_SCRAPERS: usize = 256;
/// Time a scraper has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a scraper has to send its request and take the answer.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters of the endpoint itself.
#[derive(Debug, Default)]
pub struct MetricsStats {
    /// Connections refused because [`MAX_SCRAPERS`] were being served.
    pub refused: AtomicU64,
    /// Connections closed because the scraper was too slow ([`HEAD_TIMEOUT`], [`SCRAPE_TIMEOUT`]).
    pub timed_out: AtomicU64,
}

/// Everything a scrape renders.
#[derive(Debug, Clone)]
pub struct MetricsSource {
    /// The published snapshots.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// The socket server's counters.
    pub socket: Arc<SocketStats>,
    /// The endpoint's own counters.
    pub endpoint: Arc<MetricsStats>,
    /// Render per-job series (job id, name, owner uid) for every job: anyone who reaches the
    /// port sees them, so this is the operator's explicit choice (`metrics_per_job`).
    pub per_job: bool,
}

impl MetricsSource {
    /// Machine-level series of `snapshots` and `socket`, no per-job series.
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>, socket: Arc<SocketStats>) -> Self {
        MetricsSource {
            snapshots,
            socket,
            endpoint: Arc::default(),
            per_job: false,
        }
    }
}

/// Renders published snapshots on each scrape.
#[derive(Debug)]
struct SnapshotCollector {
    source: MetricsSource,
}

type Labels = Vec<(&'static str, String)>;

fn domain_counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, &Totals)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (labels, totals) in rows {
        for d in &totals.domains {
            let mut l = labels.clone();
            l.push(("domain", d.name.clone()));
            l.push(("measured", d.measured.to_string()));
            ConstCounter::new(d.joules).encode(metric.encode_family(&l)?)?;
        }
    }
    Ok(())
}

fn co2_counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, &Totals)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (labels, totals) in rows {
        ConstCounter::new(totals.grams_co2).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

/// Writes one unlabelled metric (a constant counter or gauge) under its descriptor.
fn single_metric(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.source.snapshots.borrow().clone();
        let machine: Vec<(Labels, &Totals)> = vec![(Vec::new(), &snap.machine)];
        domain_counters(
            &mut encoder,
            "anges_machine_energy_joules",
            "Energy of the machine per domain since the meter's state began.",
            &machine,
        )?;
        single_metric(
            &mut encoder,
            "anges_machine_co2_grams",
            "CO2-eq of the machine, grams.",
            ConstCounter::new(snap.machine.grams_co2),
        )?;
        single_metric(
            &mut encoder,
            "anges_carbon_intensity_grams_per_kwh",
            "Grid carbon intensity used for the latest interval, gCO2eq/kWh.",
            ConstGauge::new(snap.machine.intensity_g_per_kwh),
        )?;
        if self.source.per_job {
            job_series(&mut encoder, &snap)?;
        }
        single_metric(
            &mut encoder,
            "anges_sampler_ticks",
            "Sampling intervals completed.",
            ConstCounter::new(snap.health.ticks),
        )?;
        single_metric(
            &mut encoder,
            "anges_sampler_read_errors",
            "Sensor read errors.",
            ConstCounter::new(snap.health.read_errors),
        )?;
        socket_series(&mut encoder, &self.source)
    }
}

/// The per-job series (only with [`MetricsSource::per_job`]).
fn job_series(encoder: &mut DescriptorEncoder, snap: &Snapshot) -> Result<(), std::fmt::Error> {
    let mut jobs: Vec<_> = snap.jobs.values().collect();
    jobs.sort_by_key(|j| j.meta.id);
    let rows: Vec<(Labels, &Totals)> = jobs
        .iter()
        .map(|j| {
            let labels = vec![
                ("job_id", j.meta.id.to_string()),
                ("job", j.meta.name.clone()),
                ("uid", j.meta.owner_uid.to_string()),
            ];
            (labels, &j.totals)
        })
        .collect();
    domain_counters(
        encoder,
        "anges_job_energy_joules",
        "Energy attributed to each registered job per domain.",
        &rows,
    )?;
    co2_counters(
        encoder,
        "anges_job_co2_grams",
        "CO2-eq attributed to each registered job, grams.",
        &rows,
    )
}

/// The socket server's counters and the endpoint's own.
fn socket_series(
    encoder: &mut DescriptorEncoder,
    source: &MetricsSource,
) -> Result<(), std::fmt::Error> {
    let stats = source.socket.server_stats();
    for c in stats.counters() {
        if c.name == "open_connections" {
            continue; // a gauge, below
        }
        single_metric(
            encoder,
            &format!("anges_meter_socket_{}", c.name),
            c.help,
            ConstCounter::new(c.value),
        )?;
    }
    single_metric(
        encoder,
        "anges_meter_socket_connections",
        "Connections open on the socket now.",
        ConstGauge::new(i64::try_from(stats.open_connections).unwrap_or(i64::MAX)),
    )?;
    single_metric(
        encoder,
        "anges_meter_metrics_refused",
        "Metrics connections refused because the endpoint was serving its maximum.",
        ConstCounter::new(source.endpoint.refused.load(Ordering::Relaxed)),
    )?;
    single_metric(
        encoder,
        "anges_meter_metrics_timed_out",
        "Metrics connections closed because the scraper was too slow.",
        ConstCounter::new(source.endpoint.timed_out.load(Ordering::Relaxed)),
    )
}

/// Renders the metrics text of `source` (its latest snapshot, its counters now).
pub fn render(source: &MetricsSource) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector {
        source: source.clone(),
    }));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// A failure to start the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address is not a loopback address.
    #[error("the metrics endpoint listens on loopback only, not on {0}")]
    NotLoopback(SocketAddr),
    /// Binding failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Binds the endpoint on `addr` (loopback only).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    if !addr.ip().is_loopback() {
        return Err(MetricsError::NotLoopback(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Serves scrapes of `source` on `listener` until `shutdown` turns true: each connection in its
/// own task under [`HEAD_TIMEOUT`] and [`SCRAPE_TIMEOUT`], at most [`MAX_SCRAPERS`] at once.
pub async fn serve(
    listener: TcpListener,
    source: MetricsSource,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPERS));
    loop {
        let (stream, _) = tokio::select! {
            _ = until_stopped(&mut shutdown) => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refuse(&stream, &source.endpoint);
            continue;
        };
        let source = source.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if tokio::time::timeout(SCRAPE_TIMEOUT, scrape(stream, &source))
                .await
                .is_err()
            {
                source.endpoint.timed_out.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("a scrape timed out");
            }
        });
    }
}

/// Answers `503` without waiting (a fresh socket's buffer takes it) and closes.
fn refuse(stream: &TcpStream, stats: &MetricsStats) {
    let n = stats.refused.fetch_add(1, Ordering::Relaxed);
    if n.is_power_of_two() {
        tracing::warn!(
            refused = n + 1,
            max = MAX_SCRAPERS,
            "metrics endpoint busy: connection refused"
        );
    }
    let _ = stream.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
}

/// Reads an HTTP/1.x request head (up to [`MAX_REQUEST`] bytes); `None` when the scraper closed
/// or failed first.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    Some(head)
}

/// Answers one HTTP/1.x request and closes.
async fn scrape(mut stream: TcpStream, source: &MetricsSource) {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        Ok(None) => return,
        Err(_) => {
            source.endpoint.timed_out.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("a scraper sent no request in time");
            return;
        }
    };
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, ctype, body) = if line.starts_with(b"GET /metrics ") {
        match render(source) {
            Ok(body) => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body,
            ),
            Err(_) => (
                "500 Internal Server Error",
                "text/plain",
                "encode failed\n".into(),
            ),
        }
    } else {
        ("404 Not Found", "text/plain", "try /metrics\n".into())
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::backend::JobTotals;
    use anges_common::protocol::{DomainEnergy, JobId, JobMeta, JobTarget};

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::empty();
        s.machine = Totals {
            domains: vec![DomainEnergy {
                name: "package-0".into(),
                joules: 12.5,
                measured: true,
            }],
            grams_co2: 0.25,
            intensity_g_per_kwh: 56.0,
            timestamp_ms: 1,
        };
        s.jobs.insert(
            JobId(7),
            JobTotals {
                meta: JobMeta {
                    id: JobId(7),
                    name: "train".into(),
                    owner_uid: 1000,
                    target: JobTarget::Pid(42),
                },
                totals: Totals {
                    domains: vec![DomainEnergy {
                        name: "package-0".into(),
                        joules: 2.0,
                        measured: true,
                    }],
                    grams_co2: 0.04,
                    ..Totals::default()
                },
            },
        );
        s
    }

    fn source(per_job: bool) -> (watch::Sender<Arc<Snapshot>>, MetricsSource) {
        let (tx, rx) = watch::channel(Arc::new(snapshot()));
        let mut source = MetricsSource::new(rx, Arc::default());
        source.per_job = per_job;
        (tx, source)
    }

    #[test]
    fn renders_machine_and_job_counters() {
        let (_tx, source) = source(true);
        let text = render(&source).unwrap();
        assert!(
            text.contains(
                r#"anges_machine_energy_joules_total{domain="package-0",measured="true"} 12.5"#
            ),
            "{text}"
        );
        assert!(
            text.contains("anges_machine_co2_grams_total 0.25"),
            "{text}"
        );
        assert!(
            text.contains("anges_carbon_intensity_grams_per_kwh 56.0"),
            "{text}"
        );
        assert!(
            text.contains(r#"anges_job_co2_grams_total{job_id="7",job="train",uid="1000"} 0.04"#),
            "{text}"
        );
    }

    #[test]
    fn no_job_series_without_the_opt_in() {
        let (_tx, source) = source(false);
        let text = render(&source).unwrap();
        assert!(
            text.contains("anges_machine_co2_grams_total 0.25"),
            "{text}"
        );
        for leak in ["anges_job_", "train", "uid=", "job_id="] {
            assert!(!text.contains(leak), "{leak}: {text}");
        }
    }

    #[test]
    fn renders_every_socket_counter() {
        let (_tx, source) = source(false);
        let s = &source.socket;
        let all = [
            ("accepted", &s.accepted),
            ("refused", &s.refused),
            ("requests", &s.requests),
            ("bad_frames", &s.bad_frames),
            ("rate_limited", &s.rate_limited),
            ("dropped_updates", &s.dropped_updates),
            ("frame_timeouts", &s.frame_timeouts),
            ("idle_timeouts", &s.idle_timeouts),
            ("throttle_closes", &s.throttle_closes),
            ("refused_subscriptions", &s.refused_subscriptions),
        ];
        for (i, (_, counter)) in all.iter().enumerate() {
            counter.store(10 + i as u64, Ordering::Relaxed);
        }
        source.socket.open.store(3, Ordering::Relaxed);
        source.endpoint.refused.store(2, Ordering::Relaxed);
        let text = render(&source).unwrap();
        for (i, (name, _)) in all.iter().enumerate() {
            let value = 10 + i;
            let line = format!("anges_meter_socket_{name}_total {value}\n");
            assert!(text.contains(&line), "{line}: {text}");
        }
        assert!(
            text.contains("anges_meter_socket_connections 3\n"),
            "{text}"
        );
        assert!(
            text.contains("anges_meter_metrics_refused_total 2\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn refuses_non_loopback() {
        let addr: SocketAddr = "0.0.0.0:0".parse().unwrap();
        assert!(matches!(
            bind(addr).await,
            Err(MetricsError::NotLoopback(_))
        ));
    }

    #[tokio::test]
    async fn serves_http_on_loopback() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_tx, source) = source(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, source, stop_rx));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.contains("anges_sampler_ticks_total"), "{out}");
        stop_tx.send(true).unwrap();
        server.await.unwrap();
    }
}
