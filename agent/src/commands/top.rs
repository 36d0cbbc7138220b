//! `parkscope top`: the live terminal viewer. This file is the adapter between today's
//! [`Observer`] and the viewer crate: a collector thread of its own takes a snapshot (with
//! stacks, fd descriptions and, for Go, goroutines) every interval, renders the SCHED line of
//! the same moment, and sends both over a bounded channel; the viewer's UI runs on the blocking
//! pool and only polls that channel, so neither the reactor nor the UI ever waits on
//! collection. The collector crate replaces [`collect`] when it lands; a recording reader plugs
//! into the viewer as another [`parkscope_viewer::Source`] (`top --from FILE`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use parkscope_probes::go::SchedtraceStyle;
use parkscope_probes::kernel::ProbeSelection;
use parkscope_viewer::{ChannelSource, Sample, Update};

use super::{attach, blocking, open_target};
use crate::{
    cli::TopArgs,
    error::{Failure, code},
    observe::{ObserveOptions, Observer},
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

/// Samples waiting for the UI at most: a UI that falls behind holds the collector back
/// instead of letting snapshots pile up in memory.
const CHANNEL_BOUND: usize = 2;
/// How often the collector checks for a stop while it waits for the next interval.
const STOP_POLL: Duration = Duration::from_millis(50);

pub async fn run(args: TopArgs) -> Result<i32, Failure> {
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
    let target = open_target(args.pid).await?;
    let mut session = Session::new(args.pid).map_err(|e| Failure::internal(&e.into()))?;
    // The same probes as `snapshot`: blocks at the switch (exact times), switches (running vs
    // runnable), wakeups (the waker). Attached once for the whole run.
    let selection = ProbeSelection { blocks: true, switches: true, wakeups: true, ..Default::default() };
    let probes = attach(args.pid, selection, None).await?;
    let mut observer = Observer::new(target, Some(probes));
    let mut opts = ObserveOptions {
        stacks: !args.no_stacks,
        goroutines: false,
        completed_calls: false,
        fd_descriptions: true,
    };
    if !args.no_go {
        let (found, obs) = blocking(move || (observer.attach_go(), observer)).await?;
        observer = obs;
        opts.goroutines = match found {
            Ok(found) => found,
            Err(u) if u.target_gone => return Err(u.failure),
            // The snapshots carry the runtime part saying why; the header shows it.
            Err(_) => false,
        };
    }
    let go_style = observer.go_process().map(|g| parkscope_probes::go::schedtrace_style(g.version()));

    let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL_BOUND);
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("parkscope-collect".to_owned())
            .spawn(move || collect(observer, opts, go_style, args.interval, &tx, &stop))
            .map_err(|e| {
                Failure::internal(&anyhow::Error::from(e).context("starting the collector thread"))
            })?
    };
    let no_color = parkscope_viewer::no_color_from_env();
    let mut ui = {
        let stop = Arc::clone(&stop);
        tokio::task::spawn_blocking(move || {
            let mut source = ChannelSource::new(rx);
            parkscope_viewer::run(&mut source, no_color, &stop)
        })
    };
    let mut exit = code::SUCCESS;
    let ui_result = loop {
        tokio::select! {
            r = &mut ui => break r,
            wake = session.wait(None) => match wake {
                // Raw mode turns Ctrl-C into a key; a SIGINT/SIGTERM from elsewhere stops us.
                Wake::Interrupted => {
                    stop.store(true, Ordering::Relaxed);
                    exit = code::INTERRUPTED;
                }
                // The collector notices too and tells the UI, which stays until `q`.
                Wake::TargetExited => break (&mut ui).await,
                Wake::Deadline => {}
            },
        }
    };
    stop.store(true, Ordering::Relaxed);
    // The terminal is restored: what was logged meanwhile goes where logs always go.
    for line in std::mem::take(&mut LOG.lock().unwrap_or_else(PoisonError::into_inner).1) {
        eprintln!("parkscope: {line}");
    }
    // Joined so the probes are detached (dropped with the observer) before we exit.
    blocking(move || collector.join())
        .await?
        .map_err(|_| Failure::new(code::INTERNAL, "the collector thread panicked", "report this"))?;
    match ui_result {
        Ok(Ok(())) => Ok(exit),
        Ok(Err(e)) => Err(Failure::internal(&anyhow::Error::from(e).context("drawing the terminal"))),
        Err(e) => Err(Failure::internal(&e.into())),
    }
}

/// The collector loop: a snapshot every `interval` (aligned, so samples do not drift) until
/// `stop`, the UI going away, or the target exiting.
fn collect(
    mut observer: Observer,
    opts: ObserveOptions,
    go_style: Option<SchedtraceStyle>,
    interval: Duration,
    tx: &SyncSender<Update>,
    stop: &AtomicBool,
) {
    let started = Instant::now();
    let mut taken = 0u32;
    let mut logged = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let snapshot = match observer.observe(opts) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Update::Ended(Failure::from(e).cause));
                return;
            }
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let sched_line = match go_style {
            // A Go target: the line its own runtime prints with GODEBUG=schedtrace, read right
            // after the snapshot.
            Some(style) => match observer.go_runtime() {
                Some(Ok(rt)) => observer.go_process().map(|go| {
                    render::goschedtrace::render(go, &rt, elapsed_ms, style, false).trim_end().to_owned()
                }),
                Some(Err(e)) => {
                    if tx.send(Update::Warning(format!("schedtrace: {e}"))).is_err() {
                        return;
                    }
                    None
                }
                None => None,
            },
            None => Some(render::schedtrace::line(elapsed_ms, &snapshot.summary)),
        };
        // What the probes and readers logged (map read failures, ...) during this snapshot.
        if let Some(last) = newest_log_line(&mut logged)
            && tx.send(Update::Warning(last)).is_err()
        {
            return;
        }
        let exited = snapshot.target_exited;
        if tx.send(Update::Sample(Arc::new(Sample { snapshot, sched_line }))).is_err() {
            return; // the UI is gone
        }
        if exited {
            let _ = tx.send(Update::Ended(format!("target {} exited", observer.target.pid)));
            return;
        }
        taken += 1;
        let next = interval.saturating_mul(taken);
        while !stop.load(Ordering::Relaxed) {
            let left = next.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(STOP_POLL));
        }
    }
}
