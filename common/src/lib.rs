//! Types shared by the kernel-side programs (ebpf/) and userspace (probes/, agent/): map and
//! program names, map keys and values, global-variable names, and the syscall classification.
//!
//! Every struct is `#[repr(C)]` with explicit padding and a compile-time size assertion, so the
//! kernel and userspace views of a map entry can never drift apart. No `bool`: BPF has no such
//! type and its layout is not guaranteed across compilers.
#![no_std]

mod syscall_table;
pub mod syscalls;

pub use syscalls::{ArgKind, SyscallClass};

/// Names of the BPF programs in the embedded object (the Rust function names in ebpf/).
pub mod program {
    pub const SYS_ENTER: &str = "parkscope_sys_enter";
    pub const SYS_EXIT: &str = "parkscope_sys_exit";
    pub const SCHED_SWITCH: &str = "parkscope_sched_switch";
    pub const SCHED_WAKING: &str = "parkscope_sched_waking";
    /// On `sched_exit_tp` (end of `__schedule`, in the context of the task switched in).
    pub const SCHED_EXIT: &str = "parkscope_sched_exit";
    /// Uprobe on the Go runtime's `casgstatus` (opt-in): every goroutine status change.
    pub const GO_CASGSTATUS: &str = "parkscope_go_casgstatus";
    /// Uprobe on the Go runtime's `gopark` (opt-in, profiles): the parking goroutine's stack.
    pub const GO_GOPARK: &str = "parkscope_go_gopark";

    // --- CPU profiling (per-CPU cpu-clock sampling) ---
    /// perf_event program run by one cpu-clock sampling event per CPU.
    pub const CPU_SAMPLE: &str = "parkscope_cpu_sample";
}

/// Names of the BPF maps (the Rust static names in ebpf/).
pub mod map {
    /// tid -> [`crate::InFlightSyscall`]: the syscall each target thread is in right now
    /// (`enter_ns == 0`: none). Slots are updated in place, not inserted and deleted per call;
    /// userspace removes the slots of threads that have exited.
    pub const IN_FLIGHT: &str = "IN_FLIGHT";
    /// [`crate::SyscallStatsKey`] -> [`crate::SyscallStats`]: completed-call histograms.
    pub const SYSCALL_STATS: &str = "SYSCALL_STATS";
    /// syscall nr -> [`crate::ArgKind`] as u8, filled by userspace at load.
    pub const SYSCALL_ARG_KIND: &str = "SYSCALL_ARG_KIND";
    /// tid -> [`crate::OffCpuStart`]: threads of the target that are off CPU now. In off-CPU
    /// profiling mode the slots stay in place (`start_ns == 0`: on CPU) and also hold each
    /// thread's exact off-CPU total since attach.
    pub const OFFCPU_START: &str = "OFFCPU_START";
    /// tid -> [`crate::LastWake`]: who last woke each target thread.
    pub const LAST_WAKE: &str = "LAST_WAKE";
    /// Ring buffer of [`crate::BlockEvent`]: syscalls that blocked at least `BLOCK_EVENT_MIN_NS`.
    pub const BLOCK_EVENTS: &str = "BLOCK_EVENTS";
    /// tid -> [`crate::ThreadBlock`]: the blocking syscall of each target thread as seen at
    /// its context switches (the default path; no syscall probes). One slot per thread,
    /// updated in place; userspace removes the slots of threads that have exited.
    pub const THREAD_BLOCKS: &str = "THREAD_BLOCKS";
    /// Per-CPU u32: the tid that sched_switch last put on each CPU (running vs runnable).
    pub const CPU_CURRENT: &str = "CPU_CURRENT";
    /// Stack traces (user and kernel) captured by the off-CPU profiler, by id.
    pub const STACKS: &str = "STACKS";
    /// [`crate::OffCpuKey`] -> [`crate::OffCpuTotal`]: completed off-CPU intervals.
    pub const OFFCPU_TOTALS: &str = "OFFCPU_TOTALS";
    /// Per-CPU array of u64 counters indexed by [`crate::Counter`].
    pub const COUNTERS: &str = "COUNTERS";
    /// One [`crate::GoProbeConfig`]: the target runtime's offsets and status values, written by
    /// userspace before the Go uprobes are attached.
    pub const GO_CONFIG: &str = "GO_CONFIG";
    /// g address -> [`crate::GoGState`]: each goroutine's status since its last change seen
    /// by the casgstatus uprobe.
    pub const GO_GSTATES: &str = "GO_GSTATES";
    /// tid -> user stack id taken at gopark, consumed by the casgstatus to waiting that follows
    /// on the same thread.
    pub const GO_PARK_STACK: &str = "GO_PARK_STACK";
    /// [`crate::GoWaitKey`] -> [`crate::GoWaitTotal`]: completed goroutine intervals per state
    /// (profiles with Go uprobes).
    pub const GO_WAIT_TOTALS: &str = "GO_WAIT_TOTALS";

