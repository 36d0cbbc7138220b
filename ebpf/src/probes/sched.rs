//! sched_switch and sched_waking (tp_btf): which task is on each CPU (running vs runnable), and
//! when the commands that need it switch it on (TRACK_OFFCPU), which target threads are off CPU
//! right now and who woke them last; in off-CPU profiling mode also where they were when they
//! left and where their waker was: the intervals are summed in kernel per (thread, stacks,
//! waker, syscall), offcputime/offwaketime's pattern (start at switch-out, delta at switch-in).
//!
//! tp_btf rather than classic tracepoints: a classic tracepoint builds a trace record (two
//! comms, pids, prios) on every context switch in the system before our program runs; measured
//! here that cost ~136 ns per switch against 32 ns now (docs/performance.md). tp_btf hands us
//! BTF-typed `task_struct` pointers; the one field we read (`pid`) is loaded directly at an
//! offset userspace takes from the kernel's BTF (aya has no CO-RE field relocations for Rust
//! programs), and the verifier checks that load against the same BTF.
//!
//! sched_waking rather than sched_wakeup: waking runs in the waker's context; wakeup may run on
//! the wakee's CPU from an IPI (TTWU_QUEUE), where "current" is an unrelated task.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::btf_tracepoint,
    programs::{BtfTracePointContext, tracing::StackIdContext},
};
use parkscope_common::{ArgKind, Counter, LastWake, NO_STACK, OffCpuKey, OffCpuStart, OffCpuTotal};

use crate::{
    globals::{current_target_thread, offcpu_profile, task_pid_off, track_offcpu, waker_stacks},
    maps::{CPU_CURRENT, IN_FLIGHT, LAST_WAKE, OFFCPU_START, OFFCPU_TOTALS, STACKS, SYSCALL_ARG_KIND, count},
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

/// `task->pid` of a BTF-typed task pointer (a tp_btf argument): a direct load. The offset is
/// a frozen .rodata global, so the verifier knows it as a constant and checks the load against
/// `struct task_struct` in the kernel's BTF; no helper call.
#[inline(always)]
fn task_pid(task: *const u8) -> u32 {
    unsafe { core::ptr::read_volatile(task.add(task_pid_off()) as *const i32) as u32 }
}

// TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
//          unsigned int prev_state); userspace checks this arity against the kernel's BTF.
#[btf_tracepoint(function = "sched_switch")]
pub fn parkscope_sched_switch(ctx: BtfTracePointContext) -> i32 {
    match try_sched_switch(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_sched_switch(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let next_task: *const u8 = ctx.arg(2);
    let next = task_pid(next_task);
    if let Some(slot) = CPU_CURRENT.get_ptr_mut(0) {
        unsafe { *slot = next };
    }
    if !track_offcpu() {
        return Ok(());
    }
    let now = unsafe { bpf_ktime_get_ns() };
    // Switch-out: "current" is still prev, so the tgid filter applies directly.
    if let Some(tid) = current_target_thread() {
        count(Counter::SwitchesOut);
        // prev_state is an unsigned int argument; the upper half of the register is undefined.
        let prev_state: u64 = ctx.arg::<u64>(3) & 0xffff_ffff;
        let mut start = OffCpuStart { start_ns: now, prev_state, ..Default::default() };
        if offcpu_profile() {
            (start.user_stack_id, start.kernel_stack_id) = current_stacks(ctx);
            if let Some(call) = unsafe { IN_FLIGHT.get(&tid) }
                && call.enter_ns != 0
            {
                start.nr = call.nr as i32;
                start.arg0 = call.arg0;
            }
        }
        if OFFCPU_START.insert(&tid, &start, 0).is_err() {
            count(Counter::OffCpuFull);
        }
    }
    // Switch-in: next is not current, but only target threads are ever in OFFCPU_START.
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

// TP_PROTO(struct task_struct *p)
#[btf_tracepoint(function = "sched_waking")]
pub fn parkscope_sched_waking(ctx: BtfTracePointContext) -> i32 {
    match try_sched_waking(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_sched_waking(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let wakee_task: *const u8 = ctx.arg(0);
    let wakee = task_pid(wakee_task);
    if unsafe { OFFCPU_START.get(&wakee) }.is_none() {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let (waker_user_stack_id, waker_kernel_stack_id) =
        if offcpu_profile() && waker_stacks() { current_stacks(ctx) } else { (NO_STACK, NO_STACK) };
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
