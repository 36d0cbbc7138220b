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

pub fn build() -> Result<()> {
    let root = util::root();
    let bin = bin_dir();
    std::fs::create_dir_all(&bin)?;
    for name in ["blocker", "pingpong", "spinners", "splitsleep"] {
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
    let go127 = setup::go127().context("Go 1.27 missing; run `cargo xtask setup`")?;
    let gocache = setup::tools_dir().join("gocache");
    for (go, tag) in [(go127, "go1.27"), (PathBuf::from(setup::GO119), "go1.19")] {
        for build in GO_BUILDS {
            let dir = root.join("examples/go").join(build.prog);
            let out = bin.join(format!("{}-{tag}{}", build.prog, build.suffix));
            if newer_than(&out, &go_sources(&dir)) {
                continue;
            }
            util::step(&format!("{tag} build examples/go/{} {}", build.prog, build.ldflags));
            let mut cmd = Command::new(&go);
            if let Some(cgo) = build.cgo {
                cmd.env("CGO_ENABLED", if cgo { "1" } else { "0" });
            }
            cmd.arg("build");
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
                    .env("GOCACHE", gocache.join(tag)),
            )?;
        }
    }
    Ok(())
}

/// One Go example build: `examples/bin/<prog>-<goversion><suffix>`.
struct GoBuild {
    prog: &'static str,
    suffix: &'static str,
    ldflags: &'static str,
    /// CGO_ENABLED, when the example needs it one way (None: Go's default).
    cgo: Option<bool>,
}

/// The Go builds, each made with Go 1.27 and Go 1.19. `parked` also comes without DWARF (`-w`,
/// read through the repo's layout tables) and without symbols (`-s -w`, whose runtime variables
/// parkscope locates in the code).
const GO_BUILDS: &[GoBuild] = &[
    GoBuild { prog: "httpserver", suffix: "", ldflags: "", cgo: None },
    GoBuild { prog: "loadgen", suffix: "", ldflags: "", cgo: None },
    GoBuild { prog: "chanpingpong", suffix: "", ldflags: "", cgo: Some(false) },
    GoBuild { prog: "parked", suffix: "", ldflags: "", cgo: Some(false) },
    GoBuild { prog: "parked", suffix: "-w", ldflags: "-w", cgo: Some(false) },
    GoBuild { prog: "parked", suffix: "-sw", ldflags: "-s -w", cgo: Some(false) },
    GoBuild { prog: "parkedcgo", suffix: "", ldflags: "", cgo: Some(true) },
];

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
