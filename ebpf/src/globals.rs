//! Read-only globals (.rodata) that userspace fills with `EbpfLoader::override_global` before
//! load; the verifier then sees them as constants. Names must match `parkscope_common::global`.

/// The traced process; 0 matches nothing (tgid 0 is the idle task, which makes no syscalls).
#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;

/// Syscalls lasting at least this long are streamed as block events.
#[unsafe(no_mangle)]
static BLOCK_EVENT_MIN_NS: u64 = u64::MAX;

/// 1 = off-CPU profiling: capture stacks at switch-out and wakeup, aggregate intervals.
#[unsafe(no_mangle)]
static OFFCPU_PROFILE: u8 = 0;

/// Field offsets inside the sched/sched_switch and sched/sched_waking records, read by
/// userspace from the tracepoints' format files so that no kernel layout is hard-coded here.
#[unsafe(no_mangle)]
static SWITCH_PREV_PID_OFF: u32 = 0;
#[unsafe(no_mangle)]
static SWITCH_PREV_STATE_OFF: u32 = 0;
#[unsafe(no_mangle)]
static SWITCH_NEXT_PID_OFF: u32 = 0;
#[unsafe(no_mangle)]
static WAKING_PID_OFF: u32 = 0;

// Volatile reads: without them the compiler folds the initial values into the code and the
// loader's overrides would have no effect.
#[inline(always)]
pub fn target_tgid() -> u32 {
    unsafe { core::ptr::read_volatile(&TARGET_TGID) }
}
#[inline(always)]
pub fn block_event_min_ns() -> u64 {
    unsafe { core::ptr::read_volatile(&BLOCK_EVENT_MIN_NS) }
}
#[inline(always)]
pub fn offcpu_profile() -> bool {
    unsafe { core::ptr::read_volatile(&OFFCPU_PROFILE) != 0 }
}
#[inline(always)]
pub fn switch_prev_pid_off() -> usize {
    unsafe { core::ptr::read_volatile(&SWITCH_PREV_PID_OFF) as usize }
}
#[inline(always)]
pub fn switch_prev_state_off() -> usize {
    unsafe { core::ptr::read_volatile(&SWITCH_PREV_STATE_OFF) as usize }
}
#[inline(always)]
pub fn switch_next_pid_off() -> usize {
    unsafe { core::ptr::read_volatile(&SWITCH_NEXT_PID_OFF) as usize }
}
#[inline(always)]
pub fn waking_pid_off() -> usize {
    unsafe { core::ptr::read_volatile(&WAKING_PID_OFF) as usize }
}

/// The current task's (tgid, tid) if it belongs to the target, else None.
#[inline(always)]
pub fn current_target_thread() -> Option<u32> {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == target_tgid() { Some(pid_tgid as u32) } else { None }
}
