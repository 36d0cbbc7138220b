//! Per-thread state of a target from /proc: scheduler state, the syscall it is in (with its
//! arguments), where in the kernel it sleeps, how long it has been off CPU, and its kernel stack.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use ::procfs::process::Process;

use super::rq_clock::{self, SchedFields};
use super::{ProcError, io_error, pid_exists, procfs_error};

/// A thread's scheduler state, the letter in /proc/PID/task/TID/stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcState {
    /// `R`: on a CPU or runnable.
    Running,
    /// `S`: interruptible sleep (waiting for an event, a lock, I/O readiness, a timer).
    Sleeping,
    /// `D`: uninterruptible sleep (usually disk or filesystem I/O, some locks).
    DiskSleep,
    /// `T`: stopped by a signal.
    Stopped,
    /// `t`: stopped by a tracer.
    TracingStop,
    /// `Z`: exited, not yet reaped.
    Zombie,
    /// `X`: being destroyed.
    Dead,
    /// `I`: TASK_IDLE, an uninterruptible wait that does not count toward load average.
    Idle,
    /// Any other letter (kernels add states; `P`arked, `W`aking, ...).
    Other(char),
}

impl ProcState {
    pub fn from_char(c: char) -> ProcState {
        match c {
            'R' => ProcState::Running,
            'S' => ProcState::Sleeping,
            'D' => ProcState::DiskSleep,
            'T' => ProcState::Stopped,
            't' => ProcState::TracingStop,
            'Z' => ProcState::Zombie,
            'X' => ProcState::Dead,
            'I' => ProcState::Idle,
            other => ProcState::Other(other),
        }
    }

    /// The letter /proc shows.
    pub fn as_char(self) -> char {
        match self {
            ProcState::Running => 'R',
            ProcState::Sleeping => 'S',
            ProcState::DiskSleep => 'D',
            ProcState::Stopped => 'T',
            ProcState::TracingStop => 't',
            ProcState::Zombie => 'Z',
            ProcState::Dead => 'X',
            ProcState::Idle => 'I',
            ProcState::Other(c) => c,
        }
    }

    /// A stable lowercase name for output.
    ///
    /// `Idle` reads as "sleeping": it is a blocking wait like `S`, and the distinction (load
    /// accounting) means nothing to someone asking why the thread is not running.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcState::Running => "running",
            ProcState::Sleeping | ProcState::Idle => "sleeping",
            ProcState::DiskSleep => "disk_sleep",
            ProcState::Stopped | ProcState::TracingStop => "stopped",
            ProcState::Zombie => "zombie",
            ProcState::Dead => "dead",
            ProcState::Other(_) => "unknown",
        }
    }

    /// Whether the thread is blocked in the kernel waiting for something (S, D, I): the states
    /// in which `se.exec_start` marks when it went to sleep.
    pub fn is_blocked(self) -> bool {
        matches!(self, ProcState::Sleeping | ProcState::DiskSleep | ProcState::Idle)
    }
}

impl fmt::Display for ProcState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a thread is relative to the syscall boundary, from /proc/PID/task/TID/syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallSite {
    /// The thread is on a CPU; the kernel does not stop it to look.
    Running,
    /// Blocked but not in a syscall (a page fault, a preemption in user mode).
    NotInSyscall { sp: u64, pc: u64 },
    /// In syscall `nr` (the architecture's numbering) with these argument registers; `sp` and
    /// `pc` are the user stack pointer and return address.
    In { nr: u32, args: [u64; 6], sp: u64, pc: u64 },
}

