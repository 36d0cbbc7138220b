//! Joins the Go runtime's view (goroutines, Ms) with the thread view: which goroutine each
//! thread runs, what each runtime thread is for, the syscall of a goroutine in status syscall,
//! the fd of a goroutine in IO wait, and symbolised start functions and stacks.

use std::collections::HashMap;

use parkscope_common::GoGState;
use parkscope_probes::{
    go::{GStatus, GoProcess, GoroutineState, LayoutSource, PollMode, RuntimeState, buildinfo},
    kernel::KernelCounters,
    procfs::fds::FdTable,
    stacks::{Frame as SymbolFrame, Symbolizer},
};

use parkscope_model::{
    Frame, GoStatus, GoroutineView, NetpollMode, NetpollView, RuntimeKind, RuntimeView, StackId, StackTable,
    SyscallClass, ThreadState, ThreadView,
};

use super::roles::{BlockedCall, MEvidence, RoleEvidence, go_thread_role};

/// Names addresses of the target: exact ones (function entries, a parked goroutine's saved pc)
/// and return addresses, each looked up once however many goroutines share it.
struct Names {
    frames: HashMap<(u64, bool), SymbolFrame>,
}

impl Names {
    fn resolve(pid: u32, sym: &mut Symbolizer, exact: &[u64], returns: &[u64]) -> Names {
        // Symbolizer::user takes its first address as an instruction pointer and the others as
        // return addresses (looked up at addr-1). Exact addresses go in as addr+1 after a
        // placeholder, and are put back afterwards.
        let mut exact: Vec<u64> = exact.iter().copied().filter(|&a| a != 0).collect();
        exact.sort_unstable();
        exact.dedup();
        let mut returns: Vec<u64> = returns.iter().copied().filter(|&a| a != 0).collect();
        returns.sort_unstable();
        returns.dedup();
        let mut addrs = vec![0u64];
        addrs.extend(exact.iter().map(|a| a + 1));
        addrs.extend(&returns);
        let named = sym.user(pid, &addrs);
        let mut frames = HashMap::new();
        for (i, mut f) in named.into_iter().enumerate().skip(1) {
            if i <= exact.len() {
                let a = exact[i - 1];
                f.addr = a;
                f.offset = f.offset.saturating_sub(1);
                frames.insert((a, true), f);
            } else {
                frames.insert((returns[i - 1 - exact.len()], false), f);
            }
        }
        Names { frames }
    }

    fn function(&self, addr: u64, exact: bool) -> Option<String> {
        self.frames.get(&(addr, exact)).and_then(|f| f.function.clone())
    }

    fn frame(&self, addr: u64, exact: bool) -> Frame {
        self.frames.get(&(addr, exact)).map_or_else(|| Frame::unnamed(addr), crate::frame::model_frame)
    }
}

/// What the Go uprobes (`--go-uprobes`) say about each goroutine's status: since when, exactly.
#[derive(Debug, Default)]
pub struct GoTiming {
    /// The kernel's slot per g address, read after the runtime's memory.
    pub states: HashMap<u64, GoGState>,
    /// CLOCK_MONOTONIC when the uprobes were attached.
    pub attached_ns: u64,
    /// The kernel's counters, read with the slots.
    pub counters: KernelCounters,
}

impl GoTiming {
    /// The kernel could not record some changes (map full): a goroutine without a slot may
    /// then have changed after all, so no lower bound is claimed for it.
    fn lossy(&self) -> bool {
        self.counters.go_states_full > 0
    }
}

/// How long a goroutine has been in its status, from the uprobes' slot for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatusTime {
    ns: Option<u64>,
    exact: bool,
    transitions: Option<u32>,
}

/// Joins one goroutine read from memory with the uprobes' view. Running and syscall are one
/// state in the kernel's slots (see ebpf/src/probes/go.rs), so a goroutine in a syscall gets its
/// thread's syscall time instead, when its thread is blocked in one.
fn status_time(
    go: &GoProcess,
    g: &GoroutineState,
    read_ns: u64,
    timing: &GoTiming,
    thread: Option<&ThreadView>,
) -> StatusTime {
    let syscall_time = || {
        let call = thread.and_then(|t| t.syscall.as_ref());
        StatusTime {
            ns: call.and_then(|c| c.time_ns()),
            exact: call.is_some_and(|c| c.blocked_ns.is_some()),
            transitions: None,
        }
    };
    match timing.states.get(&g.addr) {
        // Go 1.19 assigns a new goroutine's id after its first change: goid 0 is "not yet read".
        Some(st) if st.goid == 0 || st.goid == g.goid => {
            let transitions = Some(st.transitions);
            let kernel = go.status_of_value(st.status);
            if g.status == GStatus::Syscall && kernel == Some(GStatus::Running) {
                StatusTime { transitions, ..syscall_time() }
            } else if kernel == Some(g.status) {
                StatusTime { ns: Some(read_ns.saturating_sub(st.since_ns)), exact: true, transitions }
            } else {
                // Changed by a path the probe does not see (preemption by the GC), or just
                // after the memory read.
                StatusTime { ns: None, exact: false, transitions }
            }
        }
        _ if g.status == GStatus::Syscall => syscall_time(),
        // No change since attach (or a slot from a previous life of this g, which it left
        // through a change the probe would have seen): in this status for the whole window.
        _ if !timing.lossy() => StatusTime {
            ns: Some(read_ns.saturating_sub(timing.attached_ns)),
            exact: false,
            transitions: Some(0),
        },
        _ => StatusTime { ns: None, exact: false, transitions: None },
    }
}

