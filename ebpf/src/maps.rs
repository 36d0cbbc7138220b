//! The maps shared by the programs. Sizes come from `parkscope_common` so userspace knows the
//! bounds; every map is bounded and the per-thread ones are keyed by tid.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
    programs::tracing::StackIdContext,
};
use parkscope_common::{
    BLOCK_EVENTS_BYTES, COUNTER_SLOTS, Counter, GoGState, GoParkStack, GoProbeConfig, GoWaitKey, GoWaitTotal,
    InFlightSyscall, LastWake, MAX_GO_GOROUTINES, MAX_GO_WAIT_KEYS, MAX_OFFCPU_KEYS, MAX_STACKS,
    MAX_STATS_KEYS, MAX_SYSCALL_NR, MAX_THREADS, OffCpuKey, OffCpuStart, OffCpuTotal, SyscallStats,
    SyscallStatsKey, ThreadBlock,
};
// CPU profiling.
use parkscope_common::{CpuSampleKey, MAX_CPU_SAMPLE_KEYS, NO_STACK};

/// BPF_F_NO_PREALLOC (uapi/linux/bpf.h): entries are allocated as the map fills. The Go maps
/// are sized for hundreds of thousands of goroutines that most targets never have.
const BPF_F_NO_PREALLOC: u32 = 1;

#[map]
pub static IN_FLIGHT: HashMap<u32, InFlightSyscall> = HashMap::with_max_entries(MAX_THREADS, 0);

/// The blocking call of each target thread, attributed at its context switches.
#[map]
pub static THREAD_BLOCKS: HashMap<u32, ThreadBlock> = HashMap::with_max_entries(MAX_THREADS, 0);

#[map]
pub static SYSCALL_STATS: LruHashMap<SyscallStatsKey, SyscallStats> =
    LruHashMap::with_max_entries(MAX_STATS_KEYS, 0);

#[map]
pub static SYSCALL_ARG_KIND: Array<u8> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

#[map]
pub static OFFCPU_START: HashMap<u32, OffCpuStart> = HashMap::with_max_entries(MAX_THREADS, 0);

#[map]
pub static LAST_WAKE: LruHashMap<u32, LastWake> = LruHashMap::with_max_entries(MAX_THREADS, 0);

/// The tid sched_switch last put on each CPU: which target threads are on CPU at an instant,
/// for one array store per switch instead of per-thread bookkeeping.
#[map]
pub static CPU_CURRENT: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Off-CPU profiling: when sched_switch last switched a task in on each CPU, for sched_exit_tp
/// on the same CPU to end the interval at the switch.
#[map]
pub static SWITCH_IN_NS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(MAX_STACKS, 0);

/// Which of the current task's stacks [`stack_id`] takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    User,
    Kernel,
}

/// The id in [`STACKS`] of the current task's user or kernel stack, or [`NO_STACK`] when the
/// capture failed (counted in [`Counter::StackCaptureFailed`]).
#[inline(always)]
pub fn stack_id<C: StackIdContext>(ctx: &C, which: Stack) -> i32 {
    /// BPF_F_USER_STACK (uapi/linux/bpf.h).
    const BPF_F_USER_STACK: u64 = 1 << 8;
    let flags = if which == Stack::User { BPF_F_USER_STACK } else { 0 };
    match ctx.get_stackid(&STACKS, flags) {
        Ok(id) => id as i32,
        Err(_) => {
            count(Counter::StackCaptureFailed);
            NO_STACK
        }
    }
}

/// Plain hash, not LRU: a profile must not silently lose old intervals; a full map is counted.
#[map]
pub static OFFCPU_TOTALS: HashMap<OffCpuKey, OffCpuTotal> = HashMap::with_max_entries(MAX_OFFCPU_KEYS, 0);

#[map]
pub static BLOCK_EVENTS: RingBuf = RingBuf::with_byte_size(BLOCK_EVENTS_BYTES, 0);

#[map]
pub static GO_CONFIG: Array<GoProbeConfig> = Array::with_max_entries(1, 0);

#[map]
pub static GO_GSTATES: HashMap<u64, GoGState> =
    HashMap::with_max_entries(MAX_GO_GOROUTINES, BPF_F_NO_PREALLOC);

#[map]
pub static GO_PARK_STACK: LruHashMap<u32, GoParkStack> = LruHashMap::with_max_entries(MAX_THREADS, 0);

/// Plain hash, not LRU, for the same reason as OFFCPU_TOTALS; a full map is counted.
#[map]
pub static GO_WAIT_TOTALS: HashMap<GoWaitKey, GoWaitTotal> =
    HashMap::with_max_entries(MAX_GO_WAIT_KEYS, BPF_F_NO_PREALLOC);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Adds one to a drop/diagnostic counter. Per-CPU slots need no atomics.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        unsafe { *slot += 1 };
    }
}

// --- CPU profiling (per-CPU cpu-clock sampling) ---

/// Samples per (thread, stacks). Plain hash, not LRU: a profile must not silently lose old
/// samples; a full map is counted (CpuSampleKeysFull).
#[map]
pub static CPU_SAMPLES: HashMap<CpuSampleKey, u64> = HashMap::with_max_entries(MAX_CPU_SAMPLE_KEYS, 0);
