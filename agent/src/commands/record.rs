//! `parkscope record`: a snapshot every interval, written to a recording (parkscope-recording)
//! as it is taken, until the duration, Ctrl-C/SIGTERM, the target's exit or --max-size. The
//! loop is thin on purpose: it takes views from the Observer and hands them to the Writer.

use std::fs::File;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use parkscope_common::{ArgKind, BlockEvent, syscalls};
use parkscope_model::{Event, EventKind, RuntimeKind, SyscallClass, Timestamp};
use parkscope_probes::kernel::{BlockEventStream, ProbeSelection, monotonic_now_ns};
use parkscope_recording::{End, Header, Writer};

use super::{attach, blocking, open_target};
use crate::{
    cli::RecordArgs,
    error::{Failure, code},
    observe::{ObserveOptions, Observer},
    session::{Session, Wake},
};

pub async fn run(args: RecordArgs) -> Result<i32, Failure> {
    if args.interval.is_zero() {
        return Err(Failure::new(code::USAGE, "--interval must be greater than 0", "e.g. --interval 1s"));
    }
    let target = open_target(args.pid).await?;
    let mut session = Session::new(args.pid).map_err(|e| Failure::internal(&e.into()))?;
    // What `snapshot` attaches: blocks at the switch (exact times), switches (running vs
    // runnable), wakeups (the waker). No syscall probes: the target pays per context switch.
    // With --syscalls, calls blocking at least LONG_CALL_NS stream back as events.
    let selection = ProbeSelection {
        blocks: true,
        switches: true,
        wakeups: true,
        syscalls: args.syscalls,
        ..Default::default()
    };
    let probes = attach(args.pid, selection, args.syscalls.then_some(LONG_CALL_NS)).await?;
    let mut observer = Observer::new(target, Some(probes));
    let mut stream = observer.take_block_events();
    let mut pending: Vec<BlockEvent> = Vec::new();
    let mut go_unreadable = false;
    let mut goroutines = false;
    if !args.no_go {
        let (found, obs) = blocking(move || (observer.attach_go(), observer)).await?;
        observer = obs;
        match found {
            Ok(found) => goroutines = found,
            Err(u) if u.target_gone => return Err(u.failure),
            Err(u) => {
                super::warn_go_unreadable(
                    &u.failure.cause,
                    u.failure.hint.as_deref(),
                    "recording its threads only",
                );
                go_unreadable = true;
            }
        }
    }
    let opts = ObserveOptions {
        stacks: !args.no_stacks,
        goroutines,
        completed_calls: args.syscalls,
        fd_descriptions: true,
    };

    let header = header(&observer, &args);
    let path = args.output.clone();
    let writer = blocking(move || File::create(&path).and_then(|f| Writer::new(f, &header)))
        .await?
        .map_err(|e| write_failure(&args.output, &e))?;

    let started = Instant::now();
    let progress = std::io::stderr().is_terminal();
    let mut writer = Some(writer);
    let mut taken = 0u32;
    let (reason, mut exit) = loop {
        // The first view right after attach (it also tells the observer which calls threads
        // were already asleep in), then one per interval, on multiples of it so they do not drift.
        let (view, obs, w) = {
            let mut w =
                writer.take().ok_or_else(|| Failure::new(code::INTERNAL, "writer lost", "report this"))?;
            if let Some(s) = stream.as_mut() {
                pending.extend(s.drain());
            }
            let events: Vec<Event> = pending.iter().map(event).collect();
            observer.add_block_events(std::mem::take(&mut pending));
            blocking(move || {
                // The events since the previous snapshot come before the snapshot they end in.
                if let Err(e) = w.write_events(&events) {
                    return (Err(e), observer, w);
                }
                let view = observer.observe(opts);
                let written = view.as_ref().ok().map(|v| w.write_snapshot(v));
                (Ok(view.map(|v| (v, written))), observer, w)
            })
            .await?
        };
        observer = obs;
        writer = Some(w);
        taken += 1;
        let view = view.map_err(|e| write_failure(&args.output, &e))?;
        let Ok((view, written)) = view else { break ("target exited", code::TARGET_EXITED) };
        if let Some(Err(e)) = written {
            return Err(write_failure(&args.output, &e));
        }
        let bytes = writer.as_ref().map_or(0, Writer::bytes);
        if progress {
            eprint!(
                "\r\x1b[2Kparkscope: recording pid {}: {} snapshots, {}",
                args.pid,
                taken,
                human_bytes(bytes)
            );
        }
        if view.target_exited {
            break ("target exited", code::TARGET_EXITED);
        }
        if args.max_size.is_some_and(|max| bytes >= max) {
            break ("max size", code::SUCCESS);
        }
        let next = args.interval * taken;
        if args.duration.is_some_and(|d| next > d + Duration::from_millis(1)) {
            break ("duration", code::SUCCESS);
        }
        match wait(&mut session, stream.as_mut(), &mut pending, next.saturating_sub(started.elapsed())).await
        {
            Wake::Deadline => {}
            // Ctrl-C is how a recording without --duration ends; with one, it was cut short.
            Wake::Interrupted if args.duration.is_some() => break ("interrupted", code::INTERRUPTED),
            Wake::Interrupted => break ("interrupted", code::SUCCESS),
            Wake::TargetExited => break ("target exited", code::TARGET_EXITED),
        }
    };
    if progress {
        eprintln!();
    }
    observer.detach();
    let w = writer.take().ok_or_else(|| Failure::new(code::INTERNAL, "writer lost", "report this"))?;
    let (snapshots, bytes) = (w.snapshots(), w.bytes());
    let end = End { reason: reason.to_owned(), snapshots, ended_at: now() };
    let path = args.output.clone();
    blocking(move || w.finish(&end)).await?.map_err(|e| write_failure(&path, &e))?;
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

/// Calls blocking at least this long are recorded as events with --syscalls (as snapshot's).
const LONG_CALL_NS: u64 = 10_000_000;
/// The kernel batches ring-buffer wakeups; drain at least this often so it never fills.
const DRAIN_EVERY: Duration = Duration::from_millis(200);

/// Waits `dur` (or for a signal or the target's exit) while draining the long-call stream.
async fn wait(
    session: &mut Session,
    stream: Option<&mut BlockEventStream>,
    pending: &mut Vec<BlockEvent>,
    dur: Duration,
) -> Wake {
    let Some(stream) = stream else { return session.wait(Some(dur)).await };
    let deadline = Instant::now() + dur;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        tokio::select! {
            wake = session.wait(Some(remaining)) => return wake,
            batch = stream.next_batch(DRAIN_EVERY) => pending.extend(batch),
        }
    }
}

