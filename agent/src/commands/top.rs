//! `parkscope top`: the live terminal viewer. This file adapts a [`Collector`] to the viewer
//! crate: the collector's thread takes a snapshot (with stacks, fd descriptions and, for Go,
//! goroutines and the runtime's own SCHED line of the same instant) every interval; a
//! forwarder on the blocking pool turns its updates into the viewer's samples over a bounded
//! channel; the viewer's UI runs on the blocking pool too and only polls that channel, so
//! neither the reactor nor the UI ever waits on collection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, PoisonError};

use parkscope_collector::{
    Collector, Config, ObserveOptions, ProbePlan, ProbeSelection, RuntimeMode, Schedule, Update,
};
use parkscope_viewer::{ChannelSource, Sample};

use crate::{
    cli::TopArgs,
    ebpf_object,
    error::{Failure, code},
    render,
    session::{Session, Wake},
};

/// Log lines kept for the viewer at most (the oldest are dropped).
const MAX_LOG_LINES: usize = 64;

/// Log lines written while `top` owns the terminal (see main.rs), the newest
/// [`MAX_LOG_LINES`], and how many were written in all: the newest is shown on the viewer's
/// bottom line, and all kept are printed to stderr once the terminal is restored.
static LOG: Mutex<(u64, VecDeque<String>)> = Mutex::new((0, VecDeque::new()));

/// The tracing writer of `top`: each formatted event becomes one kept line.
pub struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let mut log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if log.1.len() == MAX_LOG_LINES {
                log.1.pop_front();
            }
            log.1.push_back(line.trim().to_owned());
            log.0 += 1;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The newest log line, if any was written after the `seen`-th; updates `seen`.
fn newest_log_line(seen: &mut u64) -> Option<String> {
    let log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
    if log.0 == *seen {
        return None;
    }
    *seen = log.0;
    log.1.back().cloned()
}

/// Once the terminal is restored: what was logged meanwhile goes where logs always go.
pub(super) fn print_kept_log() {
    for line in std::mem::take(&mut LOG.lock().unwrap_or_else(PoisonError::into_inner).1) {
        eprintln!("parkscope: {line}");
    }
}

/// Samples waiting for the UI at most: a UI that falls behind holds the collector back
/// instead of letting snapshots pile up in memory.
const CHANNEL_BOUND: usize = 2;

pub async fn run(args: TopArgs) -> Result<i32, Failure> {
    if let Some(path) = args.from {
        return super::top_from::run(path).await;
    }
    if args.interval.is_zero() {
        return Err(Failure::new(code::USAGE, "--interval must be greater than 0", "e.g. --interval 1s"));
    }
    if !parkscope_viewer::is_terminal() {
        return Err(Failure::new(
            code::NOT_A_TERMINAL,
            "top needs a terminal: stdin or stdout is not a tty",
            format!(
                "for a file or a pipe use `parkscope snapshot -p {0}` (one view) or `parkscope schedtrace -p {0}` (a line per interval)",
                args.pid
            ),
        ));
    }
    // The same probes as `snapshot`: blocks at the switch (exact times), switches (running vs
    // runnable), wakeups (the waker). Attached once for the whole run.
    let config = Config {
        pid: args.pid,
        ebpf_object: ebpf_object::object(),
        probes: Some(ProbePlan {
            selection: ProbeSelection { blocks: true, switches: true, wakeups: true, ..Default::default() },
            long_call_min_ns: None,
        }),
        // A runtime that cannot be read: the snapshots carry the runtime part saying why, and
        // the header shows it.
        runtime: if args.no_go { RuntimeMode::Off } else { RuntimeMode::Detect },
        runtime_uprobes: false,
        view: ObserveOptions {
            stacks: !args.no_stacks,
            goroutines: true,
            completed_calls: false,
            fd_descriptions: true,
        },
        runtime_schedtrace: None,
        runtime_schedtrace_with_views: true,
        stall: std::time::Duration::from_nanos(parkscope_collector::runtime::tokio::DEFAULT_STALL_NS),
        schedule: Schedule::Interval { every: args.interval, count: None, at_start: true },
    };
    let mut session = Session::signals().map_err(|e| Failure::internal(&e.into()))?;
    let (collector, _started) = Collector::start(config).await?;

    let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL_BOUND);
    let stop_forwarding = Arc::new(tokio::sync::Notify::new());
    let forwarder = {
        let stop_forwarding = Arc::clone(&stop_forwarding);
        let handle = tokio::runtime::Handle::current();
        let pid = args.pid;
        // On the blocking pool: sending to the UI's bounded channel may wait for the UI.
        tokio::task::spawn_blocking(move || handle.block_on(forward(collector, pid, &tx, &stop_forwarding)))
    };
    let viewed = run_viewer(ChannelSource::new(rx), &mut session).await;
    // A stored permit: the forwarder sees it even if it is not waiting yet.
    stop_forwarding.notify_one();
    // Joined so the probes are detached (the collector stopped) before we exit.
    forwarder.await.map_err(|e| Failure::internal(&e.into()))?;
    viewed.map(|(_, exit)| exit)
}

