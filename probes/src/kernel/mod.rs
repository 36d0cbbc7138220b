//! Kernel probes: loads the embedded eBPF object for one target, attaches only the programs a
//! command needs, and turns the maps into typed snapshots. Detaching is dropping
//! [`KernelProbes`]: aya closes the links and the kernel frees the programs and maps.

mod block_events;
pub mod btf;
// CPU profiling.
mod cpu_profile;

use std::collections::{HashMap, HashSet};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf, StackTraceMap},
    programs::{BtfTracePoint, UProbe, uprobe::UProbeScope},
};
pub use block_events::BlockEventStream;
pub use cpu_profile::{CpuSamples, CpuStackKey, CpuStackTotal, sample_period_ns};
use parkscope_common::{
    COUNTER_SLOTS, Counter, GoGState, GoWaitKey, GoWaitTotal, InFlightSyscall, LastWake, MAX_SYSCALL_NR,
    OffCpuKey, OffCpuStart, OffCpuTotal, SyscallStats, SyscallStatsKey, ThreadBlock, global, map, program,
    syscalls,
};

/// What went wrong while loading, attaching or reading probes.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("not permitted to load eBPF programs: {detail}")]
    NotPermitted { detail: String },
    #[error("kernel type information unusable: {reason}")]
    KernelBtf { reason: String },
    #[error("cannot load the eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("cannot load or attach {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot register the ring buffer with the reactor: {0}")]
    Reactor(#[source] std::io::Error),
    #[error("eBPF object has no {kind} named {name}")]
    Missing { kind: &'static str, name: &'static str },
    #[error("cannot list the online CPUs: {detail}")]
    OnlineCpus { detail: String },
    #[error("the probes were loaded without {what} (ProbeSelection)")]
    NotSelected { what: &'static str },
}

/// Which groups of programs to attach. Each command asks only for what it uses, so the target
/// (and the rest of the machine) pays for nothing else.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbeSelection {
    /// raw_syscalls sys_enter/sys_exit: in-flight calls and per-(thread, syscall, fd) histograms.
    pub syscalls: bool,
    /// Blocking attributed at the context switch (the default path of snapshot and schedtrace):
    /// sched_switch reads a target thread's syscall and arguments from its saved user
    /// registers when it goes to sleep, and keeps per thread the call and when the block began
    /// (THREAD_BLOCKS). Costs the target per switch, not per syscall, and other processes
    /// one tgid load per switch.
    pub blocks: bool,
    /// sched_switch, light: which target threads are on a CPU at an instant (running vs
    /// runnable), for one per-CPU array store per context switch.
    pub switches: bool,
    /// sched_waking: who last woke each thread (in its THREAD_BLOCKS slot with `blocks`, else
    /// with per-thread off-CPU starts and LAST_WAKE).
    pub wakeups: bool,
    /// Off-CPU profiling (implies wakeups): in-kernel totals per (thread, stacks, waker,
    /// syscall), stacks taken at switch-in and sampled by off-CPU time (see
    /// `offcpu_sample_ns`). Needs the sched_exit_tp tracepoint (Linux >= 6.16).
    pub offcpu_profile: bool,
    /// With `offcpu_profile`: the stack sampling period; 0 = stacks for every interval (two
    /// stack walks, ~1.5 us, per switch of a target thread).
    pub offcpu_sample_ns: u64,
    /// With `offcpu_profile`: take stacks at every switch-out and close intervals at switch-in
    /// (exact, no sampling) instead of at sched_exit_tp. Chosen by itself on kernels without
    /// sched_exit_tp; settable to check that path on newer ones.
    pub stacks_at_switch_out: bool,
    /// With `offcpu_profile`: also the waker's stacks at each wakeup (two more stack walks).
    pub waker_stacks: bool,
    /// CPU profiling: one cpu-clock sampling event per online CPU at `cpu_frequency_hz`,
    /// counted in kernel per (thread, user stack, kernel stack) for the target's threads only.
    pub cpu_profile: bool,
    /// With `cpu_profile`: samples per second per CPU (fixed period 1e9/frequency ns).
    pub cpu_frequency_hz: u64,
    /// The Go uprobes may be attached later ([`KernelProbes::attach_go_uprobes`]): their maps
    /// get their full size at load.
    pub go_uprobes: bool,
}

