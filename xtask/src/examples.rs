//! Builds the example targets into examples/bin and starts the blocker for the demo. Builds are
//! skipped when the output is newer than its sources, so repeated runs are quick.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::{setup, util};

pub fn bin_dir() -> PathBuf {
    util::root().join("examples/bin")
}

fn newer_than(out: &Path, sources: &[PathBuf]) -> bool {
    let Ok(out_time) = out.metadata().and_then(|m| m.modified()) else { return false };
    sources.iter().all(|s| s.metadata().and_then(|m| m.modified()).is_ok_and(|t| t <= out_time))
}

fn go_sources(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default()
}

/// Which Go builds to make: what `cargo xtask test`'s tests use, or the whole release matrix.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum GoBuilds {
    Suite,
    Matrix,
}

pub fn build(which: GoBuilds) -> Result<()> {
    let root = util::root();
    let bin = bin_dir();
    std::fs::create_dir_all(&bin)?;
    for name in ["blocker", "pingpong", "spinners", "splitsleep", "manythreads"] {
        let src = root.join(format!("examples/c/{name}.c"));
        let out = bin.join(name);
        if newer_than(&out, std::slice::from_ref(&src)) {
            continue;
        }
        util::step(&format!("cc examples/c/{name}.c"));
        util::run(
            Command::new("cc")
                .args(["-O2", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
                .arg(&out)
                .arg(&src),
        )?;
    }
    build_rust()?;
    let gocache = setup::tools_dir().join("gocache");
    for &release in setup::GO_RELEASES {
        let go = setup::go_of(release)
            .with_context(|| format!("Go {release} missing; run `cargo xtask setup`"))?;
        for build in go_builds(release, which) {
            let dir = root.join("examples/go").join(build.prog);
            let out = bin.join(format!("{}-{release}{}", build.prog, build.suffix));
            if newer_than(&out, &go_sources(&dir)) {
                continue;
            }
            util::step(&format!("{release} build examples/go/{} {}", build.prog, build.describe()));
            let mut cmd = Command::new(&go);
            if let Some(cgo) = build.cgo {
                cmd.env("CGO_ENABLED", if cgo { "1" } else { "0" });
            }
            cmd.arg("build").args(build.flags);
            if !build.ldflags.is_empty() {
                cmd.arg(format!("-ldflags={}", build.ldflags));
            }
            util::run(
                cmd.arg("-o")
                    .arg(&out)
                    .arg(".")
                    .current_dir(&dir)
                    .env("GOTOOLCHAIN", "local")
                    .env("GOFLAGS", "-mod=mod")
                    .env("GOPROXY", "off")
                    // One cache per release, shared by its variants: only the link differs
                    // between most of them.
                    .env("GOCACHE", gocache.join(release)),
            )?;
        }
    }
    // console-subscriber's own tokio examples (tests/tests/tokio_console.rs).
    crate::console_examples::build()
}

/// The tokio example (examples/rust/src/stalls.rs) is built with each of these tokio releases,
/// one cargo workspace (and Cargo.lock) per release: the oldest console-subscriber 0.5 accepts
/// (its Cargo.toml asks for tokio ^1.47.1) and the newest.
pub const TOKIO_BUILDS: &[&str] = &["oldest", "newest"];

/// `examples/bin/tokio-stalls-<which>` (release profile, symbols kept, as cargo's default
/// release profile does) and `...-stripped` (`strip --strip-all` of it: no .symtab).
fn build_rust() -> Result<()> {
    let root = util::root();
    let dir = root.join("examples/rust");
    for which in TOKIO_BUILDS {
        let ws = dir.join(format!("tokio-{which}"));
        let out = bin_dir().join(format!("tokio-stalls-{which}"));
        let stripped = bin_dir().join(format!("tokio-stalls-{which}-stripped"));
        let sources =
            [dir.join("src/stalls.rs"), dir.join("build.rs"), ws.join("Cargo.toml"), ws.join("Cargo.lock")];
        if newer_than(&out, &sources) && newer_than(&stripped, std::slice::from_ref(&out)) {
            continue;
        }
        let target_dir = cargo_build_example(&format!("tokio-{which}"), which)?;
        // Written beside and renamed over: a running copy (a test's target) keeps its inode.
        let tmp = out.with_extension("tmp");
        std::fs::copy(target_dir.join("release/stalls"), &tmp)
            .with_context(|| format!("copying the build to {}", tmp.display()))?;
        let tmp_stripped = stripped.with_extension("tmp");
        util::run(Command::new("strip").arg("--strip-all").arg("-o").arg(&tmp_stripped).arg(&tmp))?;
        std::fs::rename(&tmp, &out)?;
        std::fs::rename(&tmp_stripped, &stripped)?;
    }
    build_tokio_echo()
}

/// The tokio echo server, its load generator (examples/rust/tokio-echo, `cargo xtask
/// bench-tokio`) and the I/O-parking example with the newest tokio: `examples/bin/tokio-echo`,
/// `tokio-echoload` and `tokio-iopark-newest`; then the I/O-parking example with the oldest
/// (examples/rust/tokio-io-oldest): `tokio-iopark-oldest`.
fn build_tokio_echo() -> Result<()> {
    build_tokio_workspace(
        "tokio-echo",
        "echo",
        &["echo.rs", "echoload.rs", "iopark.rs"],
        &[("echo", "tokio-echo"), ("echoload", "tokio-echoload"), ("iopark", "tokio-iopark-newest")],
    )?;
    build_tokio_workspace(
        "tokio-io-oldest",
        "io-oldest",
        &["iopark.rs"],
        &[("iopark", "tokio-iopark-oldest")],
    )
}

/// Builds the example workspace examples/rust/`workspace` (release, in target/rust-examples/
/// `target`) when one of `outs` (cargo's bin name, the name in examples/bin) is older than its
/// sources.
fn build_tokio_workspace(
    workspace: &str,
    target: &str,
    sources: &[&str],
    outs: &[(&str, &str)],
) -> Result<()> {
    let root = util::root();
    let dir = root.join("examples/rust");
    let ws = dir.join(workspace);
    let mut inputs: Vec<PathBuf> = sources.iter().map(|s| dir.join("src").join(s)).collect();
    inputs.extend([dir.join("build.rs"), ws.join("Cargo.toml"), ws.join("Cargo.lock")]);
    let outs: Vec<(&str, PathBuf)> = outs.iter().map(|(name, out)| (*name, bin_dir().join(out))).collect();
    if outs.iter().all(|(_, out)| newer_than(out, &inputs)) {
        return Ok(());
    }
    let target_dir = cargo_build_example(workspace, target)?;
    for (name, out) in outs {
        // Written beside and renamed over, like the stalls builds.
        let tmp = out.with_extension("tmp");
        std::fs::copy(target_dir.join("release").join(name), &tmp)
            .with_context(|| format!("copying the build to {}", tmp.display()))?;
        std::fs::rename(&tmp, &out)?;
    }
    Ok(())
}

/// `cargo build --release --locked` of the example workspace examples/rust/`workspace`, in its
/// own target dir under ours (target/rust-examples/`target`: the example is not a member of the
/// workspace), which is returned.
fn cargo_build_example(workspace: &str, target: &str) -> Result<PathBuf> {
    util::step(&format!("cargo build --release examples/rust/{workspace}"));
    let target_dir = util::root().join("target/rust-examples").join(target);
    util::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(util::root().join("examples/rust").join(workspace))
            .args(["build", "--release", "--locked", "--target-dir"])
            .arg(&target_dir),
    )?;
    Ok(target_dir)
}

/// One Go example build: `examples/bin/<prog>-<release><suffix>`.
pub struct GoBuild {
    pub prog: &'static str,
    pub suffix: &'static str,
    ldflags: &'static str,
    /// Other `go build` flags (`-buildmode=pie`).
    flags: &'static [&'static str],
    /// CGO_ENABLED, when the example needs it one way (None: Go's default).
    cgo: Option<bool>,
}

