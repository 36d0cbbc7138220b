//! One module per hook: raw syscall entry/exit, the scheduler's switch and waking events, and
//! the per-CPU cpu-clock sampling event of CPU profiles.
pub mod sched;
pub mod syscalls;

// CPU profiling.
pub mod cpu;