/// A long call from the kernel's stream as a model event, stamped when it returned.
fn event(e: &BlockEvent) -> Event {
    Event {
        at_ns: e.enter_ns.saturating_add(e.duration_ns),
        kind: EventKind::BlockEnded {
            tid: e.tid,
            nr: e.nr,
            name: syscalls::display_name(e.nr).to_string(),
            class: SyscallClass::of(e.nr),
            fd: (syscalls::arg0_kind(e.nr) == ArgKind::Fd).then_some(e.arg0 as i32),
            duration_ns: e.duration_ns,
            ret: e.ret,
        },
    }
}

fn header(observer: &Observer, args: &RecordArgs) -> Header {
    let target = &observer.target;
    let go = observer.go_process();
    let exe = target.exe.clone();
    Header {
        schema_version: parkscope_model::SCHEMA_VERSION,
        parkscope_version: env!("CARGO_PKG_VERSION").to_owned(),
        kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        pid: target.pid,
        comm: target.comm.clone(),
        exe: exe.as_ref().map(|p| p.display().to_string()),
        // Through /proc/PID/exe: the file the target runs, even if its path was replaced.
        build_id: parkscope_probes::stacks::modules::elf_build_id(std::path::Path::new(&format!(
            "/proc/{}/exe",
            target.pid
        ))),
        runtime: go.map(|_| RuntimeKind::Go),
        runtime_version: go.map(|g| g.version().to_owned()),
        interval_ns: u64::try_from(args.interval.as_nanos()).unwrap_or(u64::MAX),
        started_at: now(),
    }
}

/// Both clocks now.
fn now() -> Timestamp {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Timestamp { monotonic_ns: monotonic_now_ns(), wall_unix_ns: wall }
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
