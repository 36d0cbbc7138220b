//! The `parkscope` binary: parses the command line, runs the command on a single-threaded tokio
//! reactor (file and /proc work goes to the blocking pool), and turns failures into one line of
//! cause, one line of hint, and a distinct exit code.

mod cli;
mod commands;
mod ebpf_object;
mod error;
mod model;
mod profile;
mod render;
mod session;
mod tokio_console;

use std::process::ExitCode;

use clap::Parser;
use error::{Failure, code};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // `top` owns the terminal: its logs go to the viewer's bottom line instead of stderr.
    init_logging(cli.verbose, matches!(cli.command, cli::Command::Top(_)));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return report(Failure::internal(&anyhow::Error::from(e).context("starting the runtime"))),
    };
    let result = runtime.block_on(async {
        match cli.command {
            cli::Command::Snapshot(args) if args.at.is_some() && args.from.is_none() => Err(Failure::new(
                code::USAGE,
                "--at needs --from FILE (it picks a snapshot of a recording)",
                "a live snapshot is taken now; drop --at",
            )),
            cli::Command::Snapshot(args) if args.from.is_some() => commands::replay::snapshot(args).await,
            cli::Command::Schedtrace(args) if args.from.is_some() => commands::replay::schedtrace(args).await,
            cli::Command::Profile(args) if args.from.is_some() => commands::replay::profile(args).await,
            cli::Command::Snapshot(args) => commands::snapshot::run(args).await,
            cli::Command::Schedtrace(args) => commands::schedtrace::run(args).await,
            cli::Command::Profile(args) => commands::profile::run(args).await,
            cli::Command::Record(args) => commands::record::run(args).await,
            cli::Command::Top(args) => commands::top::run(args).await,
            cli::Command::Export(args) => commands::export::run(args).await,
        }
    });
    // Dropping the runtime first joins the blocking pool, so probes are detached before exit
    // (a collector's own thread detaches them before its channel closes).
    drop(runtime);
    match result {
        Ok(c) => exit_code(c),
        Err(f) => report(f),
    }
}

/// Prints a failure's cause and hint; its code is the exit code (never 0).
fn report(f: Failure) -> ExitCode {
    eprintln!("parkscope: {}", f.cause);
    if let Some(h) = &f.hint {
        eprintln!("hint: {h}");
    }
    exit_code(if f.code == code::SUCCESS { code::INTERNAL } else { f.code })
}

/// Our codes are 0..=130; anything else would be a bug, reported as INTERNAL.
fn exit_code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(code::INTERNAL as u8))
}

/// Logs go to stderr (for `top`, to its log sink); stdout carries only the command's output.
fn init_logging(verbose: u8, to_top: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    if to_top {
        fmt.with_writer(|| commands::top::LogSink).with_ansi(false).without_time().init();
    } else {
        fmt.with_writer(std::io::stderr).init();
    }
}
