//! `cargo xtask`: the project's own entry points. `setup` installs what a fresh machine lacks
//! (idempotently), `demo` runs parkscope against a bundled example, `test` runs every check CI
//! runs, `test-go-matrix` runs the Go tests over every release x build variant, `bench` measures
//! overhead. README.md documents the two commands people need.

mod bench;
mod bench_common;
mod bench_go;
mod bench_go_uprobes;
mod bench_profile;
mod bench_record;
mod bench_threads;
mod bench_tokio;
mod bench_top;
mod console_examples;
mod demo;
mod examples;
mod fuzz;
mod setup;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "parkscope developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain, bpf-linker, Go and system packages (idempotent).
    Setup,
    /// Build the example targets (C; Go 1.19..1.27 for what the suite uses; the tokio example with
    /// the oldest and newest tokio) into examples/bin.
    Examples {
        /// Also every build of the Go release matrix (what `test-go-matrix` runs against).
        #[arg(long)]
        matrix: bool,
    },
    /// Set up, build, start a bundled example target, and show a snapshot and schedtrace lines.
    Demo,
    /// Set up, build, and run every check: fmt, clippy, docs, unit and integration tests.
    Test,
    /// Build parked/parkedcgo with every Go release x every build variant and run the full
    /// matrix test (tests/tests/go_matrix.rs with PARKSCOPE_GO_MATRIX=full)
    TestGoMatrix,
    /// The long tokio idle run: `snapshot --window 30s` of the idle tokio example must report
    /// no stall (tests/tests/tokio.rs with PARKSCOPE_TOKIO_IDLE=30s; the suite runs 3 s)
    TestTokioIdle,
    /// Measure tracing overhead against the bare workload and bpftrace (see docs/performance.md)
    Bench(bench::BenchArgs),
    /// Time a goroutine snapshot of a Go process with 100,000 parked goroutines (Go 1.27, 1.19)
    BenchGo(bench_go::BenchGoArgs),
    /// Measure what the opt-in Go uprobes (--go-uprobes) cost a channel-heavy and a netpoll-heavy Go program
    BenchGoUprobes(bench_go_uprobes::BenchGoUprobesArgs),
    /// Measure recording size per minute (C blocker, 100k goroutines) and what `parkscope record` costs a Go server
    BenchRecord(bench_record::BenchRecordArgs),
    /// Measure what `parkscope profile` costs (off-CPU vs bpftrace offcputime; server throughput)
    BenchProfile(bench_profile::BenchProfileArgs),
    /// Time `snapshot --json` with stacks of a C process with 1k..10k threads blocked in read()
    BenchThreads(bench_threads::BenchThreadsArgs),
    /// What `top` costs: the viewer's frame time at 1k, 10k and 100k rows (budget 16 ms); the Go
    /// server's throughput bare vs with `top` in a terminal; with --minutes, top's CPU and RSS
    BenchTop(bench_top::BenchTopArgs),
    /// What a tokio echo server keeps of its throughput while `snapshot`, `schedtrace` and `top` run
    BenchTokio(bench_tokio::BenchTokioArgs),
    /// Fuzz the parsers of what a Go target controls (cargo-fuzz; ~1M inputs per target)
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Examples { matrix } => {
            setup::run()?;
            examples::build(if matrix { examples::GoBuilds::Matrix } else { examples::GoBuilds::Suite })
        }
        Task::Demo => demo::run(),
        Task::Test => test(),
        Task::TestGoMatrix => test_go_matrix(),
        Task::TestTokioIdle => {
            setup::run()?;
            examples::build(examples::GoBuilds::Suite)?;
            util::step("cargo test: a 30 s idle tokio run has no stalls");
            util::run(
                std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                    .current_dir(util::root())
                    .args(["test", "-p", "parkscope-tests", "--test", "tokio", "--", "an_idle_run"])
                    .env("PARKSCOPE_TOKIO_IDLE", "30s"),
            )
        }
        Task::BenchGo(args) => {
            setup::run()?;
            examples::build(examples::GoBuilds::Suite)?;
            bench_go::run(args)
        }
        Task::BenchRecord(args) => {
            setup::run()?;
            examples::build(examples::GoBuilds::Suite)?;
            bench_record::run(args)
        }
        Task::Bench(args) => {
            setup::run()?;
            examples::build(examples::GoBuilds::Suite)?;
            bench::run(args)
        }
        Task::BenchGoUprobes(args) => {
            setup::run()?;
            examples::build(examples::GoBuilds::Suite)?;
            bench_go_uprobes::run(args)
        }
        Task::BenchProfile(args) => {
            setup::run()?;
            examples::build(examples::GoBuilds::Suite)?;
            bench_profile::run(args)
        }
        Task::BenchThreads(args) => {
            setup::run()?;
            examples::build(examples::GoBuilds::Suite)?;
            bench_threads::run(args)
        }
        Task::BenchTop(args) => {
            setup::run()?;
            examples::build(examples::GoBuilds::Suite)?;
            bench_top::run(args)
        }
        Task::BenchTokio(args) => {
            setup::run()?;
            examples::build(examples::GoBuilds::Suite)?;
            bench_tokio::run(args)
        }
        Task::Fuzz(args) => {
            setup::run()?;
            examples::build(examples::GoBuilds::Suite)?;
            fuzz::run(args)
        }
    }
}

fn test() -> Result<()> {
    setup::run()?;
    examples::build(examples::GoBuilds::Suite)?;
    util::step("cargo fmt --check");
    util::cargo(&["fmt", "--all", "--check"])?;
    util::step("cargo clippy -D warnings (userspace crates)");
    util::cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
    util::step("cargo clippy -D warnings (eBPF crate, for bpfel-unknown-none)");
    util::clippy_ebpf()?;
    util::step("cargo doc -D warnings (the crates' own docs)");
    util::run(
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(util::root())
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--no-deps", "--workspace", "--exclude", "parkscope-ebpf"]),
    )?;
    util::step("building parkscope");
    util::cargo(&["build", "-p", "parkscope"])?;
    util::step("cargo test (unit and privileged integration tests)");
    // One test thread: the integration tests attach real probes and start real targets on a
    // 2-core machine; running them concurrently would make their timing assertions flaky.
    util::cargo(&["test", "--", "--test-threads=1"])?;
    Ok(())
}

/// The whole Go release matrix: every build of [`examples::MATRIX_BUILDS`] with every release,
/// then the layout-table test and the matrix test over all of them.
fn test_go_matrix() -> Result<()> {
    setup::run()?;
    examples::build(examples::GoBuilds::Matrix)?;
    util::step("building parkscope");
    util::cargo(&["build", "-p", "parkscope"])?;
    util::step("cargo test: layout tables against every release's DWARF");
    util::cargo(&["test", "-p", "parkscope-probes", "--test", "go_layouts"])?;
    util::step("cargo test: the Go release matrix (PARKSCOPE_GO_MATRIX=full)");
    util::run(
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(util::root())
            .args(["test", "-p", "parkscope-tests", "--test", "go_matrix", "--"])
            .args(["--include-ignored", "--test-threads=1"])
            .env("PARKSCOPE_GO_MATRIX", "full"),
    )
}