/// A map no switched-on path of the selected programs writes is created with one entry (the
/// ring buffer with one page): the kernel allocates a preallocated hash map's elements (and a
/// stack map's buckets) in full at creation, which was about a quarter of the CPU a fresh
/// `snapshot` spent (docs/performance.md). The
/// programs still reference every map (the verifier needs them all), but the unselected
/// paths are switched off by the load-time globals, and a write that got through anyway would
/// fail for lack of room and be counted (`*_full`), never corrupt anything.
fn unused_maps(sel: &ProbeSelection, block_events: bool, track_offcpu: bool) -> Vec<&'static str> {
    let needs = [
        (map::IN_FLIGHT, sel.syscalls),
        (map::SYSCALL_STATS, sel.syscalls),
        (map::BLOCK_EVENTS, sel.syscalls && block_events),
        (map::THREAD_BLOCKS, sel.blocks),
        (map::OFFCPU_START, track_offcpu),
        (map::LAST_WAKE, track_offcpu),
        (map::OFFCPU_TOTALS, sel.offcpu_profile),
        (map::STACKS, sel.offcpu_profile || sel.cpu_profile || sel.go_uprobes),
        (map::CPU_SAMPLES, sel.cpu_profile),
        (map::GO_GSTATES, sel.go_uprobes),
        (map::GO_PARK_STACK, sel.go_uprobes),
        (map::GO_WAIT_TOTALS, sel.go_uprobes),
    ];
    needs.into_iter().filter(|(_, needed)| !needed).map(|(name, _)| name).collect()
}

/// Load-time settings.
#[derive(Debug, Clone, Copy)]
pub struct ProbeConfig {
    pub tgid: u32,
    pub selection: ProbeSelection,
    /// Stream calls that block at least this long; `None` disables the stream.
    pub block_event_min_ns: Option<u64>,
}

/// Drop and miss counters from the kernel side, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub syscalls_entered: u64,
    pub in_flight_full: u64,
    pub exit_without_entry: u64,
    pub stats_update_failed: u64,
    pub block_events_dropped: u64,
    pub off_cpu_full: u64,
    pub switches_out: u64,
    pub off_cpu_totals_full: u64,
    pub stack_capture_failed: u64,
    /// Off-CPU intervals completed, and those whose stacks were captured (profiling mode).
    pub offcpu_intervals: u64,
    pub offcpu_captured: u64,
    /// Go uprobes: goroutine status changes seen, changes not recorded for lack of room,
    /// intervals lost from the profile totals, g reads that failed.
    pub go_transitions: u64,
    pub go_states_full: u64,
    pub go_wait_totals_full: u64,
    pub go_read_failed: u64,
    /// CPU profiling: samples of the target, and those lost to a full count map.
    pub cpu_samples: u64,
    pub cpu_sample_keys_full: u64,
    /// Blocks at the switch: threads not tracked for lack of room, sleeps inside syscalls,
    /// and those counted as part of the block already open (woke and slept again in the call).
    pub thread_blocks_full: u64,
    pub sleeps_in_syscall: u64,
    pub resleeps_in_call: u64,
}

impl KernelCounters {
    /// Events lost for lack of room (as opposed to merely unmatched).
    pub fn dropped(&self) -> u64 {
        self.in_flight_full
            + self.stats_update_failed
            + self.block_events_dropped
            + self.off_cpu_full
            + self.off_cpu_totals_full
            + self.go_states_full
            + self.go_wait_totals_full
            + self.cpu_sample_keys_full
            + self.thread_blocks_full
    }
}

/// The loaded and attached probes for one target process.
pub struct KernelProbes {
    ebpf: Ebpf,
    config: ProbeConfig,
    /// The off-CPU stack sampling period in effect (0 = every interval has its stacks).
    stack_sample_ns: u64,
    /// CPU profiling: CPUs with a sampling event.
    cpus_sampled: usize,
    /// CLOCK_MONOTONIC once every program was attached: the start of the window.
    attached_at_ns: u64,
}

impl std::fmt::Debug for KernelProbes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelProbes").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Capabilities needed to load tracing programs: CAP_BPF (39) and CAP_PERFMON (38), or
/// CAP_SYS_ADMIN (21) which implies both on older kernels.
fn check_capabilities() -> Result<(), KernelError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| cap_eff & (1u64 << bit) != 0;
    if has(21) || (has(38) && has(39)) {
        Ok(())
    } else {
        Err(KernelError::NotPermitted { detail: "needs CAP_BPF and CAP_PERFMON (or root)".into() })
    }
}

