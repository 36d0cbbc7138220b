//! Opt-in uprobes on the Go runtime (`--go-uprobes`): `runtime.casgstatus`, through which the
//! runtime makes every goroutine status change that matters here (park, ready, run, create,
//! exit), and, for profiles, `runtime.gopark` for the stack a goroutine parks with. They give
//! exact time-in-state per goroutine; the default path reads the same goroutines from memory
//! and needs none of this.
//!
//! Userspace attaches them past the function's stack-growth check (a `push %rbp` the kernel
//! emulates, instead of the first instruction, which it must single-step at ~10 us a hit here)
//! and never as uretprobes: a uretprobe rewrites the return address, and Go's stack copying
//! and traceback then crash the target. Arguments arrive in registers (Go's ABIInternal: RAX,
//! RBX, RCX, ...), not where the C ABI puts them. A uprobe on a binary fires in every process
//! running it, so each program checks the tgid first.
//!
//! The state machine, per g address in GO_GSTATES: a change closes the previous interval (and,
//! when aggregating, adds it to GO_WAIT_TOTALS under goid, status, wait reason and parking
//! stack) and opens the next. A goroutine without a slot has not changed since attach: its
//! first change closes an interval that began at the window start, in the status it leaves.
//! Running and syscall are one state (the runtime's own latency tracking treats them so, and
//! newer runtimes switch between them with a bare CAS that no probe sees); copystack is a
//! pause inside running and is ignored; dead frees the slot.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user},
    macros::uprobe,
    programs::ProbeContext,
};
use parkscope_common::{
    Counter, GoGState, GoParkStack, GoProbeConfig, GoWaitKey, GoWaitTotal, NO_STACK, NO_WAIT_REASON,
    PRE_ATTACH_STACK,
};

use crate::{
    globals::current_target_thread,
    maps::{GO_CONFIG, GO_GSTATES, GO_PARK_STACK, GO_WAIT_TOTALS, Stack, count, stack_id},
};

/// BPF_NOEXIST (uapi/linux/bpf.h).
const BPF_NOEXIST: u64 = 1;