impl GoBuild {
    const fn new(
        prog: &'static str,
        suffix: &'static str,
        ldflags: &'static str,
        cgo: Option<bool>,
    ) -> GoBuild {
        GoBuild { prog, suffix, ldflags, flags: &[], cgo }
    }

    fn describe(&self) -> String {
        let mut d: Vec<String> = self.flags.iter().map(|f| (*f).to_owned()).collect();
        if !self.ldflags.is_empty() {
            d.push(format!("-ldflags='{}'", self.ldflags));
        }
        if let Some(cgo) = self.cgo {
            d.push(format!("CGO_ENABLED={}", u8::from(cgo)));
        }
        d.join(" ")
    }
}

/// The Go builds made with Go 1.27 and Go 1.19 for the suite. `parked` also comes without DWARF
/// (`-w`, read through the repo's layout tables) and without symbols (`-s -w`, whose runtime
/// variables parkscope locates in the code), `parkedcgo` without DWARF.
const GO_BUILDS: &[GoBuild] = &[
    GoBuild::new("httpserver", "", "", None),
    GoBuild::new("loadgen", "", "", None),
    GoBuild::new("chanpingpong", "", "", Some(false)),
    GoBuild::new("parked", "", "", Some(false)),
    GoBuild::new("parked", "-w", "-w", Some(false)),
    GoBuild::new("parked", "-sw", "-s -w", Some(false)),
    GoBuild::new("parkedcgo", "", "", Some(true)),
    // Externally linked: Go 1.19 keeps its C objects' DWARF, which must not count as Go's.
    GoBuild::new("parkedcgo", "-w", "-w", Some(true)),
];