    // --- CPU profiling (per-CPU cpu-clock sampling) ---
    /// [`crate::CpuSampleKey`] -> u64: cpu-clock samples that hit a target thread, counted in
    /// kernel per (thread, user stack, kernel stack). The stacks are in [`STACKS`] (no other
    /// program of a CPU profile uses that map).
    pub const CPU_SAMPLES: &str = "CPU_SAMPLES";
}

/// Names of the read-only globals userspace sets with `EbpfLoader::override_global`.
pub mod global {
    /// u32: the tgid whose threads are traced; every program returns at once for other tasks.
    pub const TARGET_TGID: &str = "TARGET_TGID";
    /// u64: syscalls that last at least this long are streamed as [`crate::BlockEvent`]s.
    pub const BLOCK_EVENT_MIN_NS: &str = "BLOCK_EVENT_MIN_NS";
    /// u8: 1 = keep OFFCPU_START per target thread (needed for wakeups and off-CPU profiles);
    /// 0 = sched_switch only maintains CPU_CURRENT.
    pub const TRACK_OFFCPU: &str = "TRACK_OFFCPU";
    /// u8: 1 = off-CPU profiling: aggregate off-CPU intervals with stacks taken at switch-in.
    pub const OFFCPU_PROFILE: &str = "OFFCPU_PROFILE";
    /// u64: off-CPU stack sampling period. An interval at least this long always gets its
    /// stacks; a shorter one (delta ns) gets them with probability delta/period and then
    /// stands for `period` ns, an unbiased estimate. 0 = stacks for every interval.
    pub const OFFCPU_SAMPLE_NS: &str = "OFFCPU_SAMPLE_NS";
    /// u8: 1 = also capture the waker's stacks at sched_waking (off-CPU profiles).
    pub const WAKER_STACKS: &str = "WAKER_STACKS";
    /// u8: 1 = the kernel lacks sched_exit_tp: off-CPU profiling captures stacks at every
    /// switch-out and closes intervals at switch-in (exact, and ~1.5 us per switch).
    pub const STACKS_AT_SWITCH_OUT: &str = "STACKS_AT_SWITCH_OUT";
    /// u32: byte offset of `pid` in `struct task_struct`, from the running kernel's BTF.
    pub const TASK_PID_OFF: &str = "TASK_PID_OFF";
    /// u32: byte offset of `tgid` in `struct task_struct` (switch-ins of other processes are
    /// dismissed with one load instead of a map lookup).
    pub const TASK_TGID_OFF: &str = "TASK_TGID_OFF";
    /// u8: 1 = attribute blocking at the context switch into [`crate::map::THREAD_BLOCKS`].
    pub const TRACK_BLOCKS: &str = "TRACK_BLOCKS";
    /// u32: byte offset of `thread_info.flags` in `struct task_struct` (x86_64 keeps
    /// thread_info first in the task), from the kernel's BTF.
    pub const TASK_TIF_OFF: &str = "TASK_TIF_OFF";
    /// u32: the bit of `TIF_NEED_FPU_LOAD` in those flags (14 before x86's generic TIF bits of
    /// Linux 6.18, 19 since): set at every context switch, cleared only on the way back to user
    /// mode, so at a switch-out it says "has not returned to user mode since its last switch".
    pub const TIF_NEED_FPU_LOAD_BIT: &str = "TIF_NEED_FPU_LOAD_BIT";
}

