//! `cargo xtask fuzz`: builds the libFuzzer targets in fuzz/ (cargo-fuzz, installed if absent),
//! writes their seed corpora (real-format seeds and sections of the example Go builds), runs
//! each target for a number of inputs or a time, and reports runs and crashes per target.
//! Not part of `cargo xtask test`: the same harnesses run there as unit tests over a few
//! thousand mutations each (probes/src/go/fuzz.rs).

use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::util;

/// Every target in fuzz/fuzz_targets (the harness names of parkscope_probes::go::fuzz, and
/// parkscope_recording::fuzz's reader).
const TARGETS: &[&str] =
    &["pclntab", "go_executable", "buildinfo", "go_binary", "epoll_fdinfo", "runtime", "locate", "recording"];

#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Inputs per target (libFuzzer -runs).
    #[arg(long, default_value_t = 1_000_000)]
    runs: u64,
    /// Time limit per target in seconds (libFuzzer -max_total_time); the run ends at whichever
    /// of --runs and --seconds comes first.
    #[arg(long)]
    seconds: Option<u64>,
    /// Only these targets (default: all).
    #[arg(long = "target")]
    targets: Vec<String>,
}

/// What one target's run did.
struct Outcome {
    target: String,
    runs: u64,
    secs: f64,
    /// Crash, timeout or out-of-memory inputs libFuzzer saved.
    artifacts: Vec<String>,
    ok: bool,
}

pub fn run(args: FuzzArgs) -> Result<()> {
    let root = util::root();
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        let unknown: Vec<&String> = args.targets.iter().filter(|t| !TARGETS.contains(&t.as_str())).collect();
        if !unknown.is_empty() {
            bail!("unknown fuzz target(s) {unknown:?}; the targets are {TARGETS:?}");
        }
        TARGETS.iter().copied().filter(|t| args.targets.iter().any(|a| a == t)).collect()
    };
    if !util::output_contains(Command::new("cargo").args(["fuzz", "--version"]), "cargo-fuzz") {
        util::step("installing cargo-fuzz");
        util::cargo(&["install", "cargo-fuzz", "--locked"])?;
    }
    util::step("writing the seed corpora (fuzz/corpus)");
    let manifest = root.join("fuzz/Cargo.toml");
    util::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["run", "--release", "--manifest-path"])
            .arg(&manifest)
            .args(["-p", "parkscope-fuzz-seeds", "--"])
            .arg(root.join("fuzz/corpus"))
            .arg(root.join("examples/bin")),
    )?;
    util::step("building the fuzz targets (cargo fuzz build, AddressSanitizer)");
    // The installed nightly is older than aya's minimum Rust (1.98), so the targets build with
    // the pinned toolchain, its nightly-only flags (-Zsanitizer) unlocked.
    util::run(
        Command::new("cargo").current_dir(&root).env("RUSTC_BOOTSTRAP", "1").args(["fuzz", "build", "-O"]),
    )?;

    let mut outcomes = Vec::new();
    for target in &targets {
        util::step(&format!("fuzzing {target}"));
        outcomes.push(run_target(&root, target, &args)?);
    }
    println!("\n{:<14} {:>10} {:>9} {:>9}  result", "target", "runs", "seconds", "runs/s");
    for o in &outcomes {
        let result = if o.ok && o.artifacts.is_empty() {
            "ok: 0 crashes".to_owned()
        } else {
            format!(
                "FAILED: {}",
                if o.artifacts.is_empty() { "see the log".into() } else { o.artifacts.join(", ") }
            )
        };
        println!(
            "{:<14} {:>10} {:>9.1} {:>9.0}  {result}",
            o.target,
            o.runs,
            o.secs,
            o.runs as f64 / o.secs.max(1e-9)
        );
    }
    let failed: Vec<&str> =
        outcomes.iter().filter(|o| !o.ok || !o.artifacts.is_empty()).map(|o| o.target.as_str()).collect();
    if !failed.is_empty() {
        bail!(
            "fuzz targets {failed:?} found inputs that crash, hang or exhaust memory (saved in fuzz/artifacts/; \
             reproduce with fuzz/target/x86_64-unknown-linux-gnu/release/TARGET ARTIFACT)"
        );
    }
    Ok(())
}

fn run_target(root: &Path, target: &str, args: &FuzzArgs) -> Result<Outcome> {
    let bin = root.join("fuzz/target/x86_64-unknown-linux-gnu/release").join(target);
    let corpus = root.join("fuzz/corpus").join(target);
    let artifacts = root.join("fuzz/artifacts").join(target);
    std::fs::create_dir_all(&artifacts)?;
    let before = list(&artifacts);
    let mut cmd = Command::new(&bin);
    cmd.arg(format!("-runs={}", args.runs))
        // A run over one input longer than this is a hang.
        .arg("-timeout=10")
        // Any single allocation or RSS past 2 GiB is unbounded memory (the parsers cap theirs
        // at 1 GiB).
        .arg("-rss_limit_mb=2560")
        .arg("-malloc_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&corpus);
    if let Some(s) = args.seconds {
        cmd.arg(format!("-max_total_time={s}"));
    }
    let start = Instant::now();
    let out = cmd.output().with_context(|| format!("running {}", bin.display()))?;
    let secs = start.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&out.stderr);
    let log_path = artifacts.join("last-run.log");
    std::fs::write(&log_path, log.as_bytes())?;
    let runs = log
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let artifacts: Vec<String> = list(&artifacts)
        .into_iter()
        .filter(|a| !before.contains(a) && a != "last-run.log")
        .map(|a| format!("fuzz/artifacts/{target}/{a}"))
        .collect();
    if !out.status.success() {
        eprintln!(
            "{}",
            log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    eprintln!("{target}: {runs} runs in {secs:.1} s (log: {})", log_path.display());
    Ok(Outcome { target: target.to_owned(), runs, secs, artifacts, ok: out.status.success() })
}

fn list(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}