/// What the suite builds with every other release: the plain build (DWARF; the layout tables
/// are checked against it) and the link-only variants without DWARF and without symbols.
const RELEASE_BUILDS: &[GoBuild] = &[
    GoBuild::new("parked", "", "", Some(false)),
    GoBuild::new("parked", "-w", "-w", Some(false)),
    GoBuild::new("parked", "-sw", "-s -w", Some(false)),
];

/// The release matrix (`cargo xtask test-go-matrix`, tests/tests/go_matrix.rs): each release x
/// {plain, `-w`, `-s -w`, `-buildmode=pie`} of `parked` (pure Go, CGO_ENABLED=0, statically
/// linked) and of `parkedcgo` (cgo, dynamically linked), plus `parked` with CGO_ENABLED=1 (the
/// cgo net resolver, libc). parkedcgo has no CGO_ENABLED=0 build: it calls C.
pub const MATRIX_BUILDS: &[GoBuild] = &[
    GoBuild::new("parked", "", "", Some(false)),
    GoBuild::new("parked", "-w", "-w", Some(false)),
    GoBuild::new("parked", "-sw", "-s -w", Some(false)),
    GoBuild { prog: "parked", suffix: "-pie", ldflags: "", flags: &["-buildmode=pie"], cgo: Some(false) },
    GoBuild::new("parked", "-cgo", "", Some(true)),
    GoBuild::new("parkedcgo", "", "", Some(true)),
    GoBuild::new("parkedcgo", "-w", "-w", Some(true)),
    GoBuild::new("parkedcgo", "-sw", "-s -w", Some(true)),
    GoBuild { prog: "parkedcgo", suffix: "-pie", ldflags: "", flags: &["-buildmode=pie"], cgo: Some(true) },
];

/// The builds of `release` for `which`, each output once.
fn go_builds(release: &str, which: GoBuilds) -> Vec<&'static GoBuild> {
    let suite = if matches!(release, "go1.19" | "go1.27") { GO_BUILDS } else { RELEASE_BUILDS };
    let matrix: &[GoBuild] = if which == GoBuilds::Matrix { MATRIX_BUILDS } else { &[] };
    let mut out: Vec<&GoBuild> = Vec::new();
    for b in suite.iter().chain(matrix) {
        if !out.iter().any(|o| o.prog == b.prog && o.suffix == b.suffix) {
            out.push(b);
        }
    }
    out
}

/// A running examples/bin/blocker with its manifest (one JSON object per role).
pub struct Blocker {
    pub pid: u32,
    pub roles: Vec<serde_json::Value>,
    child: Child,
}

impl Blocker {
    pub fn start(extra_args: &[&str]) -> Result<Blocker> {
        let mut child = Command::new(bin_dir().join("blocker"))
            .args(extra_args)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting examples/bin/blocker")?;
        let stdout = child.stdout.take().context("blocker stdout")?;
        let mut roles = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(&line?)?;
            if v.get("ready").is_some() {
                let pid = v["pid"].as_u64().context("ready line without pid")? as u32;
                return Ok(Blocker { pid, roles, child });
            }
            roles.push(v);
        }
        let _ = child.kill();
        bail!("blocker exited before it was ready")
    }
}

/// A running Go example from examples/bin (parked, parkedcgo): its first stdout line (pprof
/// address, fds, Go version) once it says every goroutine is parked.
pub struct GoExample {
    pub pid: u32,
    pub info: serde_json::Value,
    child: Child,
}

impl GoExample {
    pub fn start(binary: &str, args: &[&str]) -> Result<GoExample> {
        let path = bin_dir().join(binary);
        let mut child = Command::new(&path)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let stdout = child.stdout.take().context("example stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut next = || -> Result<serde_json::Value> {
            let line = lines.next().context("the example exited before it was ready")??;
            Ok(serde_json::from_str(&line)?)
        };
        let parsed = next().and_then(|info| Ok((info, next()?)));
        match parsed {
            Ok((info, ready)) if ready.get("ready").is_some() => {
                Ok(GoExample { pid: child.id(), info, child })
            }
            Ok(_) => {
                let _ = child.kill();
                bail!("{binary} printed no ready line")
            }
            Err(e) => {
                let _ = child.kill();
                Err(e.context(format!("waiting for {binary} to park its goroutines")))
            }
        }
    }
}

impl Drop for GoExample {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Blocker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
