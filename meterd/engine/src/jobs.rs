//! Jobs: what a job is (a root PID and its descendants, or a cgroup), its public totals, and the
//! [`Tracker`] that follows its processes and measures its CPU time.
//!
//! CPU time is measured per process and per cgroup, then shared, so that a process's CPU time
//! counts once however many jobs contain it: registering one's own busy PID many times divides
//! that PID's own share among the duplicates and never shrinks anyone else's (issue 27).
//! - A process in `k` live tree jobs gives each `1/k` of its delta. If it also lies inside a
//!   registered cgroup, the cgroup jobs covering that cgroup are among its sharers.
//! - Jobs registered on the same cgroup share its delta equally. A cgroup's delta excludes the
//!   deltas of registered cgroups below it and of the tree-tracked processes inside it (shared as
//!   above); each such exclusive region is split among the jobs whose cgroup is that path or an
//!   ancestor of it.
//!
//! So Σ jobs' CPU time never exceeds the CPU time of the processes they cover, and the split of a
//! domain's energy (`attribution::split`) is not skewed by duplicates.
//!
//! A process's CPU time is `utime + stime + cutime + cstime`: when a tracked process reaps a
//! child, the child's final time moves into the reaper's `cutime`, so short-lived children that
//! were never seen are still counted. A tracked process that vanishes was counted up to its last
//! reading; when its nearest tracked ancestor that is still alive (its reaper) is known, that
//! already-counted part becomes a debt that the reaper's next increases pay off, since its
//! `cutime` now holds it: nothing counts twice, and the unseen tail goes to the reaper's jobs. A
//! process reaped by an untracked parent (such as init) keeps what was counted. Every process's
//! figure is a high-water mark, so every job's CPU time is monotone.
//!
//! Cost: each tracked process is read once per accounting tick, whatever the number of jobs that
//! contain it, through a kept-open `/proc/<pid>/stat` descriptor (one `pread`; an exited process
//! reads `ESRCH`, so a recycled PID is never mistaken for a member), and each registered cgroup's
//! `cpu.stat` once. The set of processes is refreshed by a full `/proc` scan only every
//! `scan_interval` (and at once when a job is added), which is the expensive part.

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

/// A process followed for one or more tree jobs.
struct Proc {
    file: ReadableFile,
    ppid: u32,
    /// CPU ticks counted so far (high-water mark of its readings).
    ticks: u64,
    /// Ticks of vanished descendants already counted and now inside this process's `cutime`.
    debt: u64,
    /// This tick's reading (`None`: gone).
    reading: Option<u64>,
    /// Tree jobs that contain it.
    jobs: Vec<JobId>,
    /// The deepest registered cgroup it lies in (index into `Tracker::cgroups`).
    region: Option<usize>,
}

/// A registered cgroup (one per distinct path, whatever the number of jobs on it).
struct CgNode {
    path: PathBuf,
    file: Option<ReadableFile>,
    /// Usage counted so far, seconds (`None` before the baseline).
    last: Option<f64>,
    /// The nearest registered ancestor.
    parent: Option<usize>,
    /// Jobs on this path or on a registered ancestor: who shares its exclusive CPU time.
    cover: Vec<JobId>,
    /// This tick's delta, then its exclusive part.
    delta: f64,
    /// CPU seconds of tree-tracked processes inside it this tick.
    tracked: f64,
}

struct TrackedJob {
    source: JobSource,
    /// A tree job's first scan is done (its members' times so far are the baseline).
    scanned: bool,
    finished: bool,
    /// Seconds accumulated during the current sample.
    acc: f64,
    /// Processes that contain it (tree jobs), counted during the current sample.
    members: usize,
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

/// Follows the registered jobs' processes and cgroups and measures their CPU time, each
/// process and cgroup once (see the module doc).
pub struct Tracker {
    root: SysRoot,
    ticks_per_s: f64,
    scan_interval: Duration,
    last_scan: Option<Instant>,
    jobs: BTreeMap<JobId, TrackedJob>,
    procs: HashMap<u32, Proc>,
    cgroups: Vec<CgNode>,
    pid_to_job: HashMap<u32, JobId>,
    stat: Option<ReadableFile>,
    last_machine: Option<(MachineCpu, Instant)>,
    scan_buf: String,
    gone: Vec<u32>,
    /// Number of full `/proc` scans done (for the benchmark and health).
    pub scans: u64,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("jobs", &self.jobs.len())
            .field("processes", &self.procs.len())
            .field("cgroups", &self.cgroups.len())
            .finish_non_exhaustive()
    }
}

