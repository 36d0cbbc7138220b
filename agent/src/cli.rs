//! The command line: clap derive, with the doc comments as help text.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    internal error
  2    bad arguments
  3    no such process
  4    not permitted (needs root, or CAP_BPF + CAP_PERFMON; CAP_SYS_PTRACE for other users' /proc)
  5    the target exited during the run (what was collected is still printed)
  6    not traceable (a kernel thread; or a kernel without BTF, or older than 5.18)
  7    a Go program whose runtime cannot be read (unknown Go release, runtime not located);
       the thread view is still printed, except with --goroutines or --go-uprobes
  8    --goroutines or --go-uprobes on a process that is not a Go program
  9    a recording that cannot be read (--from): truncated, corrupt, or not a recording;
       what was read before the damage is still printed
  10   top: stdin or stdout is not a terminal (use snapshot or schedtrace instead)
  130  interrupted (Ctrl-C/SIGTERM) before the run finished (partial results printed)";

/// Which threads of a live process are blocked, where, on what, for how long.
///
/// parkscope attaches eBPF probes to a running process by pid (no restart, no rebuild, no
/// stop) and reads /proc and the target's memory to show each thread's state, the syscall it
/// is blocked in, the fd it waits on (socket peer, pipe, path), for how long, and its stacks.
#[derive(Debug, Parser)]
#[command(name = "parkscope", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// More logging on stderr (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// What every thread is doing now: blocked threads first, longest first, with stacks.
    Snapshot(SnapshotArgs),
    /// One line per interval in the style of Go's GODEBUG=schedtrace, for any process; for a Go
    /// program, exactly the lines its own runtime would print.
    Schedtrace(SchedtraceArgs),
    /// Blocked-time (off-CPU) or CPU profile over a window, as pprof (+ folded stacks, SVG).
    Profile(ProfileArgs),
    /// Record a snapshot every interval (and the events between them) to a file, for
    /// `snapshot`, `schedtrace` and `profile` to replay with --from FILE.
    Record(RecordArgs),
    /// A live terminal view of the threads, goroutines and tasks, refreshed every interval:
    /// what is stuck, on what, since when; or the same view of a recording (--from FILE), step
    /// by step. Needs a terminal; press ? in it for the keys.
    Top(TopArgs),
    /// Turn a recording into another tool's format: --perfetto writes a Perfetto trace
    /// (ui.perfetto.dev) with a slice per blocked syscall and goroutine wait.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The recording to read (`parkscope record -o FILE`).
    pub file: std::path::PathBuf,

    /// Write a Perfetto protobuf trace (open it at ui.perfetto.dev).
    #[arg(long)]
    pub perfetto: bool,

    /// The trace to write (replaced if it exists).
    #[arg(short, long)]
    pub output: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Process id of the target.
    #[arg(short, long, required_unless_present = "from", default_value_t = 0, hide_default_value = true)]
    pub pid: u32,

    /// Replay a recording (`parkscope record`) instead of watching a live process: it opens
    /// paused at the first snapshot; space plays, `[` and `]` step, g goes to a time, + and -
    /// change the speed. A damaged recording replays up to the damage (exit 9 after q).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["pid", "interval", "no_stacks", "no_go"])]
    pub from: Option<std::path::PathBuf>,

    /// Time between snapshots (each is a full snapshot with stacks; the probes stay attached,
    /// so calls entered since the start get exact times).
    #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Skip user and kernel stacks (cheaper on processes with thousands of threads).
    #[arg(long)]
    pub no_stacks: bool,

    /// Do not read a Go target's runtime (threads only).
    #[arg(long)]
    pub no_go: bool,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Process id of the target.
    #[arg(short, long)]
    pub pid: u32,

    /// The recording to write (replaced if it exists).
    #[arg(short, long)]
    pub output: std::path::PathBuf,

    /// Stop after this long (default: until Ctrl-C/SIGTERM or the target exits).
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Time between snapshots.
    #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Stop (closing the file cleanly) once the recording reaches this size (e.g. 50MB, 1G).
    #[arg(long, value_parser = parse_size)]
    pub max_size: Option<u64>,

    /// Skip user and kernel stacks.
    #[arg(long)]
    pub no_stacks: bool,

    /// Do not read a Go target's runtime (threads only).
    #[arg(long)]
    pub no_go: bool,

    /// Also trace every syscall of the target (as `snapshot --syscalls`): each call that blocked
    /// at least 10 ms is recorded as an event when it returns (and in its thread's long_calls).
    /// Costs every syscall of the target a few hundred ns.
    #[arg(long)]
    pub syscalls: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Process id of the target.
    #[arg(short, long, required_unless_present = "from", default_value_t = 0, hide_default_value = true)]
    pub pid: u32,

    /// Print a snapshot from a recording (`parkscope record`) instead of a live process.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["pid", "window", "no_stacks", "goroutines", "no_go", "go_uprobes", "syscalls"])]
    pub from: Option<std::path::PathBuf>,

    /// With --from: the snapshot at T, an offset from the recording's start (e.g. 4s) or a
    /// wall-clock time (2026-12-02T19:30:05Z, or seconds since the epoch): the last one taken at
    /// or before T. Default: the last snapshot.
    #[arg(long, value_name = "T", requires = "from")]
    pub at: Option<String>,

    /// Stay attached this long first (e.g. 5s, 500ms): calls entered during the window get an
    /// exact blocked_ns, calls that began earlier a lower bound. 0 reads /proc only, no eBPF.
    #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
    pub window: Duration,

    /// Print JSON (one object) instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Skip user and kernel stacks (faster on processes with thousands of threads).
    #[arg(long)]
    pub no_stacks: bool,

    /// Require Go detail: fail (exit 8) if the target is not a Go program. Go targets are
    /// detected and their goroutines listed without this flag.
    #[arg(long, conflicts_with = "no_go")]
    pub goroutines: bool,

    /// Do not read a Go target's runtime (threads only).
    #[arg(long)]
    pub no_go: bool,

    /// Go targets: also attach a uprobe to the runtime's casgstatus for the window, so each
    /// goroutine's time in its status is exact when it changed during the window (status_ns,
    /// waiting_ns). Costs the target about a microsecond per goroutine status change (~12 us
    /// on Go < 1.21), which a channel-heavy program makes millions of times a second: off by
    /// default, and the goroutine view needs none of it.
    #[arg(long, conflicts_with = "no_go")]
    pub go_uprobes: bool,

    /// Also trace every syscall of the target (raw sys_enter/sys_exit) for the window, for
    /// the per-call detail: each thread's `completed` histograms and its `long_calls`. Costs
    /// every syscall of the target ~0.3-0.5 us and every syscall of other processes tens of
    /// ns (docs/performance.md); blocked threads need none of it.
    #[arg(long)]
    pub syscalls: bool,

    /// tokio targets: a worker inside one task's poll at least this long is a stall
    /// (`stalls`: tid, task id, duration, syscall or on CPU, stack). Blocking-pool threads
    /// never are.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub stall: Duration,
    /// tokio targets: read tasks from console-subscriber at HOST:PORT (its TOKIO_CONSOLE_BIND)
    /// instead of finding it among the target's listening sockets. Needs a target built with
    /// console-subscriber and RUSTFLAGS="--cfg tokio_unstable"; never pauses it.
    #[arg(long, value_name = "HOST:PORT", value_parser = crate::tokio_console::parse_addr)]
    pub console_addr: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct SchedtraceArgs {
    /// Process id of the target.
    #[arg(short, long, required_unless_present = "from", default_value_t = 0, hide_default_value = true)]
    pub pid: u32,

    /// Print the thread-level SCHED line (and --detail lines) of each snapshot of a recording
    /// (`parkscope record`) instead of tracing a live process.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["pid", "threads", "count"])]
    pub from: Option<std::path::PathBuf>,

    /// Time between lines (e.g. 1000ms, 2s).
    #[arg(short, long, default_value = "1000ms", value_parser = parse_duration)]
    pub interval: Duration,

    /// Stop after this many lines (default: until Ctrl-C or the target exits).
    #[arg(short, long)]
    pub count: Option<u64>,

    /// After each line, one line per thread: tid, name, state, syscall, fd, time. For a Go
    /// target, the runtime's own scheddetail block (P, M and G lines) instead.
    #[arg(long)]
    pub detail: bool,

    /// tokio targets: a worker inside one task's poll at least this long counts as stalled
    /// (`stalled=` on each line).
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub stall: Duration,

    /// On a Go process, print the thread-level lines (threads by state and syscall class, from
    /// the eBPF context-switch probe) instead of the runtime's GODEBUG lines, which need no probes.
    #[arg(long)]
    pub threads: bool,

    /// One JSON object per interval, one line each: `elapsed_ms`, `pid` and the SCHED line's
    /// numbers by the names the text gives them (thread-level lines: plus the rest of the
    /// snapshot's `summary`; a Go runtime's own lines: `runtime` and Go's numbers).
    #[arg(long, conflicts_with = "detail")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// Process id of the target.
    #[arg(short, long, required_unless_present = "from", default_value_t = 0, hide_default_value = true)]
    pub pid: u32,

    /// Build an off-CPU profile from a recording (`parkscope record`): each blocked thread's and
    /// waiting goroutine's stack, weighted by the time it spent so between snapshots (sampled at
    /// the recording's interval, not traced).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["pid", "duration", "go_uprobes", "waker_stacks", "fd_labels"])]
    pub from: Option<std::path::PathBuf>,

    /// offcpu: where threads wait (time off CPU per stack, syscall, fd and waker); cpu: where
    /// they run (cpu-clock sampling on every CPU, filtered to the target in kernel, with user and
    /// kernel stacks).
    #[arg(long, value_enum, default_value = "offcpu")]
    pub kind: ProfileKindArg,

    /// How long to profile (e.g. 10s, 500ms). Ctrl-C ends it early and still writes the files.
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Samples per second per CPU for --kind cpu (each sample stands for 1/frequency s of CPU
    /// time of the thread it hit).
    #[arg(long, default_value_t = 99)]
    pub frequency: u64,

    /// Where to write the gzipped pprof profile (read it with `go tool pprof`).
    #[arg(short, long)]
    pub output: std::path::PathBuf,

    /// Also write an SVG flame graph here.
    #[arg(long, value_name = "FILE.svg")]
    pub flamegraph: Option<std::path::PathBuf>,

    /// Also write folded stacks here (flamegraph.pl / inferno input).
    #[arg(long, value_name = "FILE")]
    pub folded: Option<std::path::PathBuf>,

    /// Do not read a Go target's runtime. Go targets are detected by themselves, and for
    /// --kind offcpu their goroutines' time not running is sampled from the runtime (sample
    /// type goroutine_wait, label kind=goroutine).
    #[arg(long)]
    pub no_go: bool,

    /// --kind offcpu on a Go target: time goroutine waits exactly with uprobes on the runtime's
    /// casgstatus and gopark (every status change, the stack of every park) instead of reading
    /// the runtime every 100 ms. Costs the target about a microsecond per goroutine status
    /// change and a stack walk per park (~12 us a change on Go < 1.21); off by default.
    #[arg(long, conflicts_with = "no_go")]
    pub go_uprobes: bool,

    /// --kind offcpu: also capture the waker's user and kernel stacks at each wakeup (the
    /// offwake view: who woke whom, from where). Two more stack walks per wakeup.
    #[arg(long)]
    pub waker_stacks: bool,

    /// --kind offcpu: also label each wait with its fd and what the fd is. The fd is read
    /// from the thread's saved registers when it goes off CPU (no syscall probes); the
    /// description costs a read of the target's fd table at the end.
    #[arg(long)]
    pub fd_labels: bool,

    /// --kind offcpu: take stacks for about one wait per PERIOD of off-CPU time. A wait of at
    /// least PERIOD always gets its stacks; a shorter one, of length d, with probability
    /// d/PERIOD, and then stands for PERIOD: the split of time between stacks is an unbiased
    /// estimate, each thread's total stays exact. 0 = stacks for every wait: exact, but two
    /// stack walks (~1.5 us) per context switch of the target. The default samples each thread's
    /// waiting time about as a 100 Hz CPU profiler samples its running time.
    #[arg(long, default_value = "10ms", value_parser = parse_duration, value_name = "PERIOD")]
    pub stack_sample_period: Duration,

    /// Take stacks at every switch-out, the way kernels older than 6.16 (no sched_exit_tp)
    /// must; for checking that path.
    #[arg(long, hide = true)]
    pub stacks_at_switch_out: bool,

    /// --kind offcpu on tokio targets: read task names (label `task_name`) from
    /// console-subscriber at HOST:PORT (its TOKIO_CONSOLE_BIND) instead of finding it among the
    /// target's listening sockets. Needs a target built with console-subscriber and
    /// RUSTFLAGS="--cfg tokio_unstable"; never pauses it.
    #[arg(long, value_name = "HOST:PORT", value_parser = crate::tokio_console::parse_addr, conflicts_with_all = ["from", "no_go"])]
    pub console_addr: Option<std::net::SocketAddr>,
}

/// What `profile` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileKindArg {
    Offcpu,
    Cpu,
}

impl ProfileKindArg {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKindArg::Offcpu => "offcpu",
            ProfileKindArg::Cpu => "cpu",
        }
    }
}

