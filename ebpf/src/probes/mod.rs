//! One module per hook: raw syscall entry/exit, the scheduler's switch and waking events, the
//! opt-in uprobes on the Go runtime's goroutine status changes, and the per-CPU cpu-clock
//! sampling event of CPU profiles.
pub mod cpu;
pub mod go;
pub mod sched;
pub mod syscalls;
