//! `parkscope profile`: a blocked-time (off-CPU) or CPU profile of a live process over a window,
//! written as gzipped pprof, and optionally as folded stacks and an SVG flame graph.
//!
//! A consumer of the collector: the collector's profile thread attaches, seeds, reads the
//! runtime, and at the end reads the kernel's maps and builds the profile (model data,
//! `parkscope_model::profile::Profile`). This command validates the arguments, waits (window,
//! signals, target exit, a one-second progress tick) and encodes. Ctrl-C or the target's exit
//! ends the window early: what was collected is still written, and the exit code says so.

use std::{
    io::IsTerminal,
    path::Path,
    time::{Duration, Instant},
};

use parkscope_collector::{
    CollectError, RuntimeMode,
    profile::{ProfileCollector, ProfileConfig, ProfileMode, ProfileProgress, WindowEnd},
};
use tokio::io::AsyncWriteExt;

use super::blocking;
use crate::{
    cli::{ProfileArgs, ProfileKindArg},
    ebpf_object,
    error::{Failure, code},
    profile::{self, Profile},
    session::{Session, Wake},
};

const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Above this a sampled wait would stand for more time than most windows last.
const MAX_STACK_SAMPLE_PERIOD: Duration = Duration::from_secs(10);

pub async fn run(args: ProfileArgs) -> Result<i32, Failure> {
    if args.duration.is_zero() {
        return Err(Failure::new(code::USAGE, "--duration must be positive", "e.g. --duration 10s"));
    }
    if !(1..=10_000).contains(&args.frequency) {
        return Err(Failure::new(
            code::USAGE,
            "--frequency must be 1..=10000 Hz",
            "the default, 99, suits most uses",
        ));
    }
    if args.stack_sample_period > MAX_STACK_SAMPLE_PERIOD {
        return Err(Failure::new(
            code::USAGE,
            "--stack-sample-period must be at most 10s",
            "the default, 10ms, keeps the cost low; 0 captures every wait",
        ));
    }
    if args.kind == ProfileKindArg::Cpu
        && (args.waker_stacks || args.fd_labels || args.go_uprobes || args.console_addr.is_some())
    {
        return Err(Failure::new(
            code::USAGE,
            "--waker-stacks, --fd-labels, --go-uprobes and --console-addr apply to off-CPU profiles",
            "drop them, or use --kind offcpu",
        ));
    }
    let pid = args.pid;
    let mut session = Session::new(pid).map_err(|e| Failure::internal(&e.into()))?;
    let config = ProfileConfig {
        pid,
        ebpf_object: ebpf_object::object(),
        mode: match args.kind {
            ProfileKindArg::Offcpu => ProfileMode::OffCpu {
                stack_sample_period: args.stack_sample_period,
                stacks_at_switch_out: args.stacks_at_switch_out,
                waker_stacks: args.waker_stacks,
                fd_labels: args.fd_labels,
            },
            ProfileKindArg::Cpu => ProfileMode::Cpu { frequency_hz: args.frequency },
        },
        // --go-uprobes asks for the runtime by name: a target whose runtime cannot be read is
        // an error, not a fallback. Otherwise a Go program whose runtime cannot be read is still
        // profiled, by its threads (the profile and the warning say why, and the exit code is
        // GO_UNREADABLE).
        runtime: if args.go_uprobes {
            RuntimeMode::Require
        } else if config_reads_runtime(&args) {
            RuntimeMode::Detect
        } else {
            RuntimeMode::Off
        },
        runtime_uprobes: args.go_uprobes,
    };
    let (collector, started) = ProfileCollector::start(config).await.map_err(|e| match e {
        CollectError::NotGo { pid, comm } => Failure::new(
            code::NOT_GO,
            format!("--go-uprobes: process {pid} ({comm}) is not a Go program"),
            "drop --go-uprobes; threads are profiled without it",
        ),
        other => other.into(),
    })?;
    if let Some(e) = &started.runtime_unreadable {
        tracing::info!("the Go runtime cannot be read ({e}): profiling the threads only");
    }

    // tokio task names, from the target's console beside the window (tokio_console.rs): only
    // where the runtime is read, since only then do samples carry the `task` labels they name.
    let console = config_reads_runtime(&args)
        .then(|| crate::tokio_console::start_for_profile(pid, args.console_addr, args.duration))
        .flatten();

    // The window, with a progress line every second. It starts once collection has started
    // (attaching takes a while), so the profile covers the whole --duration.
    let started_at = Instant::now();
    let progress = Progress::new(pid, args.kind, args.duration);
    let deadline = started_at + args.duration;
    let wake = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match session.wait(Some(remaining.min(PROGRESS_EVERY))).await {
            Wake::Deadline if remaining <= PROGRESS_EVERY => break Wake::Deadline,
            Wake::Deadline => progress.tick(started_at.elapsed(), collector.progress()).await,
            other => break other,
        }
    };
    let elapsed = started_at.elapsed();
    progress.done().await;
    let cut_short = match wake {
        Wake::Deadline => None,
        Wake::Interrupted => Some(format!("interrupted after {:.1} s", elapsed.as_secs_f64())),
        Wake::TargetExited => Some(format!("the target exited after {:.1} s", elapsed.as_secs_f64())),
    };
    let outcome = collector.finish(WindowEnd { elapsed, cut_short: cut_short.clone() }).await?;
    let mut profile = outcome.profile;
    let console_notice = crate::tokio_console::label_profile(console, &mut profile).await;

    write_outputs(&args, &profile).await?;
    let samples: usize = profile.samples.len();
    eprintln!(
        "parkscope: wrote {} ({} kind, {:.1} s, {samples} distinct stacks){}",
        args.output.display(),
        args.kind.as_str(),
        elapsed.as_secs_f64(),
        cut_short.as_ref().map_or(String::new(), |w| format!("; window cut short: {w}, partial profile"))
    );
    if let Some(notice) = console_notice {
        eprintln!("parkscope: tokio: {notice}");
    }
    if let Some(u) = &outcome.runtime_unreadable {
        super::warn_go_unreadable(&u.cause, u.hint.as_deref(), "profiled its threads only");
    }
    Ok(match wake {
        Wake::Deadline if outcome.runtime_unreadable.is_some() => code::GO_UNREADABLE,
        Wake::Deadline => code::SUCCESS,
        Wake::Interrupted => code::INTERRUPTED,
        Wake::TargetExited => code::TARGET_EXITED,
    })
}

