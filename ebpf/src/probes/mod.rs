//! One module per hook: raw syscall entry/exit, the scheduler's switch and waking events, and
//! the opt-in uprobes on the Go runtime's goroutine status changes.
pub mod go;
pub mod sched;
pub mod syscalls;