/// Capacity of the per-thread maps: more live threads than this in one target and the excess
/// threads are counted in [`Counter::InFlightFull`] instead of tracked.
pub const MAX_THREADS: u32 = 32_768;
/// Capacity of [`map::SYSCALL_STATS`] (an LRU map: the least recently used key is evicted).
pub const MAX_STATS_KEYS: u32 = 16_384;
/// Capacity of [`map::STACKS`] (distinct stacks) and of [`map::OFFCPU_TOTALS`].
pub const MAX_STACKS: u32 = 16_384;
pub const MAX_OFFCPU_KEYS: u32 = 16_384;
/// Goroutines whose status the Go uprobes track at once (more are counted in
/// [`Counter::GoStatesFull`]); the map is allocated as it fills, not up front.
pub const MAX_GO_GOROUTINES: u32 = 1 << 18;
/// Capacity of [`map::GO_WAIT_TOTALS`].
pub const MAX_GO_WAIT_KEYS: u32 = 1 << 16;
/// Size of [`map::BLOCK_EVENTS`] in bytes (a power of two, as the kernel requires).
pub const BLOCK_EVENTS_BYTES: u32 = 1 << 20;
/// Syscall numbers at or above this are not classified (x86_64 uses < 470 today).
pub const MAX_SYSCALL_NR: u32 = 512;
/// Number of log2 latency buckets: bucket `i` counts calls lasting `[2^i, 2^(i+1))` ns; the last
/// bucket is open-ended (2^35 ns is about 34 s).
pub const HIST_BUCKETS: usize = 36;

/// The syscall a target thread is executing right now, written at sys_enter (with `enter_ns`
/// stored last) and marked finished at sys_exit by zeroing `enter_ns`. The frame pointer lets userspace unwind the thread's stack later, on demand (ip
/// and sp are in /proc/PID/task/TID/syscall; bp is not, and is callee-saved, so only entry has it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InFlightSyscall {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) at entry; 0 when the thread is not in a syscall.
    /// First in the struct and written last, so a concurrent reader that sees it set (x86 keeps
    /// store order, and the map copy reads upwards) also sees the fields below.
    pub enter_ns: u64,
    /// First argument (an fd or futex address, per [`ArgKind`]).
    pub arg0: u64,
    /// User frame pointer (rbp) at entry.
    pub user_bp: u64,
    pub nr: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<InFlightSyscall>() == 32);

/// [`ThreadBlock::flags`]: the first context switch seen of this thread was a switch-in, and it
/// went to sleep in this call without returning to user mode first: the call began before
/// attach (userspace knows from its first /proc read whether the thread was asleep in it then).
pub const BLOCK_CALL_BEFORE_ATTACH: u32 = 1;

/// What a target thread is blocked in, as seen at its context switches (sched_switch reads the
/// sleeping thread's saved user registers; no syscall probe). `since_ns` is the thread's first
/// sleep in the call: a thread that wakes inside the call and sleeps again without returning
/// to user mode (and with the same registers) is one block, not two.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadBlock {
    /// When the thread first went to sleep in the call it is in; 0 = no open block (running,
    /// preempted, or asleep outside a syscall).
    pub since_ns: u64,
    /// The thread's last switch-out and switch-in (any kind), 0 = none seen since attach. A
    /// thread with `off_ns > on_ns` is off CPU now.
    pub off_ns: u64,
    pub on_ns: u64,
    /// The call's six arguments (di, si, dx, r10, r8, r9) and user ip, sp, bp.
    pub args: [u64; 6],
    pub user_ip: u64,
    pub user_sp: u64,
    pub user_bp: u64,
    /// The syscall number, or -1.
    pub nr: i32,
    /// Times the thread went to sleep in this block (1 + sleeps after waking inside the call).
    pub sleeps: u32,
    /// [`BLOCK_CALL_BEFORE_ATTACH`] or 0.
    pub flags: u32,
    /// The task running when the thread was last woken while off CPU (sched_waking, snapshot's
    /// blocks mode), and when; 0 = no wakeup seen since attach.
    pub waker_tid: u32,
    pub wake_ns: u64,
}
const _: () = assert!(core::mem::size_of::<ThreadBlock>() == 120);

/// Key of the completed-syscall histograms: one per thread, syscall and fd (fd is -1 for
/// syscalls whose first argument is not an fd).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SyscallStatsKey {
    pub tid: u32,
    pub nr: u32,
    pub fd: i32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<SyscallStatsKey>() == 16);

/// Aggregated durations of completed syscalls for one [`SyscallStatsKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallStats {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    pub buckets: [u64; HIST_BUCKETS],
}
const _: () = assert!(core::mem::size_of::<SyscallStats>() == 24 + 8 * HIST_BUCKETS);

impl Default for SyscallStats {
    fn default() -> Self {
        Self { count: 0, total_ns: 0, max_ns: 0, buckets: [0; HIST_BUCKETS] }
    }
}

/// Histogram bucket of a duration: floor(log2(ns)), clamped to the last bucket.
#[inline(always)]
pub fn hist_bucket(ns: u64) -> usize {
    if ns == 0 {
        return 0;
    }
    let b = (63 - ns.leading_zeros()) as usize;
    if b >= HIST_BUCKETS { HIST_BUCKETS - 1 } else { b }
}

