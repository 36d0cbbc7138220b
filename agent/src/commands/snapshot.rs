//! `parkscope snapshot`: what every thread is doing now. Seeds the view from /proc at once, stays
//! attached for the window so calls entered meanwhile get exact times, then takes the final view.

use parkscope_collector::{
    CollectError, Collector, Config, ObserveOptions, ProbePlan, ProbeSelection, RuntimeMode, Schedule, Update,
};

use super::{blocking, write_stdout};
use crate::{
    cli::SnapshotArgs,
    ebpf_object,
    error::{Failure, code},
    model::{RuntimeKind, Snapshot},
    render,
    session::Session,
};

/// Calls blocking at least this long during the window are listed per thread (`long_calls`).
const LONG_CALL_NS: u64 = 10_000_000;

pub async fn run(args: SnapshotArgs) -> Result<i32, Failure> {
    if args.go_uprobes && args.window.is_zero() {
        return Err(Failure::new(
            code::USAGE,
            "--go-uprobes needs a window to watch goroutines change status",
            "give a window, e.g. --window 2s",
        ));
    }
    // Blocks at the switch for exact times, switches for runnable-vs-running, wakeups for the
    // waker; the syscall probes (per-call histograms, long calls) only with --syscalls.
    let probes = (!args.window.is_zero()).then_some(ProbePlan {
        selection: ProbeSelection {
            blocks: true,
            syscalls: args.syscalls,
            switches: true,
            wakeups: true,
            ..Default::default()
        },
        long_call_min_ns: args.syscalls.then_some(LONG_CALL_NS),
    });
    // Go detail asked for by name fails as it cannot be given; otherwise the thread view is
    // printed, with the runtime part saying why there is no more (see below).
    let runtime = if args.no_go {
        RuntimeMode::Off
    } else if args.goroutines || args.go_uprobes {
        RuntimeMode::Require
    } else {
        RuntimeMode::Detect
    };
    let config = Config {
        pid: args.pid,
        ebpf_object: ebpf_object::object(),
        probes,
        runtime,
        runtime_uprobes: args.go_uprobes && !args.no_go,
        view: ObserveOptions {
            stacks: !args.no_stacks,
            goroutines: true,
            completed_calls: args.syscalls,
            fd_descriptions: true,
        },
        runtime_schedtrace: None,
        runtime_schedtrace_with_views: false,
        stall: args.stall,
        schedule: Schedule::Window(args.window),
    };
    let mut session = Session::signals().map_err(|e| Failure::internal(&e.into()))?;
    let (mut collector, _started) = Collector::start(config).await.map_err(|e| not_go(e, &args))?;
    // tokio tasks, read from the target's console beside the window (tokio_console.rs): a
    // second source, on this reactor (gRPC is network I/O), joined into the final view.
    let console = crate::tokio_console::start(args.pid, args.console_addr, args.window);

    // The seed (what /proc says at once) is printed instead of the final view if the target
    // exits during the window, so nothing collected is lost.
    let (mut seed, mut final_view, mut exited) = (None, None, false);
    let mut exit = code::SUCCESS;
    loop {
        tokio::select! {
            update = collector.next() => match update {
                Some(Update::Snapshot { snapshot, seed: true, .. }) => seed = Some(snapshot),
                Some(Update::Snapshot { snapshot, .. }) => final_view = Some(snapshot),
                Some(Update::TargetExited) => exited = true,
                Some(Update::Failed(e)) => return Err(e.into()),
                Some(Update::Event(_) | Update::RuntimeSchedtrace(_) | Update::RuntimeUnreadable(_)) => {}
                None => break,
            },
            _ = session.wait(None), if exit == code::SUCCESS && !args.window.is_zero() => {
                tracing::warn!("interrupted: taking the view now, window cut short");
                exit = code::INTERRUPTED;
                collector.finish();
            }
        }
    }
    let mut final_view = match (final_view, seed) {
        (Some(v), _) => v,
        (None, Some(mut seed)) => {
            if exited {
                seed.target_exited = true;
                exit = code::TARGET_EXITED;
            }
            seed
        }
        (None, None) => {
            return Err(Failure::new(code::INTERNAL, "the collector took no view", "report this"));
        }
    };
    crate::tokio_console::finish(console, &mut final_view).await;
    if let Some(rt) = final_view.runtime.as_ref().filter(|rt| !rt.is_read() && rt.kind == RuntimeKind::Tokio)
    {
        // tokio: the thread view is whole; without task ids only the stalls are missing.
        let notice = rt.error.clone().unwrap_or_default();
        print(*final_view, args.json).await?;
        eprintln!("parkscope: tokio: {notice}; printed its threads without task ids or stalls");
    } else if let Some(rt) = final_view.runtime.as_ref().filter(|rt| !rt.is_read()) {
        let cause = rt.error.clone().unwrap_or_default();
        let hint = rt.hint.clone();
        print(*final_view, args.json).await?;
        super::warn_go_unreadable(&cause, hint.as_deref(), "printed its threads only");
        if exit == code::SUCCESS {
            exit = code::GO_UNREADABLE;
        }
    } else {
        print(*final_view, args.json).await?;
    }
    if exit == code::TARGET_EXITED {
        eprintln!(
            "parkscope: target {} exited during the window; printed the view taken at attach",
            args.pid
        );
    }
    Ok(exit)
}

/// The NOT_GO failure in the words of the flag that asked for Go detail.
fn not_go(e: CollectError, args: &SnapshotArgs) -> Failure {
    match e {
        CollectError::NotGo { pid, comm } if args.go_uprobes && !args.goroutines => Failure::new(
            code::NOT_GO,
            format!("--go-uprobes: process {pid} ({comm}) is not a Go program"),
            "drop --go-uprobes; the thread view needs no uprobes",
        ),
        other => other.into(),
    }
}

/// Prints a snapshot as `snapshot` does (live or from a recording): the table, or the JSON
/// contract streamed from the blocking pool.
pub async fn print(view: Snapshot, json: bool) -> Result<(), Failure> {
    if json {
        // Streamed (a 100k-goroutine snapshot is tens of MB of text) from the blocking pool.
        let written = blocking(move || {
            let stdout = std::io::stdout();
            render::json::write_snapshot(std::io::BufWriter::with_capacity(1 << 16, stdout.lock()), &view)
        })
        .await?;
        return match written {
            // A closed pipe (`| head`) is the reader's choice, not our failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(Failure::internal(&anyhow::Error::from(e).context("writing to stdout"))),
            Ok(()) => Ok(()),
        };
    }
    write_stdout(&render::table::render(&view)).await
}
