//! The agent's failure kinds and their exit codes. Every bad input ends in one line naming the
//! cause, one line with a hint, and a distinct exit code, so scripts can tell them apart.

use parkscope_collector::{
    CollectError,
    error::{GoError, KernelError, ProcError},
    runtime::go::uprobes::GoUprobeError,
};

/// Exit codes (documented in README.md and `parkscope --help`).
pub mod code {
    pub const SUCCESS: i32 = 0;
    /// Anything not covered below (a bug, an unexpected kernel answer).
    pub const INTERNAL: i32 = 1;
    /// Bad command-line arguments (clap's own code).
    pub const USAGE: i32 = 2;
    pub const NO_SUCH_PROCESS: i32 = 3;
    pub const NOT_PERMITTED: i32 = 4;
    /// The target exited during the run; what was collected so far was still printed.
    pub const TARGET_EXITED: i32 = 5;
    /// The pid is a kernel thread (or otherwise has no user space to trace).
    pub const NOT_TRACEABLE: i32 = 6;
    /// A Go program whose runtime cannot be read: a Go release whose runtime layout is unknown,
    /// or a stripped binary (`-ldflags="-s -w"`) whose runtime variables could not be located.
    /// snapshot, schedtrace and profile still print the thread view (with a warning) and then
    /// exit with this code.
    pub const GO_UNREADABLE: i32 = 7;
    /// Go detail was asked for (`--goroutines`) but the target is not a Go program.
    pub const NOT_GO: i32 = 8;
    /// A recording (`--from FILE`) that cannot be read: not a recording, truncated inside a
    /// chunk, or corrupt. What was read before the damage is still printed.
    pub const BAD_RECORDING: i32 = 9;
    /// `top` needs a terminal on stdin and stdout.
    pub const NOT_A_TERMINAL: i32 = 10;
    /// Interrupted by Ctrl-C or SIGTERM before the run finished; partial results were printed.
    pub const INTERRUPTED: i32 = 130;
}

/// A failure with its cause, a hint for the person at the terminal, and an exit code.
#[derive(Debug)]
pub struct Failure {
    pub cause: String,
    pub hint: Option<String>,
    pub code: i32,
}

impl Failure {
    pub fn new(code: i32, cause: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { cause: cause.into(), hint: Some(hint.into()), code }
    }

    pub fn internal(err: &anyhow::Error) -> Self {
        Self { cause: format!("{err:#}"), hint: None, code: code::INTERNAL }
    }
}

impl From<ProcError> for Failure {
    fn from(e: ProcError) -> Self {
        match &e {
            ProcError::NoSuchProcess(pid) | ProcError::Exited(pid) => Failure::new(
                code::NO_SUCH_PROCESS,
                e.to_string(),
                format!("check the pid (`ps -p {pid}`); the process may have exited"),
            ),
            ProcError::KernelThread(_) => Failure::new(
                code::NOT_TRACEABLE,
                e.to_string(),
                "pick a user-space process, e.g. from `pgrep -a NAME`",
            ),
            ProcError::PermissionDenied { .. } => Failure::new(
                code::NOT_PERMITTED,
                e.to_string(),
                "run as root, or with CAP_SYS_PTRACE to read another user's /proc entries",
            ),
            _ => Failure { cause: e.to_string(), hint: None, code: code::INTERNAL },
        }
    }
}

impl From<KernelError> for Failure {
    fn from(e: KernelError) -> Self {
        match &e {
            KernelError::NotPermitted { .. } => Failure::new(
                code::NOT_PERMITTED,
                e.to_string(),
                "run as root, or grant CAP_BPF and CAP_PERFMON (e.g. `sudo setcap cap_bpf,cap_perfmon+ep parkscope`); `--window 0` needs no eBPF",
            ),
            KernelError::KernelBtf { .. } => Failure::new(
                code::NOT_TRACEABLE,
                e.to_string(),
                "parkscope needs Linux >= 5.18 built with CONFIG_DEBUG_INFO_BTF (/sys/kernel/btf/vmlinux)",
            ),
            _ => Failure { cause: e.to_string(), hint: None, code: code::INTERNAL },
        }
    }
}

impl From<CollectError> for Failure {
    fn from(e: CollectError) -> Self {
        match e {
            CollectError::Proc(e) => e.into(),
            CollectError::Kernel(e) => e.into(),
            CollectError::Go(e) => e.into(),
            CollectError::GoUprobes(e) => e.into(),
            CollectError::NotGo { .. } => Failure::new(
                code::NOT_GO,
                e.to_string(),
                "drop --goroutines to see the threads of a non-Go process",
            ),
            CollectError::Unsupported(cause) => Failure {
                cause,
                hint: Some("drop the option; the thread view needs none of it".to_owned()),
                code: code::USAGE,
            },
            CollectError::Internal(cause) => Failure { cause, hint: None, code: code::INTERNAL },
        }
    }
}

impl From<GoUprobeError> for Failure {
    fn from(e: GoUprobeError) -> Self {
        match e {
            GoUprobeError::Go(e) => e.into(),
            GoUprobeError::Kernel(e) => e.into(),
            GoUprobeError::NotGo => Failure::new(
                code::NOT_GO,
                "--go-uprobes: the target is not a Go program",
                "drop --go-uprobes; the thread view needs no uprobes",
            ),
            GoUprobeError::NoProbes => Failure::new(
                code::USAGE,
                "--go-uprobes needs the probes loaded",
                "give a non-zero window or duration",
            ),
        }
    }
}

impl From<GoError> for Failure {
    /// The hint is the collector's (the same text a view's runtime part carries).
    fn from(e: GoError) -> Self {
        let code = match &e {
            GoError::Stripped { .. } | GoError::UnknownLayout { .. } => code::GO_UNREADABLE,
            GoError::NotGo { .. } => code::NOT_GO,
            GoError::NoSuchProcess(_) | GoError::Exited(_) => code::NO_SUCH_PROCESS,
            GoError::NotPermitted { .. } => code::NOT_PERMITTED,
            _ => code::INTERNAL,
        };
        Failure { cause: e.to_string(), hint: parkscope_collector::error::go_hint(&e), code }
    }
}
