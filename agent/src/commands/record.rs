//! `parkscope record`: a snapshot every interval, written to a recording (parkscope-recording)
//! as it is taken, until the duration, Ctrl-C/SIGTERM, the target's exit or --max-size. The
//! loop is thin on purpose: it takes what the Collector yields and hands it to the Writer.

use std::{fs::File, io::IsTerminal, time::Duration};

use parkscope_collector::{
    Collector, Config, ObserveOptions, ProbePlan, ProbeSelection, RuntimeMode, Schedule, Started, Update,
};
use parkscope_model::{Event, Snapshot};
use parkscope_recording::{End, Header, Writer};

use super::blocking;
use crate::{
    cli::RecordArgs,
    ebpf_object,
    error::{Failure, code},
    session::Session,
};

/// Calls blocking at least this long are recorded as events with --syscalls (as snapshot's).
const LONG_CALL_NS: u64 = 10_000_000;
/// Events kept between two snapshots; more are counted and dropped, so a target that makes
/// millions of long calls per interval cannot grow the recorder without bound.
const MAX_EVENTS_PER_INTERVAL: usize = 100_000;

pub async fn run(args: RecordArgs) -> Result<i32, Failure> {
    if args.interval.is_zero() {
        return Err(Failure::new(code::USAGE, "--interval must be greater than 0", "e.g. --interval 1s"));
    }
    // What `snapshot` attaches: blocks at the switch (exact times), switches (running vs
    // runnable), wakeups (the waker). No syscall probes: the target pays per context switch.
    // With --syscalls, calls blocking at least LONG_CALL_NS stream back as events.
    let config = Config {
        pid: args.pid,
        ebpf_object: ebpf_object::object(),
        probes: Some(ProbePlan {
            selection: ProbeSelection {
                blocks: true,
                switches: true,
                wakeups: true,
                syscalls: args.syscalls,
                ..Default::default()
            },
            long_call_min_ns: args.syscalls.then_some(LONG_CALL_NS),
        }),
        runtime: if args.no_go { RuntimeMode::Off } else { RuntimeMode::Detect },
        runtime_uprobes: false,
        view: ObserveOptions {
            stacks: !args.no_stacks,
            goroutines: true,
            completed_calls: args.syscalls,
            fd_descriptions: true,
        },
        runtime_schedtrace: None,
        runtime_schedtrace_with_views: false,
        stall: std::time::Duration::from_nanos(parkscope_collector::runtime::tokio::DEFAULT_STALL_NS),
        // The first view right after attach (it also tells the observer which calls threads
        // were already asleep in), then one per interval, on multiples of it (no drift).
        schedule: Schedule::Interval { every: args.interval, count: snapshots_in(&args), at_start: true },
    };
    let mut session = Session::signals().map_err(|e| Failure::internal(&e.into()))?;
    let (mut collector, mut started) = Collector::start(config).await?;
    let go_unreadable = match started.runtime_unreadable.take() {
        Some(e) => {
            let failure = Failure::from(e);
            super::warn_go_unreadable(&failure.cause, failure.hint.as_deref(), "recording its threads only");
            true
        }
        None => false,
    };

    let header = header(args.pid, &started, &args);
    let path = args.output.clone();
    let writer = blocking(move || File::create(&path).and_then(|f| Writer::new(f, &header)))
        .await?
        .map_err(|e| write_failure(&args.output, &e))?;

    let progress = std::io::stderr().is_terminal();
    let mut recording = Recording { writer: Some(writer), pending: Vec::new(), dropped_events: 0 };
    let (reason, mut exit) = loop {
        let update = tokio::select! {
            update = collector.next() => update,
            // Ctrl-C is how a recording without --duration ends; with one, it was cut short.
            _ = session.wait(None) => break if args.duration.is_some() {
                ("interrupted", code::INTERRUPTED)
            } else {
                ("interrupted", code::SUCCESS)
            },
        };
        match update {
            Some(Update::Event(e)) => recording.event(e),
            Some(Update::Snapshot { snapshot, .. }) => {
                let exited = snapshot.target_exited;
                let bytes =
                    recording.snapshot(*snapshot).await.map_err(|e| write_failure(&args.output, &e))?;
                let taken = recording.writer.as_ref().map_or(0, Writer::snapshots);
                if progress {
                    eprint!(
                        "\r\x1b[2Kparkscope: recording pid {}: {} snapshots, {}",
                        args.pid,
                        taken,
                        human_bytes(bytes)
                    );
                }
                if exited {
                    break ("target exited", code::TARGET_EXITED);
                }
                if args.max_size.is_some_and(|max| bytes >= max) {
                    break ("max size", code::SUCCESS);
                }
            }
            Some(Update::TargetExited) => break ("target exited", code::TARGET_EXITED),
            Some(Update::Failed(e)) => {
                // What was recorded so far is closed cleanly before the failure is reported.
                collector.stop().await;
                let _ = recording.finish("collection failed").await;
                return Err(e.into());
            }
            Some(Update::RuntimeSchedtrace(_) | Update::RuntimeUnreadable(_)) => {}
            // The schedule's last view was taken (--duration).
            None => break ("duration", code::SUCCESS),
        }
    };
    if progress {
        eprintln!();
    }
    collector.stop().await;
    let (snapshots, bytes) = recording.finish(reason).await.map_err(|e| write_failure(&args.output, &e))?;
    if recording.dropped_events > 0 {
        eprintln!(
            "parkscope: warning: {} events dropped (more than {MAX_EVENTS_PER_INTERVAL} in one interval)",
            recording.dropped_events
        );
    }
    match reason {
        "target exited" => eprintln!("parkscope: target {} exited", args.pid),
        "max size" => eprintln!("parkscope: --max-size reached; recording closed"),
        _ => {}
    }
    eprintln!(
        "parkscope: recorded {snapshots} snapshots ({}) of pid {} to {}",
        human_bytes(bytes),
        args.pid,
        args.output.display()
    );
    if go_unreadable && exit == code::SUCCESS {
        exit = code::GO_UNREADABLE;
    }
    Ok(exit)
}