/// Maps aya's load errors to NotPermitted when the kernel said EPERM, so the CLI can say so.
/// Not [`crate::errno::classify`]: for bpf() EACCES is the verifier's rejection, not a privilege.
fn is_eperm(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.raw_os_error() == Some(libc::EPERM)
        {
            return true;
        }
        cur = e.source();
    }
    false
}

impl KernelProbes {
    /// Loads `object` (the embedded BPF ELF) for `config.tgid` and attaches the selected programs.
    pub fn load(object: &[u8], config: ProbeConfig) -> Result<Self, KernelError> {
        check_capabilities()?;
        // Read and indexed once: for the layout here and (as aya parses it) to attach tp_btf.
        let kernel_btf = btf::KernelBtf::load().map_err(|reason| KernelError::KernelBtf { reason })?;
        let layout = sched_layout(&kernel_btf)?;
        let task_pid_off = layout.task_pid_off;
        let sel = config.selection;
        // Without sched_exit_tp, stacks can only be taken at switch-out, for every interval.
        let at_switch_out = sel.offcpu_profile && (sel.stacks_at_switch_out || !layout.has_sched_exit);
        let stacks_at_switch_out = u8::from(at_switch_out);
        let min_ns = config.block_event_min_ns.unwrap_or(u64::MAX);
        let offcpu_profile = u8::from(sel.offcpu_profile);
        // With blocks, wakeups are recorded in the thread's block slot (no per-switch
        // OFFCPU_START insert and delete, no per-wakeup LAST_WAKE insert).
        let track_offcpu = u8::from((sel.wakeups && !sel.blocks) || sel.offcpu_profile);
        let waker_stacks = u8::from(sel.offcpu_profile && sel.waker_stacks);
        let sample_ns = sel.offcpu_sample_ns;
        let track_blocks = u8::from(sel.blocks);

        let mut loader = EbpfLoader::new();
        for name in unused_maps(&sel, config.block_event_min_ns.is_some(), track_offcpu != 0) {
            // The ring buffer's smallest size is one page (aya rounds up to it).
            loader.map_max_entries(name, 1);
        }
        let mut ebpf = loader
            .override_global(global::TARGET_TGID, &config.tgid, true)
            .override_global(global::BLOCK_EVENT_MIN_NS, &min_ns, true)
            .override_global(global::OFFCPU_PROFILE, &offcpu_profile, true)
            .override_global(global::TRACK_OFFCPU, &track_offcpu, true)
            .override_global(global::WAKER_STACKS, &waker_stacks, true)
            .override_global(global::OFFCPU_SAMPLE_NS, &sample_ns, true)
            .override_global(global::STACKS_AT_SWITCH_OUT, &stacks_at_switch_out, true)
            .override_global(global::TASK_PID_OFF, &task_pid_off, true)
            .override_global(global::TASK_TGID_OFF, &layout.task_tgid_off, true)
            .override_global(global::TASK_TIF_OFF, &layout.task_tif_off, true)
            .override_global(global::TIF_NEED_FPU_LOAD_BIT, &layout.tif_need_fpu_load_bit, true)
            .override_global(global::TRACK_BLOCKS, &track_blocks, true)
            .load(object)
            .map_err(|e| {
                if is_eperm(&e) {
                    KernelError::NotPermitted { detail: format!("the kernel refused: {e}") }
                } else {
                    KernelError::Load(e)
                }
            })?;

        fill_arg_kinds(&mut ebpf)?;
        let stack_sample_ns = if at_switch_out { 0 } else { sel.offcpu_sample_ns };
        let mut probes = KernelProbes { ebpf, config, stack_sample_ns, cpus_sampled: 0, attached_at_ns: 0 };
        // Parsed once for every tp_btf program (a parse is most of attaching).
        let needs_btf = sel.syscalls || sel.switches || sel.blocks || sel.wakeups || sel.offcpu_profile;
        let tracepoints: Vec<&str> = [
            (sel.syscalls, "btf_trace_sys_enter"),
            (sel.syscalls, "btf_trace_sys_exit"),
            (sel.switches || sel.blocks || sel.wakeups || sel.offcpu_profile, "btf_trace_sched_switch"),
            (sel.wakeups || sel.offcpu_profile, "btf_trace_sched_waking"),
            (sel.offcpu_profile && !at_switch_out, "btf_trace_sched_exit_tp"),
        ]
        .into_iter()
        .filter_map(|(attached, typedef)| attached.then_some(typedef))
        .collect();
        let btf =
            if needs_btf { Some(vmlinux_btf(kernel_btf.into_prefix_through(&tracepoints))?) } else { None };
        if let Some(btf) = &btf {
            if sel.syscalls {
                // tp_btf: the verifier checks the programs' pt_regs loads against the kernel's BTF.
                probes.attach_btf(program::SYS_ENTER, "sys_enter", btf)?;
                probes.attach_btf(program::SYS_EXIT, "sys_exit", btf)?;
            }
            if sel.switches || sel.blocks || sel.wakeups || sel.offcpu_profile {
                probes.attach_btf(program::SCHED_SWITCH, "sched_switch", btf)?;
            }
            if sel.wakeups || sel.offcpu_profile {
                probes.attach_btf(program::SCHED_WAKING, "sched_waking", btf)?;
            }
            if sel.offcpu_profile && !at_switch_out {
                probes.attach_btf(program::SCHED_EXIT, "sched_exit_tp", btf)?;
            }
        }
        if sel.cpu_profile {
            probes.cpus_sampled = cpu_profile::attach_per_cpu(&mut probes.ebpf, sel.cpu_frequency_hz)?;
        }
        probes.attached_at_ns = monotonic_now_ns();
        Ok(probes)
    }

