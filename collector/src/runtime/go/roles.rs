//! What each thread of a Go program is for ([`ThreadRole`]), decided in one place for every
//! command from whatever evidence it has: the Go reader's M for the thread (the goroutine it
//! runs, the function it was started with), the call the thread is blocked in, and the Go
//! runtime frames of its stack. An M with no goroutine to run parks in futex via
//! stopm/notesleep; the M that waits for network readiness sits in epoll_pwait under
//! runtime.netpoll; sysmon sleeps in usleep/notetsleep. Their waits say nothing about the
//! program's goroutines, so outputs count them apart (snapshot) or label them so pprof's
//! `-tagignore role=idle_m` can drop them (profile).
//!
//! The reader knows which thread is an M and whether it runs a goroutine, but only at the
//! instants it reads; a stack is the evidence of one particular wait. So a stack that shows an
//! idle wait wins over a goroutine seen on that M at some other instant, and without a reader
//! the stack alone decides (for the idle roles only: it cannot tell a goroutine's thread from
//! a C thread).

use parkscope_model::ThreadRole;

/// What the Go reader saw of the M a thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MEvidence {
    /// Started with runtime.sysmon (m.mstartfn).
    pub sysmon: bool,
    /// Whether it was running a goroutine (m.curg) when read; None if that is not known.
    pub runs_goroutine: Option<bool>,
}

/// The call a blocked thread is in, as far as roles care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockedCall {
    /// epoll_wait/epoll_pwait on the runtime's own epoll fd.
    RuntimeEpoll,
    Futex,
    Other,
}

/// Everything known about one thread (or one of its waits) when its role is decided.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoleEvidence<'a> {
    /// None without a Go reader, or when the thread is not (yet) an M.
    pub m: Option<MEvidence>,
    /// Set only while the thread is blocked.
    pub call: Option<BlockedCall>,
    /// Function names of its user stack, innermost first (empty when not unwound).
    pub stack: &'a [&'a str],
}

/// The role of a thread, or None when nothing says it is a Go runtime thread.
pub fn go_thread_role(e: &RoleEvidence<'_>) -> Option<ThreadRole> {
    let from_stack = idle_role_from_stack(e.stack.iter().copied());
    if e.m.is_some_and(|m| m.sysmon) || from_stack == Some(ThreadRole::Sysmon) {
        return Some(ThreadRole::Sysmon);
    }
    let runs_goroutine = e.m.and_then(|m| m.runs_goroutine) == Some(true);
    if runs_goroutine && from_stack.is_none() {
        return Some(ThreadRole::Goroutine);
    }
    if from_stack.is_some() {
        return from_stack;
    }
    if e.call == Some(BlockedCall::RuntimeEpoll) {
        return Some(ThreadRole::Netpoller);
    }
    let m = e.m?;
    Some(if e.call == Some(BlockedCall::Futex) && m.runs_goroutine != Some(true) {
        ThreadRole::IdleM
    } else {
        ThreadRole::Runtime
    })
}

/// The idle role a stack (function names, innermost first) shows, or None.
fn idle_role_from_stack<'a>(functions: impl IntoIterator<Item = &'a str>) -> Option<ThreadRole> {
    let (mut netpoll, mut parked, mut sysmon) = (false, false, false);
    for f in functions {
        match f {
            "runtime.netpoll" => netpoll = true,
            // The scheduler's own parks. Not notesleep/futexsleep alone: a goroutine waits in
            // those too (os/signal's signal_recv via notetsleepg), holding its M.
            "runtime.stopm" | "runtime.mPark" | "runtime.stoplockedm" | "runtime.templateThread" => {
                parked = true;
            }
            "runtime.sysmon" => sysmon = true,
            _ => {}
        }
    }
    if sysmon {
        Some(ThreadRole::Sysmon)
    } else if netpoll {
        // netpoll(delay) under the scheduler's findRunnable: the M blocked for network readiness.
        Some(ThreadRole::Netpoller)
    } else if parked {
        Some(ThreadRole::IdleM)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_stack(stack: &[&str]) -> Option<ThreadRole> {
        go_thread_role(&RoleEvidence { stack, ..RoleEvidence::default() })
    }

    #[test]
    fn recognises_go_idle_threads_from_stacks() {
        let idle = [
            "runtime.futex",
            "runtime.futexsleep",
            "runtime.notesleep",
            "runtime.stopm",
            "runtime.findRunnable",
            "runtime.schedule",
            "runtime.mstart1",
        ];
        assert_eq!(by_stack(&idle), Some(ThreadRole::IdleM));
        let poller = [
            "internal/runtime/syscall.Syscall6",
            "runtime.netpoll",
            "runtime.findRunnable",
            "runtime.schedule",
        ];
        assert_eq!(by_stack(&poller), Some(ThreadRole::Netpoller));
        let sysmon = ["runtime.usleep", "runtime.sysmon", "runtime.newm.func1", "runtime.mstart1"];
        assert_eq!(by_stack(&sysmon), Some(ThreadRole::Sysmon));
        // A goroutine blocked in a read syscall on its own M is real work, not idleness; and
        // without a reader nothing says it is an M at all.
        assert_eq!(by_stack(&["syscall.Syscall", "syscall.read", "os.(*File).Read", "main.main"]), None);
        assert_eq!(by_stack(&["clock_nanosleep", "blocker_sleeper"]), None);
        let signal = [
            "runtime.futex",
            "runtime.futexsleep",
            "runtime.notetsleep_internal",
            "runtime.notetsleepg",
            "os/signal.signal_recv",
            "os/signal.loop",
        ];
        assert_eq!(by_stack(&signal), None);
        let m = Some(MEvidence { sysmon: false, runs_goroutine: Some(true) });
        let role = go_thread_role(&RoleEvidence { m, call: Some(BlockedCall::Futex), stack: &signal });
        assert_eq!(role, Some(ThreadRole::Goroutine));
    }

    #[test]
    fn the_readers_m_decides_when_the_stack_shows_no_idle_wait() {
        let m = |runs| Some(MEvidence { sysmon: false, runs_goroutine: runs });
        let role = |m, call, stack: &[&str]| go_thread_role(&RoleEvidence { m, call, stack });
        let read = ["syscall.read", "main.parkedPipeRead"];
        assert_eq!(role(m(Some(true)), None, &read), Some(ThreadRole::Goroutine));
        // The same M seen running a goroutine, but this wait's stack is the scheduler's park.
        assert_eq!(
            role(m(Some(true)), None, &["runtime.notesleep", "runtime.stopm"]),
            Some(ThreadRole::IdleM)
        );
        assert_eq!(role(m(Some(false)), Some(BlockedCall::RuntimeEpoll), &[]), Some(ThreadRole::Netpoller));
        assert_eq!(role(m(Some(false)), Some(BlockedCall::Futex), &[]), Some(ThreadRole::IdleM));
        assert_eq!(role(m(Some(true)), Some(BlockedCall::Futex), &[]), Some(ThreadRole::Goroutine));
        assert_eq!(role(m(Some(false)), None, &[]), Some(ThreadRole::Runtime));
        assert_eq!(role(m(None), Some(BlockedCall::Other), &read), Some(ThreadRole::Runtime));
        let sysmon = Some(MEvidence { sysmon: true, runs_goroutine: Some(false) });
        assert_eq!(role(sysmon, Some(BlockedCall::Other), &[]), Some(ThreadRole::Sysmon));
        assert_eq!(role(None, Some(BlockedCall::Futex), &[]), None);
    }
}
