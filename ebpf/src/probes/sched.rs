//! sched_switch, sched_waking and sched_exit_tp (tp_btf): which task is on each CPU (running vs
//! runnable), and when the commands that need it switch it on (TRACK_OFFCPU), which target
//! threads are off CPU right now and who woke them last. In off-CPU profiling mode the
//! intervals are summed in kernel per (thread, stacks, waker, syscall), offcputime/offwaketime's
//! pattern, with one difference: the interval is closed, and its stacks taken, at sched_exit_tp
//! in the woken thread's own context rather than at switch-out. Its length is known there, so
//! stacks (the expensive part, ~1.5 us for two walks) are sampled by off-CPU time: every
//! interval of at least OFFCPU_SAMPLE_NS, shorter ones with probability delta/period, weighted
//! 1/p. Each thread's exact total is kept beside it in its OFFCPU_START slot. On kernels
//! without sched_exit_tp (< 6.16) userspace sets STACKS_AT_SWITCH_OUT: the classic pattern,
//! stacks at every switch-out, closed at switch-in by sched_switch.
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
    helpers::{bpf_get_current_pid_tgid, bpf_get_prandom_u32, bpf_ktime_get_ns},
    macros::btf_tracepoint,
    programs::{BtfTracePointContext, tracing::StackIdContext},
};
use parkscope_common::{
    ArgKind, COUNT_ONE, Counter, LastWake, NO_STACK, OffCpuKey, OffCpuStart, OffCpuTotal, PRE_ATTACH_STACK,
};

use crate::{
    globals::{
        current_target_thread, offcpu_profile, offcpu_sample_ns, stacks_at_switch_out, task_pid_off,
        track_offcpu, waker_stacks,
    },
    maps::{
        CPU_CURRENT, IN_FLIGHT, LAST_WAKE, OFFCPU_START, OFFCPU_TOTALS, SWITCH_IN_NS, SYSCALL_ARG_KIND,
        Stack, count, stack_id,
    },
};

/// (user, kernel) stack ids of the current task, [`NO_STACK`] where the capture failed.
#[inline(always)]
fn current_stacks<C: EbpfContext + StackIdContext>(ctx: &C) -> (i32, i32) {
    (stack_id(ctx, Stack::User), stack_id(ctx, Stack::Kernel))
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
    if offcpu_profile()
        && let Some(slot) = SWITCH_IN_NS.get_ptr_mut(0)
    {
        // Read back by sched_exit_tp on this CPU: the interval ends here, at the switch, not
        // after the context switch and whatever interrupts were pending behind it.
        unsafe { *slot = now };
    }
    // Switch-out: "current" is still prev, so the tgid filter applies directly.
    if let Some(tid) = current_target_thread() {
        count(Counter::SwitchesOut);
        // prev_state is an unsigned int argument; the upper half of the register is undefined.
        let prev_state: u64 = ctx.arg::<u64>(3) & 0xffff_ffff;
        let (nr, arg0) = match unsafe { IN_FLIGHT.get(&tid) } {
            Some(call) if call.enter_ns != 0 => (call.nr as i32, call.arg0),
            _ => (-1, 0),
        };
        if offcpu_profile() {
            let stacks = if stacks_at_switch_out() { current_stacks(ctx) } else { (NO_STACK, NO_STACK) };
            switch_out_in_place(tid, now, prev_state, nr, arg0, stacks);
        } else {
            let start = OffCpuStart { start_ns: now, prev_state, nr, arg0, ..Default::default() };
            if OFFCPU_START.insert(&tid, &start, 0).is_err() {
                count(Counter::OffCpuFull);
            }
        }
    }
    // Switch-in: next is not current, but only target threads are ever in OFFCPU_START. In
    // profiling mode sched_exit_tp closes the interval instead, in the woken thread's own
    // context, where its stacks can be taken; unless the kernel lacks that tracepoint.
    if next == 0 {
        return Ok(());
    }
    if !offcpu_profile() {
        if unsafe { OFFCPU_START.get(&next) }.is_some() {
            let _ = OFFCPU_START.remove(&next);
        }
    } else if stacks_at_switch_out()
        && let Some(slot) = OFFCPU_START.get_ptr_mut(&next)
    {
        let start = unsafe { *slot };
        if start.start_ns != 0 {
            let delta = now.saturating_sub(start.start_ns);
            close_interval(slot, delta);
            count(Counter::OffCpuCaptured);
            record_interval(next, &start, start.user_stack_id, start.kernel_stack_id, delta, COUNT_ONE);
        }
    }
    Ok(())
}

/// Marks the slot's thread on CPU and adds the interval to its exact total.
#[inline(always)]
fn close_interval(slot: *mut OffCpuStart, delta: u64) {
    unsafe {
        (*slot).start_ns = 0;
        (*slot).total_ns += delta;
        (*slot).count += 1;
    }
    count(Counter::OffCpuIntervals);
}