/// How many snapshots --duration allows: one at attach and one per interval up to it (None:
/// until stopped).
fn snapshots_in(args: &RecordArgs) -> Option<u64> {
    let d = args.duration?;
    let per = (d + Duration::from_millis(1)).as_nanos() / args.interval.as_nanos().max(1);
    Some(u64::try_from(per).unwrap_or(u64::MAX).saturating_add(1))
}

/// The writer (moved to the blocking pool for each write) and the events waiting for the
/// next snapshot, which they precede in the file.
struct Recording {
    writer: Option<Writer<File>>,
    pending: Vec<Event>,
    dropped_events: u64,
}

impl Recording {
    fn event(&mut self, e: Event) {
        if self.pending.len() < MAX_EVENTS_PER_INTERVAL {
            self.pending.push(e);
        } else {
            self.dropped_events += 1;
        }
    }

    /// Writes the pending events, then the snapshot; the file's size after.
    async fn snapshot(&mut self, view: Snapshot) -> std::io::Result<u64> {
        let mut w = self.take_writer()?;
        let events = std::mem::take(&mut self.pending);
        let (w, written) = blocking(move || {
            let r = w.write_events(&events).and_then(|_| w.write_snapshot(&view));
            (w, r)
        })
        .await
        .map_err(|f| std::io::Error::other(f.cause))?;
        let bytes = w.bytes();
        self.writer = Some(w);
        written.map(|_| bytes)
    }

    /// Writes what events are left and the end record; (snapshots, bytes) of the closed file.
    async fn finish(&mut self, reason: &str) -> std::io::Result<(u64, u64)> {
        let mut w = self.take_writer()?;
        let events = std::mem::take(&mut self.pending);
        let reason = reason.to_owned();
        blocking(move || {
            w.write_events(&events)?;
            let (snapshots, bytes) = (w.snapshots(), w.bytes());
            let end = End { reason, snapshots, ended_at: parkscope_collector::now() };
            w.finish(&end).map(|_| (snapshots, bytes))
        })
        .await
        .map_err(|f| std::io::Error::other(f.cause))?
    }

    fn take_writer(&mut self) -> std::io::Result<Writer<File>> {
        self.writer.take().ok_or_else(|| std::io::Error::other("the recording was already closed"))
    }
}

fn header(pid: u32, started: &Started, args: &RecordArgs) -> Header {
    let runtime = started.runtime.as_ref();
    Header {
        schema_version: parkscope_model::SCHEMA_VERSION,
        parkscope_version: env!("CARGO_PKG_VERSION").to_owned(),
        kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        pid,
        comm: started.comm.clone(),
        exe: started.exe.as_ref().map(|p| p.display().to_string()),
        build_id: started.build_id.clone(),
        runtime: runtime.map(|r| r.kind),
        runtime_version: runtime.map(|r| r.version.clone()).filter(|v| !v.is_empty()),
        interval_ns: u64::try_from(args.interval.as_nanos()).unwrap_or(u64::MAX),
        started_at: parkscope_collector::now(),
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn write_failure(path: &std::path::Path, e: &std::io::Error) -> Failure {
    Failure::new(
        code::INTERNAL,
        format!("cannot write {}: {e}", path.display()),
        "check that the directory exists, is writable and has room",
    )
}