impl SyscallSite {
    /// Parses the syscall file: `running`, `-1 <sp> <pc>`, or `<nr> <6 args> <sp> <pc>`.
    pub fn parse(text: &str) -> Result<SyscallSite, String> {
        let text = text.trim();
        if text == "running" {
            return Ok(SyscallSite::Running);
        }
        let fields: Vec<&str> = text.split_ascii_whitespace().collect();
        let (nr, rest) = fields.split_first().ok_or_else(|| "empty syscall file".to_owned())?;
        let nr: i64 = nr.parse().map_err(|_| format!("bad syscall number {nr:?}"))?;
        let values = rest.iter().map(|f| parse_hex(f)).collect::<Result<Vec<u64>, String>>()?;
        if nr < 0 {
            return match values[..] {
                [sp, pc] => Ok(SyscallSite::NotInSyscall { sp, pc }),
                _ => Err(format!("expected sp and pc after {nr}, got {text:?}")),
            };
        }
        let nr = u32::try_from(nr).map_err(|_| format!("syscall number {nr} out of range"))?;
        match values[..] {
            [a0, a1, a2, a3, a4, a5, sp, pc] => {
                Ok(SyscallSite::In { nr, args: [a0, a1, a2, a3, a4, a5], sp, pc })
            }
            _ => Err(format!("expected 6 args, sp and pc, got {text:?}")),
        }
    }
}

fn parse_hex(field: &str) -> Result<u64, String> {
    let digits =
        field.strip_prefix("0x").ok_or_else(|| format!("expected 0x-prefixed hex, got {field:?}"))?;
    u64::from_str_radix(digits, 16).map_err(|_| format!("bad hex {field:?}"))
}

/// A snapshot of one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSample {
    pub tid: u32,
    /// The thread's comm (`pthread_setname_np` sets it).
    pub name: String,
    pub state: ProcState,
    pub syscall: SyscallSite,
    /// The kernel function the thread sleeps in (/proc/.../wchan), when blocked.
    pub wchan: Option<String>,
    /// How long since the thread last ran, for a blocked thread (S, D, I), in nanoseconds.
    ///
    /// It is a *lower bound* of how long the thread has been in its current blocking call:
    /// - the thread's `se.exec_start` is stamped when it was switched out, but a blocking call
    ///   can sleep several times (spurious futex wakeups, a poll loop re-arming, a restarted
    ///   syscall), each wakeup restamping it, so the call may have started earlier;
    /// - "now" is the `se.exec_start` of a helper thread on the same CPU, taken *before* the
    ///   thread's own stamp is read, and itself a little behind the real time;
    /// - the scheduler's task clock excludes steal (and IRQ) time, so time the CPU spent
    ///   elsewhere does not count.
    ///
    /// `None` when the thread is not blocked, when the kernel has no /proc/PID/sched, when it
    /// switched while being read, or when we may not run on its CPU (see `rq_clock`).
    pub off_cpu_ns: Option<u64>,
    /// Context switches from /proc/.../status, read only for blocked threads (the consistency
    /// check of `off_cpu_ns` needs them): `None` for the others.
    pub voluntary_switches: Option<u64>,
    pub involuntary_switches: Option<u64>,
    /// The CPU the thread last ran on (stat field 39).
    pub cpu: Option<u32>,
}

/// Samples every thread of `pid`. Threads that exit while being read are left out.
pub fn read_threads(pid: u32) -> Result<Vec<ThreadSample>, ProcError> {
    let process = open_process(pid)?;
    let task_dir = PathBuf::from(format!("/proc/{pid}/task"));
    let tasks = process.tasks().map_err(|e| procfs_error(pid, &task_dir, e))?;
    let mut tids = Vec::new();
    for task in tasks {
        match task {
            Ok(task) => tids.extend(u32::try_from(task.tid).ok()),
            // The thread exited between readdir and opening its directory.
            Err(::procfs::ProcError::NotFound(_)) => {}
            Err(e) => return Err(procfs_error(pid, &task_dir, e)),
        }
    }
    let samples = sample(pid, &tids)?;
    if samples.is_empty() {
        // A live process always has a thread; none readable means it is gone.
        return Err(ProcError::Exited(pid));
    }
    Ok(samples)
}

/// Kernel stack frames of one thread, innermost first, as `function+offset/size`. Separate from
/// [`read_threads`] because reading /proc/PID/task/TID/stack makes the kernel unwind that
/// thread: callers ask only for the threads whose stacks they show (blocked ones, when stacks
/// are wanted), not for every thread on every view. Best effort: empty if unreadable (it needs
/// CAP_SYS_ADMIN and ptrace access) or if the thread is gone.
pub fn read_kernel_stack(pid: u32, tid: u32) -> Vec<String> {
    let mut files = TaskFiles::new(pid);
    files.read(tid, "stack").map(parse_stack).unwrap_or_default()
}