    /// CLOCK_MONOTONIC (the clock of the programs' timestamps) right after every program was
    /// attached. Whatever the programs saw begin happened after it, give or take the attach
    /// of the programs after the first; a thread they never saw has not switched since, at
    /// least. Taken here rather than by the caller: a call that begins between this return and
    /// the caller's clock read would otherwise have an exact time longer than the window.
    pub fn attached_at_ns(&self) -> u64 {
        self.attached_at_ns
    }

    fn attach_btf(&mut self, name: &'static str, tp: &str, btf: &aya::Btf) -> Result<(), KernelError> {
        let prog: &mut BtfTracePoint = program_as(&mut self.ebpf, name)?;
        prog.load(tp, btf).map_err(|source| KernelError::Program { program: name, source })?;
        prog.attach().map_err(|source| KernelError::Program { program: name, source })?;
        Ok(())
    }

    /// Attaches the opt-in Go uprobes (casgstatus; with `park_stacks` also gopark) to the
    /// target only. `aggregate_from` (profiles) sums completed intervals into GO_WAIT_TOTALS,
    /// counting those that began before attach from that instant (the window start).
    pub fn attach_go_uprobes(
        &mut self,
        plan: &crate::go::GoUprobePlan,
        park_stacks: bool,
        aggregate_from: Option<u64>,
    ) -> Result<(), KernelError> {
        if !self.config.selection.go_uprobes {
            return Err(KernelError::NotSelected { what: "go_uprobes" });
        }
        let mut config = plan.config;
        config.aggregate = u32::from(aggregate_from.is_some());
        config.window_start_ns = aggregate_from.unwrap_or(0);
        let name = map::GO_CONFIG;
        let m = self.ebpf.map_mut(name).ok_or(KernelError::Missing { kind: "map", name })?;
        let mut arr: Array<&mut MapData, parkscope_common::GoProbeConfig> =
            Array::try_from(m).map_err(|source| KernelError::Map { map: name, source })?;
        arr.set(0, &config, 0).map_err(|source| KernelError::Map { map: name, source })?;
        let pid = std::num::NonZeroU32::new(self.config.tgid)
            .ok_or(KernelError::Missing { kind: "target", name: "pid 0" })?;
        // gopark first: its stacks are consumed by casgstatus, never the other way round.
        if park_stacks {
            self.attach_uprobe(program::GO_GOPARK, &plan.exe, plan.gopark.file_offset, pid)?;
        }
        self.attach_uprobe(program::GO_CASGSTATUS, &plan.exe, plan.casgstatus.file_offset, pid)
    }

    fn attach_uprobe(
        &mut self,
        name: &'static str,
        exe: &std::path::Path,
        file_offset: u64,
        pid: std::num::NonZeroU32,
    ) -> Result<(), KernelError> {
        let prog: &mut UProbe = program_as(&mut self.ebpf, name)?;
        prog.load().map_err(|source| KernelError::Program { program: name, source })?;
        // OneProcess: the kernel filters by process too (the programs also check the tgid,
        // as a uprobe on a file is hit by every process that maps it).
        prog.attach([file_offset], exe, UProbeScope::OneProcess(pid))
            .map_err(|source| KernelError::Program { program: name, source })?;
        Ok(())
    }

    /// Each tracked goroutine's status since its last change (Go uprobes), by g address.
    pub fn go_states(&self) -> Result<HashMap<u64, GoGState>, KernelError> {
        self.read_hash(map::GO_GSTATES)
    }

