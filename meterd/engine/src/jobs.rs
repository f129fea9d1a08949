//! Jobs: what a job is (a root PID and its descendants, or a cgroup), its public totals, and the
//! [`Tracker`] that follows its processes and measures its CPU time.
//!
//! CPU time of a process tree is `Σ over live members (utime + stime + cutime + cstime)` plus the
//! last-seen time of members that vanished without being reaped by another member. When a member
//! reaps a child, the child's final time moves into the reaper's `cutime` at the moment the child
//! disappears, so the sum stays continuous and short-lived children that were never seen are still
//! counted. A high-water mark keeps the job's CPU time monotone.
//!
//! Cost: members are read every attribution tick through kept-open `/proc/<pid>/stat` descriptors
//! (one `pread` each; an exited process reads `ESRCH`, so a recycled PID is never mistaken for a
//! member). The list of members is refreshed by a full `/proc` scan only every `scan_interval`
//! (and at once when a job is added), which is the expensive part.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::procfs::{
    MachineCpu, clock_ticks_per_second, parse_cgroup_cpu_seconds, parse_pid_stat, parse_proc_stat,
};
use crate::root::{ReadableFile, SysRoot};
use crate::sensors::{DomainKind, Provenance};

/// Stable job identifier; persisted, never reused by one state directory. The protocol's own
/// type, so the engine's ids go on the wire as they are.
pub use anges_common::protocol::JobId;

/// What a client registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Free-form name.
    pub name: String,
    /// Root process: the job is this process and all its descendants.
    pub root_pid: Option<u32>,
    /// A cgroup directory (absolute, or relative to `/sys/fs/cgroup`); its `cpu.stat` then gives
    /// the CPU time. Wins over `root_pid` for CPU time when both are given.
    pub cgroup: Option<PathBuf>,
    /// Owner (for access control by the servers).
    pub owner_uid: u32,
}

/// Cumulative figures of one energy domain.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DomainTotals {
    /// Kind of hardware.
    pub kind: DomainKind,
    /// Measured or estimated.
    pub provenance: Provenance,
    /// Energy, joules.
    pub joules: f64,
    /// CO2-eq, grams (integrated over time, PUE included).
    pub grams: f64,
}

/// Cumulative figures of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobTotals {
    /// Identifier.
    pub id: JobId,
    /// What was registered.
    pub spec: JobSpec,
    /// All processes exited (or the cgroup vanished); totals are final.
    pub finished: bool,
    /// CPU time of the job's processes since registration, seconds.
    pub cpu_seconds: f64,
    /// Per-domain totals, by domain id.
    pub domains: BTreeMap<String, DomainTotals>,
    /// Σ joules over domains.
    pub joules: f64,
    /// Σ grams over domains.
    pub grams: f64,
    /// Grid intensity used for the latest interval, g/kWh (PUE not included).
    pub intensity_g_per_kwh: f64,
    /// Unix time (s) of the latest accounting tick included.
    pub timestamp: f64,
    /// Accounting tick of the latest update.
    pub tick: u64,
}

/// Cumulative figures of the whole machine.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MachineTotals {
    /// Per-domain machine totals.
    pub domains: BTreeMap<String, DomainTotals>,
    /// Per-domain energy no job accounted for.
    pub unattributed: BTreeMap<String, DomainTotals>,
    /// Σ joules over domains.
    pub joules: f64,
    /// Σ grams over domains.
    pub grams: f64,
    /// Grid intensity used for the latest interval, g/kWh (PUE not included).
    pub intensity_g_per_kwh: f64,
    /// PUE applied.
    pub pue: f64,
    /// Unix time (s) of the latest accounting tick.
    pub timestamp: f64,
    /// Accounting tick.
    pub tick: u64,
}

/// How the tracker measures one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSource {
    /// A process tree; `start_ticks` pins the root PID to the process registered.
    Tree {
        /// Root PID.
        root_pid: u32,
        /// Its start time (clock ticks after boot).
        start_ticks: u64,
    },
    /// A cgroup directory (resolved).
    Cgroup(PathBuf),
}

struct Member {
    file: ReadableFile,
    ppid: u32,
    ticks: u64,
}

struct TrackedJob {
    source: JobSource,
    members: HashMap<u32, Member>,
    cgroup_file: Option<ReadableFile>,
    dead_ticks: u64,
    /// Monotone CPU seconds since tracking began (high-water mark); `None` before the baseline.
    cpu: Option<f64>,
    finished: bool,
}

/// One job's CPU use over the last interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobCpu {
    /// Job.
    pub id: JobId,
    /// CPU seconds used in the interval.
    pub cpu_seconds: f64,
    /// Whether the job has no live process left.
    pub finished: bool,
}

