//! Prometheus/OpenMetrics endpoint: `GET /metrics` on a loopback address, rendered with
//! `prometheus-client` from the latest published snapshot (so a scrape never touches the sampler
//! and sees nothing finer than the publication interval).
//!
//! Metrics: `anges_machine_energy_joules_total{domain,measured}`, `anges_machine_co2_grams_total`,
//! `anges_carbon_intensity_grams_per_kwh`, `anges_job_energy_joules_total{job_id,job,uid,domain}`,
//! `anges_job_co2_grams_total{job_id,job,uid}`, `anges_sampler_ticks_total`,
//! `anges_sampler_read_errors_total`.

use std::net::SocketAddr;
use std::sync::Arc;
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
use super::until_stopped;

/// Largest HTTP request head read from a scraper.
const MAX_REQUEST: usize = 8192;
/// Simultaneous scrapes served.
const MAX_SCRAPERS: usize = 16;
/// Time a scraper has to send its request and take the answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Renders published snapshots on each scrape.
#[derive(Debug)]
struct SnapshotCollector {
    rx: watch::Receiver<Arc<Snapshot>>,
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
        let snap = self.rx.borrow().clone();
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
            &mut encoder,
            "anges_job_energy_joules",
            "Energy attributed to each registered job per domain.",
            &rows,
        )?;
        co2_counters(
            &mut encoder,
            "anges_job_co2_grams",
            "CO2-eq attributed to each registered job, grams.",
            &rows,
        )?;
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
        Ok(())
    }
}

/// Renders the metrics text of `rx`'s latest snapshot.
pub fn render(rx: watch::Receiver<Arc<Snapshot>>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector { rx }));
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

/// Serves scrapes on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    rx: watch::Receiver<Arc<Snapshot>>,
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
            continue;
        };
        let rx = rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if tokio::time::timeout(SCRAPE_TIMEOUT, scrape(stream, rx))
                .await
                .is_err()
            {
                tracing::debug!("a scrape timed out");
            }
        });
    }
}

/// Answers one HTTP/1.x request and closes.
async fn scrape(mut stream: TcpStream, rx: watch::Receiver<Arc<Snapshot>>) {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, ctype, body) = if line.starts_with(b"GET /metrics ") {
        match render(rx) {
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

    #[test]
    fn renders_machine_and_job_counters() {
        let (_tx, rx) = watch::channel(Arc::new(snapshot()));
        let text = render(rx).unwrap();
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
        let (_tx, rx) = watch::channel(Arc::new(snapshot()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, rx, stop_rx));
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