    /// Completed goroutine intervals per (goid, status, wait reason, parking stack).
    pub fn go_wait_totals(&self) -> Result<HashMap<GoWaitKey, GoWaitTotal>, KernelError> {
        self.read_hash(map::GO_WAIT_TOTALS)
    }

    pub fn config(&self) -> &ProbeConfig {
        &self.config
    }

    /// Off-CPU profiling: the stack sampling period in effect, or 0 when every interval has
    /// its stacks (asked for, or the kernel lacks sched_exit_tp).
    pub fn offcpu_stack_sample_ns(&self) -> u64 {
        self.stack_sample_ns
    }

    fn hash_map<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<BpfHashMap<&MapData, K, V>, KernelError> {
        let m = self.ebpf.map(name).ok_or(KernelError::Missing { kind: "map", name })?;
        BpfHashMap::try_from(m).map_err(|source| KernelError::Map { map: name, source })
    }

    /// Drains a hash map into a std map. Entries that vanish mid-iteration (a call returning
    /// while we read) are skipped: they are no longer true anyway.
    fn read_hash<K: aya::Pod + Eq + std::hash::Hash, V: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<HashMap<K, V>, KernelError> {
        let m = self.hash_map::<K, V>(name)?;
        Ok(m.iter().filter_map(Result::ok).collect())
    }

    /// The syscall each target thread is in right now (threads that entered it after attach).
    pub fn in_flight(&self) -> Result<HashMap<u32, InFlightSyscall>, KernelError> {
        let mut calls: HashMap<u32, InFlightSyscall> = self.read_hash(map::IN_FLIGHT)?;
        calls.retain(|_, c| c.enter_ns != 0);
        Ok(calls)
    }

    /// Frees the per-thread slots (in-flight calls, blocks) of threads that have exited. The kernel side keeps one slot
    /// per thread (updated in place), so without this a target that churns threads would fill
    /// the map. `live` is a recent listing of /proc/PID/task; a slot is removed only if its
    /// thread is also gone now, so a thread born after the listing keeps its slot.
    pub fn prune_exited_threads(&mut self, live: &HashSet<u32>) -> Result<usize, KernelError> {
        let mut pruned = self.prune_map::<InFlightSyscall>(map::IN_FLIGHT, live)?;
        if self.config.selection.blocks {
            pruned += self.prune_map::<ThreadBlock>(map::THREAD_BLOCKS, live)?;
        }
        Ok(pruned)
    }

    fn prune_map<V: aya::Pod>(
        &mut self,
        name: &'static str,
        live: &HashSet<u32>,
    ) -> Result<usize, KernelError> {
        let m = self.ebpf.map_mut(name).ok_or(KernelError::Missing { kind: "map", name })?;
        let mut slots: BpfHashMap<&mut MapData, u32, V> =
            BpfHashMap::try_from(m).map_err(|source| KernelError::Map { map: name, source })?;
        let task_dir = format!("/proc/{}/task", self.config.tgid);
        let dead: Vec<u32> = slots
            .keys()
            .filter_map(Result::ok)
            .filter(|tid| !live.contains(tid))
            .filter(|tid| !std::path::Path::new(&format!("{task_dir}/{tid}")).exists())
            .collect();
        for tid in &dead {
            // Already gone is fine: the kernel may not have had it either.
            let _ = slots.remove(tid);
        }
        Ok(dead.len())
    }

    /// Each target thread's blocking call as seen at its context switches (needs `blocks`).
    /// A thread without an entry has not been switched out or in since attach (unless
    /// [`KernelCounters::thread_blocks_full`] is non-zero).
    pub fn thread_blocks(&self) -> Result<HashMap<u32, ThreadBlock>, KernelError> {
        self.read_hash(map::THREAD_BLOCKS)
    }

    /// The tids on a CPU as of each CPU's last context switch (needs `switches`).
    pub fn on_cpu(&self) -> Result<HashSet<u32>, KernelError> {
        let name = map::CPU_CURRENT;
        let m = self.ebpf.map(name).ok_or(KernelError::Missing { kind: "map", name })?;
        let arr: PerCpuArray<&MapData, u32> =
            PerCpuArray::try_from(m).map_err(|source| KernelError::Map { map: name, source })?;
        let values = arr.get(&0, 0).map_err(|source| KernelError::Map { map: name, source })?;
        Ok(values.iter().copied().filter(|&t| t != 0).collect())
    }