/// Opens a cgroup's CPU usage file (`cpu.stat`, else v1 `cpuacct.usage`).
fn open_cgroup_usage(dir: &Path) -> Option<ReadableFile> {
    match ReadableFile::open(dir.join("cpu.stat"))
        .or_else(|_| ReadableFile::open(dir.join("cpuacct.usage")))
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!("cgroup {} has no readable cpu.stat: {e}", dir.display());
            None
        }
    }
}

/// The cgroup v2 path of a process from its `/proc/<pid>/cgroup` text, resolved under `root`.
fn process_cgroup(root: &SysRoot, text: &str) -> Option<PathBuf> {
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(resolve_cgroup(
        root,
        Path::new(rel.trim().trim_start_matches('/')),
    ))
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
            procs: HashMap::new(),
            cgroups: Vec::new(),
            pid_to_job: HashMap::new(),
            stat,
            last_machine: None,
            scan_buf: String::with_capacity(512),
            gone: Vec::new(),
            scans: 0,
        }
    }

    /// Makes the tracked set equal to `wanted` (new jobs get a scan at the next sample).
    pub fn sync(&mut self, wanted: &[(JobId, JobSource)]) {
        let keep: HashSet<JobId> = wanted.iter().map(|(id, _)| *id).collect();
        let before = self.jobs.len();
        self.jobs.retain(|id, _| keep.contains(id));
        let mut changed = self.jobs.len() != before;
        for (id, source) in wanted {
            if self.jobs.contains_key(id) {
                continue;
            }
            self.jobs.insert(
                *id,
                TrackedJob {
                    source: source.clone(),
                    scanned: false,
                    finished: false,
                    acc: 0.0,
                    members: 0,
                },
            );
            changed = true;
        }
        if changed {
            let jobs = &self.jobs;
            for p in self.procs.values_mut() {
                p.jobs.retain(|j| jobs.contains_key(j));
            }
            self.procs.retain(|_, p| !p.jobs.is_empty());
            self.rebuild_cgroups();
            self.last_scan = None;
        }
    }

    /// One node per distinct registered cgroup path, keeping the baselines of paths already
    /// tracked; links each to its nearest registered ancestor.
    fn rebuild_cgroups(&mut self) {
        let mut old: HashMap<PathBuf, CgNode> = self
            .cgroups
            .drain(..)
            .map(|n| (n.path.clone(), n))
            .collect();
        let mut paths: BTreeMap<PathBuf, Vec<JobId>> = BTreeMap::new();
        for (id, job) in &self.jobs {
            if let JobSource::Cgroup(dir) = &job.source
                && !job.finished
            {
                paths.entry(dir.clone()).or_default().push(*id);
            }
        }
        let index: HashMap<&Path, usize> = paths
            .keys()
            .enumerate()
            .map(|(i, p)| (p.as_path(), i))
            .collect();
        for path in paths.keys() {
            let parent = path.ancestors().skip(1).find_map(|a| index.get(a).copied());
            let cover = path
                .ancestors()
                .filter_map(|a| paths.get(a))
                .flatten()
                .copied()
                .collect();
            let (file, last) = match old.remove(path) {
                Some(n) => (n.file, n.last),
                None => (open_cgroup_usage(path), None),
            };
            self.cgroups.push(CgNode {
                path: path.clone(),
                file,
                last,
                parent,
                cover,
                delta: 0.0,
                tracked: 0.0,
            });
        }
        for job in self.jobs.values_mut() {
            if let JobSource::Cgroup(dir) = &job.source
                && index
                    .get(dir.as_path())
                    .is_none_or(|&i| self.cgroups[i].file.is_none())
            {
                job.finished = true;
            }
        }
        for p in self.procs.values_mut() {
            p.region = None;
        }
    }

    /// The job a PID belongs to (as of the latest scan), for GPU attribution.
    pub fn job_of_pid(&self, pid: u32) -> Option<JobId> {
        self.pid_to_job.get(&pid).copied()
    }

    /// Number of processes currently followed (each once, whatever the number of its jobs).
    pub fn member_count(&self) -> usize {
        self.procs.len()
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
        let mut members: HashMap<JobId, Vec<u32>> = HashMap::new();
        for (pid, p) in &self.procs {
            for j in &p.jobs {
                members.entry(*j).or_default().push(*pid);
            }
        }
        // (pid, job, whether the job takes its baseline now)
        let mut found: Vec<(u32, JobId, bool)> = Vec::new();
        for (id, job) in &mut self.jobs {
            let JobSource::Tree {
                root_pid,
                start_ticks,
            } = &job.source
            else {
                continue;
            };
            if job.finished {
                continue;
            }
            let mut stack = members.remove(id).unwrap_or_default();
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
            found.extend(
                seen.into_iter()
                    .filter(|pid| starts.contains_key(pid))
                    .map(|pid| (pid, *id, !job.scanned)),
            );
            job.scanned = true;
        }
        for (pid, id, baseline) in found {
            if let Some(p) = self.procs.get_mut(&pid) {
                if !p.jobs.contains(&id) {
                    p.jobs.push(id);
                }
                continue;
            }
            let Ok(mut file) = ReadableFile::open(self.root.path(format!("/proc/{pid}/stat")))
            else {
                continue;
            };
            // A process already there when its job is registered counts from now; one found
            // later was born since (a descendant), so all its time counts.
            let ticks = if baseline {
                match file.read().ok().and_then(parse_pid_stat) {
                    Some(s) => s.cpu_ticks,
                    None => continue,
                }
            } else {
                0
            };
            self.procs.insert(
                pid,
                Proc {
                    file,
                    ppid: starts.get(&pid).map_or(0, |s| s.1),
                    ticks,
                    debt: 0,
                    reading: None,
                    jobs: vec![id],
                    region: None,
                },
            );
        }
        self.pid_to_job.clear();
        if !self.cgroups.is_empty() {
            let index: HashMap<&Path, usize> = self
                .cgroups
                .iter()
                .enumerate()
                .map(|(i, n)| (n.path.as_path(), i))
                .collect();
            for (pid, p) in &mut self.procs {
                p.region = std::fs::read_to_string(self.root.path(format!("/proc/{pid}/cgroup")))
                    .ok()
                    .and_then(|text| process_cgroup(&self.root, &text))
                    .and_then(|cg| cg.ancestors().find_map(|a| index.get(a).copied()));
            }
            for n in &self.cgroups {
                let Some(&first) = n.cover.first() else {
                    continue;
                };
                if let Ok(text) = std::fs::read_to_string(n.path.join("cgroup.procs")) {
                    for pid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                        self.pid_to_job.insert(pid, first);
                    }
                }
            }
        }
        for (pid, p) in &self.procs {
            if let Some(&first) = p.jobs.first() {
                self.pid_to_job.insert(*pid, first);
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

    /// Reads every tracked process once; moves the counted time of the vanished ones onto their
    /// reapers as debt and forgets them.
    fn read_procs(&mut self) {
        self.gone.clear();
        for (pid, p) in &mut self.procs {
            p.reading = p.file.read().ok().and_then(parse_pid_stat).map(|s| {
                p.ppid = s.ppid;
                s.cpu_ticks
            });
            if p.reading.is_none() {
                self.gone.push(*pid);
            }
        }
        self.gone.sort_unstable();
        for &pid in &self.gone {
            let Some(p) = self.procs.get(&pid) else {
                continue;
            };
            let counted = p.ticks + p.debt;
            // The reaper: the nearest tracked ancestor still alive (a parent that vanished in
            // the same interval passes its children's time on to its own reaper).
            let mut ppid = p.ppid;
            for _ in 0..self.gone.len() + 1 {
                if self.gone.binary_search(&ppid).is_err() {
                    break;
                }
                ppid = self.procs.get(&ppid).map_or(0, |q| q.ppid);
            }
            if let Some(reaper) = self.procs.get_mut(&ppid) {
                reaper.debt += counted;
            }
        }
        for pid in &self.gone {
            self.procs.remove(pid);
        }
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
        for job in self.jobs.values_mut() {
            job.acc = 0.0;
            job.members = 0;
        }
        self.read_procs();
        for n in &mut self.cgroups {
            n.tracked = 0.0;
        }
        let ticks_per_s = self.ticks_per_s;
        for p in self.procs.values_mut() {
            let Some(reading) = p.reading else {
                continue;
            };
            let mut d = reading.saturating_sub(p.ticks);
            p.ticks = p.ticks.max(reading);
            let paid = d.min(p.debt);
            d -= paid;
            p.debt -= paid;
            let cover: &[JobId] = p.region.map_or(&[], |r| &self.cgroups[r].cover);
            for j in &p.jobs {
                if let Some(job) = self.jobs.get_mut(j) {
                    job.members += 1;
                }
            }
            if d == 0 {
                continue;
            }
            let secs = d as f64 / ticks_per_s;
            let share = secs / (p.jobs.len() + cover.len()) as f64;
            for j in p.jobs.iter().chain(cover) {
                if let Some(job) = self.jobs.get_mut(j) {
                    job.acc += share;
                }
            }
            if let Some(r) = p.region {
                self.cgroups[r].tracked += secs;
            }
        }
        self.sample_cgroups();
        let jobs = self
            .jobs
            .iter_mut()
            .map(|(id, job)| {
                if matches!(job.source, JobSource::Tree { .. }) && job.scanned && job.members == 0 {
                    job.finished = true;
                }
                JobCpu {
                    id: *id,
                    cpu_seconds: job.acc,
                    finished: job.finished,
                }
            })
            .collect();
        CpuSample {
            busy_seconds,
            capacity_seconds,
            jobs,
        }
    }

    /// Reads every registered cgroup once and splits each exclusive region's time among the
    /// jobs covering it.
    fn sample_cgroups(&mut self) {
        for n in &mut self.cgroups {
            n.delta = 0.0;
            let Some(file) = n.file.as_mut() else {
                continue;
            };
            match file.read().ok().and_then(parse_cgroup_cpu_seconds) {
                Some(s) => {
                    if let Some(last) = n.last
                        && s > last
                    {
                        n.delta = s - last;
                    }
                    n.last = Some(n.last.map_or(s, |l| l.max(s)));
                }
                None => {
                    n.file = None;
                    for j in &n.cover {
                        if let Some(job) = self.jobs.get_mut(j)
                            && job.source == JobSource::Cgroup(n.path.clone())
                        {
                            job.finished = true;
                        }
                    }
                }
            }
        }
        // Exclusive time: a registered cgroup's delta less its nearest registered descendants'.
        for i in 0..self.cgroups.len() {
            if let Some(p) = self.cgroups[i].parent {
                let d = self.cgroups[i].delta;
                self.cgroups[p].delta -= d;
            }
        }
        for n in &self.cgroups {
            let exclusive = (n.delta - n.tracked).max(0.0);
            if exclusive <= 0.0 || n.cover.is_empty() {
                continue;
            }
            let share = exclusive / n.cover.len() as f64;
            for j in &n.cover {
                if let Some(job) = self.jobs.get_mut(j) {
                    job.acc += share;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixture `/proc` and `/sys/fs/cgroup` under a temporary root.
    struct Fixture {
        dir: tempfile::TempDir,
        tracker: Tracker,
        t: Instant,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("proc")).unwrap();
            std::fs::write(
                dir.path().join("proc/stat"),
                "cpu  0 0 0 0 0 0 0 0\ncpu0 0 0 0 0\n",
            )
            .unwrap();
            let tracker = Tracker::new(SysRoot::new(dir.path()), Duration::from_secs(3600));
            Fixture {
                dir,
                tracker,
                t: Instant::now(),
            }
        }

        /// Writes `/proc/<pid>/stat` with `ticks` of own time and `child` of reaped children.
        fn proc(&self, pid: u32, ppid: u32, ticks: u64, child: u64) {
            let d = self.dir.path().join(format!("proc/{pid}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join("stat"),
                format!(
                    "{pid} (p) S {ppid} 1 1 0 -1 0 0 0 0 0 {ticks} 0 {child} 0 20 0 1 0 {pid}0 0 0"
                ),
            )
            .unwrap();
        }

        /// The process exits and is reaped: its stat no longer reads.
        fn exit(&self, pid: u32) {
            std::fs::write(self.dir.path().join(format!("proc/{pid}/stat")), "").unwrap();
        }

        fn place(&self, pid: u32, cgroup: &str) {
            std::fs::write(
                self.dir.path().join(format!("proc/{pid}/cgroup")),
                format!("0::/{cgroup}\n"),
            )
            .unwrap();
        }

        fn cgroup(&self, rel: &str, usec: u64) -> PathBuf {
            let d = self.dir.path().join("sys/fs/cgroup").join(rel);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("cpu.stat"), format!("usage_usec {usec}\n")).unwrap();
            d
        }

        fn tree(pid: u32) -> JobSource {
            JobSource::Tree {
                root_pid: pid,
                start_ticks: u64::from(pid) * 10,
            }
        }

        /// One sample; CPU seconds by job.
        fn sample(&mut self) -> BTreeMap<u64, f64> {
            self.t += Duration::from_millis(100);
            self.tracker
                .sample(self.t)
                .jobs
                .iter()
                .map(|j| (j.id.0, j.cpu_seconds))
                .collect()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_process_in_many_jobs_counts_once() {
        let mut f = Fixture::new();
        let hz = f.tracker.ticks_per_s;
        f.proc(100, 1, 50, 0);
        f.proc(200, 1, 70, 0);
        let mut wanted = vec![(JobId(1), Fixture::tree(100))];
        for id in 2..=4 {
            wanted.push((JobId(id), Fixture::tree(200)));
        }
        f.tracker.sync(&wanted);
        let base = f.sample();
        assert!(base.values().all(|&s| s == 0.0), "{base:?}");
        f.proc(100, 1, 80, 0);
        f.proc(200, 1, 100, 0);
        let s = f.sample();
        assert!(close(s[&1], 30.0 / hz), "{s:?}");
        for id in 2..=4 {
            assert!(close(s[&id], 10.0 / hz), "{s:?}");
        }
        assert_eq!(f.tracker.member_count(), 2);
    }

    #[test]
    fn nested_trees_share_the_common_processes() {
        let mut f = Fixture::new();
        let hz = f.tracker.ticks_per_s;
        f.proc(100, 1, 0, 0);
        f.proc(101, 100, 0, 0);
        f.tracker.sync(&[
            (JobId(1), Fixture::tree(100)),
            (JobId(2), Fixture::tree(101)),
        ]);
        f.sample();
        f.proc(100, 1, 10, 0);
        f.proc(101, 100, 20, 0);
        let s = f.sample();
        assert!(close(s[&1], 20.0 / hz), "{s:?}");
        assert!(close(s[&2], 10.0 / hz), "{s:?}");
    }

    #[test]
    fn a_reaped_member_is_not_counted_twice() {
        let mut f = Fixture::new();
        let hz = f.tracker.ticks_per_s;
        f.proc(100, 1, 0, 0);
        f.proc(101, 100, 0, 0);
        f.tracker.sync(&[
            (JobId(1), Fixture::tree(100)),
            (JobId(2), Fixture::tree(100)),
        ]);
        f.sample();
        f.proc(101, 100, 40, 0);
        let s = f.sample();
        assert!(close(s[&1] + s[&2], 40.0 / hz), "{s:?}");
        // 101 ran 10 more ticks unseen, then was reaped by 100: only those 10 are new.
        f.exit(101);
        f.proc(100, 1, 0, 50);
        let s = f.sample();
        assert!(close(s[&1] + s[&2], 10.0 / hz), "{s:?}");
        assert!(close(s[&1], s[&2]), "{s:?}");
        // Reaped before the reaper's figure moved: the debt waits for it.
        f.proc(102, 100, 0, 0);
        f.tracker.last_scan = None;
        f.sample();
        f.proc(102, 100, 30, 0);
        f.sample();
        f.exit(102);
        let s = f.sample();
        assert_eq!(s[&1] + s[&2], 0.0, "{s:?}");
        f.proc(100, 1, 0, 80);
        let s = f.sample();
        assert_eq!(s[&1] + s[&2], 0.0, "{s:?}");
        f.proc(100, 1, 5, 80);
        let s = f.sample();
        assert!(close(s[&1] + s[&2], 5.0 / hz), "{s:?}");
        // Every process gone: the jobs are finished.
        f.exit(100);
        f.sample();
        let s = f.tracker.sample(f.t + Duration::from_secs(1));
        assert!(s.jobs.iter().all(|j| j.finished), "{s:?}");
    }

    #[test]
    fn cgroups_share_their_path_and_exclude_registered_descendants() {
        let mut f = Fixture::new();
        let top = f.cgroup("top", 0);
        let leaf = f.cgroup("top/leaf", 0);
        f.proc(100, 1, 0, 0);
        f.place(100, "top/leaf");
        f.tracker.sync(&[
            (JobId(1), JobSource::Cgroup(top.clone())),
            (JobId(2), JobSource::Cgroup(top.clone())),
            (JobId(3), JobSource::Cgroup(leaf.clone())),
            (JobId(4), Fixture::tree(100)),
        ]);
        f.sample();
        // top used 1.0 s in all, 0.6 s of it in leaf, 0.2 s of which by process 100 (job 4).
        f.cgroup("top", 1_000_000);
        f.cgroup("top/leaf", 600_000);
        let hz = f.tracker.ticks_per_s;
        f.proc(100, 1, (0.2 * hz) as u64, 0);
        let s = f.sample();
        let total: f64 = s.values().sum();
        assert!(close(total, 1.0), "{s:?}");
        // Process 100: shared by job 4 and the three cgroup jobs covering leaf.
        assert!(close(s[&4], 0.05), "{s:?}");
        // Rest of leaf (0.4 s) among jobs 1, 2, 3; top's own 0.4 s among jobs 1 and 2.
        assert!(close(s[&3], 0.05 + 0.4 / 3.0), "{s:?}");
        assert!(close(s[&1], 0.05 + 0.4 / 3.0 + 0.2), "{s:?}");
        assert!(close(s[&1], s[&2]), "{s:?}");
    }
}
