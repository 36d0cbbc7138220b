//! sched_switch, sched_waking and sched_exit_tp (tp_btf): which task is on each CPU (running vs
//! runnable); with TRACK_BLOCKS, what each target thread is blocked in, read at the switch from
//! its saved user registers (the syscall and its arguments, one block per call from its first
//! sleep: see `block_switch_out`), so blocking costs the target per block, not per syscall;
//! and when the commands that need it switch it on (TRACK_OFFCPU), which target
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
    helpers::{bpf_get_current_pid_tgid, bpf_get_prandom_u32, bpf_ktime_get_ns, generated::bpf_task_pt_regs},
    macros::btf_tracepoint,
    programs::{BtfTracePointContext, tracing::StackIdContext},
};
use parkscope_common::{
    ArgKind, BLOCK_CALL_BEFORE_ATTACH, COUNT_ONE, Counter, LastWake, MAX_SYSCALL_NR, NO_STACK, OffCpuKey,
    OffCpuStart, OffCpuTotal, PRE_ATTACH_STACK, ThreadBlock,
};

use crate::{
    globals::{
        current_target_thread, offcpu_profile, offcpu_sample_ns, stacks_at_switch_out, target_tgid,
        task_pid_off, task_tgid_off, task_tif_off, tif_need_fpu_load, track_blocks, track_offcpu,
        waker_stacks,
    },
    maps::{
        CPU_CURRENT, LAST_WAKE, OFFCPU_START, OFFCPU_TOTALS, SWITCH_IN_NS, SYSCALL_ARG_KIND, Stack,
        THREAD_BLOCKS, count, stack_id,
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
    let blocks = track_blocks();
    if !track_offcpu() && !blocks {
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
        let prev_task: *const u8 = ctx.arg(1);
        // prev_state is an unsigned int argument; the upper half of the register is undefined.
        let prev_state: u64 = ctx.arg::<u64>(3) & 0xffff_ffff;
        // A preempted task stays runnable whatever its state word says (it may have set a
        // sleep state and been preempted before calling schedule()).
        let preempt = ctx.arg::<u64>(0) & 0xff != 0;
        let regs = UserRegs::of(prev_task);
        let call = regs.syscall_nr();
        if blocks {
            block_switch_out(tid, prev_task, &regs, call, !preempt && prev_state != 0, now);
        }
        if track_offcpu() {
            let (nr, arg0) = match call {
                Some(nr) => (nr, regs.args[0]),
                None => (-1, 0),
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
    }
    // Switch-in: next is not current; one load of its tgid dismisses every other process, so
    // they pay no map lookup here.
    if next == 0 || task_tgid(next_task) != target_tgid() {
        return Ok(());
    }
    if blocks {
        block_switch_in(next, now);
    }
    if !track_offcpu() {
        return Ok(());
    }
    // In profiling mode sched_exit_tp closes the interval instead, in the woken thread's own
    // context, where its stacks can be taken; unless the kernel lacks that tracepoint.
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

/// Offsets in x86_64 `struct pt_regs` (arch/x86/include/asm/ptrace.h), stable kernel ABI.
mod pt_regs {
    pub const BP: usize = 4 * 8;
    pub const R10: usize = 7 * 8;
    pub const R9: usize = 8 * 8;
    pub const R8: usize = 9 * 8;
    pub const AX: usize = 10 * 8;
    pub const DX: usize = 12 * 8;
    pub const SI: usize = 13 * 8;
    pub const DI: usize = 14 * 8;
    pub const ORIG_AX: usize = 15 * 8;
    pub const IP: usize = 16 * 8;
    pub const SP: usize = 19 * 8;
}

/// -ENOSYS: what the syscall entry code stores in `pt_regs.ax` until the call returns.
const ENOSYS_IN_AX: i64 = -38;

/// A switched-out task's saved user registers (the `pt_regs` at the top of its kernel stack,
/// written when it last entered the kernel from user mode).
struct UserRegs {
    orig_ax: u64,
    ax: u64,
    args: [u64; 6],
    ip: u64,
    sp: u64,
    bp: u64,
}

impl UserRegs {
    /// `bpf_task_pt_regs` returns a BTF-typed `struct pt_regs *`, so the fields are direct
    /// loads the verifier checks against the kernel's BTF.
    #[inline(always)]
    fn of(task: *const u8) -> UserRegs {
        let regs = unsafe { bpf_task_pt_regs(task as *mut _) } as *const u8;
        let reg = |off: usize| unsafe { core::ptr::read_volatile(regs.add(off) as *const u64) };
        UserRegs {
            orig_ax: reg(pt_regs::ORIG_AX),
            ax: reg(pt_regs::AX),
            args: [
                reg(pt_regs::DI),
                reg(pt_regs::SI),
                reg(pt_regs::DX),
                reg(pt_regs::R10),
                reg(pt_regs::R8),
                reg(pt_regs::R9),
            ],
            ip: reg(pt_regs::IP),
            sp: reg(pt_regs::SP),
            bp: reg(pt_regs::BP),
        }
    }

    /// The syscall the task is in, if it entered the kernel through one. `orig_ax` alone does
    /// not say so: an exception (a page fault) stores its error code there and an interrupt
    /// its negated vector. The syscall entry code stores -ENOSYS in `ax`, which holds until
    /// the call returns, while an exception or interrupt saves the user's own rax there (which
    /// could only be -ENOSYS by coincidence; /proc's syscall file, checked by the view, uses
    /// the same registers and tells the same story).
    #[inline(always)]
    fn syscall_nr(&self) -> Option<i32> {
        if self.ax as i64 == ENOSYS_IN_AX && self.orig_ax < MAX_SYSCALL_NR as u64 {
            Some(self.orig_ax as i32)
        } else {
            None
        }
    }
}

/// `task->tgid` of a BTF-typed task pointer (see [`task_pid`]).
#[inline(always)]
fn task_tgid(task: *const u8) -> u32 {
    unsafe { core::ptr::read_volatile(task.add(task_tgid_off()) as *const i32) as u32 }
}

/// Whether the switched-out task has not returned to user mode since its previous context
/// switch: TIF_NEED_FPU_LOAD is set on a task at every context switch (its FPU registers were
/// saved) and cleared only on the way back to user mode, when they are restored. A syscall
/// can end only by returning to user mode, so a thread with the flag set is still in the call
/// it was in at its last switch. (Kernel code that uses the FPU, kernel_fpu_begin, sets it
/// too: a new call from the same site with the same arguments that did so before sleeping
/// would be taken for the same call. Kernel threads and io_uring workers never have it
/// cleared by a return to user mode; they make no syscalls of their own.)
#[inline(always)]
fn stayed_in_kernel(task: *const u8) -> bool {
    let flags = unsafe { core::ptr::read_volatile(task.add(task_tif_off()) as *const u64) };
    flags & tif_need_fpu_load() != 0
}

/// The blocking bookkeeping of a target thread leaving the CPU: opens a block at its first
/// sleep in a syscall, keeps it across sleeps inside the same call, closes it once the
/// thread has returned to user mode.
#[inline(always)]
fn block_switch_out(tid: u32, task: *const u8, regs: &UserRegs, call: Option<i32>, sleeping: bool, now: u64) {
    let Some(slot) = block_slot(tid) else { return };
    let stayed = stayed_in_kernel(task);
    let b = unsafe { &mut *slot };
    if !stayed {
        // Back in user mode since its last switch: whatever call it was blocked in is over.
        b.since_ns = 0;
    }
    if sleeping && let Some(nr) = call {
        count(Counter::SleepsInSyscall);
        let same_call = b.since_ns != 0
            && b.nr == nr
            && b.args == regs.args
            && b.user_ip == regs.ip
            && b.user_sp == regs.sp;
        if stayed && same_call {
            // Woke inside the call and sleeps again without having left it: one block.
            b.sleeps = b.sleeps.wrapping_add(1);
            count(Counter::ResleepsInCall);
        } else {
            // The first switch seen of this thread was a switch-in and it has not been back
            // in user mode since: the call began before attach.
            b.flags = if stayed && b.off_ns == 0 && b.on_ns != 0 { BLOCK_CALL_BEFORE_ATTACH } else { 0 };
            b.nr = nr;
            b.args = regs.args;
            b.user_ip = regs.ip;
            b.user_sp = regs.sp;
            b.user_bp = regs.bp;
            b.sleeps = 1;
            b.since_ns = now;
        }
    } else if sleeping {
        // Asleep outside a syscall (a page fault from user mode): not a blocking call.
        b.since_ns = 0;
    }
    b.off_ns = now;
}

#[inline(always)]
fn block_switch_in(tid: u32, now: u64) {
    if let Some(slot) = block_slot(tid) {
        unsafe { (*slot).on_ns = now };
    }
}

/// The thread's slot, made on first sight (slots stay between switches: one lookup per switch
/// instead of an insert and a delete). A thread without a slot has not been switched out or
/// in since attach, which userspace relies on.
#[inline(always)]
fn block_slot(tid: u32) -> Option<*mut ThreadBlock> {
    if let Some(slot) = THREAD_BLOCKS.get_ptr_mut(&tid) {
        return Some(slot);
    }
    let fresh = ThreadBlock { nr: -1, ..Default::default() };
    if THREAD_BLOCKS.insert(&tid, &fresh, 0).is_err() {
        count(Counter::ThreadBlocksFull);
        return None;
    }
    THREAD_BLOCKS.get_ptr_mut(&tid)
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
    // One load dismisses the wakeups of every other process (no map lookup for them).
    if task_tgid(wakee_task) != target_tgid() {
        return Ok(());
    }
    let wakee = task_pid(wakee_task);
    if track_blocks() && !track_offcpu() {
        // Blocks mode (snapshot): the waker goes into the wakee's own slot, in place, if the
        // slot says it is off CPU; no per-wakeup insert into LAST_WAKE.
        if let Some(slot) = THREAD_BLOCKS.get_ptr_mut(&wakee) {
            let b = unsafe { &mut *slot };
            if b.off_ns > b.on_ns {
                b.waker_tid = bpf_get_current_pid_tgid() as u32;
                b.wake_ns = unsafe { bpf_ktime_get_ns() };
            }
        }
        return Ok(());
    }
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