/// Stack id meaning "not captured" (profiling off, or the capture failed).
pub const NO_STACK: i32 = -1;
/// Stack id userspace puts in an [`OffCpuStart`] it seeds for a thread that was already off CPU
/// when the probes attached (the kernel never saw it leave): the kernel copies it into the
/// interval's [`OffCpuKey`] unchanged, and userspace substitutes the stacks it read from /proc.
pub const PRE_ATTACH_STACK: i32 = -2;

/// A target thread that is off CPU right now: when it left, in what state, and in which
/// syscall. In off-CPU profiling mode the slot also persists while the thread runs
/// (`start_ns == 0`) and sums the thread's completed intervals exactly.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffCpuStart {
    /// When the thread left the CPU; 0 = it is on CPU (profiling mode only).
    pub start_ns: u64,
    /// `prev_state` at switch-out: 0 = preempted (still runnable), else the sleep state bits.
    pub prev_state: u64,
    /// First argument of the syscall the thread was in at switch-out (see `nr`).
    pub arg0: u64,
    /// [`PRE_ATTACH_STACK`] for a slot userspace seeded (the thread was blocked before
    /// attach), else [`NO_STACK`]: stacks are captured at switch-in, in the woken thread's own
    /// context, where they are still the ones it blocked with.
    pub user_stack_id: i32,
    pub kernel_stack_id: i32,
    /// The syscall the thread was in at switch-out, or -1 (not in one, or syscalls not traced).
    pub nr: i32,
    pub _pad: u32,
    /// Profiling mode: the thread's completed off-CPU intervals since attach, exactly (every
    /// interval, sampled for stacks or not).
    pub total_ns: u64,
    pub count: u64,
}
const _: () = assert!(core::mem::size_of::<OffCpuStart>() == 56);

impl Default for OffCpuStart {
    fn default() -> Self {
        Self {
            start_ns: 0,
            prev_state: 0,
            arg0: 0,
            user_stack_id: NO_STACK,
            kernel_stack_id: NO_STACK,
            nr: -1,
            _pad: 0,
            total_ns: 0,
            count: 0,
        }
    }
}

/// Who woke a target thread last, and when (and, when off-CPU profiling is on, from where).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastWake {
    pub wake_ns: u64,
    /// The task running when the wakeup was issued (sched_waking runs in the waker's context;
    /// for wakeups from interrupts it is whatever task the interrupt hit, 0 for the idle task).
    pub waker_tid: u32,
    pub waker_tgid: u32,
    pub waker_user_stack_id: i32,
    pub waker_kernel_stack_id: i32,
}
const _: () = assert!(core::mem::size_of::<LastWake>() == 24);

/// Key of the in-kernel off-CPU aggregation: one per thread, stacks, waker and syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffCpuKey {
    pub tid: u32,
    /// 0 when no wakeup was seen for this interval (e.g. preemption, or woken before attach).
    pub waker_tid: u32,
    pub user_stack_id: i32,
    pub kernel_stack_id: i32,
    pub waker_user_stack_id: i32,
    pub waker_kernel_stack_id: i32,
    /// Syscall at switch-out, or -1.
    pub nr: i32,
    /// The fd argument of that syscall, or -1.
    pub fd: i32,
}
const _: () = assert!(core::mem::size_of::<OffCpuKey>() == 32);

/// Off-CPU time and intervals of one [`OffCpuKey`], from the intervals whose stacks were
/// captured, each weighted by 1/p (p = its capture probability, see
/// [`global::OFFCPU_SAMPLE_NS`]): unbiased estimates, exact when every interval was captured.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffCpuTotal {
    /// Estimated off-CPU nanoseconds.
    pub total_ns: u64,
    /// Estimated number of intervals, in units of 1/[`COUNT_ONE`].
    pub count_fp: u64,
    /// Intervals actually captured.
    pub captured: u64,
}
const _: () = assert!(core::mem::size_of::<OffCpuTotal>() == 24);

/// Fixed-point one of [`OffCpuTotal::count_fp`] (an interval captured with probability p
/// counts 1/p intervals).
pub const COUNT_ONE: u64 = 1 << 16;