/// Runs the viewer on `source` (on the blocking pool) until the person quits with `q`, or a
/// SIGINT/SIGTERM comes from elsewhere (raw mode turns Ctrl-C into a key), then prints what
/// was logged meanwhile. Gives back the source and the exit code so far (INTERRUPTED or
/// SUCCESS); a terminal that could not be drawn is the failure. Live and replay share it.
pub(super) async fn run_viewer<S: parkscope_viewer::Source + Send + 'static>(
    mut source: S,
    session: &mut Session,
) -> Result<(S, i32), Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    let no_color = parkscope_viewer::no_color_from_env();
    let mut ui = {
        let stop = Arc::clone(&stop);
        tokio::task::spawn_blocking(move || {
            let drawn = parkscope_viewer::run(&mut source, no_color, &stop);
            (drawn, source)
        })
    };
    let mut exit = code::SUCCESS;
    let ui_result = loop {
        tokio::select! {
            r = &mut ui => break r,
            wake = session.wait(None) => match wake {
                Wake::Interrupted => {
                    stop.store(true, Ordering::Relaxed);
                    exit = code::INTERRUPTED;
                }
                Wake::TargetExited | Wake::Deadline => {}
            },
        }
    };
    stop.store(true, Ordering::Relaxed);
    print_kept_log();
    let (drawn, source) = ui_result.map_err(|e| Failure::internal(&e.into()))?;
    drawn.map_err(|e| Failure::internal(&anyhow::Error::from(e).context("drawing the terminal")))?;
    Ok((source, exit))
}

/// Turns the collector's updates into the viewer's until `stop`, the UI going away, or the
/// end of collection; then stops the collector (its probes detached).
async fn forward(
    mut collector: Collector,
    pid: u32,
    tx: &SyncSender<parkscope_viewer::Update>,
    stop: &tokio::sync::Notify,
) {
    use parkscope_viewer::Update as Ui;
    let mut logged = 0u64;
    loop {
        let update = tokio::select! {
            u = collector.next() => u,
            _ = stop.notified() => break,
        };
        let ui = match update {
            Some(Update::Snapshot { snapshot, elapsed, runtime_schedtrace, .. }) => {
                // What the probes and readers logged (map read failures, ...) meanwhile.
                if let Some(last) = newest_log_line(&mut logged)
                    && tx.send(Ui::Warning(last)).is_err()
                {
                    break;
                }
                // A Go target: the line its own runtime prints with GODEBUG=schedtrace, read
                // right after the snapshot; otherwise the thread-level line of the snapshot.
                let sched_line = match runtime_schedtrace {
                    Some(trace) => Some(trace.text.trim_end().to_owned()),
                    None if snapshot.runtime.as_ref().is_some_and(|r| r.is_read()) => None,
                    None => Some(render::schedtrace::line(elapsed.as_millis() as u64, &snapshot.summary)),
                };
                let exited = snapshot.target_exited;
                if tx.send(Ui::Sample(Arc::new(Sample { snapshot: *snapshot, sched_line }))).is_err() {
                    break; // the UI is gone
                }
                if exited {
                    let _ = tx.send(Ui::Ended(format!("target {pid} exited")));
                    break;
                }
                continue;
            }
            Some(Update::RuntimeUnreadable(e)) => Ui::Warning(Failure::from(e).cause),
            Some(Update::Event(_) | Update::RuntimeSchedtrace(_)) => continue,
            Some(Update::TargetExited) => Ui::Ended(format!("target {pid} exited")),
            Some(Update::Failed(e)) => Ui::Ended(Failure::from(e).cause),
            None => Ui::Ended("the collector stopped".to_owned()),
        };
        let ended = matches!(ui, Ui::Ended(_));
        if tx.send(ui).is_err() || ended {
            break;
        }
    }
    collector.stop().await;
}
