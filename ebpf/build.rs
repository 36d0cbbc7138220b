//! Rebuild the eBPF object when the bpf-linker binary changes: the link step depends on it, but
//! cargo cannot see that dependency on its own.
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(e) => println!("cargo:warning=bpf-linker not found on PATH ({e}); run `cargo xtask setup`"),
    }
}
