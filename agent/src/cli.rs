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
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Process id of the target.
    #[arg(short, long)]
    pub pid: u32,

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

    /// tokio targets: read tasks from console-subscriber at HOST:PORT (its TOKIO_CONSOLE_BIND)
    /// instead of finding it among the target's listening sockets. Needs a target built with
    /// console-subscriber and RUSTFLAGS="--cfg tokio_unstable"; never pauses it.
    #[arg(long, value_name = "HOST:PORT", value_parser = crate::tokio_console::parse_addr)]
    pub console_addr: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct SchedtraceArgs {
    /// Process id of the target.
    #[arg(short, long)]
    pub pid: u32,

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

    /// On a Go process, print the thread-level lines (threads by state and syscall class, from
    /// the eBPF context-switch probe) instead of the runtime's GODEBUG lines, which need no probes.
    #[arg(long)]
    pub threads: bool,
}

#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// Process id of the target.
    #[arg(short, long)]
    pub pid: u32,

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
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