/// Whether the target's runtime is followed (off-CPU profiles, unless --no-go).
fn config_reads_runtime(args: &ProfileArgs) -> bool {
    args.kind == ProfileKindArg::Offcpu && !args.no_go
}

/// The progress line on stderr: redrawn in place on a terminal, one line per tick otherwise.
struct Progress {
    pid: u32,
    kind: ProfileKindArg,
    duration: Duration,
    tty: bool,
}

impl Progress {
    fn new(pid: u32, kind: ProfileKindArg, duration: Duration) -> Self {
        Self { pid, kind, duration, tty: std::io::stderr().is_terminal() }
    }

    async fn tick(&self, elapsed: Duration, collected: ProfileProgress) {
        let collected = match collected {
            ProfileProgress::ContextSwitches(n) => format!("{n} context switches"),
            ProfileProgress::CpuSamples(n) => format!("{n} samples"),
        };
        let line = format!(
            "parkscope: profiling pid {} ({}): {:.0}s/{:.0}s, {collected}",
            self.pid,
            self.kind.as_str(),
            elapsed.as_secs_f64(),
            self.duration.as_secs_f64()
        );
        let text = if self.tty { format!("\r\x1b[2K{line}") } else { format!("{line}\n") };
        let mut err = tokio::io::stderr();
        let _ = err.write_all(text.as_bytes()).await;
        let _ = err.flush().await;
    }

    async fn done(&self) {
        if self.tty {
            let mut err = tokio::io::stderr();
            let _ = err.write_all(b"\r\x1b[2K").await;
            let _ = err.flush().await;
        }
    }
}

async fn write_outputs(args: &ProfileArgs, profile: &Profile) -> Result<(), Failure> {
    let p = profile.clone();
    let pprof =
        blocking(move || profile::pprof::encode(&p)).await?.map_err(|e| write_failure(&args.output, e))?;
    write_file(&args.output, &pprof).await?;
    if let Some(path) = &args.folded {
        write_file(path, profile::folded::encode(profile).as_bytes()).await?;
    }
    if let Some(path) = &args.flamegraph {
        let p = profile.clone();
        let svg =
            blocking(move || profile::flamegraph::encode(&p)).await?.map_err(|e| write_failure(path, e))?;
        write_file(path, &svg).await?;
    }
    Ok(())
}

async fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let (owned, data) = (path.to_owned(), bytes.to_vec());
    blocking(move || std::fs::write(owned, data)).await?.map_err(|e| write_failure(path, e))
}

fn write_failure(path: &Path, e: std::io::Error) -> Failure {
    Failure::new(
        code::INTERNAL,
        format!("cannot write {}: {e}", path.display()),
        "check that the directory exists and is writable",
    )
}
