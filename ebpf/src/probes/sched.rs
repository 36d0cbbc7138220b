//! sched/sched_switch and sched/sched_waking (classic tracepoints): which target threads are
//! off CPU right now (and whether they left runnable or asleep), and who woke them last.
//!
//! Classic tracepoints rather than tp_btf: their record layout is published in tracefs format
//! files, which userspace reads and passes in as globals, so no `task_struct` offsets are needed
//! (aya has no CO-RE field relocations for Rust programs).
//!
//! sched_waking rather than sched_wakeup: waking runs in the waker's context; wakeup may run on
//! the wakee's CPU from an IPI (TTWU_QUEUE), where "current" is an unrelated task.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use parkscope_common::{Counter, LastWake, OffCpuStart};

use crate::{
    globals::{
        current_target_thread, switch_next_pid_off, switch_prev_pid_off, switch_prev_state_off,
        waking_pid_off,
    },
    maps::{LAST_WAKE, OFFCPU_START, count},
};

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
            let start = OffCpuStart { start_ns: now, prev_state: prev_state as u64 };
            if OFFCPU_START.insert(&tid, &start, 0).is_err() {
                count(Counter::OffCpuFull);
            }
        }
    }
    // Switch-in: next is not current, but only target threads are ever in OFFCPU_START.
    let next_pid: i32 = unsafe { ctx.read_at(switch_next_pid_off())? };
    let next = next_pid as u32;
    if next != 0 && unsafe { OFFCPU_START.get(&next) }.is_some() {
        let _ = OFFCPU_START.remove(&next);
    }
    Ok(())
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
    let wake = LastWake {
        wake_ns: unsafe { bpf_ktime_get_ns() },
        waker_tid: pid_tgid as u32,
        waker_tgid: (pid_tgid >> 32) as u32,
    };
    let _ = LAST_WAKE.insert(&wakee, &wake, 0);
    Ok(())
}
