//! D-Bus interface `org.anges.Meter1` at `/org/anges/Meter1` (zbus 6, on the Tokio runtime).
//!
//! Properties give the machine's published totals and sources, and the daemon's aggregate abuse
//! counters (`Counters`, readable by every caller like the socket's `Status`); methods register,
//! query, list and unregister jobs with the same rules as the socket (the caller's uid, pid and
//! groups come from the bus daemon's `GetConnectionCredentials`). Properties change at most once per publication
//! interval and do not emit `PropertiesChanged` (clients poll, or use the socket's
//! subscriptions), which the introspection data says.

use std::collections::HashMap;

use anges_common::protocol::{ErrorKind, JobId, JobReading, JobTarget, ProtoError};
use zbus::message::Header;
use zbus::{Connection, fdo, interface};

use super::access::Peer;
use super::service::Service;

/// Well-known bus name.
pub const BUS_NAME: &str = "org.anges.Meter1";
/// Object path.
pub const OBJECT_PATH: &str = "/org/anges/Meter1";

/// Which bus to publish on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    /// The system bus (system daemon).
    System,
    /// The session bus (`--user`).
    Session,
    /// A bus at an explicit address (tests, private buses).
    Address(String),
}

/// The exported object.
#[derive(Debug)]
pub struct Meter1 {
    service: Service,
}

/// (domain, joules, measured)
type DomainRow = (String, f64, bool);
/// (job id, name, owner uid, joules, grams CO2-eq, domains)
type JobRow = (u64, String, u32, f64, f64, Vec<DomainRow>);

fn to_fdo(e: ProtoError) -> fdo::Error {
    let msg = e.to_string();
    match e.kind {
        ErrorKind::PermissionDenied => fdo::Error::AccessDenied(msg),
        ErrorKind::NoSuchJob | ErrorKind::NoSuchTarget | ErrorKind::InvalidRequest => {
            fdo::Error::InvalidArgs(msg)
        }
        ErrorKind::LimitReached | ErrorKind::RateLimited => fdo::Error::LimitsExceeded(msg),
        ErrorKind::Timeout => fdo::Error::Timeout(msg),
        _ => fdo::Error::Failed(msg),
    }
}

fn job_row(j: &JobReading) -> JobRow {
    let t = &j.reading.totals;
    (
        j.job.id.0,
        j.job.name.clone(),
        j.job.owner_uid,
        t.joules(),
        t.grams_co2,
        t.domains
            .iter()
            .map(|d| (d.name.clone(), d.joules, d.measured))
            .collect(),
    )
}

/// The caller's credentials as the bus daemon reports them.
async fn caller(conn: &Connection, header: &Header<'_>) -> fdo::Result<Peer> {
    let sender = header
        .sender()
        .ok_or_else(|| fdo::Error::AccessDenied("anonymous caller".into()))?;
    let proxy = fdo::DBusProxy::new(conn).await?;
    let creds = proxy
        .get_connection_credentials(sender.clone().into())
        .await?;
    let uid = creds.unix_user_id().ok_or_else(|| {
        fdo::Error::AccessDenied("the bus did not report the caller's uid".into())
    })?;
    let groups = creds.unix_group_ids().cloned().unwrap_or_default();
    Ok(Peer {
        uid,
        gid: groups.first().copied().unwrap_or(u32::MAX),
        pid: creds.process_id(),
        groups,
    })
}

#[interface(name = "org.anges.Meter1")]
impl Meter1 {
    /// Machine energy, all domains, joules.
    #[zbus(property(emits_changed_signal = "false"))]
    fn machine_joules(&self) -> f64 {
        self.service.latest().machine.joules()
    }

    /// Machine CO2-eq, grams.
    #[zbus(property(emits_changed_signal = "false"))]
    fn machine_grams_co2(&self) -> f64 {
        self.service.latest().machine.grams_co2
    }

    /// Carbon intensity used for the latest interval, gCO2eq/kWh.
    #[zbus(property(emits_changed_signal = "false"))]
    fn intensity_g_per_kwh(&self) -> f64 {
        self.service.latest().machine.intensity_g_per_kwh
    }

    /// Per-domain machine energy: (domain, joules, measured).
    #[zbus(property(emits_changed_signal = "false"))]
    fn domains(&self) -> Vec<DomainRow> {
        self.service
            .latest()
            .machine
            .domains
            .iter()
            .map(|d| (d.name.clone(), d.joules, d.measured))
            .collect()
    }

