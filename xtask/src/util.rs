//! Small helpers shared by the tasks: paths, running commands with clear errors, step banners.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
}

/// Prints a banner for a step so long runs show progress.
pub fn step(what: &str) {
    eprintln!("\n==> {what}");
}

/// Runs a command to completion, failing with its name and status.
pub fn run(cmd: &mut Command) -> Result<()> {
    let desc = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("spawning {desc}"))?;
    if !status.success() {
        bail!("{desc} failed with {status}");
    }
    Ok(())
}

/// Runs a command, showing its output, returning Ok even on a non-zero exit (the demo shows it).
pub fn run_visible(bin: &Path, args: &[&str]) -> Result<()> {
    let status =
        Command::new(bin).args(args).status().with_context(|| format!("spawning {}", bin.display()))?;
    if !status.success() {
        eprintln!("({} exited with {status})", bin.display());
    }
    Ok(())
}

/// Runs cargo in the workspace root with the pinned toolchain.
pub fn cargo(args: &[&str]) -> Result<()> {
    run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root())
        .args(args))
}

/// Whether `program --version`-style output of `cmd` contains `needle`.
pub fn output_contains(cmd: &mut Command, needle: &str) -> bool {
    cmd.output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(needle))
        .unwrap_or(false)
}

/// Lints the eBPF crate for its real target (a host build of a no_std bin cannot link), the way
/// aya-build compiles it: the pinned toolchain with -Z build-std unlocked.
pub fn clippy_ebpf() -> Result<()> {
    let target_dir = root().join("target/ebpf-clippy");
    run(Command::new("cargo")
        .current_dir(root().join("ebpf"))
        .args([
            "clippy",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--target-dir",
        ])
        .arg(&target_dir)
        .args(["--", "-D", "warnings"])
        .env("RUSTC_BOOTSTRAP", "1"))
}