/// Parses `5s`, `500ms`, `1.5s`, `2m`, `100us`, or a bare `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{s}` has no unit; write e.g. 5s, 500ms, 2m"))?;
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration (e.g. 5s, 500ms)"))?;
    let secs = match unit {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}`; use ns, us, ms, s, m or h")),
    };
    if !secs.is_finite() || secs < 0.0 || secs > 86_400.0 * 365.0 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `50MB`, `500K`, `1G`, `1GiB`, or a bare number of bytes (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size (e.g. 50MB, 1G)"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("unknown unit `{unit}` in `{s}`; use B, KB, MB or GB")),
    };
    n.checked_mul(mult).filter(|&b| b > 0).ok_or_else(|| format!("`{s}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1000ms").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50MB").unwrap(), 50 << 20);
        assert_eq!(parse_size("500k").unwrap(), 500 << 10);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("0").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn pid_or_from() {
        assert!(Cli::try_parse_from(["parkscope", "snapshot"]).is_err());
        assert!(Cli::try_parse_from(["parkscope", "snapshot", "--from", "x"]).is_ok());
        assert!(Cli::try_parse_from(["parkscope", "snapshot", "-p", "1"]).is_ok());
        assert!(Cli::try_parse_from(["parkscope", "snapshot", "-p", "1", "--from", "x"]).is_err());
        assert!(Cli::try_parse_from(["parkscope", "profile", "--from", "x", "-o", "p.pb.gz"]).is_ok());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
