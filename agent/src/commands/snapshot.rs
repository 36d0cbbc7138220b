//! `parkscope snapshot`: what every thread is doing now. Seeds the view from /proc at once, stays
//! attached for the window so calls entered meanwhile get exact times, then takes the final view.

use std::time::{Duration, Instant};

use parkscope_probes::kernel::ProbeSelection;

use super::{attach, blocking, open_target, write_stdout};
use crate::{
    cli::SnapshotArgs,
    error::{Failure, code},
    model::Snapshot,
    observe::{ObserveOptions, Observer},
    render,
    session::{Session, Wake},
};

/// Calls blocking at least this long during the window are listed per thread (`long_calls`).
const LONG_CALL_NS: u64 = 10_000_000;
/// The kernel batches ring-buffer wakeups; drain at least this often so it never fills.
const DRAIN_EVERY: Duration = Duration::from_millis(200);

pub async fn run(args: SnapshotArgs) -> Result<i32, Failure> {
    let target = open_target(args.pid).await?;
    let mut session = Session::new(args.pid).map_err(|e| Failure::internal(&e.into()))?;
    let mut opts = ObserveOptions {
        stacks: !args.no_stacks,
        goroutines: false,
        completed_calls: args.syscalls,
        fd_descriptions: true,
    };

    if args.go_uprobes && args.window.is_zero() {
        return Err(Failure::new(
            code::USAGE,
            "--go-uprobes needs a window to watch goroutines change status",
            "give a window, e.g. --window 2s",
        ));
    }
    let probes = if args.window.is_zero() {
        None
    } else {
        // Blocks at the switch for exact times, switches for runnable-vs-running, wakeups for
        // the waker; the syscall probes (per-call histograms, long calls) only with --syscalls.
        let selection = ProbeSelection {
            blocks: true,
            syscalls: args.syscalls,
            switches: true,
            wakeups: true,
            ..Default::default()
        };
        Some(attach(args.pid, selection, args.syscalls.then_some(LONG_CALL_NS)).await?)
    };
    let mut observer = Observer::new(target, probes);
    if !args.no_go {
        let (found, obs) = blocking(move || (observer.attach_go(), observer)).await?;
        observer = obs;
        opts.goroutines = match found {
            Ok(found) => found,
            // Go detail asked for by name fails as it cannot be given; otherwise the thread
            // view is printed, with the runtime part saying why there is no more (see below).
            Err(u) if u.target_gone || args.goroutines || args.go_uprobes => return Err(u.failure),
            Err(_) => false,
        };
        if args.goroutines && !opts.goroutines {
            return Err(Failure::new(
                code::NOT_GO,
                format!("process {} ({}) is not a Go program", args.pid, observer.target.comm),
                "drop --goroutines to see the threads of a non-Go process",
            ));
        }
        if args.go_uprobes {
            if !opts.goroutines {
                return Err(Failure::new(
                    code::NOT_GO,
                    format!(
                        "--go-uprobes: process {} ({}) is not a Go program",
                        args.pid, observer.target.comm
                    ),
                    "drop --go-uprobes; the thread view needs no uprobes",
                ));
            }
            let (attached, obs) = blocking(move || (observer.attach_go_uprobes(), observer)).await?;
            observer = obs;
            attached?;
        }
    }

    // tokio tasks, read from the target's console beside the window (tokio_console.rs).
    let console = crate::tokio_console::start(args.pid, args.console_addr, args.window);

    // The seed: what /proc says right now. Printed instead of the final view if the target
    // exits during the window, so nothing collected is lost.
    let (seed, obs) = observe(observer, opts).await?;
    observer = obs;
    let mut seed = seed?;

    let mut exit = code::SUCCESS;
    let mut final_view = if args.window.is_zero() {
        seed
    } else {
        match wait_window(&mut session, &mut observer, args.window).await {
            Wake::Deadline => {}
            Wake::Interrupted => {
                tracing::warn!("interrupted: taking the view now, window cut short");
                exit = code::INTERRUPTED;
            }
            Wake::TargetExited => {}
        }
        let (view, obs) = observe(observer, opts).await?;
        observer = obs;
        observer.detach();
        match view {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("target gone before the final view ({}); printing the first view", e.cause);
                seed.target_exited = true;
                exit = code::TARGET_EXITED;
                seed
            }
        }
    };
    crate::tokio_console::finish(console, &mut final_view).await;
    if let Some(rt) = final_view.runtime.as_ref().filter(|rt| !rt.is_read()) {
        let cause = rt.error.clone().unwrap_or_default();
        let hint = rt.hint.clone();
        print(final_view, args.json).await?;
        super::warn_go_unreadable(&cause, hint.as_deref(), "printed its threads only");
        if exit == code::SUCCESS {
            exit = code::GO_UNREADABLE;
        }
    } else {
        print(final_view, args.json).await?;
    }
    if exit == code::TARGET_EXITED {
        eprintln!(
            "parkscope: target {} exited during the window; printed the view taken at attach",
            args.pid
        );
    }
    Ok(exit)
}

/// Waits out the window while draining the long-call stream into the observer.
async fn wait_window(session: &mut Session, observer: &mut Observer, window: Duration) -> Wake {
    let deadline = Instant::now() + window;
    let mut events = observer.take_block_events();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Some(stream) = events.as_mut() else { return session.wait(Some(remaining)).await };
        tokio::select! {
            wake = session.wait(Some(remaining)) => {
                observer.add_block_events(stream.drain());
                return wake;
            }
            batch = stream.next_batch(DRAIN_EVERY) => observer.add_block_events(batch),
        }
    }
}

/// Runs one observation on the blocking pool (it reads /proc and target memory).
async fn observe(
    mut observer: Observer,
    opts: ObserveOptions,
) -> Result<(Result<Snapshot, Failure>, Observer), Failure> {
    blocking(move || {
        let view = observer.observe(opts).map_err(Failure::from);
        (view, observer)
    })
    .await
}

async fn print(view: Snapshot, json: bool) -> Result<(), Failure> {
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
