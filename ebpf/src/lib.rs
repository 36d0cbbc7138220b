//! Library target of the eBPF crate; it exists so the workspace can reason about the crate
//! (cargo metadata, docs). The programs themselves live in the `parkscope` binary (src/main.rs).
#![no_std]