    /// Sources read from hardware counters.
    #[zbus(property(emits_changed_signal = "false"))]
    fn sources_measured(&self) -> Vec<String> {
        self.service.latest().health.sources_measured.clone()
    }

    /// Sources estimated from utilisation.
    #[zbus(property(emits_changed_signal = "false"))]
    fn sources_estimated(&self) -> Vec<String> {
        self.service.latest().health.sources_estimated.clone()
    }

    /// Sampler tick of the published totals.
    #[zbus(property(emits_changed_signal = "false"))]
    fn tick(&self) -> u64 {
        self.service.latest().tick
    }

    /// Minimum interval between publications, milliseconds.
    #[zbus(property(emits_changed_signal = "const"))]
    fn publish_interval_ms(&self) -> u64 {
        u64::try_from(self.service.publish_interval().as_millis()).unwrap_or(u64::MAX)
    }

    /// The daemon's aggregate counters since start, by name (`ServerStats::counters`:
    /// `open_connections`, `accepted`, `refused`, `bad_frames`, …): daemon-wide sums, nothing
    /// per uid.
    #[zbus(property(emits_changed_signal = "false"))]
    fn counters(&self) -> HashMap<String, u64> {
        self.service
            .server_stats()
            .counters()
            .into_iter()
            .map(|c| (c.name.to_owned(), c.value))
            .collect()
    }

    /// Registers the process tree rooted at `pid` (owned by the caller) as a job; its id.
    async fn register_job(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        name: String,
        pid: u32,
    ) -> fdo::Result<u64> {
        let peer = caller(conn, &header).await?;
        let job = self
            .service
            .register(&peer, name, JobTarget::Pid(pid))
            .await
            .map_err(to_fdo)?;
        Ok(job.job.id.0)
    }

    /// Registers a cgroup (relative to the cgroup root, owned by the caller) as a job; its id.
    async fn register_cgroup(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        name: String,
        cgroup: String,
    ) -> fdo::Result<u64> {
        let peer = caller(conn, &header).await?;
        let job = self
            .service
            .register(&peer, name, JobTarget::Cgroup(cgroup))
            .await
            .map_err(to_fdo)?;
        Ok(job.job.id.0)
    }

    /// A job's totals: (id, name, owner uid, joules, grams CO2-eq, domains).
    async fn job(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        id: u64,
        fresh: bool,
    ) -> fdo::Result<JobRow> {
        let peer = caller(conn, &header).await?;
        let job = self
            .service
            .job(&peer, JobId(id), fresh)
            .await
            .map_err(to_fdo)?;
        Ok(job_row(&job))
    }

    /// The jobs visible to the caller.
    async fn list_jobs(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> fdo::Result<Vec<JobRow>> {
        let peer = caller(conn, &header).await?;
        Ok(self.service.list(&peer).iter().map(job_row).collect())
    }

    /// Stops metering a job; its final totals.
    async fn unregister_job(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        id: u64,
    ) -> fdo::Result<JobRow> {
        let peer = caller(conn, &header).await?;
        let job = self
            .service
            .unregister(&peer, JobId(id))
            .await
            .map_err(to_fdo)?;
        Ok(job_row(&job))
    }
}

/// Connects to `bus`, exports [`Meter1`] and takes the well-known name.
pub async fn publish(bus: &Bus, service: Service) -> zbus::Result<Connection> {
    let builder = match bus {
        Bus::System => zbus::connection::Builder::system(),
        Bus::Session => zbus::connection::Builder::session(),
        Bus::Address(a) => zbus::connection::Builder::address(a.as_str()),
    };
    builder
        .serve_at(OBJECT_PATH, Meter1 { service })
        .name(BUS_NAME)
        .build()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_standard_dbus_errors() {
        let e = to_fdo(ProtoError::new(ErrorKind::PermissionDenied, "no"));
        assert!(matches!(e, fdo::Error::AccessDenied(_)));
        let e = to_fdo(ProtoError::new(ErrorKind::NoSuchJob, "no"));
        assert!(matches!(e, fdo::Error::InvalidArgs(_)));
        let e = to_fdo(ProtoError::new(ErrorKind::Internal, "x"));
        assert!(matches!(e, fdo::Error::Failed(_)));
    }
}
