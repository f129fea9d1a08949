//! The request semantics shared by the socket and D-Bus front ends: validation, permissions,
//! bounds and answers, over the published snapshots and the backend.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anges_common::codec;
use anges_common::protocol::{
    ErrorKind, JobId, JobReading, JobTarget, JobsPage, MAX_CGROUP_PATH, MAX_JOB_NAME,
    MAX_JOBS_PAGE, MAX_JOBS_PAGE_BYTES, ProtoError, Reading, Request, Response, ServerStats,
};
use tokio::sync::watch;

use super::access::{AccessPolicy, Peer};
use super::backend::{BackendError, JobSpec, JobTotals, MeterBackend};
use super::publish::Snapshot;
use super::socket::SocketStats;

/// Bounds on what one caller may ask for.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    /// Most jobs one non-root uid may have registered at once (its share of `max_jobs`).
    pub max_jobs_per_uid: usize,
    /// Most jobs non-root uids may have registered at once, all together (root is exempt, so
    /// that the admin can always meter).
    pub max_jobs: usize,
    /// Longest a fresh query waits for the next publication.
    pub fresh_timeout: Duration,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            max_jobs_per_uid: 64,
            max_jobs: 4096,
            fresh_timeout: Duration::from_secs(5),
        }
    }
}

/// The meter as the front ends serve it.
#[derive(Clone)]
pub struct Service {
    backend: Arc<dyn MeterBackend>,
    published: watch::Receiver<Arc<Snapshot>>,
    policy: AccessPolicy,
    limits: ServiceLimits,
    publish_interval: Duration,
    /// Jobs unregistered since the latest publication (which still lists them).
    gone: Arc<Mutex<HashSet<JobId>>>,
    /// The socket server's counters, served by [`Request::Status`] and on D-Bus.
    stats: Arc<SocketStats>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("policy", &self.policy)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn backend_error(e: BackendError) -> ProtoError {
    match e {
        BackendError::NoSuchJob(id) => {
            ProtoError::new(ErrorKind::NoSuchJob, format!("no job {id}"))
        }
        BackendError::NoSuchTarget(t) => ProtoError::new(ErrorKind::NoSuchTarget, t),
        BackendError::Rejected(m) => ProtoError::new(ErrorKind::InvalidRequest, m),
        BackendError::Internal(m) => ProtoError::new(ErrorKind::Internal, m),
    }
}

fn no_such_job(id: JobId) -> ProtoError {
    ProtoError::new(ErrorKind::NoSuchJob, format!("no job {id} visible to you"))
}

/// Checks a job name: non-empty, bounded, printable.
fn check_name(name: &str) -> Result<(), ProtoError> {
    if name.is_empty() || name.len() > MAX_JOB_NAME || name.chars().any(char::is_control) {
        return Err(ProtoError::new(
            ErrorKind::InvalidRequest,
            format!("a job name must be 1..={MAX_JOB_NAME} bytes of printable text"),
        ));
    }
    Ok(())
}

impl Service {
    /// A service over `backend` reading snapshots from `published`.
    pub fn new(
        backend: Arc<dyn MeterBackend>,
        published: watch::Receiver<Arc<Snapshot>>,
        policy: AccessPolicy,
        limits: ServiceLimits,
        publish_interval: Duration,
    ) -> Self {
        Service {
            backend,
            published,
            policy,
            limits,
            publish_interval,
            gone: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// The counters the socket server updates (one set per service and its clones).
    pub fn stats(&self) -> &Arc<SocketStats> {
        &self.stats
    }

    /// A copy of the daemon-wide counters, for any caller (aggregates only: see
    /// [`ServerStats`]).
    pub fn server_stats(&self) -> ServerStats {
        self.stats.server_stats()
    }

    fn is_gone(&self, id: JobId) -> bool {
        self.gone
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
    }

    /// A job of `snap` unless it was unregistered after `snap` was published.
    pub fn published_job(&self, snap: &Snapshot, id: JobId) -> Option<JobReading> {
        if self.is_gone(id) {
            return None;
        }
        snap.job_reading(id)
    }

    /// The access rules.
    pub fn policy(&self) -> &AccessPolicy {
        &self.policy
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn MeterBackend> {
        &self.backend
    }

    /// Minimum interval between publications.
    pub fn publish_interval(&self) -> Duration {
        self.publish_interval
    }

    /// The latest published snapshot.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.published.borrow().clone()
    }

    /// A receiver of publications.
    pub fn receiver(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.published.clone()
    }

    /// The first snapshot that includes a sampler tick after this call.
    pub async fn fresh(&self) -> Result<Arc<Snapshot>, ProtoError> {
        let after = self.backend.tick();
        let mut rx = self.published.clone();
        let wait = rx.wait_for(|s| s.tick > after);
        match tokio::time::timeout(self.limits.fresh_timeout, wait).await {
            Ok(Ok(s)) => Ok(s.clone()),
            Ok(Err(_)) => Err(ProtoError::new(
                ErrorKind::Internal,
                "the meter is stopping",
            )),
            Err(_) => Err(ProtoError::new(
                ErrorKind::Timeout,
                format!(
                    "no new sampler tick within {:?}; the sampler may be stalled",
                    self.limits.fresh_timeout
                ),
            )),
        }
    }

    async fn snapshot(&self, fresh: bool) -> Result<Arc<Snapshot>, ProtoError> {
        if fresh {
            self.fresh().await
        } else {
            Ok(self.latest())
        }
    }

    /// Answers one request other than `Hello` and `Subscribe` (which the front ends own).
    pub async fn handle(&self, peer: &Peer, req: Request) -> Response {
        let out = match req {
            Request::RegisterJob { name, target } => {
                self.register(peer, name, target).await.map(Response::Job)
            }
            Request::Reattach { job } => self.job(peer, job, false).await.map(Response::Job),
            Request::UnregisterJob { job } => {
                self.unregister(peer, job).await.map(Response::Unregistered)
            }
            Request::QueryJob { job, fresh } => self.job(peer, job, fresh).await.map(Response::Job),
            Request::QueryMachine { fresh } => self.machine(fresh).await.map(Response::Machine),
            Request::ListJobs => Ok(Response::Jobs(self.list(peer))),
            Request::ListJobsPage { after, limit } => {
                Ok(Response::JobsPage(self.list_page(peer, after, limit)))
            }
            Request::Status => Ok(Response::Status(self.server_stats())),
            Request::Hello { .. } => Err(ProtoError::new(
                ErrorKind::InvalidRequest,
                "the handshake was already done",
            )),
            Request::Subscribe { .. } => Err(ProtoError::new(
                ErrorKind::InvalidRequest,
                "subscriptions are not available here",
            )),
        };
        out.unwrap_or_else(Response::Error)
    }

    /// Registers a job for `peer` after checking the name, ownership and the per-uid bound.
    pub async fn register(
        &self,
        peer: &Peer,
        name: String,
        target: JobTarget,
    ) -> Result<JobReading, ProtoError> {
        check_name(&name)?;
        let (root_pid, cgroup) = match &target {
            JobTarget::Pid(pid) => {
                self.policy.check_pid(peer, *pid)?;
                (Some(*pid), None)
            }
            JobTarget::Cgroup(path) => {
                if path.len() > MAX_CGROUP_PATH {
                    return Err(ProtoError::new(
                        ErrorKind::InvalidRequest,
                        "cgroup path too long",
                    ));
                }
                (None, Some(self.policy.check_cgroup(peer, path)?))
            }
        };
        if peer.uid != 0 {
            let jobs = self.backend.jobs();
            let owned = jobs.iter().filter(|j| j.meta.owner_uid == peer.uid).count();
            if owned >= self.limits.max_jobs_per_uid {
                return Err(ProtoError::new(
                    ErrorKind::LimitReached,
                    format!("uid {} already has {owned} jobs", peer.uid),
                ));
            }
            let unprivileged = jobs.iter().filter(|j| j.meta.owner_uid != 0).count();
            if unprivileged >= self.limits.max_jobs {
                return Err(ProtoError::new(
                    ErrorKind::LimitReached,
                    format!("the daemon already meters {unprivileged} jobs of users"),
                ));
            }
        }
        let spec = JobSpec {
            name,
            root_pid,
            cgroup,
            owner_uid: peer.uid,
        };
        let backend = self.backend.clone();
        let id = tokio::task::spawn_blocking(move || backend.register_job(spec))
            .await
            .map_err(|e| ProtoError::new(ErrorKind::Internal, e.to_string()))?
            .map_err(backend_error)?;
        tracing::info!(job = id.0, uid = peer.uid, ?target, "job registered");
        self.job(peer, id, false).await
    }

    /// A job's reading, if visible to `peer`. A job registered after the latest publication is
    /// answered from the next one.
    pub async fn job(&self, peer: &Peer, id: JobId, fresh: bool) -> Result<JobReading, ProtoError> {
        let snap = self.snapshot(fresh).await?;
        let reading = match self.published_job(&snap, id) {
            Some(r) => r,
            None => {
                let Some(current) = self.backend.job(id) else {
                    return Err(no_such_job(id));
                };
                if !self.policy.can_see(peer, current.meta.owner_uid) {
                    return Err(no_such_job(id));
                }
                let next = self.fresh().await?;
                self.published_job(&next, id)
                    .ok_or_else(|| no_such_job(id))?
            }
        };
        if !self.policy.can_see(peer, reading.job.owner_uid) {
            return Err(no_such_job(id));
        }
        Ok(reading)
    }

    /// Unregisters a job visible to `peer`; its final reading.
    pub async fn unregister(&self, peer: &Peer, id: JobId) -> Result<JobReading, ProtoError> {
        let owner = match self.backend.job(id) {
            Some(j) => j.meta.owner_uid,
            None => return Err(no_such_job(id)),
        };
        if !self.policy.can_see(peer, owner) {
            return Err(no_such_job(id));
        }
        let backend = self.backend.clone();
        let last = tokio::task::spawn_blocking(move || backend.unregister_job(id))
            .await
            .map_err(|e| ProtoError::new(ErrorKind::Internal, e.to_string()))?
            .map_err(backend_error)?;
        tracing::info!(job = id.0, uid = peer.uid, "job unregistered");
        let snap = self.latest();
        {
            // Hide the job until a publication without it; forget ids no longer published.
            let mut gone = self.gone.lock().unwrap_or_else(|p| p.into_inner());
            gone.retain(|g| snap.jobs.contains_key(g));
            gone.insert(id);
        }
        Ok(snap.job_reading_of(&last))
    }

    /// The machine's reading.
    pub async fn machine(&self, fresh: bool) -> Result<Reading, ProtoError> {
        Ok(self.snapshot(fresh).await?.machine_reading())
    }

    /// The jobs of `snap` visible to `peer` with an id above `after`, by id.
    fn visible<'s>(
        &self,
        peer: &Peer,
        snap: &'s Snapshot,
        after: Option<JobId>,
    ) -> Vec<&'s JobTotals> {
        let mut out: Vec<&JobTotals> = snap
            .jobs
            .values()
            .filter(|j| {
                after.is_none_or(|a| j.meta.id > a)
                    && self.policy.can_see(peer, j.meta.owner_uid)
                    && !self.is_gone(j.meta.id)
            })
            .collect();
        out.sort_by_key(|j| j.meta.id);
        out
    }

