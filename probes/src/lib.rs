//! parkscope's probe layer: everything that observes the target. Kernel probes (the embedded eBPF
//! object, loaded and attached here, including the per-CPU cpu-clock sampling of CPU profiles),
//! /proc (threads, fds, sockets) and the target's memory (stack unwinding, symbols) each become
//! typed facts for the agent. Nothing here prints.

mod disk_cache;
pub mod errno;
pub mod go;
pub mod kernel;
pub mod memory;
pub mod procfs;
pub mod stacks;
pub mod tokio;
