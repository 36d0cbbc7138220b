//! Builds the eBPF crate for bpfel-unknown-none with aya-build and leaves the object in OUT_DIR,
//! where src/ebpf_object.rs embeds it.
//!
//! The toolchain is pinned: bpf-linker 0.13 links with LLVM 22, so the rustc that compiles the
//! eBPF crate must carry LLVM 22 too (1.98.0 does; newer ones carry LLVM 23 and the link fails
//! with "Invalid record"). 1.98.0 is stable, so -Z build-std is unlocked with RUSTC_BOOTSTRAP=1
//! for that nested build only.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// Must match rust-toolchain.toml and xtask's setup.
const EBPF_TOOLCHAIN: &str = "1.98.0";

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new().no_deps().exec().context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "parkscope-ebpf")
        .ok_or_else(|| anyhow!("parkscope-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?
        .to_string();
    // SAFETY: build scripts are single-threaded; aya-build reads this and passes it on to the
    // nested cargo it spawns.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    let package = aya_build::Package { name: ebpf.name.as_str(), root_dir: &root_dir, ..Default::default() };
    aya_build::build_ebpf([package], Toolchain::Custom(EBPF_TOOLCHAIN))
}