#[uprobe]
pub fn parkscope_go_casgstatus(ctx: ProbeContext) -> u32 {
    match try_casgstatus(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

#[uprobe]
pub fn parkscope_go_gopark(ctx: ProbeContext) -> u32 {
    match try_gopark(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

/// `g.goid` of the goroutine at `gp`, 0 if unreadable.
#[inline(always)]
fn read_goid(cfg: &GoProbeConfig, gp: u64) -> u64 {
    let at = gp.wrapping_add(u64::from(cfg.goid_off)) as *const u64;
    match unsafe { bpf_probe_read_user(at) } {
        Ok(v) => v,
        Err(_) => {
            count(Counter::GoReadFailed);
            0
        }
    }
}

/// `g.waitreason` of the goroutine at `gp` (set while it waits, and still set as it leaves the
/// wait), [`NO_WAIT_REASON`] if unreadable.
#[inline(always)]
fn read_wait_reason(cfg: &GoProbeConfig, gp: u64) -> u32 {
    let at = gp.wrapping_add(u64::from(cfg.waitreason_off)) as *const u8;
    match unsafe { bpf_probe_read_user(at) } {
        Ok(w) => u32::from(w),
        Err(_) => {
            count(Counter::GoReadFailed);
            NO_WAIT_REASON
        }
    }
}

/// Running and syscall are one state here (see the module header).
#[inline(always)]
fn normalize(cfg: &GoProbeConfig, status: u32) -> u32 {
    if status == cfg.syscall { cfg.running } else { status }
}

// casgstatus(gp *g, oldval, newval uint32): gp in RAX, oldval in RBX, newval in RCX.
fn try_casgstatus(ctx: &ProbeContext) -> Result<(), i64> {
    let Some(tid) = current_target_thread() else { return Ok(()) };
    let cfg = GO_CONFIG.get(0).ok_or(0i64)?;
    let regs = unsafe { &*ctx.regs };
    let gp = regs.rax;
    let old_raw = regs.rbx as u32;
    let new_raw = regs.rcx as u32;
    count(Counter::GoTransitions);
    if old_raw == cfg.copystack || new_raw == cfg.copystack {
        return Ok(());
    }
    let old = normalize(cfg, old_raw);
    let new = normalize(cfg, new_raw);
    if old == new {
        return Ok(());
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let prev = GO_GSTATES.get_ptr_mut(&gp);
    let created = old == cfg.dead || old == cfg.deadextra;
    // A g leaving dead is a new goroutine (possibly in a reused g): whatever the slot held
    // belongs to its previous life. Go 1.19 assigns the goid only after this transition, so
    // it is read at the next one.
    let (mut goid, transitions) = match prev {
        Some(p) if !created => unsafe { ((*p).goid, (*p).transitions.wrapping_add(1)) },
        _ => (0, 1),
    };
    if goid == 0 && !created {
        goid = read_goid(cfg, gp);
    }
    if cfg.aggregate != 0 && !created {
        match prev {
            Some(p) => {
                let p = unsafe { &*p };
                if p.status != cfg.running && now > p.since_ns {
                    add_interval(goid, p, now - p.since_ns);
                }
            }
            // No slot: the goroutine has been in `old` since before the window began.
            None if old != cfg.running && now > cfg.window_start_ns => {
                let wait_reason = if old == cfg.waiting { read_wait_reason(cfg, gp) } else { NO_WAIT_REASON };
                let before = GoGState {
                    since_ns: cfg.window_start_ns,
                    goid,
                    status: old,
                    wait_reason,
                    user_stack_id: PRE_ATTACH_STACK,
                    transitions: 0,
                    park_caller: 0,
                };
                add_interval(goid, &before, now - cfg.window_start_ns);
            }
            None => {}
        }
    }
    if new == cfg.dead || new == cfg.deadextra {
        if prev.is_some() {
            let _ = GO_GSTATES.remove(&gp);
        }
        return Ok(());
    }
    let mut state = GoGState {
        since_ns: now,
        goid,
        status: new,
        wait_reason: NO_WAIT_REASON,
        user_stack_id: NO_STACK,
        transitions,
        park_caller: 0,
    };
    if new == cfg.waiting {
        // The waiter set g.waitreason before this call (gopark, casGToWaiting, newproc1).
        state.wait_reason = read_wait_reason(cfg, gp);
        // park_m runs right after gopark on the same thread (mcall does not change threads).
        if let Some(park) = unsafe { GO_PARK_STACK.get(&tid) } {
            state.user_stack_id = park.user_stack_id;
            state.park_caller = park.caller;
            let _ = GO_PARK_STACK.remove(&tid);
        }
    }
    match prev {
        Some(p) if !created => unsafe { *p = state },
        _ => {
            if GO_GSTATES.insert(&gp, &state, 0).is_err() {
                count(Counter::GoStatesFull);
            }
        }
    }
    Ok(())
}

/// Adds one completed interval to the profile totals.
#[inline(always)]
fn add_interval(goid: u64, prev: &GoGState, delta: u64) {
    let key = GoWaitKey {
        goid,
        status: prev.status,
        wait_reason: prev.wait_reason,
        user_stack_id: prev.user_stack_id,
        _pad: 0,
        park_caller: prev.park_caller,
    };
    let add_to_existing = || match GO_WAIT_TOTALS.get_ptr_mut(&key) {
        Some(t) => {
            unsafe {
                (*t).total_ns += delta;
                (*t).count += 1;
            }
            true
        }
        None => false,
    };
    if add_to_existing() {
        return;
    }
    let total = GoWaitTotal { total_ns: delta, count: 1 };
    // Another CPU may have created the key meanwhile: add to it then.
    if GO_WAIT_TOTALS.insert(&key, &total, BPF_NOEXIST).is_err() && !add_to_existing() {
        count(Counter::GoWaitTotalsFull);
    }
}

/// gopark runs on the parking goroutine's own stack: the frames that show why it parks. The
/// probe sits on gopark's frame setup, before rbp points at gopark's own frame, so the
/// frame-pointer walk misses gopark's caller; its return address is on top of the stack.
fn try_gopark(ctx: &ProbeContext) -> Result<(), i64> {
    let Some(tid) = current_target_thread() else { return Ok(()) };
    let user_stack_id = stack_id(ctx, Stack::User);
    if user_stack_id == NO_STACK {
        return Ok(());
    }
    let sp = unsafe { (*ctx.regs).rsp } as *const u64;
    let caller = unsafe { bpf_probe_read_user(sp) }.unwrap_or(0);
    let _ = GO_PARK_STACK.insert(&tid, &GoParkStack { user_stack_id, _pad: 0, caller }, 0);
    Ok(())
}