/// CPU use over the last interval.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CpuSample {
    /// Busy CPU seconds of the machine.
    pub busy_seconds: f64,
    /// Available CPU seconds (logical CPUs × interval).
    pub capacity_seconds: f64,
    /// Per-job use.
    pub jobs: Vec<JobCpu>,
}

/// A cgroup path as given (absolute) or relative to `/sys/fs/cgroup`, under the root.
pub fn resolve_cgroup(root: &SysRoot, cg: &Path) -> PathBuf {
    if cg.is_absolute() {
        root.path(cg)
    } else {
        root.path("/sys/fs/cgroup").join(cg)
    }
}

/// Reads the start time of `pid` (to register it), or `None` when there is no such process.
pub fn process_start_ticks(root: &SysRoot, pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(root.path(format!("/proc/{pid}/stat"))).ok()?;
    parse_pid_stat(&text).map(|s| s.start_ticks)
}

/// Follows the registered jobs' processes and measures their CPU time.
pub struct Tracker {
    root: SysRoot,
    ticks_per_s: f64,
    scan_interval: Duration,
    last_scan: Option<Instant>,
    jobs: BTreeMap<JobId, TrackedJob>,
    pid_to_job: HashMap<u32, JobId>,
    stat: Option<ReadableFile>,
    last_machine: Option<(MachineCpu, Instant)>,
    scan_buf: String,
    /// Number of full `/proc` scans done (for the benchmark and health).
    pub scans: u64,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// A tracker reading under `root`, rescanning `/proc` every `scan_interval`.
    pub fn new(root: SysRoot, scan_interval: Duration) -> Self {
        let stat = ReadableFile::open(root.path("/proc/stat")).ok();
        Tracker {
            root,
            ticks_per_s: clock_ticks_per_second(),
            scan_interval,
            last_scan: None,
            jobs: BTreeMap::new(),
            pid_to_job: HashMap::new(),
            stat,
            last_machine: None,
            scan_buf: String::with_capacity(512),
            scans: 0,
        }
    }

    /// Makes the tracked set equal to `wanted` (new jobs get a scan at the next sample).
    pub fn sync(&mut self, wanted: &[(JobId, JobSource)]) {
        let keep: HashSet<JobId> = wanted.iter().map(|(id, _)| *id).collect();
        self.jobs.retain(|id, _| keep.contains(id));
        for (id, source) in wanted {
            if self.jobs.contains_key(id) {
                continue;
            }
            let cgroup_file = match source {
                JobSource::Cgroup(dir) => match ReadableFile::open(dir.join("cpu.stat"))
                    .or_else(|_| ReadableFile::open(dir.join("cpuacct.usage")))
                {
                    Ok(f) => Some(f),
                    Err(e) => {
                        tracing::warn!(job = %id, "cgroup {} has no readable cpu.stat: {e}", dir.display());
                        None
                    }
                },
                JobSource::Tree { .. } => None,
            };
            let finished = matches!(source, JobSource::Cgroup(_)) && cgroup_file.is_none();
            self.jobs.insert(
                *id,
                TrackedJob {
                    source: source.clone(),
                    members: HashMap::new(),
                    cgroup_file,
                    dead_ticks: 0,
                    cpu: None,
                    finished,
                },
            );
            self.last_scan = None;
        }
    }

    /// The job a PID belongs to (as of the latest scan), for GPU attribution.
    pub fn job_of_pid(&self, pid: u32) -> Option<JobId> {
        self.pid_to_job.get(&pid).copied()
    }

    /// Number of processes currently followed.
    pub fn member_count(&self) -> usize {
        self.jobs.values().map(|j| j.members.len()).sum()
    }

