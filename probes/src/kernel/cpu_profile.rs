//! CPU profiling through the kernel probes: one cpu-clock sampling perf event per online CPU,
//! each running the `parkscope_cpu_sample` program, which counts the target's samples in kernel
//! per (thread, user stack, kernel stack); and the reader that turns those counts into stacks
//! of addresses with CPU time.
//!
//! Per-CPU events rather than one per thread of the target: a per-task event is scheduled out
//! and in with its task at every context switch, a cost the target pays per switch (measured in
//! docs/performance.md). A per-CPU event costs the target nothing but the samples that hit it,
//! and needs no rescans of /proc for new threads: the in-kernel tgid filter sees them.

use std::collections::HashMap;

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData, StackTraceMap},
    programs::{
        PerfEvent, ProgramError,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};
use parkscope_common::{CpuSampleKey, map, program};

use super::{KernelError, KernelProbes};

/// One distinct sampled stack of one thread. Addresses innermost first; each list starts with
/// the interrupted instruction pointer and continues with return addresses. `kernel` is empty
/// for samples taken in user mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CpuStackKey {
    pub tid: u32,
    pub kernel: Vec<u64>,
    pub user: Vec<u64>,
}

/// How often a stack was sampled and how much CPU time those samples stand for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStackTotal {
    pub count: u64,
    /// `count` x the sampling period: each sample of a fixed-period cpu-clock event stands
    /// for exactly one period of CPU time.
    pub cpu_ns: u64,
}

/// Everything one CPU profile collected.
#[derive(Debug, Default)]
pub struct CpuSamples {
    pub stacks: HashMap<CpuStackKey, CpuStackTotal>,
    /// The sampling period, in ns of cpu-clock (1e9 / frequency).
    pub period_ns: u64,
    /// CPUs sampled (one event each).
    pub cpus: usize,
    /// Samples of the target the kernel counted, including those it had no room for.
    pub samples_seen: u64,
    /// Samples lost because the in-kernel count map was full.
    pub lost: u64,
    /// Stack captures that failed (stack map full or a bucket collision); those samples are
    /// kept with the stack that could be taken.
    pub stack_failures: u64,
    /// Distinct threads with at least one sample.
    pub threads_sampled: usize,
}

/// The sampling period for a frequency: cpu-clock counts nanoseconds.
pub fn sample_period_ns(frequency_hz: u64) -> u64 {
    1_000_000_000 / frequency_hz.max(1)
}

/// Loads the sampling program and opens one cpu-clock event per online CPU, all processes,
/// with a fixed period (every sample then stands for exactly one period of CPU time; cpu-clock
/// in frequency mode is a fixed period anyway, as hrtimers tick at a fixed rate). Returns the
/// number of CPUs. The links live in `ebpf`: dropping it closes the events.
pub(super) fn attach_per_cpu(ebpf: &mut Ebpf, frequency_hz: u64) -> Result<usize, KernelError> {
    let name = program::CPU_SAMPLE;
    let prog: &mut PerfEvent = super::program_as(ebpf, name)?;
    prog.load().map_err(|source| KernelError::Program { program: name, source })?;
    let cpus = aya::util::online_cpus()
        .map_err(|(path, e)| KernelError::OnlineCpus { detail: format!("{path}: {e}") })?;
    let period = sample_period_ns(frequency_hz);
    for &cpu in &cpus {
        prog.attach(
            PerfEventConfig::Software(SoftwareEvent::CpuClock),
            PerfEventScope::AllProcessesOneCpu { cpu },
            SamplePolicy::Period(period),
            false,
        )
        .map_err(|source| {
            if is_permission(&source) {
                KernelError::NotPermitted { detail: format!("perf_event_open on CPU {cpu}: {source}") }
            } else {
                KernelError::Program { program: name, source }
            }
        })?;
    }
    Ok(cpus.len())
}

fn is_permission(e: &ProgramError) -> bool {
    // perf_event_open: EACCES is perf_event_paranoid, EPERM a missing capability.
    matches!(e, ProgramError::SyscallError(s)
        if crate::errno::classify(&s.io_error) == crate::errno::ErrnoClass::Permission)
}

impl KernelProbes {
    /// CPU profiling: the target's samples so far (one lookup of a per-CPU counter; cheap
    /// enough for a progress line).
    pub fn cpu_samples_so_far(&self) -> u64 {
        self.counters().map(|c| c.cpu_samples).unwrap_or(0)
    }

    /// CPU profiling: every sample counted since attach, with its stacks resolved to addresses.
    /// A stack id that cannot be read back is counted as a failure and its part left empty.
    pub fn cpu_samples(&self) -> Result<CpuSamples, KernelError> {
        let name = map::CPU_SAMPLES;
        let m = self.ebpf.map(name).ok_or(KernelError::Missing { kind: "map", name })?;
        let counts: BpfHashMap<&MapData, CpuSampleKey, u64> =
            BpfHashMap::try_from(m).map_err(|source| KernelError::Map { map: name, source })?;
        let name = map::STACKS;
        let m = self.ebpf.map(name).ok_or(KernelError::Missing { kind: "map", name })?;
        let stack_map: StackTraceMap<&MapData> =
            StackTraceMap::try_from(m).map_err(|source| KernelError::Map { map: name, source })?;
        let counters = self.counters()?;
        let period_ns = sample_period_ns(self.config.selection.cpu_frequency_hz);
        let mut out = CpuSamples {
            period_ns,
            cpus: self.cpus_sampled,
            samples_seen: counters.cpu_samples,
            lost: counters.cpu_sample_keys_full,
            stack_failures: counters.stack_capture_failed,
            ..CpuSamples::default()
        };
        // Many keys share a stack (the same user stack with different kernel stacks, or
        // threads running the same code): read each id once.
        let mut resolved: HashMap<i32, Vec<u64>> = HashMap::new();
        let mut resolve = |id: i32, failures: &mut u64| -> Vec<u64> {
            let Ok(key) = u32::try_from(id) else { return Vec::new() };
            resolved
                .entry(id)
                .or_insert_with(|| match stack_map.get(&key, 0) {
                    Ok(trace) => trace.frames().iter().map(|f| f.ip).collect(),
                    Err(_) => {
                        *failures += 1;
                        Vec::new()
                    }
                })
                .clone()
        };
        let mut threads = std::collections::HashSet::new();
        for (key, count) in counts.iter().filter_map(Result::ok) {
            let kernel = resolve(key.kernel_stack_id, &mut out.stack_failures);
            let user = resolve(key.user_stack_id, &mut out.stack_failures);
            threads.insert(key.tid);
            // Two ids can resolve to the same addresses only if a read failed: merge them.
            let total = out.stacks.entry(CpuStackKey { tid: key.tid, kernel, user }).or_default();
            total.count += count;
            total.cpu_ns += count * period_ns;
        }
        out.threads_sampled = threads.len();
        Ok(out)
    }
}
