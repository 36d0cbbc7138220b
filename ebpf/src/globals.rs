//! Read-only globals (.rodata) that userspace fills with `EbpfLoader::override_global` before
//! load; the verifier then sees them as constants. Names must match `parkscope_common::global`.

/// The traced process; 0 matches nothing (tgid 0 is the idle task, which makes no syscalls).
#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;

/// Syscalls lasting at least this long are streamed as block events.
#[unsafe(no_mangle)]
static BLOCK_EVENT_MIN_NS: u64 = u64::MAX;

/// 1 = keep per-thread off-CPU starts (wakeups, profiles); 0 = only CPU_CURRENT.
#[unsafe(no_mangle)]
static TRACK_OFFCPU: u8 = 0;

/// 1 = off-CPU profiling: aggregate intervals, with stacks captured at switch-in.
#[unsafe(no_mangle)]
static OFFCPU_PROFILE: u8 = 0;

/// Off-CPU stack sampling period in ns (0 = stacks for every interval); see
/// `parkscope_common::global::OFFCPU_SAMPLE_NS`.
#[unsafe(no_mangle)]
static OFFCPU_SAMPLE_NS: u64 = 0;

/// 1 = capture the waker's stacks at sched_waking (costs two stack walks per wakeup).
#[unsafe(no_mangle)]
static WAKER_STACKS: u8 = 0;

/// 1 = the kernel has no sched_exit_tp: off-CPU profiling takes stacks at every switch-out
/// and closes intervals at switch-in in sched_switch.
#[unsafe(no_mangle)]
static STACKS_AT_SWITCH_OUT: u8 = 0;

/// Byte offset of `pid` in `struct task_struct`, read by userspace from the kernel's BTF so no
/// kernel layout is hard-coded here.
#[unsafe(no_mangle)]
static TASK_PID_OFF: u32 = 0;

/// Byte offset of `tgid` in `struct task_struct` (kernel BTF).
#[unsafe(no_mangle)]
static TASK_TGID_OFF: u32 = 0;

/// 1 = attribute blocking at the context switch (THREAD_BLOCKS).
#[unsafe(no_mangle)]
static TRACK_BLOCKS: u8 = 0;

/// Byte offset of `thread_info.flags` in `struct task_struct` (kernel BTF).
#[unsafe(no_mangle)]
static TASK_TIF_OFF: u32 = 0;

/// Bit number of TIF_NEED_FPU_LOAD in those flags on the running kernel.
#[unsafe(no_mangle)]
static TIF_NEED_FPU_LOAD_BIT: u32 = 14;

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
pub fn track_offcpu() -> bool {
    unsafe { core::ptr::read_volatile(&TRACK_OFFCPU) != 0 }
}
#[inline(always)]
pub fn waker_stacks() -> bool {
    unsafe { core::ptr::read_volatile(&WAKER_STACKS) != 0 }
}
#[inline(always)]
pub fn offcpu_profile() -> bool {
    unsafe { core::ptr::read_volatile(&OFFCPU_PROFILE) != 0 }
}
#[inline(always)]
pub fn offcpu_sample_ns() -> u64 {
    unsafe { core::ptr::read_volatile(&OFFCPU_SAMPLE_NS) }
}
#[inline(always)]
pub fn stacks_at_switch_out() -> bool {
    unsafe { core::ptr::read_volatile(&STACKS_AT_SWITCH_OUT) != 0 }
}
#[inline(always)]
pub fn task_pid_off() -> usize {
    unsafe { core::ptr::read_volatile(&TASK_PID_OFF) as usize }
}

#[inline(always)]
pub fn task_tgid_off() -> usize {
    unsafe { core::ptr::read_volatile(&TASK_TGID_OFF) as usize }
}
#[inline(always)]
pub fn track_blocks() -> bool {
    unsafe { core::ptr::read_volatile(&TRACK_BLOCKS) != 0 }
}
#[inline(always)]
pub fn task_tif_off() -> usize {
    unsafe { core::ptr::read_volatile(&TASK_TIF_OFF) as usize }
}
#[inline(always)]
pub fn tif_need_fpu_load() -> u64 {
    1u64 << (unsafe { core::ptr::read_volatile(&TIF_NEED_FPU_LOAD_BIT) } & 63)
}

/// The current task's (tgid, tid) if it belongs to the target, else None.
#[inline(always)]
pub fn current_target_thread() -> Option<u32> {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == target_tgid() { Some(pid_tgid as u32) } else { None }
}