/// Samples one thread of `pid`.
pub fn read_thread(pid: u32, tid: u32) -> Result<ThreadSample, ProcError> {
    open_process(pid)?;
    match sample(pid, &[tid])?.pop() {
        Some(sample) => Ok(sample),
        None if pid_exists(pid) => Err(ProcError::NoSuchProcess(tid)),
        None => Err(ProcError::Exited(pid)),
    }
}

fn open_process(pid: u32) -> Result<Process, ProcError> {
    let raw = i32::try_from(pid).map_err(|_| ProcError::NoSuchProcess(pid))?;
    Process::new(raw).map_err(|e| match procfs_error(pid, Path::new(&format!("/proc/{pid}")), e) {
        ProcError::Exited(_) => ProcError::NoSuchProcess(pid),
        other => other,
    })
}

/// Reads /proc/PID/task/TID/FILE into one buffer reused for every file and thread. This is
/// the per-thread hot path of a view (10,000 threads: tens of thousands of reads), so it does
/// one open and read per file and parses only the fields used, in place: no per-file path
/// buffer, String or parsed struct of every field.
struct TaskFiles {
    pid: u32,
    path: String,
    buf: Vec<u8>,
}

impl TaskFiles {
    fn new(pid: u32) -> TaskFiles {
        TaskFiles { pid, path: String::with_capacity(64), buf: Vec::with_capacity(4096) }
    }

    fn path(&self) -> &Path {
        Path::new(&self.path)
    }

    /// The file's text (bytes that are not UTF-8 make it a parse error of that file).
    fn read(&mut self, tid: u32, file: &str) -> Result<&str, ProcError> {
        use std::fmt::Write as _;
        self.path.clear();
        let _ = write!(self.path, "/proc/{}/task/{tid}/{file}", self.pid);
        if let Err(e) =
            std::fs::File::open(&self.path).and_then(|f| read_all(&f, &mut self.buf, MAX_TASK_FILE_BYTES))
        {
            return Err(io_error(self.pid, Path::new(&self.path), e));
        }
        std::str::from_utf8(&self.buf).map_err(|_| parse_error(Path::new(&self.path), "not UTF-8".to_owned()))
    }

    fn stat(&mut self, tid: u32) -> Result<StatFields, ProcError> {
        let text = self.read(tid, "stat")?;
        StatFields::parse(text).map_err(|what| parse_error(self.path(), what))
    }
}

/// The most a task's /proc file is read to: they are a few KiB.
const MAX_TASK_FILE_BYTES: usize = 1 << 20;

/// Reads `file` from its start to its end into `buf` (cleared first); more than `max` bytes is
/// an error. Plain reads at explicit offsets: `Read::read_to_end` first asks the file its size
/// (statx, lseek), two more syscalls per file, and a /proc file has none to give; and a file kept
/// open is read again from its start, the kernel generating its text afresh.
pub(crate) fn read_all(file: &std::fs::File, buf: &mut Vec<u8>, max: usize) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    buf.clear();
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= max {
                return Err(std::io::Error::other(format!("longer than {max} bytes")));
            }
            buf.reserve(4096);
        }
        let len = buf.len();
        buf.resize(buf.capacity(), 0);
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => {
                buf.truncate(len);
                return Ok(());
            }
            Ok(n) => buf.truncate(len + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(len),
            Err(e) => {
                buf.truncate(len);
                return Err(e);
            }
        }
    }
}

/// The fields of /proc/PID/task/TID/stat a sample uses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StatFields {
    comm: String,
    state: ProcState,
    /// Field 39: the CPU the thread last ran on.
    cpu: Option<u32>,
}

impl StatFields {
    /// `TID (COMM) STATE ...`: the comm may hold spaces and parentheses, so it ends at the
    /// last `)`; the fields after it are counted from the state (field 3).
    fn parse(text: &str) -> Result<StatFields, String> {
        let open = text.find('(').ok_or("no '(' before the comm")?;
        let close = text.rfind(')').filter(|&c| c > open).ok_or("no ')' after the comm")?;
        let comm = text[open + 1..close].to_owned();
        let mut rest = text[close + 1..].split_ascii_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).ok_or("no state after the comm")?;
        // Field 39 is the 37th after the state (fields 4..=39).
        let cpu = rest.nth(35).and_then(|c| c.parse::<u32>().ok());
        Ok(StatFields { comm, state: ProcState::from_char(state), cpu })
    }
}

