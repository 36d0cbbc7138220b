//! sched/sched_switch and sched/sched_waking (classic tracepoints): which target threads are
//! off CPU right now (and whether they left runnable or asleep), who woke them last, and, in
//! off-CPU profiling mode, where they were when they left and where their waker was: the
//! intervals are summed in kernel per (thread, stacks, waker, syscall), offcputime/offwaketime's
//! pattern (start at switch-out, delta at switch-in).
//!
//! Classic tracepoints rather than tp_btf: their record layout is published in tracefs format
//! files, which userspace reads and passes in as globals, so no `task_struct` offsets are needed
//! (aya has no CO-RE field relocations for Rust programs).
//!
//! sched_waking rather than sched_wakeup: waking runs in the waker's context; wakeup may run on
//! the wakee's CPU from an IPI (TTWU_QUEUE), where "current" is an unrelated task.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::{TracePointContext, tracing::StackIdContext},
};
use parkscope_common::{ArgKind, Counter, LastWake, NO_STACK, OffCpuKey, OffCpuStart, OffCpuTotal};

use crate::{
    globals::{
        current_target_thread, offcpu_profile, switch_next_pid_off, switch_prev_pid_off,
        switch_prev_state_off, waking_pid_off,
    },
    maps::{IN_FLIGHT, LAST_WAKE, OFFCPU_START, OFFCPU_TOTALS, STACKS, SYSCALL_ARG_KIND, count},
};

const BPF_F_USER_STACK: u64 = 1 << 8;

/// (user, kernel) stack ids of the current task, [`NO_STACK`] where the capture failed.
#[inline(always)]
fn current_stacks<C: EbpfContext + StackIdContext>(ctx: &C) -> (i32, i32) {
    let capture = |flags: u64| match ctx.get_stackid(&STACKS, flags) {
        Ok(id) => id as i32,
        Err(_) => {
            count(Counter::StackCaptureFailed);
            NO_STACK
        }
    };
    (capture(BPF_F_USER_STACK), capture(0))
}

#[tracepoint(category = "sched", name = "sched_switch")]
pub fn parkscope_sched_switch(ctx: TracePointContext) -> u32 {
    match try_sched_switch(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_sched_switch(ctx: &TracePointContext) -> Result<(), i32> {
    let now = unsafe { bpf_ktime_get_ns() };
    // Switch-out: "current" is still prev, so the tgid filter applies directly.
    if let Some(tid) = current_target_thread() {
        let prev_state: i64 = unsafe { ctx.read_at(switch_prev_state_off())? };
        let prev_pid: i32 = unsafe { ctx.read_at(switch_prev_pid_off())? };
        if prev_pid as u32 == tid {
            count(Counter::SwitchesOut);
            let mut start =
                OffCpuStart { start_ns: now, prev_state: prev_state as u64, ..Default::default() };
            if offcpu_profile() {
                (start.user_stack_id, start.kernel_stack_id) = current_stacks(ctx);
                if let Some(call) = unsafe { IN_FLIGHT.get(&tid) } {
                    start.nr = call.nr as i32;
                    start.arg0 = call.arg0;
                }
            }
            if OFFCPU_START.insert(&tid, &start, 0).is_err() {
                count(Counter::OffCpuFull);
            }
        }
    }
    // Switch-in: next is not current, but only target threads are ever in OFFCPU_START.
    let next_pid: i32 = unsafe { ctx.read_at(switch_next_pid_off())? };
    let next = next_pid as u32;
    if next == 0 {
        return Ok(());
    }
    let Some(start) = (unsafe { OFFCPU_START.get(&next) }).copied() else { return Ok(()) };
    let _ = OFFCPU_START.remove(&next);
    if offcpu_profile() {
        record_interval(next, &start, now.saturating_sub(start.start_ns));
    }
    Ok(())
}

/// Adds one completed off-CPU interval to its key's total. The key holds the tid and a thread
/// is switched in on one CPU at a time, so no other CPU updates the same value concurrently.
#[inline(always)]
fn record_interval(tid: u32, start: &OffCpuStart, delta: u64) {
    let mut key = OffCpuKey {
        tid,
        waker_tid: 0,
        user_stack_id: start.user_stack_id,
        kernel_stack_id: start.kernel_stack_id,
        waker_user_stack_id: NO_STACK,
        waker_kernel_stack_id: NO_STACK,
        nr: start.nr,
        fd: -1,
    };
    // The wakeup belongs to this interval only if it happened after the switch-out.
    if let Some(wake) = unsafe { LAST_WAKE.get(&tid) }
        && wake.wake_ns >= start.start_ns
    {
        key.waker_tid = wake.waker_tid;
        key.waker_user_stack_id = wake.waker_user_stack_id;
        key.waker_kernel_stack_id = wake.waker_kernel_stack_id;
    }
    if start.nr >= 0
        && let Some(kind) = SYSCALL_ARG_KIND.get(start.nr as u32)
        && *kind == ArgKind::Fd as u8
    {
        key.fd = start.arg0 as i32;
    }
    match OFFCPU_TOTALS.get_ptr_mut(&key) {
        Some(total) => unsafe {
            (*total).total_ns += delta;
            (*total).count += 1;
        },
        None => {
            let total = OffCpuTotal { total_ns: delta, count: 1 };
            if OFFCPU_TOTALS.insert(&key, &total, 0).is_err() {
                count(Counter::OffCpuTotalsFull);
            }
        }
    }
}

#[tracepoint(category = "sched", name = "sched_waking")]
pub fn parkscope_sched_waking(ctx: TracePointContext) -> u32 {
    match try_sched_waking(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_sched_waking(ctx: &TracePointContext) -> Result<(), i32> {
    let wakee: i32 = unsafe { ctx.read_at(waking_pid_off())? };
    let wakee = wakee as u32;
    if unsafe { OFFCPU_START.get(&wakee) }.is_none() {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let (waker_user_stack_id, waker_kernel_stack_id) =
        if offcpu_profile() { current_stacks(ctx) } else { (NO_STACK, NO_STACK) };
    let wake = LastWake {
        wake_ns: unsafe { bpf_ktime_get_ns() },
        waker_tid: pid_tgid as u32,
        waker_tgid: (pid_tgid >> 32) as u32,
        waker_user_stack_id,
        waker_kernel_stack_id,
    };
    let _ = LAST_WAKE.insert(&wakee, &wake, 0);
    Ok(())
}