    /// Completed-call histograms per (thread, syscall, fd) since attach.
    pub fn syscall_stats(&self) -> Result<HashMap<SyscallStatsKey, SyscallStats>, KernelError> {
        self.read_hash(map::SYSCALL_STATS)
    }

    /// Target threads off CPU right now, with the time and state they left in.
    pub fn off_cpu(&self) -> Result<HashMap<u32, OffCpuStart>, KernelError> {
        self.read_hash(map::OFFCPU_START)
    }

    /// Records that `tid` was already off CPU when the probes attached, so the kernel closes the
    /// interval at its next switch-in like one it saw begin. Returns false (and changes nothing)
    /// if the kernel already has an entry for `tid`, i.e. the thread switched out since attach:
    /// the kernel's own record is exact and must win.
    pub fn seed_off_cpu(&mut self, tid: u32, start: &OffCpuStart) -> Result<bool, KernelError> {
        let name = map::OFFCPU_START;
        let m = self.ebpf.map_mut(name).ok_or(KernelError::Missing { kind: "map", name })?;
        let mut starts: BpfHashMap<&mut MapData, u32, OffCpuStart> =
            BpfHashMap::try_from(m).map_err(|source| KernelError::Map { map: name, source })?;
        // BPF_NOEXIST (1, uapi/linux/bpf.h): fail with EEXIST rather than overwrite.
        const BPF_NOEXIST: u64 = 1;
        match starts.insert(&tid, start, BPF_NOEXIST) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => {
                Ok(false)
            }
            Err(source) => Err(KernelError::Map { map: name, source }),
        }
    }

    /// Removes a seeded entry again (the thread turned out to be running), unless the kernel has
    /// replaced it with a real switch-out meanwhile.
    pub fn unseed_off_cpu(&mut self, tid: u32, seeded: &OffCpuStart) -> Result<(), KernelError> {
        let name = map::OFFCPU_START;
        let m = self.ebpf.map_mut(name).ok_or(KernelError::Missing { kind: "map", name })?;
        let mut starts: BpfHashMap<&mut MapData, u32, OffCpuStart> =
            BpfHashMap::try_from(m).map_err(|source| KernelError::Map { map: name, source })?;
        // Not atomic, but a real entry replacing ours between get and remove would be a thread
        // that switched out and back in within microseconds: its loss is below our precision.
        if starts.get(&tid, 0).ok().as_ref() == Some(seeded) {
            let _ = starts.remove(&tid);
        }
        Ok(())
    }

    /// Who last woke each target thread since attach.
    pub fn last_wakes(&self) -> Result<HashMap<u32, LastWake>, KernelError> {
        self.read_hash(map::LAST_WAKE)
    }

    /// Completed off-CPU intervals summed per key (off-CPU profiling mode).
    pub fn off_cpu_totals(&self) -> Result<HashMap<OffCpuKey, OffCpuTotal>, KernelError> {
        self.read_hash(map::OFFCPU_TOTALS)
    }

    /// The instruction pointers of stack `id` (innermost first), as captured by the kernel.
    pub fn stack(&self, id: i32) -> Result<Vec<u64>, KernelError> {
        let name = map::STACKS;
        let m = self.ebpf.map(name).ok_or(KernelError::Missing { kind: "map", name })?;
        let stacks: StackTraceMap<&MapData> =
            StackTraceMap::try_from(m).map_err(|source| KernelError::Map { map: name, source })?;
        let id = u32::try_from(id)
            .map_err(|_| KernelError::Map { map: name, source: aya::maps::MapError::KeyNotFound })?;
        let trace = stacks.get(&id, 0).map_err(|source| KernelError::Map { map: name, source })?;
        Ok(trace.frames().iter().map(|f| f.ip).collect())
    }

    /// Kernel-side counters, summed over CPUs.
    pub fn counters(&self) -> Result<KernelCounters, KernelError> {
        let name = map::COUNTERS;
        let m = self.ebpf.map(name).ok_or(KernelError::Missing { kind: "map", name })?;
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(m).map_err(|source| KernelError::Map { map: name, source })?;
        let mut sums = [0u64; COUNTER_SLOTS as usize];
        for (i, slot) in sums.iter_mut().enumerate() {
            let values = arr.get(&(i as u32), 0).map_err(|source| KernelError::Map { map: name, source })?;
            *slot = values.iter().sum();
        }
        let at = |c: Counter| sums[c as usize];
        Ok(KernelCounters {
            syscalls_entered: at(Counter::SyscallsEntered),
            in_flight_full: at(Counter::InFlightFull),
            exit_without_entry: at(Counter::ExitWithoutEntry),
            stats_update_failed: at(Counter::StatsUpdateFailed),
            block_events_dropped: at(Counter::BlockEventsDropped),
            off_cpu_full: at(Counter::OffCpuFull),
            switches_out: at(Counter::SwitchesOut),
            off_cpu_totals_full: at(Counter::OffCpuTotalsFull),
            stack_capture_failed: at(Counter::StackCaptureFailed),
            offcpu_intervals: at(Counter::OffCpuIntervals),
            offcpu_captured: at(Counter::OffCpuCaptured),
            go_transitions: at(Counter::GoTransitions),
            go_states_full: at(Counter::GoStatesFull),
            go_wait_totals_full: at(Counter::GoWaitTotalsFull),
            go_read_failed: at(Counter::GoReadFailed),
            cpu_samples: at(Counter::CpuSamples),
            cpu_sample_keys_full: at(Counter::CpuSampleKeysFull),
            thread_blocks_full: at(Counter::ThreadBlocksFull),
            sleeps_in_syscall: at(Counter::SleepsInSyscall),
            resleeps_in_call: at(Counter::ResleepsInCall),
        })
    }

    /// Takes the block-event ring buffer as an async stream (once; later calls return None).
    pub fn take_block_events(&mut self) -> Option<Result<BlockEventStream, KernelError>> {
        let name = map::BLOCK_EVENTS;
        let m = self.ebpf.take_map(name)?;
        Some(
            RingBuf::try_from(m)
                .map_err(|source| KernelError::Map { map: name, source })
                .and_then(BlockEventStream::new),
        )
    }
}