/// Profiling mode: the thread's slot stays in the map between intervals (no delete and insert
/// per switch), so this is one lookup and a few stores; `start_ns` is written last, as the
/// mark that the other fields belong to this interval.
#[inline(always)]
fn switch_out_in_place(tid: u32, now: u64, prev_state: u64, nr: i32, arg0: u64, stacks: (i32, i32)) {
    let (user_stack_id, kernel_stack_id) = stacks;
    match OFFCPU_START.get_ptr_mut(&tid) {
        Some(slot) => unsafe {
            (*slot).prev_state = prev_state;
            (*slot).nr = nr;
            (*slot).arg0 = arg0;
            (*slot).user_stack_id = user_stack_id;
            (*slot).kernel_stack_id = kernel_stack_id;
            core::ptr::write_volatile(&mut (*slot).start_ns, now);
        },
        None => {
            let start = OffCpuStart {
                start_ns: now,
                prev_state,
                nr,
                arg0,
                user_stack_id,
                kernel_stack_id,
                ..Default::default()
            };
            if OFFCPU_START.insert(&tid, &start, 0).is_err() {
                count(Counter::OffCpuFull);
            }
        }
    }
}

// TP_PROTO(bool is_switch): a bare tracepoint at the end of __schedule(), after the context
// switch, so "current" is the task that has just been switched in (kernel >= 6.16). Its user
// registers and the kernel frames below __schedule are still those it blocked with, so the
// stacks taken here are the blocking stacks, and here, unlike at switch-out, the interval's
// length is known: stacks can be sampled by time instead of by switch.
#[btf_tracepoint(function = "sched_exit_tp")]
pub fn parkscope_sched_exit(ctx: BtfTracePointContext) -> i32 {
    match try_sched_exit(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_sched_exit(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let Some(tid) = current_target_thread() else { return Ok(()) };
    let Some(slot) = OFFCPU_START.get_ptr_mut(&tid) else { return Ok(()) };
    let start = unsafe { *slot };
    if start.start_ns == 0 {
        // __schedule() returned without switching, or this thread's first run.
        return Ok(());
    }
    // This CPU's last sched_switch is the one that put this thread here (preemption stays off
    // from there to this tracepoint), so its time is the switch-in.
    let switched_in = match SWITCH_IN_NS.get(0) {
        Some(&t) if t >= start.start_ns => t,
        _ => unsafe { bpf_ktime_get_ns() },
    };
    let delta = switched_in - start.start_ns;
    close_interval(slot, delta);
    // Time-weighted sampling: an interval of at least `period` always gets its stacks; a
    // shorter one with probability delta/period, and then stands for `period` ns (and
    // period/delta intervals). A stack walk costs ~1.5 us against ~0.1 us for the rest of a
    // switch, so this is what makes switch-heavy targets cheap to profile.
    let period = offcpu_sample_ns();
    let (weight_ns, count_fp) = if period == 0 || delta >= period {
        (delta, COUNT_ONE)
    } else {
        // Uniform in [0, period) without a division: (u32 random * period) >> 32.
        let draw = (unsafe { bpf_get_prandom_u32() } as u64 * period) >> 32;
        if draw >= delta {
            return Ok(());
        }
        (period, (period << 16) / delta.max(1))
    };
    count(Counter::OffCpuCaptured);
    // A thread blocked since before attach keeps the stacks userspace read from /proc then
    // (unwound by CFI, which also finds the caller of a leaf without a frame pointer, such as
    // libc's syscall wrappers; the kernel's frame-pointer walk skips that caller).
    let (user_stack_id, kernel_stack_id) = if start.user_stack_id == PRE_ATTACH_STACK {
        (PRE_ATTACH_STACK, PRE_ATTACH_STACK)
    } else {
        current_stacks(ctx)
    };
    record_interval(tid, &start, user_stack_id, kernel_stack_id, weight_ns, count_fp);
    Ok(())
}

/// Adds one captured off-CPU interval, with its weight, to its key's total. The key holds the
/// tid and a thread is switched in on one CPU at a time, so no other CPU updates the same value
/// concurrently.
#[inline(always)]
fn record_interval(
    tid: u32,
    start: &OffCpuStart,
    user_stack_id: i32,
    kernel_stack_id: i32,
    weight_ns: u64,
    count_fp: u64,
) {
    let mut key = OffCpuKey {
        tid,
        waker_tid: 0,
        user_stack_id,
        kernel_stack_id,
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
            (*total).total_ns += weight_ns;
            (*total).count_fp += count_fp;
            (*total).captured += 1;
        },
        None => {
            let total = OffCpuTotal { total_ns: weight_ns, count_fp, captured: 1 };
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
    // Only target threads have slots; in profiling mode a slot with start_ns == 0 is a thread
    // on CPU (a spurious or racing wakeup), which has no interval to attribute.
    match unsafe { OFFCPU_START.get(&wakee) } {
        Some(start) if start.start_ns != 0 => {}
        _ => return Ok(()),
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
