//! parkscope's probe layer: everything that observes the target. Kernel probes (the embedded eBPF
//! object, loaded and attached here), /proc (threads, fds, sockets), the target's memory (stack
//! unwinding, symbols), and perf-event CPU sampling (perf/) each become typed facts for the
//! agent. Nothing here prints.

pub mod go;
pub mod kernel;
pub mod perf;
pub mod procfs;
pub mod stacks;
