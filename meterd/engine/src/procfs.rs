//! Parsers for the procfs and cgroup files the meter reads: `/proc/stat` (machine CPU time),
//! `/proc/<pid>/stat` (a process's CPU time, parent and start time), `/proc/meminfo` and a cgroup
//! v2 `cpu.stat`. Pure functions over text, so they are tested on literal strings.

/// Clock ticks per second used by `/proc/stat` and `/proc/<pid>/stat` (`sysconf(_SC_CLK_TCK)`).
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 on an unknown name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// Aggregate CPU time of the machine from the `cpu ` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MachineCpu {
    /// user + nice + system + irq + softirq (guest time is already inside user/nice).
    pub busy: u64,
    /// busy + idle + iowait + steal.
    pub total: u64,
    /// Number of `cpuN` lines (logical CPUs online).
    pub cpus: u32,
}

/// Parses `/proc/stat`.
pub fn parse_proc_stat(text: &str) -> Option<MachineCpu> {
    let mut out = None;
    let mut cpus = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("cpu ") {
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            let get = |i: usize| v.get(i).copied().unwrap_or(0);
            if v.len() < 4 {
                return None;
            }
            let busy = get(0) + get(1) + get(2) + get(5) + get(6);
            out = Some(MachineCpu {
                busy,
                total: busy + get(3) + get(4) + get(7),
                cpus: 0,
            });
        } else if line.starts_with("cpu") {
            cpus += 1;
        }
    }
    out.map(|m| MachineCpu { cpus, ..m })
}

/// The fields of `/proc/<pid>/stat` the meter needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Parent process id.
    pub ppid: u32,
    /// utime + stime + cutime + cstime, clock ticks: the process's own CPU time plus that of
    /// the children it has reaped, so the time of a short-lived child is not lost when it exits.
    pub cpu_ticks: u64,
    /// Start time after boot, clock ticks (with the PID, identifies a process across restarts).
    pub start_ticks: u64,
}

/// Parses `/proc/<pid>/stat` (the command name may contain spaces and parentheses).
pub fn parse_pid_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    // Fields after the name, 0-based here: 0 state, 1 ppid, … 11 utime, 12 stime, 13 cutime,
    // 14 cstime, … 19 starttime.
    let f: Vec<&str> = after.split_whitespace().take(20).collect();
    let num = |i: usize| -> Option<u64> { f.get(i)?.parse::<i64>().ok().map(|v| v.max(0) as u64) };
    Some(ProcStat {
        ppid: u32::try_from(num(1)?).ok()?,
        cpu_ticks: num(11)? + num(12)? + num(13)? + num(14)?,
        start_ticks: num(19)?,
    })
}

/// `usage_usec` from a cgroup v2 `cpu.stat`, or the single number of a v1 `cpuacct.usage`
/// (nanoseconds), converted to seconds.
pub fn parse_cgroup_cpu_seconds(text: &str) -> Option<f64> {
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("usage_usec ") {
            return v.trim().parse::<u64>().ok().map(|us| us as f64 * 1e-6);
        }
    }
    text.trim().parse::<u64>().ok().map(|ns| ns as f64 * 1e-9)
}

/// `MemTotal` from `/proc/meminfo`, in GB (10⁹ bytes).
pub fn parse_mem_total_gb(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat() {
        let t = "cpu  10 1 5 100 3 2 1 7 4 0\ncpu0 5 0 2 50 1 1 0 3 0 0\ncpu1 5 1 3 50 2 1 1 4 0 0\nintr 1\n";
        let m = parse_proc_stat(t).unwrap();
        assert_eq!(m.busy, 10 + 1 + 5 + 2 + 1);
        assert_eq!(m.total, 19 + 100 + 3 + 7);
        assert_eq!(m.cpus, 2);
        assert!(parse_proc_stat("nothing").is_none());
    }

    #[test]
    fn pid_stat_with_odd_name() {
        let t = "1234 (a b) c)) S 77 1 1 0 -1 0 0 0 0 0 11 22 3 4 20 0 1 0 5555 0 0";
        let s = parse_pid_stat(t).unwrap();
        assert_eq!(s.ppid, 77);
        assert_eq!(s.cpu_ticks, 11 + 22 + 3 + 4);
        assert_eq!(s.start_ticks, 5555);
        assert!(parse_pid_stat("12 (x) S").is_none());
    }

    #[test]
    fn cgroup_and_meminfo() {
        assert_eq!(
            parse_cgroup_cpu_seconds("usage_usec 2500000\nuser_usec 1\n"),
            Some(2.5)
        );
        assert_eq!(parse_cgroup_cpu_seconds("3000000000\n"), Some(3.0));
        let gb = parse_mem_total_gb("MemTotal:       1000000 kB\n").unwrap();
        assert!((gb - 1.024).abs() < 1e-9);
    }
}
