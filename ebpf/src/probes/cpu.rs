//! CPU profiling: the perf_event program run by one cpu-clock sampling event per CPU (bcc's
//! `profile` design). Each event samples whatever runs on its CPU; the program returns at once
//! unless the interrupted task belongs to the target, and otherwise counts the sample in kernel
//! per (thread, user stack id, kernel stack id), so userspace reads one small map at the end
//! instead of parsing a record per sample.
//!
//! Why per-CPU events and not one per thread of the target: a per-task perf event is scheduled
//! out and in with its task at every context switch (perf_event_task_sched_out/in, which stop
//! and restart cpu-clock's hrtimer), and that cost lands on the target: measured here +2.6 us
//! per switch on the pinned ping-pong, half its throughput (docs/performance.md). A per-CPU
//! event is never switched; the target pays only for the samples that hit it, and threads
//! created during the profile are sampled without userspace noticing them.
//!
//! The events use a fixed period (userspace sets sample_period = 1e9/frequency ns of
//! cpu-clock), so every counted sample stands for exactly that much CPU time.

use aya_ebpf::{macros::perf_event, programs::PerfEventContext};
use parkscope_common::{Counter, CpuSampleKey, NO_STACK};

use crate::{
    globals::current_target_thread,
    maps::{CPU_SAMPLES, Stack, count, stack_id},
};

/// The low two bits of the saved `cs` are the privilege level the CPU was interrupted in:
/// 3 = user mode (x86_64 `user_mode(regs)`).
const USER_RPL: u64 = 3;

#[perf_event]
pub fn parkscope_cpu_sample(ctx: PerfEventContext) -> u32 {
    match try_cpu_sample(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_cpu_sample(ctx: &PerfEventContext) -> Result<(), i32> {
    // In the hrtimer interrupt "current" is the task the tick interrupted (0 when idle).
    let Some(tid) = current_target_thread() else { return Ok(()) };
    count(Counter::CpuSamples);
    // The registers the tick interrupted: a direct context load the verifier allows.
    let cs = unsafe { (*ctx.ctx).regs.cs };
    // A tick in user mode has no kernel stack (the walk would fail with EFAULT): skip it, and
    // do not count that as a failure. From kernel mode, the user stack is walked from the
    // registers saved at kernel entry.
    let kernel_stack_id = if cs & 3 == USER_RPL { NO_STACK } else { stack_id(ctx, Stack::Kernel) };
    let user_stack_id = stack_id(ctx, Stack::User);
    let key = CpuSampleKey { tid, user_stack_id, kernel_stack_id };
    // The key holds the tid, and a thread runs on one CPU at a time, so no other CPU updates
    // the same value concurrently: a plain add is enough.
    match CPU_SAMPLES.get_ptr_mut(&key) {
        Some(n) => unsafe { *n += 1 },
        None => {
            if CPU_SAMPLES.insert(&key, &1, 0).is_err() {
                count(Counter::CpuSampleKeysFull);
            }
        }
    }
    Ok(())
}