/// Program `name` of the loaded object, as its program type `P`.
fn program_as<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, KernelError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(KernelError::Missing { kind: "program", name })?
        .try_into()
        .map_err(|source| KernelError::Program { program: name, source })
}

/// The running kernel's BTF as aya needs it to load tp_btf programs: `bytes` is
/// [`btf::VMLINUX_BTF`] cut after the `btf_trace_*` typedefs the programs attach to (all aya
/// looks up there), see [`btf::KernelBtf::into_prefix_through`].
fn vmlinux_btf(bytes: Vec<u8>) -> Result<aya::Btf, KernelError> {
    aya::Btf::parse(&bytes, aya::Endianness::default())
        .map_err(|e| KernelError::KernelBtf { reason: format!("{}: {e}", btf::VMLINUX_BTF) })
}

/// What the sched programs need to know about the running kernel.
struct SchedLayout {
    task_pid_off: u32,
    task_tgid_off: u32,
    /// `thread_info.flags` within `task_struct`, and TIF_NEED_FPU_LOAD's bit there.
    task_tif_off: u32,
    tif_need_fpu_load_bit: u32,
    /// The bare sched_exit_tp tracepoint exists (Linux >= 6.16).
    has_sched_exit: bool,
}

/// What the sched programs need to know about this kernel's layout, from its own BTF:
/// `task_struct.pid`'s offset, that the raw tracepoints have the argument lists the programs
/// read (sched_switch gained `prev_state` as its fourth argument in Linux 5.18), and whether
/// sched_exit_tp is there for off-CPU stacks taken at switch-in.
fn sched_layout(btf: &btf::KernelBtf) -> Result<SchedLayout, KernelError> {
    let err = |reason: String| KernelError::KernelBtf { reason };
    // The prototypes start with the tracepoint's private data pointer.
    for (tp, args) in [("sched_switch", 4), ("sched_waking", 1)] {
        let params = btf.typedef_proto_params(&format!("btf_trace_{tp}")).map_err(err)?;
        if params != args + 1 {
            return Err(err(format!(
                "{tp} takes {} arguments on this kernel, the probes expect {args} (Linux >= 5.18)",
                params.saturating_sub(1)
            )));
        }
    }
    // The program reads no argument of sched_exit_tp, so any prototype will do.
    let has_sched_exit = btf.typedef_proto_params("btf_trace_sched_exit_tp").is_ok();
    // x86_64 keeps thread_info inside task_struct (CONFIG_THREAD_INFO_IN_TASK).
    let task_tif_off = btf.member_offset("task_struct", "thread_info").map_err(err)?
        + btf.member_offset("thread_info", "flags").map_err(err)?;
    Ok(SchedLayout {
        task_pid_off: btf.member_offset("task_struct", "pid").map_err(err)?,
        task_tgid_off: btf.member_offset("task_struct", "tgid").map_err(err)?,
        task_tif_off,
        tif_need_fpu_load_bit: tif_need_fpu_load_bit(&kernel_release()),
        has_sched_exit,
    })
}