    fn scan(&mut self) {
        self.scans += 1;
        let has_tree = self
            .jobs
            .values()
            .any(|j| matches!(j.source, JobSource::Tree { .. }) && !j.finished);
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut starts: HashMap<u32, (u64, u32)> = HashMap::new();
        if has_tree {
            let proc_dir = self.root.path("/proc");
            let Ok(entries) = std::fs::read_dir(&proc_dir) else {
                tracing::warn!("cannot list {}", proc_dir.display());
                return;
            };
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                self.scan_buf.clear();
                let Ok(mut f) = std::fs::File::open(entry.path().join("stat")) else {
                    continue;
                };
                if std::io::Read::read_to_string(&mut f, &mut self.scan_buf).is_err() {
                    continue;
                }
                if let Some(s) = parse_pid_stat(&self.scan_buf) {
                    children.entry(s.ppid).or_default().push(pid);
                    starts.insert(pid, (s.start_ticks, s.ppid));
                }
            }
        }
        self.pid_to_job.clear();
        for (id, job) in &mut self.jobs {
            if job.finished {
                continue;
            }
            match &job.source {
                JobSource::Tree {
                    root_pid,
                    start_ticks,
                } => {
                    let mut stack: Vec<u32> = job.members.keys().copied().collect();
                    if starts.get(root_pid).map(|s| s.0) == Some(*start_ticks) {
                        stack.push(*root_pid);
                    }
                    let mut seen: HashSet<u32> = HashSet::new();
                    while let Some(pid) = stack.pop() {
                        if !seen.insert(pid) {
                            continue;
                        }
                        if let Some(kids) = children.get(&pid) {
                            stack.extend(kids.iter().copied());
                        }
                    }
                    for pid in seen {
                        if job.members.contains_key(&pid) || !starts.contains_key(&pid) {
                            continue;
                        }
                        let path = self.root.path(format!("/proc/{pid}/stat"));
                        if let Ok(file) = ReadableFile::open(path) {
                            let ppid = starts.get(&pid).map_or(0, |s| s.1);
                            job.members.insert(
                                pid,
                                Member {
                                    file,
                                    ppid,
                                    ticks: 0,
                                },
                            );
                        }
                    }
                    for pid in job.members.keys() {
                        self.pid_to_job.insert(*pid, *id);
                    }
                }
                JobSource::Cgroup(dir) => {
                    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                        for pid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                            self.pid_to_job.insert(pid, *id);
                        }
                    }
                }
            }
        }
    }

    fn machine(&mut self, now: Instant) -> (f64, f64) {
        let Some(file) = self.stat.as_mut() else {
            return (0.0, 0.0);
        };
        let Some(cpu) = file.read().ok().and_then(parse_proc_stat) else {
            return (0.0, 0.0);
        };
        let out = match self.last_machine {
            Some((last, t)) => (
                cpu.busy.saturating_sub(last.busy) as f64 / self.ticks_per_s,
                f64::from(cpu.cpus.max(1)) * now.saturating_duration_since(t).as_secs_f64(),
            ),
            None => (0.0, 0.0),
        };
        self.last_machine = Some((cpu, now));
        out
    }

    /// Measures the interval since the previous call.
    pub fn sample(&mut self, now: Instant) -> CpuSample {
        if self
            .last_scan
            .is_none_or(|t| now.saturating_duration_since(t) >= self.scan_interval)
        {
            self.scan();
            self.last_scan = Some(now);
        }
        let (busy_seconds, capacity_seconds) = self.machine(now);
        let ticks_per_s = self.ticks_per_s;
        let mut jobs = Vec::with_capacity(self.jobs.len());
        for (id, job) in &mut self.jobs {
            let now_seconds = if job.finished {
                None
            } else {
                match job.cgroup_file.as_mut() {
                    Some(f) => match f.read().ok().and_then(parse_cgroup_cpu_seconds) {
                        Some(s) => Some(s),
                        None => {
                            job.finished = true;
                            None
                        }
                    },
                    None => Some(tree_ticks(job) as f64 / ticks_per_s),
                }
            };
            let mut delta = 0.0;
            if let Some(s) = now_seconds {
                match job.cpu {
                    None => job.cpu = Some(s),
                    Some(prev) if s > prev => {
                        delta = s - prev;
                        job.cpu = Some(s);
                    }
                    Some(_) => {}
                }
            }
            if matches!(job.source, JobSource::Tree { .. })
                && job.members.is_empty()
                && job.cpu.is_some()
            {
                job.finished = true;
            }
            jobs.push(JobCpu {
                id: *id,
                cpu_seconds: delta,
                finished: job.finished,
            });
        }
        CpuSample {
            busy_seconds,
            capacity_seconds,
            jobs,
        }
    }
}

/// Re-reads a tree job's members and returns its CPU ticks (see the module doc).
fn tree_ticks(job: &mut TrackedJob) -> u64 {
    let mut gone = Vec::new();
    let mut live = 0u64;
    for (pid, m) in &mut job.members {
        match m.file.read().ok().and_then(parse_pid_stat) {
            Some(s) => {
                m.ticks = s.cpu_ticks;
                m.ppid = s.ppid;
                live += s.cpu_ticks;
            }
            None => gone.push(*pid),
        }
    }
    // A member reaped by another member (even one that vanished in the same interval): its final
    // time is in the reaper's cutime. Otherwise (reaped by a non-member such as init) keep its
    // last-seen time.
    for pid in &gone {
        if let Some(m) = job.members.get(pid)
            && !job.members.contains_key(&m.ppid)
        {
            job.dead_ticks += m.ticks;
        }
    }
    for pid in gone {
        job.members.remove(&pid);
    }
    live + job.dead_ticks
}