/// (voluntary, involuntary) context switches from /proc/PID/task/TID/status.
pub(crate) fn parse_status_switches(text: &str) -> Result<(u64, u64), String> {
    let field = |key: &str| {
        let line = text.lines().find_map(|l| l.strip_prefix(key)).ok_or_else(|| format!("no {key} line"))?;
        line.trim().parse::<u64>().map_err(|_| format!("bad {key} {:?}", line.trim()))
    };
    Ok((field("voluntary_ctxt_switches:")?, field("nonvoluntary_ctxt_switches:")?))
}

/// Samples `tids`, leaving out those that vanish.
fn sample(pid: u32, tids: &[u32]) -> Result<Vec<ThreadSample>, ProcError> {
    let mut files = TaskFiles::new(pid);
    // The reference clocks must be read before the threads' own stamps (see
    // `ThreadSample::off_cpu_ns`). With more threads than CPUs, every CPU we may run on is
    // cheaper than a first look at every thread's stat to find where the blocked ones are.
    let clocks = if !rq_clock::sched_file_available() {
        std::collections::HashMap::new()
    } else {
        let allowed = rq_clock::allowed_cpus();
        if tids.len() >= allowed.len() {
            rq_clock::capture(&allowed)
        } else {
            let mut blocked_cpus = BTreeSet::new();
            for &tid in tids {
                if let Ok(stat) = files.stat(tid)
                    && stat.state.is_blocked()
                {
                    blocked_cpus.extend(stat.cpu);
                }
            }
            rq_clock::capture(&blocked_cpus)
        }
    };

    let mut samples = Vec::with_capacity(tids.len());
    for &tid in tids {
        match sample_one(&mut files, tid, &clocks) {
            Ok(sample) => samples.push(sample),
            Err(ProcError::Exited(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(samples)
}

/// One thread: sched, stat, status, syscall and wchan; only sched and stat for a running one.
/// Running (or runnable) threads are at most a few per CPU, so reading sched before knowing
/// costs little, and a blocked thread needs no stat read beyond the one between sched and
/// status.
fn sample_one(
    files: &mut TaskFiles,
    tid: u32,
    clocks: &std::collections::HashMap<u32, u64>,
) -> Result<ThreadSample, ProcError> {
    // Order matters: sched, then stat, then status. If the switch count in sched equals the
    // one in status, the thread did not switch in between, so the state read from stat held
    // when its exec_start was read.
    let sched = if rq_clock::sched_file_available() {
        let text = files.read(tid, "sched")?;
        // The sched file is a debugging interface whose layout has changed across kernels; if
        // it stops parsing, the thread is still worth reporting, without off-CPU time.
        rq_clock::parse_sched(text)
            .inspect_err(|what| tracing::debug!("cannot parse {}: {what}", files.path().display()))
            .ok()
    } else {
        None
    };
    let stat = files.stat(tid)?;
    // /proc/TID/syscall of a thread that is not running makes the kernel wait until it is off
    // CPU in that state (wait_task_inactive), which for a thread that flips between running
    // and sleeping hundreds of thousands of times a second can take as long as it keeps doing
    // so. A thread stat shows running has no syscall to report anyway: skip the read (and
    // the others: it has no off-CPU time or wchan either).
    if stat.state == ProcState::Running {
        return Ok(ThreadSample {
            tid,
            name: stat.comm,
            state: stat.state,
            syscall: SyscallSite::Running,
            wchan: None,
            off_cpu_ns: None,
            voluntary_switches: None,
            involuntary_switches: None,
            cpu: stat.cpu,
        });
    }
    let switches = if sched.is_some() && stat.state.is_blocked() {
        let text = files.read(tid, "status")?;
        Some(parse_status_switches(text).map_err(|what| parse_error(files.path(), what))?)
    } else {
        None
    };

    let syscall = {
        let text = files.read(tid, "syscall")?;
        SyscallSite::parse(text).map_err(|what| parse_error(files.path(), what))?
    };

    // wchan is best effort: it hides behind a ptrace-read check, and a thread stays worth
    // reporting without it.
    let wchan = files.read(tid, "wchan").ok().and_then(parse_wchan);

    let state = stat.state;
    let cpu = stat.cpu;
    let off_cpu_ns = switches.and_then(|(v, i)| off_cpu(state, cpu, sched, v + i, clocks));

    Ok(ThreadSample {
        tid,
        name: stat.comm,
        state,
        syscall,
        wchan,
        off_cpu_ns,
        voluntary_switches: switches.map(|(v, _)| v),
        involuntary_switches: switches.map(|(_, i)| i),
        cpu,
    })
}

/// Off-CPU time of a thread from its sched fields and the per-CPU reference clocks.
fn off_cpu(
    state: ProcState,
    cpu: Option<u32>,
    sched: Option<SchedFields>,
    switches_after: u64,
    clocks: &std::collections::HashMap<u32, u64>,
) -> Option<u64> {
    let sched = sched?;
    if !state.is_blocked() || sched.nr_switches != Some(switches_after) {
        return None;
    }
    // The scheduler zeroes exec_start when it migrates a task (migrate_task_rq_fair: "no
    // longer cache hot"), which can happen to a sleeping task still queued for a delayed
    // dequeue (EEVDF, Linux >= 6.12): it then says nothing about when the thread last ran.
    if sched.exec_start_ns == 0 {
        return None;
    }
    let now = *clocks.get(&cpu?)?;
    // A thread that went to sleep after the reference was taken has been blocked for less
    // than the error of this method: report zero rather than a wrapped difference.
    Some(now.saturating_sub(sched.exec_start_ns))
}

fn parse_error(path: &Path, what: String) -> ProcError {
    ProcError::Parse { path: path.display().to_string(), what }
}

/// The wchan file holds a symbol name, or `0` when the thread is running (or we may not see).
pub fn parse_wchan(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty() && text != "0").then(|| text.to_owned())
}

/// Parses /proc/.../stack: lines `[<0>] hrtimer_nanosleep+0xb5/0x130` (the address is `0`
/// unless kptr_restrict allows it), innermost frame first.
pub fn parse_stack(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let frame = match line.strip_prefix('[') {
                Some(rest) => rest.split_once("] ").map_or("", |(_, f)| f),
                None => line,
            };
            let frame = frame.trim();
            (!frame.is_empty()).then(|| frame.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    #[test]
    fn parses_syscall_in_progress() {
        let site = SyscallSite::parse(
            "230 0x0 0x0 0x7fffb3b59a80 0x7fffb3b59ac0 0x0 0x0 0x7fffb3b59a68 0x7fc003ad4503\n",
        );
        assert_eq!(
            site,
            Ok(SyscallSite::In {
                nr: 230,
                args: [0, 0, 0x7fff_b3b5_9a80, 0x7fff_b3b5_9ac0, 0, 0],
                sp: 0x7fff_b3b5_9a68,
                pc: 0x7fc0_03ad_4503,
            })
        );
    }

    #[test]
    fn parses_syscall_other_forms() {
        assert_eq!(SyscallSite::parse("running\n"), Ok(SyscallSite::Running));
        assert_eq!(
            SyscallSite::parse("-1 0x7ffe2489c100 0x401136\n"),
            Ok(SyscallSite::NotInSyscall { sp: 0x7ffe_2489_c100, pc: 0x40_1136 })
        );
        // What a zombie thread shows: no stack to look at.
        assert_eq!(SyscallSite::parse("-1 0x0 0x0"), Ok(SyscallSite::NotInSyscall { sp: 0, pc: 0 }));
        assert_eq!(
            SyscallSite::parse("0 0xffffffff 0x0 0x0 0x0 0x0 0x0 0x0 0xffffffffffffffff"),
            Ok(SyscallSite::In { nr: 0, args: [0xffff_ffff, 0, 0, 0, 0, 0], sp: 0, pc: u64::MAX })
        );
    }

    #[test]
    fn rejects_odd_syscall_files() {
        for bad in [
            "",
            "runnin",
            "230 0x0",
            "-1 0x1",
            "x 0x0 0x0",
            "230 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0",
            "230 0 0 0 0 0 0 0 0",
            "-1 0x10000000000000000 0x0",
            "4294967296 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0",
        ] {
            assert!(SyscallSite::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn parses_stat_fields() {
        // A comm with spaces and parentheses; field 39 (processor) is 3.
        let mut text = String::from("4242 (a (b) c) S 1");
        for field in 5..=38 {
            text.push_str(&format!(" {field}"));
        }
        text.push_str(" 3 0 0 0 0\n");
        assert_eq!(
            StatFields::parse(&text),
            Ok(StatFields { comm: "a (b) c".into(), state: ProcState::Sleeping, cpu: Some(3) })
        );
        // Cut before field 39: no CPU, still a state.
        assert_eq!(
            StatFields::parse("1 (x) R 0 1").map(|s| (s.state, s.cpu)),
            Ok((ProcState::Running, None))
        );
        for bad in ["", "1 x) S", "1 (x S", "1 )x( S", "1 (x)"] {
            assert!(StatFields::parse(bad).is_err(), "accepted {bad:?}");
        }
        // The real thing: this thread's own stat.
        let own = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let parsed = StatFields::parse(&own).unwrap();
        assert_eq!(parsed.state, ProcState::Running);
        assert!(parsed.cpu.is_some(), "no CPU in {own:?}");
    }

    #[test]
    fn parses_status_switches() {
        let text = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(parse_status_switches(text), Ok((12, 3)));
        assert!(parse_status_switches("voluntary_ctxt_switches:\t12\n").is_err());
        assert!(parse_status_switches("voluntary_ctxt_switches: x\nnonvoluntary_ctxt_switches: 1").is_err());
    }

    #[test]
    fn parses_wchan() {
        assert_eq!(parse_wchan("hrtimer_nanosleep"), Some("hrtimer_nanosleep".into()));
        assert_eq!(parse_wchan("0"), None);
        assert_eq!(parse_wchan(""), None);
    }

    #[test]
    fn parses_kernel_stack() {
        let text = "\
[<0>] hrtimer_nanosleep+0xb5/0x130
[<0>] common_nsleep+0x30/0x60
[<ffffffff8f2a1b2c>] __x64_sys_clock_nanosleep+0xde/0x150
[<0>] entry_SYSCALL_64_after_hwframe+0x76/0x7e
";
        assert_eq!(
            parse_stack(text),
            [
                "hrtimer_nanosleep+0xb5/0x130",
                "common_nsleep+0x30/0x60",
                "__x64_sys_clock_nanosleep+0xde/0x150",
                "entry_SYSCALL_64_after_hwframe+0x76/0x7e",
            ]
        );
        assert!(parse_stack("").is_empty());
        assert!(parse_stack("[<0>]\n").is_empty());
    }

    #[test]
    fn state_letters_round_trip() {
        for c in ['R', 'S', 'D', 'T', 't', 'Z', 'X', 'I', 'P'] {
            assert_eq!(ProcState::from_char(c).as_char(), c);
        }
        assert_eq!(ProcState::from_char('D').as_str(), "disk_sleep");
        assert_eq!(ProcState::from_char('t').as_str(), "stopped");
        assert_eq!(ProcState::from_char('I').as_str(), "sleeping");
        assert_eq!(ProcState::from_char('P'), ProcState::Other('P'));
    }

    #[test]
    fn off_cpu_needs_a_consistent_blocked_reading() {
        let clocks = HashMap::from([(1, 5_000)]);
        let sched = Some(SchedFields { exec_start_ns: 1_000, nr_switches: Some(7) });
        let blocked = ProcState::Sleeping;
        assert_eq!(off_cpu(blocked, Some(1), sched, 7, &clocks), Some(4_000));
        // Switched while we read it.
        assert_eq!(off_cpu(blocked, Some(1), sched, 8, &clocks), None);
        assert_eq!(off_cpu(ProcState::Running, Some(1), sched, 7, &clocks), None);
        // No reference clock for that CPU.
        assert_eq!(off_cpu(blocked, Some(0), sched, 7, &clocks), None);
        assert_eq!(off_cpu(blocked, Some(1), None, 7, &clocks), None);
        // Went to sleep after the reference was taken.
        let later = Some(SchedFields { exec_start_ns: 9_000, nr_switches: Some(7) });
        assert_eq!(off_cpu(blocked, Some(1), later, 7, &clocks), Some(0));
        // Migrated while asleep: the scheduler zeroed exec_start (seen here as a "blocked for
        // the machine's uptime" that exceeded the thread's age).
        let migrated = Some(SchedFields { exec_start_ns: 0, nr_switches: Some(7) });
        assert_eq!(off_cpu(blocked, Some(1), migrated, 7, &clocks), None);
    }

    /// A thread of this test process blocked in read(2) on a pipe: the ground truth is the
    /// syscall and fd it was told to block on, its own gettid(), and the wall clock.
    #[test]
    fn samples_a_thread_blocked_in_read() {
        let pid = std::process::id();
        let (mut reader, mut writer) = std::io::pipe().unwrap();
        let read_fd = std::os::fd::AsRawFd::as_raw_fd(&reader);
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let spawned = Instant::now();
        let blocked = std::thread::Builder::new()
            .name("blocked-reader".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                tid_tx.send(unsafe { libc::gettid() } as u32).unwrap();
                let mut byte = [0u8; 1];
                reader.read_exact(&mut byte).unwrap();
            })
            .unwrap();
        let tid = tid_rx.recv().unwrap();

        // Wait until the kernel itself says the thread is in read(2).
        let syscall_file = format!("/proc/{pid}/task/{tid}/syscall");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&syscall_file).unwrap().starts_with(&format!("{} ", libc::SYS_read)) {
            assert!(Instant::now() < deadline, "thread never blocked in read");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(300));

        let sample = read_thread(pid, tid).expect("read_thread");
        let kernel_stack = read_kernel_stack(pid, tid);
        let elapsed = spawned.elapsed();
        let all = read_threads(pid).expect("read_threads");
        writer.write_all(b"x").unwrap();
        blocked.join().unwrap();

        assert_eq!(sample.tid, tid);
        assert_eq!(sample.name, "blocked-reader");
        assert_eq!(sample.state, ProcState::Sleeping);
        match sample.syscall {
            SyscallSite::In { nr, args, .. } => {
                assert_eq!(i64::from(nr), libc::SYS_read);
                assert_eq!(args[0], read_fd as u64);
                assert_eq!(args[2], 1);
            }
            other => panic!("expected read(2), got {other:?}"),
        }
        assert!(sample.wchan.is_some(), "no wchan for a sleeping thread");
        assert!(
            kernel_stack.iter().any(|f| f.contains("pipe_read")),
            "kernel stack without pipe_read: {kernel_stack:?}"
        );
        assert!(sample.voluntary_switches >= Some(1));
        assert!(sample.cpu.is_some());

        // A lower bound of the time blocked: never more than the time since the thread was
        // spawned, and (steal time aside) most of the 300 ms we waited after it blocked.
        let off = sample.off_cpu_ns.expect("no off-CPU time for a blocked thread");
        assert!(
            u128::from(off) <= elapsed.as_nanos(),
            "off-CPU {off} ns exceeds the {elapsed:?} the thread has existed"
        );
        assert!(off >= 150_000_000, "off-CPU {off} ns after a 300 ms block");

        assert!(all.iter().any(|t| t.tid == tid));
        assert!(all.iter().any(|t| t.tid == pid), "main thread missing");
    }

    #[test]
    fn missing_thread_and_process() {
        let pid = std::process::id();
        let pid_max: u32 =
            std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
        assert!(matches!(
            read_thread(pid, pid_max),
            Err(ProcError::NoSuchProcess(t)) if t == pid_max
        ));
        assert!(matches!(
            read_threads(pid_max),
            Err(ProcError::NoSuchProcess(p)) if p == pid_max
        ));
    }

    #[test]
    fn running_thread_has_no_off_cpu_time() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        let me = read_thread(std::process::id(), tid).unwrap();
        assert_eq!(me.state, ProcState::Running);
        assert_eq!(me.off_cpu_ns, None);
    }
}