/// The running kernel's release (`uname -r`), from /proc.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned()
}

/// TIF_NEED_FPU_LOAD's bit number on x86_64 (arch/x86/include/asm/thread_info.h): 14 until
/// x86 moved to the generic TIF bits (Linux 6.18; the architecture's bits start at 16 there
/// and it is 19; observed on 6.18.44: a switched thread has bits 0 and 19 set). Not in BTF (a
/// #define), hence the version; tests/tests/blocks.rs checks the behaviour it implies (a
/// thread that wakes and sleeps again inside one call is one block, a repeated call is not).
fn tif_need_fpu_load_bit(release: &str) -> u32 {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) >= (6, 18) { 19 } else { 14 }
}

/// Tells the kernel side which syscalls take an fd first, so histograms are keyed by fd only
/// where that means something.
fn fill_arg_kinds(ebpf: &mut Ebpf) -> Result<(), KernelError> {
    let name = map::SYSCALL_ARG_KIND;
    let m = ebpf.map_mut(name).ok_or(KernelError::Missing { kind: "map", name })?;
    let mut arr: Array<&mut MapData, u8> =
        Array::try_from(m).map_err(|source| KernelError::Map { map: name, source })?;
    for (nr, _) in syscalls::all().filter(|(nr, _)| *nr < MAX_SYSCALL_NR) {
        let kind = syscalls::arg0_kind(nr) as u8;
        if kind != 0 {
            arr.set(nr, &kind, 0).map_err(|source| KernelError::Map { map: name, source })?;
        }
    }
    Ok(())
}

/// CLOCK_MONOTONIC now, in ns: the clock `bpf_ktime_get_ns()` reads, so map timestamps can be
/// compared with it directly.
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::{ProbeSelection, map, unused_maps};

    /// Each command's selection keeps full size for exactly the maps its switched-on paths
    /// write (ebpf/src/probes/*.rs), so nothing it reads is shrunk.
    #[test]
    fn maps_sized_to_the_selection() {
        let snapshot = ProbeSelection { blocks: true, switches: true, wakeups: true, ..Default::default() };
        let shrunk = unused_maps(&snapshot, false, false);
        assert!(!shrunk.contains(&map::THREAD_BLOCKS));
        for m in [
            map::STACKS,
            map::OFFCPU_START,
            map::LAST_WAKE,
            map::IN_FLIGHT,
            map::GO_GSTATES,
            map::CPU_SAMPLES,
        ] {
            assert!(shrunk.contains(&m), "{m}");
        }
        let with_syscalls = ProbeSelection { syscalls: true, ..snapshot };
        let shrunk = unused_maps(&with_syscalls, true, false);
        for m in [map::IN_FLIGHT, map::SYSCALL_STATS, map::BLOCK_EVENTS, map::THREAD_BLOCKS] {
            assert!(!shrunk.contains(&m), "{m}");
        }
        let offcpu = ProbeSelection {
            switches: true,
            wakeups: true,
            offcpu_profile: true,
            go_uprobes: true,
            ..Default::default()
        };
        let shrunk = unused_maps(&offcpu, false, true);
        for m in [
            map::STACKS,
            map::OFFCPU_START,
            map::LAST_WAKE,
            map::OFFCPU_TOTALS,
            map::GO_GSTATES,
            map::GO_PARK_STACK,
            map::GO_WAIT_TOTALS,
        ] {
            assert!(!shrunk.contains(&m), "{m}");
        }
        let cpu = ProbeSelection { cpu_profile: true, ..Default::default() };
        let shrunk = unused_maps(&cpu, false, false);
        assert!(!shrunk.contains(&map::CPU_SAMPLES) && !shrunk.contains(&map::STACKS));
    }

    #[test]
    fn tif_bit_follows_the_generic_tif_switch() {
        assert_eq!(super::tif_need_fpu_load_bit("6.18.44-fc-v1098"), 19);
        assert_eq!(super::tif_need_fpu_load_bit("6.17.9"), 14);
        assert_eq!(super::tif_need_fpu_load_bit("5.15.0-91-generic"), 14);
        assert_eq!(super::tif_need_fpu_load_bit("6.19.0"), 19);
        assert_eq!(super::tif_need_fpu_load_bit("7.0.1-arch1"), 19);
    }
}