/// Fills the threads' Go roles and goroutines, and returns the goroutine views. `timing` is
/// the uprobes' view, when they are attached.
pub fn join(
    go: &GoProcess,
    rt: &RuntimeState,
    threads: &mut [ThreadView],
    fds: Option<&FdTable>,
    stacks: bool,
    timing: Option<&GoTiming>,
    stack_table: &mut StackTable,
) -> (Vec<GoroutineView>, RuntimeView) {
    let pid = go.pid;
    let mut sym = Symbolizer::new();
    let mut exact: Vec<u64> = rt.ms.iter().map(|m| m.mstartfn_pc).collect();
    let mut returns = Vec::new();
    for g in &rt.goroutines {
        exact.push(g.startpc);
        returns.push(g.gopc);
        if stacks && let Some((first, rest)) = g.pcs.split_first() {
            exact.push(*first);
            returns.extend_from_slice(rest);
        }
    }
    let names = Names::resolve(pid, &mut sym, &exact, &returns);

    // Thread roles, from the M each thread is.
    let ms_by_tid: HashMap<u32, _> = rt.ms.iter().filter(|m| m.tid != 0).map(|m| (m.tid, m)).collect();
    for t in threads.iter_mut() {
        let Some(m) = ms_by_tid.get(&t.tid) else { continue };
        t.goroutine = m.curg_goid;
        let call = t.syscall.as_ref().filter(|_| t.state.is_blocked()).map(|c| {
            if c.name.starts_with("epoll_") && c.fd == Some(rt.epfd) && rt.epfd >= 0 {
                BlockedCall::RuntimeEpoll
            } else if c.class == SyscallClass::Futex {
                BlockedCall::Futex
            } else {
                BlockedCall::Other
            }
        });
        let m = MEvidence {
            sysmon: names.function(m.mstartfn_pc, true).as_deref() == Some("runtime.sysmon"),
            runs_goroutine: Some(m.curg_goid.is_some()),
        };
        t.role = go_thread_role(&RoleEvidence { m: Some(m), call, stack: &[] });
    }
    let threads_by_tid: HashMap<u32, &ThreadView> = threads.iter().map(|t| (t.tid, t)).collect();

    let views = rt
        .goroutines
        .iter()
        .filter(|g| g.status != GStatus::Dead)
        .map(|g| {
            let thread = g.tid.and_then(|tid| threads_by_tid.get(&tid)).copied();
            let time = timing.map(|t| status_time(go, g, rt.nanotime, t, thread));
            goroutine_view(g, rt, &names, thread, fds, time, stacks.then_some(&mut *stack_table))
        })
        .collect();
    let runtime = RuntimeView {
        gomaxprocs: Some(rt.sched.gomaxprocs),
        goroutines_dead: Some(rt.dead),
        goroutines_inconsistent: Some(rt.inconsistent),
        error: None,
        hint: None,
        ..identity(go)
    };
    (views, runtime)
}

/// What the binary says of a Go process whose runtime was found, before any read.
pub fn identity(go: &GoProcess) -> RuntimeView {
    let layout = match &go.binary.layout.source {
        LayoutSource::Dwarf => "dwarf".to_owned(),
        LayoutSource::Table(r) => format!("table:{r}"),
    };
    RuntimeView {
        kind: RuntimeKind::Go,
        version: go.version().to_owned(),
        module: go.binary.buildinfo.module.clone(),
        layout: Some(layout),
        gomaxprocs: None,
        goroutines_dead: None,
        goroutines_inconsistent: None,
        error: None,
        hint: None,
    }
}

/// The runtime part of a view of a Go program whose runtime could not be read: attached but a
/// read failed (`go` given), or not even attached (`go` None: what its build information says).
/// The thread view stays whole; this says why there is nothing more.
pub fn unreadable(pid: u32, cause: &str, hint: Option<String>, go: Option<&GoProcess>) -> RuntimeView {
    let hint = hint.unwrap_or_else(|| {
        "the threads above are complete; report the cause with `parkscope -v` output, or pass --no-go"
            .to_owned()
    });
    let base = match go {
        Some(go) => identity(go),
        None => {
            let info = buildinfo::of_process(pid);
            RuntimeView {
                kind: RuntimeKind::Go,
                version: info.as_ref().map_or_else(|| "unknown".to_owned(), |i| i.version.clone()),
                module: info.and_then(|i| i.module),
                layout: None,
                gomaxprocs: None,
                goroutines_dead: None,
                goroutines_inconsistent: None,
                error: None,
                hint: None,
            }
        }
    };
    RuntimeView { error: Some(cause.to_owned()), hint: Some(hint), ..base }
}

