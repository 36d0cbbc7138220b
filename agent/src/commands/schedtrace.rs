//! `parkscope schedtrace`: one GODEBUG=schedtrace-style line per interval, counts as of that
//! instant. A Go target gets its runtime's own lines, read from its memory with no probes at
//! all; other targets (and Go with `--threads`) get thread-level lines, for which it attaches
//! syscall entry/exit (exact per-call times) and the light sched_switch probe (running vs
//! runnable) only: no stacks, no wakeups, no event stream.

use parkscope_collector::{
    Collector, Config, ObserveOptions, ProbePlan, ProbeSelection, RuntimeMode, Schedule, Update,
};

use super::write_stdout;
use crate::{
    cli::SchedtraceArgs,
    ebpf_object,
    error::{Failure, code},
    render::schedtrace,
    session::Session,
};

pub async fn run(args: SchedtraceArgs) -> Result<i32, Failure> {
    if args.interval.is_zero() {
        return Err(Failure::new(code::USAGE, "--interval must be greater than 0", "e.g. --interval 1000ms"));
    }
    // A Go target gets its own runtime's schedtrace lines (no probes); anything else the
    // thread-level ones, and so does a Go target whose runtime cannot be read (with a warning,
    // and GO_UNREADABLE as the exit code once done). Blocks attributed at the switch: the
    // target pays per context switch, not per syscall.
    let config = Config {
        pid: args.pid,
        ebpf_object: ebpf_object::object(),
        probes: Some(ProbePlan {
            selection: ProbeSelection { blocks: true, switches: true, ..Default::default() },
            long_call_min_ns: None,
        }),
        runtime: if args.threads { RuntimeMode::Off } else { RuntimeMode::Detect },
        runtime_uprobes: false,
        view: ObserveOptions {
            // A tokio target's reader turns stacks on: it learns worker roles from them.
            stacks: false,
            // The runtime's tasks: a Go target whose runtime is readable gets its own lines
            // instead of views; a tokio target's stalls are counted on each line.
            goroutines: true,
            completed_calls: false,
            // Only the --detail lines show what each fd is.
            fd_descriptions: args.detail,
        },
        runtime_schedtrace: Some(args.detail),
        runtime_schedtrace_with_views: false,
        stall: args.stall,
        schedule: Schedule::Interval { every: args.interval, count: args.count, at_start: false },
    };
    let mut session = Session::signals().map_err(|e| Failure::internal(&e.into()))?;
    let (mut collector, started) = Collector::start(config).await?;
    let mut go_unreadable = false;
    if let Some(e) = started.runtime_unreadable {
        warn_unreadable(&e.into());
        go_unreadable = true;
    }
    let done = |go_unreadable: bool| if go_unreadable { code::GO_UNREADABLE } else { code::SUCCESS };
    loop {
        let update = tokio::select! {
            update = collector.next() => update,
            _ = session.wait(None) => {
                collector.stop().await;
                return Ok(done(go_unreadable));
            }
        };
        match update {
            Some(Update::Snapshot { snapshot, elapsed, .. }) if args.json => {
                let line = schedtrace::json_line(elapsed.as_millis() as u64, args.pid, &snapshot.summary)
                    .map_err(|e| Failure::internal(&anyhow::Error::from(e).context("encoding a line")))?;
                write_stdout(&line).await?;
            }
            Some(Update::Snapshot { snapshot, elapsed, .. }) => {
                let mut text = schedtrace::line(elapsed.as_millis() as u64, &snapshot.summary);
                text.push_str(&schedtrace::tokio_counts(&snapshot));
                text.push('\n');
                if args.detail {
                    text.push_str(&schedtrace::detail(&snapshot));
                }
                write_stdout(&text).await?;
            }
            Some(Update::RuntimeSchedtrace(trace)) if args.json => {
                let line = schedtrace::runtime_json_line(args.pid, &trace)
                    .map_err(|e| Failure::internal(&anyhow::Error::from(e).context("encoding a line")))?;
                write_stdout(&line).await?;
            }
            Some(Update::RuntimeSchedtrace(trace)) => write_stdout(&trace.text).await?,
            Some(Update::RuntimeUnreadable(e)) => {
                warn_unreadable(&e.into());
                go_unreadable = true;
            }
            Some(Update::Event(_)) => {}
            Some(Update::TargetExited) => {
                eprintln!("parkscope: target {} exited", args.pid);
                return Ok(code::TARGET_EXITED);
            }
            Some(Update::Failed(e)) => return Err(e.into()),
            None => return Ok(done(go_unreadable)),
        }
    }
}

/// The warning printed once when schedtrace falls back to thread-level lines for a Go target.
fn warn_unreadable(failure: &Failure) {
    super::warn_go_unreadable(&failure.cause, failure.hint.as_deref(), "tracing its threads instead");
}