    /// The jobs visible to `peer`, by id.
    pub fn list(&self, peer: &Peer) -> Vec<JobReading> {
        let snap = self.latest();
        self.visible(peer, &snap, None)
            .into_iter()
            .map(|j| snap.job_reading_of(j))
            .collect()
    }

    /// One page of the jobs visible to `peer`: those after `after`, by id, at most `limit`
    /// (clamped to 1..=[`MAX_JOBS_PAGE`]) and at most [`MAX_JOBS_PAGE_BYTES`] encoded, so that
    /// the answer always fits in one frame. `next` is the last job's id when more follow.
    pub fn list_page(&self, peer: &Peer, after: Option<JobId>, limit: u32) -> JobsPage {
        let limit = usize::try_from(limit.clamp(1, MAX_JOBS_PAGE)).unwrap_or(1);
        let snap = self.latest();
        let candidates = self.visible(peer, &snap, after);
        let mut jobs = Vec::new();
        let mut bytes = 0;
        for j in &candidates {
            if jobs.len() == limit {
                break;
            }
            let reading = snap.job_reading_of(j);
            // One job always fits (its name and cgroup path are bounded far below a frame).
            let len = codec::encode(&reading).map_or(MAX_JOBS_PAGE_BYTES, |f| f.len());
            if !jobs.is_empty() && bytes + len > MAX_JOBS_PAGE_BYTES {
                break;
            }
            bytes += len;
            jobs.push(reading);
        }
        let next = if jobs.len() < candidates.len() {
            jobs.last().map(|j| j.job.id)
        } else {
            None
        };
        JobsPage { jobs, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(check_name("train-esol").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name(&"x".repeat(MAX_JOB_NAME + 1)).is_err());
    }

    #[test]
    fn backend_errors_keep_their_kind() {
        assert_eq!(
            backend_error(BackendError::NoSuchJob(JobId(3))).kind,
            ErrorKind::NoSuchJob
        );
        assert_eq!(
            backend_error(BackendError::NoSuchTarget("p".into())).kind,
            ErrorKind::NoSuchTarget
        );
        assert_eq!(
            backend_error(BackendError::Rejected("r".into())).kind,
            ErrorKind::InvalidRequest
        );
    }
}
