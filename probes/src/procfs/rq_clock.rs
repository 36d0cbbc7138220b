//! Per-CPU "now" on the scheduler's clock, read from user space: the reference that turns a
//! sleeping thread's `se.exec_start` into how long it has been off CPU.
//!
//! `se.exec_start` is stamped from `rq_clock_task()` of the runqueue the task ran on. That clock
//! is per CPU and excludes steal time (and IRQ time when IRQ_TIME_ACCOUNTING is on), so two CPUs'
//! values drift apart by however much more steal/IRQ time one has accumulated since boot — on a
//! VM that can be seconds. Comparing a thread's stamp with a reading taken on *another* CPU
//! would therefore give an error that is neither small nor signed. So the reading is taken on the
//! same CPU: a helper thread pins itself there, and its own `se.exec_start` (stamped when it was
//! switched in on that CPU, or at the last tick since) is that runqueue's clock, slightly in the
//! past.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::OnceLock;

/// Whether the kernel exports /proc/PID/sched (CONFIG_SCHED_DEBUG before 6.16, always after).
pub(crate) fn sched_file_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/thread-self/sched").exists())
}

/// The fields of a /proc/.../sched file that off-CPU time needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SchedFields {
    /// `se.exec_start`, in nanoseconds of the runqueue's task clock.
    pub exec_start_ns: u64,
    /// `nr_switches` (= voluntary + involuntary context switches).
    pub nr_switches: Option<u64>,
}

/// Parses the text of /proc/PID/task/TID/sched.
///
/// The kernel prints nanosecond values as `<ms>.<6-digit ns remainder>` (SPLIT_NS in
/// kernel/sched/debug.c); this is parsed as two integers so no precision is lost to floats.
pub(crate) fn parse_sched(text: &str) -> Result<SchedFields, String> {
    let mut exec_start = None;
    let mut nr_switches = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "se.exec_start" => exec_start = Some(parse_split_ns(value.trim())?),
            "nr_switches" => {
                nr_switches = Some(
                    value.trim().parse::<u64>().map_err(|_| format!("bad nr_switches {:?}", value.trim()))?,
                )
            }
            _ => {}
        }
    }
    let exec_start_ns = exec_start.ok_or_else(|| "no se.exec_start line".to_owned())?;
    Ok(SchedFields { exec_start_ns, nr_switches })
}

/// Parses `472030.776567` (milliseconds, 6 decimals) into nanoseconds.
fn parse_split_ns(value: &str) -> Result<u64, String> {
    let bad = || format!("bad nanosecond value {value:?}");
    let (ms, frac) = value.split_once('.').unwrap_or((value, "0"));
    if frac.is_empty() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let ms: u64 = ms.parse().map_err(|_| bad())?;
    // Right-pad so that ".5" means 500000 ns, although the kernel always prints six digits.
    let frac: u64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
    ms.checked_mul(1_000_000).and_then(|ns| ns.checked_add(frac)).ok_or_else(bad)
}

/// Reads "now" on the task clock of each CPU in `cpus`, as the `se.exec_start` of a helper
/// thread pinned to that CPU. CPUs we may not run on (cpuset, offline) are left out, as is
/// everything if the helper cannot be spawned: callers then report no off-CPU time rather than
/// a cross-CPU guess.
pub(crate) fn capture(cpus: &BTreeSet<u32>) -> HashMap<u32, u64> {
    if cpus.is_empty() || !sched_file_available() {
        return HashMap::new();
    }
    // A dedicated thread, because changing the caller's affinity would leak into whatever runs
    // on it next (a reactor worker, say).
    let spawned = std::thread::Builder::new().name("procfs-rqclock".to_owned()).spawn({
        let cpus = cpus.clone();
        move || cpus.into_iter().filter_map(|cpu| Some((cpu, clock_on(cpu)?))).collect::<HashMap<u32, u64>>()
    });
    match spawned.map(|h| h.join()) {
        Ok(Ok(clocks)) => clocks,
        Ok(Err(_)) => HashMap::new(),
        Err(e) => {
            tracing::debug!("cannot spawn the rq-clock reader thread: {e}");
            HashMap::new()
        }
    }
}

/// The CPUs this process may run on (its affinity mask): where [`capture`] can read a clock.
pub(crate) fn allowed_cpus() -> BTreeSet<u32> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; sched_getaffinity fills at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return BTreeSet::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: index below CPU_SETSIZE, set initialised above.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .filter_map(|cpu| u32::try_from(cpu).ok())
        .collect()
}

/// Moves the calling thread to `cpu` and reads its own `se.exec_start` there.
fn clock_on(cpu: u32) -> Option<u64> {
    let index = usize::try_from(cpu).ok()?;
    if index >= libc::CPU_SETSIZE as usize {
        return None;
    }
    // SAFETY: cpu_set_t is a plain bitmask for which all-zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `index` is below CPU_SETSIZE (checked above), so CPU_SET stays inside the mask.
    unsafe { libc::CPU_SET(index, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        tracing::debug!(cpu, "cannot pin to cpu: {}", std::io::Error::last_os_error());
        return None;
    }
    // sched_setaffinity migrates the caller before returning; check rather than assume, since a
    // stamp from another CPU's clock is exactly what this module exists to avoid.
    // SAFETY: sched_getcpu has no preconditions.
    if unsafe { libc::sched_getcpu() } != cpu as i32 {
        return None;
    }
    // With a single-CPU mask the thread cannot be migrated away before this read.
    let text = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
    parse_sched(&text).ok().map(|f| f.exec_start_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHED: &str = "\
sleep (6916, #threads: 1)
-------------------------------------------------------------------
se.exec_start                                :        484516.670906
se.vruntime                                  :           254.667633
se.sum_exec_runtime                          :             1.040004
se.nr_migrations                             :                    0
nr_switches                                  :                    1
nr_voluntary_switches                        :                    1
nr_involuntary_switches                      :                    0
se.load.weight                               :              1048576
current_node=0, numa_group_id=0
";

    #[test]
    fn parses_sched_file() {
        assert_eq!(
            parse_sched(SCHED),
            Ok(SchedFields { exec_start_ns: 484_516_670_906, nr_switches: Some(1) })
        );
    }

    #[test]
    fn rejects_odd_sched_values() {
        assert!(parse_sched("").is_err());
        assert!(parse_sched("se.exec_start : -3.000001\n").is_err());
        assert!(parse_sched("se.exec_start : 12.1234567\n").is_err());
        assert!(parse_sched("se.exec_start : 99999999999999999999.000000\n").is_err());
        assert!(parse_sched("se.exec_start : 12.x\n").is_err());
        assert_eq!(parse_sched("se.exec_start : 12.5\n").map(|f| f.exec_start_ns), Ok(12_500_000));
    }

    #[test]
    fn captures_the_clock_of_the_current_cpu() {
        assert!(sched_file_available(), "this kernel has no /proc/PID/sched");
        // SAFETY: sched_getcpu has no preconditions.
        let cpu = u32::try_from(unsafe { libc::sched_getcpu() }).expect("sched_getcpu failed");
        let clocks = capture(&BTreeSet::from([cpu]));
        assert!(
            clocks.get(&cpu).is_some_and(|&ns| ns > 0),
            "no clock for cpu {cpu} we were just running on: {clocks:?}"
        );
    }
}
