//! Go runtime threads that are merely idle, recognised from their stacks, so profiles can label
//! them (`role=idle_m`, `role=netpoller`, `role=sysmon`) and pprof's `-tagignore role=...` can
//! drop them. An M (OS thread) with no goroutine to run parks in futex via stopm/notesleep; the
//! M that waits for network readiness sits in epoll_pwait under runtime.netpoll; sysmon sleeps
//! in usleep/notetsleep. Their off-CPU time says nothing about the program's goroutines.

/// The role of a thread whose stack (function names, innermost first) is one of the Go
/// runtime's idle waits, or None for anything else.
pub fn go_idle_role<'a>(functions: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    let mut saw = (false, false, false, false);
    for f in functions {
        match f {
            "runtime.netpoll" => saw.0 = true,
            "runtime.stopm"
            | "runtime.notesleep"
            | "runtime.futexsleep"
            | "runtime.stoplockedm"
            | "runtime.templateThread" => saw.1 = true,
            "runtime.sysmon" => saw.2 = true,
            "runtime.findRunnable" | "runtime.findrunnable" | "runtime.schedule" => saw.3 = true,
            _ => {}
        }
    }
    match saw {
        (_, _, true, _) => Some("sysmon"),
        // netpoll(delay) under the scheduler's findRunnable: the M blocked for network readiness.
        (true, _, _, _) => Some("netpoller"),
        (false, true, false, _) => Some("idle_m"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_go_idle_threads() {
        let idle = [
            "runtime.futex",
            "runtime.futexsleep",
            "runtime.notesleep",
            "runtime.stopm",
            "runtime.findRunnable",
            "runtime.schedule",
            "runtime.mstart1",
        ];
        assert_eq!(go_idle_role(idle), Some("idle_m"));
        let poller = [
            "internal/runtime/syscall.Syscall6",
            "runtime.netpoll",
            "runtime.findRunnable",
            "runtime.schedule",
        ];
        assert_eq!(go_idle_role(poller), Some("netpoller"));
        let sysmon = ["runtime.usleep", "runtime.sysmon", "runtime.newm.func1", "runtime.mstart1"];
        assert_eq!(go_idle_role(sysmon), Some("sysmon"));
        // A goroutine blocked in a read syscall on its own M is real work, not idleness.
        let busy = ["syscall.Syscall", "syscall.read", "os.(*File).Read", "main.main"];
        assert_eq!(go_idle_role(busy), None);
        assert_eq!(go_idle_role(["clock_nanosleep", "blocker_sleeper"]), None);
    }
}