fn goroutine_view(
    g: &GoroutineState,
    rt: &RuntimeState,
    names: &Names,
    thread: Option<&ThreadView>,
    fds: Option<&FdTable>,
    time: Option<StatusTime>,
    // Where to put its stack; None when stacks were not asked for.
    stack_table: Option<&mut StackTable>,
) -> GoroutineView {
    let mut stack_id = StackId::EMPTY;
    if let Some(stack_table) = stack_table {
        // A goroutine on a CPU has stale saved registers; its thread's stack (unwound when the
        // thread is blocked in the kernel) is the truth. A cgo call's thread stack shows the C
        // frames the goroutine's own saved registers cannot, and so does a syscall's when the
        // runtime did not save a frame pointer at entersyscall (Go < 1.21 saves only pc and sp,
        // so the walk from g.sched stops after one frame).
        let thread_has_more = thread.is_some_and(|t| stack_table.get(t.user_stack_id).len() > g.pcs.len());
        let from_thread = matches!(g.status, GStatus::Running)
            || g.cgo && thread.is_some_and(|t| !t.user_stack_id.is_empty())
            || g.status == GStatus::Syscall && thread_has_more;
        match (from_thread, thread) {
            (true, Some(t)) => stack_id = t.user_stack_id,
            _ => {
                if let Some((first, rest)) = g.pcs.split_first() {
                    let mut frames = Vec::with_capacity(g.pcs.len());
                    frames.push(names.frame(*first, true));
                    frames.extend(rest.iter().map(|&r| names.frame(r, false)));
                    stack_id = stack_table.intern(frames);
                }
            }
        }
    }
    let c_function = g
        .cgo
        .then(|| {
            g.pcs
                .iter()
                .enumerate()
                .find_map(|(i, &pc)| names.function(pc, i == 0))
                .into_iter()
                .chain(g.pcs.iter().skip(1).filter_map(|&pc| names.function(pc, false)))
                .find_map(|f| f.split_once("_Cfunc_").map(|(_, c)| c.to_owned()))
        })
        .flatten();
    let gc_waiting_ns = (g.status == GStatus::Waiting && g.waitsince > 0)
        .then(|| rt.nanotime.saturating_sub(g.waitsince as u64));
    let time = time.unwrap_or(StatusTime { ns: None, exact: false, transitions: None });
    // An exact park time is the answer; two lower bounds give the larger one.
    let waiting_ns = match (g.status, time) {
        (GStatus::Waiting, StatusTime { ns: Some(ns), exact: true, .. }) => Some(ns),
        (GStatus::Waiting, StatusTime { ns: Some(ns), .. }) => {
            Some(gc_waiting_ns.map_or(ns, |gc| gc.max(ns)))
        }
        _ => gc_waiting_ns,
    };
    GoroutineView {
        goid: g.goid,
        status: go_status(g.status),
        wait_reason: g.wait_reason.clone(),
        waiting_ns,
        status_ns: time.ns,
        status_ns_exact: time.exact,
        transitions: time.transitions,
        cgo: g.cgo,
        c_function,
        m: g.m_id,
        tid: g.tid,
        syscall: (g.status == GStatus::Syscall)
            .then(|| thread.filter(|t| t.state != ThreadState::Running).and_then(|t| t.syscall.clone()))
            .flatten(),
        netpoll: g.netpoll.map(|(fd, mode)| NetpollView {
            fd,
            mode: match mode {
                PollMode::Read => NetpollMode::Read,
                PollMode::Write => NetpollMode::Write,
            },
            fd_desc: fds.and_then(|t| t.describe(fd)),
        }),
        start: names.function(g.startpc, true).unwrap_or_else(|| format!("{:#x}", g.startpc)),
        created_by: (g.gopc != 0).then(|| names.function(g.gopc, false)).flatten(),
        parent_goid: g.parent_goid.filter(|&p| p != 0),
        stack_id,
    }
}

/// The model's name for a goroutine status read from the runtime.
fn go_status(s: GStatus) -> GoStatus {
    match s {
        GStatus::Idle => GoStatus::Idle,
        GStatus::Runnable => GoStatus::Runnable,
        GStatus::Running => GoStatus::Running,
        GStatus::Syscall => GoStatus::Syscall,
        GStatus::Waiting => GoStatus::Waiting,
        GStatus::Dead => GoStatus::Dead,
        GStatus::Copystack => GoStatus::Copystack,
        GStatus::Preempted => GoStatus::Preempted,
    }
}
