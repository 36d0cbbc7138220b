//! `parkscope schedtrace`: one GODEBUG=schedtrace-style line per interval, counts as of that
//! instant. A Go target gets its runtime's own lines, read from its memory with no probes at
//! all; other targets (and Go with `--threads`) get thread-level lines, for which it attaches
//! syscall entry/exit (exact per-call times) and the light sched_switch probe (running vs
//! runnable) only: no stacks, no wakeups, no event stream.

use std::time::Instant;

use parkscope_probes::kernel::ProbeSelection;

use super::{attach, blocking, open_target, write_stdout};
use crate::{
    cli::SchedtraceArgs,
    error::{Failure, code},
    observe::{ObserveOptions, Observer},
    render::{self, schedtrace},
    session::{Session, Wake},
};

pub async fn run(args: SchedtraceArgs) -> Result<i32, Failure> {
    if args.interval.is_zero() {
        return Err(Failure::new(code::USAGE, "--interval must be greater than 0", "e.g. --interval 1000ms"));
    }
    let target = open_target(args.pid).await?;
    let mut session = Session::new(args.pid).map_err(|e| Failure::internal(&e.into()))?;
    let mut observer = Observer::new(target, None);
    let mut opts = ObserveOptions {
        stacks: false,
        goroutines: false,
        completed_calls: false,
        // Only the --detail lines show what each fd is.
        fd_descriptions: args.detail,
    };
    // A Go target gets its own runtime's schedtrace lines; anything else the thread-level ones,
    // and so does a Go target whose runtime cannot be read (with a warning, and GO_UNREADABLE
    // as the exit code once done).
    let mut go_unreadable = false;
    let mut go_style = if args.threads {
        None
    } else {
        let (found, obs) = blocking(move || (observer.attach_go(), observer)).await?;
        observer = obs;
        match found {
            Ok(true) => observer.go_process().map(|g| parkscope_probes::go::schedtrace_style(g.version())),
            Ok(false) => None,
            Err(u) if u.target_gone => return Err(u.failure),
            Err(u) => {
                warn_unreadable(&u.failure);
                go_unreadable = true;
                None
            }
        }
    };
    if go_style.is_none() && !args.threads && !go_unreadable {
        let (found, obs) = blocking(move || (observer.attach_tokio(), observer)).await?;
        observer = obs;
        observer.stall_ns = u64::try_from(args.stall.as_nanos()).unwrap_or(u64::MAX);
        // A tokio worker's idle task id is learnt from a stack showing it parked.
        opts.stacks = found;
    }
    if go_style.is_none() {
        // Blocks attributed at the switch: the target pays per context switch, not per syscall.
        let selection = ProbeSelection { blocks: true, switches: true, ..Default::default() };
        observer.set_probes(attach(args.pid, selection, None).await?);
    }
    let started = Instant::now();
    let done = |go_unreadable: bool| if go_unreadable { code::GO_UNREADABLE } else { code::SUCCESS };

    let mut printed = 0u64;
    loop {
        // Sleep to the next multiple of the interval so lines do not drift.
        let next = args.interval * (printed as u32 + 1);
        let wait = next.saturating_sub(started.elapsed());
        match session.wait(Some(wait)).await {
            Wake::Deadline => {}
            Wake::Interrupted => return Ok(done(go_unreadable)),
            Wake::TargetExited => {
                eprintln!("parkscope: target {} exited", args.pid);
                return Ok(code::TARGET_EXITED);
            }
        }
        if let Some(style) = go_style {
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let (read, obs) = blocking(move || {
                let read = match observer.go_runtime() {
                    Some(Ok(rt)) => Ok(observer
                        .go_process()
                        .map(|go| render::goschedtrace::render(go, &rt, elapsed_ms, style, args.detail))),
                    Some(Err(e)) => Err(e),
                    None => Ok(None),
                };
                (read, observer)
            })
            .await?;
            observer = obs;
            if !observer.target.is_alive() {
                eprintln!("parkscope: target {} exited", args.pid);
                return Ok(code::TARGET_EXITED);
            }
            let text = match read {
                Ok(Some(text)) => text,
                Ok(None) => {
                    return Err(Failure::new(code::INTERNAL, "the Go runtime vanished", "report this"));
                }
                // The runtime stopped making sense (or was never readable past attach): the
                // threads are still there to trace.
                Err(e) => {
                    let failure = observer.give_up_go(e);
                    warn_unreadable(&failure);
                    go_unreadable = true;
                    go_style = None;
                    let selection = ProbeSelection { syscalls: true, switches: true, ..Default::default() };
                    observer.set_probes(attach(args.pid, selection, None).await?);
                    continue;
                }
            };
            write_stdout(&text).await?;
            printed += 1;
            if args.count.is_some_and(|c| printed >= c) {
                return Ok(done(go_unreadable));
            }
            continue;
        }
        let (view, obs) = blocking(move || {
            let v = observer.observe(opts);
            (v, observer)
        })
        .await?;
        observer = obs;
        let Ok(view) = view else {
            eprintln!("parkscope: target {} exited", args.pid);
            return Ok(code::TARGET_EXITED);
        };
        let mut text = schedtrace::line(started.elapsed().as_millis() as u64, &view.summary);
        text.push_str(&schedtrace::tokio_counts(&view));
        text.push('\n');
        if args.detail {
            text.push_str(&schedtrace::detail(&view));
        }
        write_stdout(&text).await?;
        printed += 1;
        if args.count.is_some_and(|c| printed >= c) {
            return Ok(done(go_unreadable));
        }
    }
}

/// The warning printed once when schedtrace falls back to thread-level lines for a Go target.
fn warn_unreadable(failure: &Failure) {
    super::warn_go_unreadable(&failure.cause, failure.hint.as_deref(), "tracing its threads instead");
}