/// Streamed through [`map::BLOCK_EVENTS`] when a syscall returns after blocking for at least
/// `BLOCK_EVENT_MIN_NS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockEvent {
    pub enter_ns: u64,
    pub duration_ns: u64,
    pub arg0: u64,
    pub ret: i64,
    pub tid: u32,
    pub nr: u32,
}
const _: () = assert!(core::mem::size_of::<BlockEvent>() == 40);

/// Indices into [`map::COUNTERS`]: everything the kernel side had to drop or could not match.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Syscall entries seen for the target.
    SyscallsEntered = 0,
    /// Entries that could not be recorded because [`map::IN_FLIGHT`] was full.
    InFlightFull = 1,
    /// Exits with no recorded entry (calls that began before attach, or dropped entries).
    ExitWithoutEntry = 2,
    /// Histogram updates that failed (map full despite LRU, or allocation failure).
    StatsUpdateFailed = 3,
    /// Block events dropped because the ring buffer was full.
    BlockEventsDropped = 4,
    /// Switch-outs that could not be recorded because [`map::OFFCPU_START`] was full.
    OffCpuFull = 5,
    /// Context switches away from a target thread.
    SwitchesOut = 6,
    /// Off-CPU intervals lost because [`map::OFFCPU_TOTALS`] was full.
    OffCpuTotalsFull = 7,
    /// Stack captures that failed (stack map full or bucket collision); the interval is kept
    /// with [`NO_STACK`].
    StackCaptureFailed = 8,
    /// Off-CPU intervals completed (profiling mode), and those whose stacks were captured.
    OffCpuIntervals = 9,
    OffCpuCaptured = 10,
    /// Goroutine status changes seen by the casgstatus uprobe (target only).
    GoTransitions = 11,
    /// Status changes not recorded because [`map::GO_GSTATES`] was full.
    GoStatesFull = 12,
    /// Completed goroutine intervals lost because [`map::GO_WAIT_TOTALS`] was full.
    GoWaitTotalsFull = 13,
    /// Reads of a g struct (goid, waitreason) that failed in the uprobe.
    GoReadFailed = 14,
    /// Target threads not tracked because [`map::THREAD_BLOCKS`] was full.
    ThreadBlocksFull = 15,
    /// Switch-outs of target threads that went to sleep inside a syscall.
    SleepsInSyscall = 16,
    /// Of those, sleeps counted as part of the block already open (the thread woke and slept
    /// again without leaving the call).
    ResleepsInCall = 17,
    // 18..=19 are free.

    // --- CPU profiling (per-CPU cpu-clock sampling) ---
    /// cpu-clock samples that hit a target thread (every sample is counted here, whether or
    /// not it found room in [`map::CPU_SAMPLES`]).
    CpuSamples = 20,
    /// Samples lost because [`map::CPU_SAMPLES`] was full.
    CpuSampleKeysFull = 21,
}
/// Number of [`Counter`] slots.
pub const COUNTER_SLOTS: u32 = 22;

/// [`GoGState::wait_reason`] when the goroutine is not waiting.
pub const NO_WAIT_REASON: u32 = u32::MAX;
/// A status value no runtime uses, for [`GoProbeConfig`] fields whose status the target's Go
/// release does not have.
pub const NO_GO_STATUS: u32 = u32::MAX;

/// What the Go uprobes need to know about the target's runtime, all read from its binary
/// (DWARF or the layout tables) by userspace: nothing Go-version-specific is compiled in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoProbeConfig {
    /// With `aggregate`: when the window began. A goroutine the kernel has no slot for changed
    /// nothing since attach, so the interval its first change closes is counted from here.
    pub window_start_ns: u64,
    /// Byte offsets of `g.goid` (8 bytes) and `g.waitreason` (1 byte) in `runtime.g`.
    pub goid_off: u32,
    pub waitreason_off: u32,
    /// The runtime's values of `_Grunning`, `_Gsyscall`, `_Gwaiting`, `_Gdead`, `_Gcopystack`
    /// and (Go >= 1.25) `_Gdeadextra` ([`NO_GO_STATUS`] where absent).
    pub running: u32,
    pub syscall: u32,
    pub waiting: u32,
    pub dead: u32,
    pub copystack: u32,
    pub deadextra: u32,
    /// 1 = sum every completed interval (other than running) into [`map::GO_WAIT_TOTALS`].
    pub aggregate: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<GoProbeConfig>() == 48);

