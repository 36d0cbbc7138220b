//! The `parkscope` binary: parses the command line, runs the command on a single-threaded tokio
//! reactor (file and /proc work goes to the blocking pool), and turns failures into one line of
//! cause, one line of hint, and a distinct exit code.

mod cli;
mod commands;
mod ebpf_object;
mod error;
mod go_uprobes;
mod goroutines;
mod model;
mod observe;
mod profile;
mod render;
mod roles;
mod session;
mod tokio_console;

use clap::Parser;
use error::{Failure, code};

fn main() {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => exit_with(Failure::internal(&anyhow::Error::from(e).context("starting the runtime"))),
    };
    let result = runtime.block_on(async {
        match cli.command {
            cli::Command::Snapshot(args) => commands::snapshot::run(args).await,
            cli::Command::Schedtrace(args) => commands::schedtrace::run(args).await,
            cli::Command::Profile(args) => commands::profile::run(args).await,
        }
    });
    // Dropping the runtime first joins the blocking pool, so probes are detached before exit.
    drop(runtime);
    match result {
        Ok(c) => std::process::exit(c),
        Err(f) => exit_with(f),
    }
}

fn exit_with(f: Failure) -> ! {
    eprintln!("parkscope: {}", f.cause);
    if let Some(h) = &f.hint {
        eprintln!("hint: {h}");
    }
    std::process::exit(if f.code == code::SUCCESS { code::INTERNAL } else { f.code })
}

/// Logs go to stderr; stdout carries only the command's output.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_target(false).init();
}
