//! One module per hook: raw syscall entry/exit, and the scheduler's switch and waking events.
pub mod sched;
pub mod syscalls;