/// One goroutine's status since the last change the casgstatus uprobe saw. Running and
/// syscall count as one state, as the runtime's own latency tracking treats them (newer
/// runtimes enter and leave syscalls without casgstatus at all).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoGState {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC, the runtime's nanotime) of the change.
    pub since_ns: u64,
    pub goid: u64,
    /// The runtime's status value (as in `g.atomicstatus`, no scan bit).
    pub status: u32,
    /// `g.waitreason` when `status` is waiting, else [`NO_WAIT_REASON`].
    pub wait_reason: u32,
    /// The stack gopark was called with ([`NO_STACK`] unless waiting and profiling).
    pub user_stack_id: i32,
    /// Status changes of this goroutine seen since attach.
    pub transitions: u32,
    /// gopark's return address (read from `[rsp]` at its frame setup, where a frame-pointer walk
    /// would skip gopark's caller), or 0: see [`GoParkStack`].
    pub park_caller: u64,
}
const _: () = assert!(core::mem::size_of::<GoGState>() == 40);

/// What the gopark uprobe leaves for the casgstatus that follows on the same thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoParkStack {
    pub user_stack_id: i32,
    pub _pad: u32,
    /// The return address on top of the stack at the probe: gopark's caller. Before gopark's
    /// frame is set up, rbp still holds the caller's frame, so the kernel's walk goes from
    /// gopark straight to the caller's caller; userspace puts this frame back in between.
    pub caller: u64,
}
const _: () = assert!(core::mem::size_of::<GoParkStack>() == 16);

/// Key of the per-goroutine interval totals of profiles with Go uprobes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GoWaitKey {
    pub goid: u64,
    /// The status the interval was spent in, and its wait reason ([`NO_WAIT_REASON`] if none).
    pub status: u32,
    pub wait_reason: u32,
    /// The parking stack (as in [`GoGState::user_stack_id`] and [`GoGState::park_caller`]);
    /// [`PRE_ATTACH_STACK`] for an interval that began before attach (userspace has its stack
    /// from its first read of the runtime).
    pub user_stack_id: i32,
    pub _pad: u32,
    pub park_caller: u64,
}
const _: () = assert!(core::mem::size_of::<GoWaitKey>() == 32);

/// Exact time and number of completed intervals of one [`GoWaitKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoWaitTotal {
    pub total_ns: u64,
    pub count: u64,
}
const _: () = assert!(core::mem::size_of::<GoWaitTotal>() == 16);

// --- CPU profiling (per-CPU cpu-clock sampling) ---

/// Capacity of [`map::CPU_SAMPLES`]: distinct (thread, user stack, kernel stack) triples.
pub const MAX_CPU_SAMPLE_KEYS: u32 = 16_384;

/// Key of the in-kernel CPU sample counts ([`map::CPU_SAMPLES`]): one per thread and pair of
/// stacks. `kernel_stack_id` is [`NO_STACK`] for samples that hit user mode (there is no
/// kernel stack then), and either id is [`NO_STACK`] when its capture failed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpuSampleKey {
    pub tid: u32,
    pub user_stack_id: i32,
    pub kernel_stack_id: i32,
}
const _: () = assert!(core::mem::size_of::<CpuSampleKey>() == 12);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], contain only integers, and have no implicit padding
    // (the size assertions above pin their layout).
    unsafe impl aya::Pod for super::InFlightSyscall {}
    unsafe impl aya::Pod for super::ThreadBlock {}
    unsafe impl aya::Pod for super::SyscallStatsKey {}
    unsafe impl aya::Pod for super::SyscallStats {}
    unsafe impl aya::Pod for super::OffCpuStart {}
    unsafe impl aya::Pod for super::LastWake {}
    unsafe impl aya::Pod for super::BlockEvent {}
    unsafe impl aya::Pod for super::OffCpuKey {}
    unsafe impl aya::Pod for super::OffCpuTotal {}
    unsafe impl aya::Pod for super::GoProbeConfig {}
    unsafe impl aya::Pod for super::GoGState {}
    unsafe impl aya::Pod for super::GoParkStack {}
    unsafe impl aya::Pod for super::GoWaitKey {}
    unsafe impl aya::Pod for super::GoWaitTotal {}
    // CPU profiling.
    unsafe impl aya::Pod for super::CpuSampleKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hist_buckets_are_log2() {
        assert_eq!(hist_bucket(0), 0);
        assert_eq!(hist_bucket(1), 0);
        assert_eq!(hist_bucket(2), 1);
        assert_eq!(hist_bucket(3), 1);
        assert_eq!(hist_bucket(1024), 10);
        assert_eq!(hist_bucket(1_000_000_000), 29);
        assert_eq!(hist_bucket(u64::MAX), HIST_BUCKETS - 1);
    }
}
