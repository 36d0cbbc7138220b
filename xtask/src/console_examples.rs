//! Builds console-subscriber's own example programs (`app`, with its misbehaving tasks
//! `coma`, `burn`, `noyield`, ...) from the crate's source as published on crates.io, with
//! `--cfg tokio_unstable`, into `examples/bin/console-<name>`: the tokio targets the task tests
//! compare with the console protocol. Built in release mode (cargo's default keeps the symbol
//! table): the tokio reader finds the task-id thread-local in `set_current_task_id`'s optimised
//! code, which a debug build reaches through out-of-line accessors (no task ids, so no `task`
//! or `task_name` profile labels). Skipped when the binaries of this build are there.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

use crate::{examples, util};

/// The console-subscriber release built (console-api 0.9, tonic/prost 0.14).
pub const VERSION: &str = "0.5.0";
/// How its examples are built (the stamp says version and this; rebuilt when either changes).
const PROFILE: &str = "release";
/// Its examples the tests use.
const EXAMPLES: &[&str] = &["app"];

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn stamp() -> PathBuf {
    examples::bin_dir().join(".console-subscriber-version")
}

pub fn build() -> Result<()> {
    let bin = examples::bin_dir();
    let built = EXAMPLES.iter().all(|e| bin.join(format!("console-{e}")).exists());
    if built && std::fs::read_to_string(stamp()).is_ok_and(|s| s.trim() == format!("{VERSION} {PROFILE}")) {
        return Ok(());
    }
    util::step(&format!(
        "console-subscriber {VERSION} examples ({}) with --cfg tokio_unstable",
        EXAMPLES.join(", ")
    ));
    let work = util::root().join("target/console-examples");
    // 1. Let cargo download the crate: a throwaway package that depends on it.
    let fetch = work.join("fetch");
    std::fs::create_dir_all(fetch.join("src"))?;
    std::fs::write(
        fetch.join("Cargo.toml"),
        format!(
            "[package]\nname = \"console-fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nconsole-subscriber = \"={VERSION}\"\n\n[workspace]\n"
        ),
    )?;
    std::fs::write(fetch.join("src/main.rs"), "fn main() {}\n")?;
    let meta = cargo()
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(fetch.join("Cargo.toml"))
        .output()
        .context("cargo metadata")?;
    if !meta.status.success() {
        bail!("cargo metadata for console-subscriber {VERSION}: {}", String::from_utf8_lossy(&meta.stderr));
    }
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout)?;
    let manifest = meta["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "console-subscriber" && p["version"] == VERSION))
        .and_then(|p| p["manifest_path"].as_str())
        .context("console-subscriber not in cargo metadata")?;
    let source = PathBuf::from(manifest).parent().context("manifest path")?.to_path_buf();
    // 2. A private copy (the registry's is shared and read-only by convention), made its own
    //    workspace so ours does not claim it.
    let copy = work.join(format!("console-subscriber-{VERSION}"));
    if copy.exists() {
        std::fs::remove_dir_all(&copy)?;
    }
    util::run(Command::new("cp").arg("-a").arg(&source).arg(&copy))?;
    let toml = copy.join("Cargo.toml");
    let mut text = std::fs::read_to_string(&toml)?;
    text.push_str("\n[workspace]\n");
    std::fs::write(&toml, text)?;
    // 3. Its examples with the crate's own Cargo.lock, optimised, without debug info.
    let target = work.join("target");
    let mut build = cargo();
    build.current_dir(&copy).args(["build", "--locked", "--release"]);
    for e in EXAMPLES {
        build.args(["--example", e]);
    }
    util::run(build.env("RUSTFLAGS", "--cfg tokio_unstable").env("CARGO_TARGET_DIR", &target))?;
    std::fs::create_dir_all(&bin)?;
    for e in EXAMPLES {
        let out = bin.join(format!("console-{e}"));
        std::fs::copy(target.join(PROFILE).join("examples").join(e), &out)
            .with_context(|| format!("copying example {e}"))?;
    }
    std::fs::write(stamp(), format!("{VERSION} {PROFILE}\n"))?;
    Ok(())
}
