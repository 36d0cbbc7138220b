//! Joins the Go runtime's view (goroutines, Ms) with the thread view: which goroutine each
//! thread runs, what each runtime thread is for, the syscall of a goroutine in status syscall,
//! the fd of a goroutine in IO wait, and symbolised start functions and stacks.

use std::collections::HashMap;

use parkscope_probes::{
    go::{GStatus, GoProcess, GoroutineState, LayoutSource, RuntimeState},
    procfs::fds::FdTable,
    stacks::{Frame, Symbolizer},
};

use crate::{
    model::{GoroutineView, NetpollView, RuntimeView, ThreadState, ThreadView},
    roles::{BlockedCall, MEvidence, RoleEvidence, go_thread_role},
};

/// Names addresses of the target: exact ones (function entries, a parked goroutine's saved pc)
/// and return addresses, each looked up once however many goroutines share it.
struct Names {
    frames: HashMap<(u64, bool), Frame>,
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

    fn frame(&self, addr: u64, exact: bool) -> String {
        self.frames.get(&(addr, exact)).map_or_else(|| format!("{addr:#x}"), ToString::to_string)
    }
}

/// Fills the threads' Go roles and goroutines, and returns the goroutine views.
pub fn join(
    go: &GoProcess,
    rt: &RuntimeState,
    threads: &mut [ThreadView],
    fds: Option<&FdTable>,
    stacks: bool,
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
            } else if c.class == "futex" {
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
        .map(|g| goroutine_view(g, rt, &names, &threads_by_tid, fds, stacks))
        .collect();
    let layout = match &go.binary.layout.source {
        LayoutSource::Dwarf => "dwarf".to_owned(),
        LayoutSource::Table(r) => format!("table:{r}"),
    };
    let runtime = RuntimeView {
        kind: "go",
        version: go.version().to_owned(),
        module: go.binary.buildinfo.module.clone(),
        layout,
        gomaxprocs: rt.sched.gomaxprocs,
        goroutines_dead: rt.dead,
        goroutines_inconsistent: rt.inconsistent,
    };
    (views, runtime)
}

fn goroutine_view(
    g: &GoroutineState,
    rt: &RuntimeState,
    names: &Names,
    threads: &HashMap<u32, &ThreadView>,
    fds: Option<&FdTable>,
    stacks: bool,
) -> GoroutineView {
    let thread = g.tid.and_then(|tid| threads.get(&tid)).copied();
    let mut stack: Vec<String> = Vec::new();
    if stacks {
        // A goroutine on a CPU has stale saved registers; its thread's stack (unwound when the
        // thread is blocked in the kernel) is the truth. A cgo call's thread stack shows the C
        // frames the goroutine's own saved registers cannot.
        let from_thread =
            matches!(g.status, GStatus::Running) || g.cgo && thread.is_some_and(|t| !t.user_stack.is_empty());
        match (from_thread, thread) {
            (true, Some(t)) => stack = t.user_stack.clone(),
            _ => {
                if let Some((first, rest)) = g.pcs.split_first() {
                    stack.push(names.frame(*first, true));
                    stack.extend(rest.iter().map(|&r| names.frame(r, false)));
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
    let waiting_ns = (g.status == GStatus::Waiting && g.waitsince > 0)
        .then(|| rt.nanotime.saturating_sub(g.waitsince as u64));
    GoroutineView {
        goid: g.goid,
        status: g.status.as_str(),
        wait_reason: g.wait_reason.clone(),
        waiting_ns,
        cgo: g.cgo,
        c_function,
        m: g.m_id,
        tid: g.tid,
        syscall: (g.status == GStatus::Syscall)
            .then(|| thread.filter(|t| t.state != ThreadState::Running).and_then(|t| t.syscall.clone()))
            .flatten(),
        netpoll: g.netpoll.map(|(fd, mode)| NetpollView {
            fd,
            mode: mode.as_str(),
            fd_desc: fds.and_then(|t| t.describe(fd)),
        }),
        start: names.function(g.startpc, true).unwrap_or_else(|| format!("{:#x}", g.startpc)),
        created_by: (g.gopc != 0).then(|| names.function(g.gopc, false)).flatten(),
        parent_goid: g.parent_goid.filter(|&p| p != 0),
        stack,
    }
}
