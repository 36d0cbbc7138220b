//! The Go runtime as a [`RuntimeReader`]: memory reads of the runtime's goroutines and Ms
//! (probes::go), joined with the threads (join.rs), each thread's role (roles.rs), the opt-in
//! uprobes (uprobes.rs), the runtime's own schedtrace lines (schedtrace.rs), and its part of
//! off-CPU profiles (profile.rs: goroutine waits, thread roles and goids).

pub mod join;
pub mod profile;
pub mod roles;
pub mod schedtrace;
pub mod uprobes;

use parkscope_model::RuntimeView;
use parkscope_probes::{
    go::{GoError, GoProcess, schedtrace_style},
    kernel::{KernelProbes, monotonic_now_ns},
};

use super::{Detected, ReadContext, RuntimeRead, RuntimeReader, SchedTrace, profile::RuntimeProfile};
use crate::error::CollectError;

/// A Go process whose runtime was found and can be read.
pub struct GoReader {
    process: Box<GoProcess>,
    /// CLOCK_MONOTONIC when the uprobes were attached, if they are.
    uprobes_at_ns: Option<u64>,
}

impl GoReader {
    /// Looks for a Go runtime in process `pid` (blocking: reads its binary).
    pub fn detect(pid: u32) -> Detected {
        match GoProcess::attach(pid) {
            Ok(p) => {
                tracing::info!(version = p.version(), layout = ?p.binary.layout.source, "Go runtime found");
                Detected::Found(Box::new(GoReader { process: Box::new(p), uprobes_at_ns: None }))
            }
            Err(GoError::NotGo { .. }) => Detected::None,
            Err(e) => {
                let error = CollectError::Go(e);
                let view = join::unreadable(pid, &error.to_string(), error.hint(), None);
                Detected::Unreadable { view: Box::new(view), error }
            }
        }
    }

    /// The Go uprobes' slots and the kernel's counters as of now, when the uprobes are attached.
    fn timing(&self, probes: Option<&KernelProbes>) -> Option<join::GoTiming> {
        let attached_ns = self.uprobes_at_ns?;
        let probes = probes?;
        let states = probes
            .go_states()
            .map_err(|e| tracing::warn!("reading the Go uprobes' goroutine states: {e}"))
            .ok()?;
        let counters = probes.counters().ok()?;
        Some(join::GoTiming { states, attached_ns, counters })
    }
}

impl RuntimeReader for GoReader {
    fn identity(&self) -> RuntimeView {
        join::identity(&self.process)
    }

    fn unreadable(&self, err: &CollectError) -> RuntimeView {
        join::unreadable(self.process.pid, &err.to_string(), err.hint(), Some(&self.process))
    }

    fn read(&mut self, cx: ReadContext<'_>) -> Result<RuntimeRead, CollectError> {
        let rt = self.process.read(cx.stacks)?;
        // The slots are read after the memory: a change in between shows as a status
        // mismatch (not exact), never as a stale exact time.
        let timing = self.timing(cx.probes);
        let (goroutines, view) =
            join::join(&self.process, &rt, cx.threads, cx.fds, cx.stacks, timing.as_ref(), cx.stack_table);
        Ok(RuntimeRead {
            goroutines,
            view,
            counters: timing.map(|t| t.counters),
            transitions_counted: self.uprobes_at_ns.is_some(),
            stalls: Vec::new(),
            io_driver_starved_ns: None,
            io_waits: None,
        })
    }

    fn has_schedtrace(&self) -> bool {
        true
    }

    fn needs_thread_stacks(&self) -> bool {
        false
    }

    /// Go's reads take everything from the runtime's own structures at the view.
    fn sample_every(&self) -> Option<std::time::Duration> {
        None
    }

    fn sample(&mut self, _now_ns: u64) {}

    fn attach_uprobes(&mut self, probes: &mut KernelProbes) -> Result<(), CollectError> {
        uprobes::attach(probes, &self.process, false, None)?;
        self.uprobes_at_ns = Some(monotonic_now_ns());
        Ok(())
    }

    fn profile<'a>(
        &'a mut self,
        probes: Option<&mut KernelProbes>,
        window_start_ns: u64,
        exact: bool,
    ) -> Result<Option<Box<dyn RuntimeProfile + 'a>>, CollectError> {
        if exact {
            let probes = probes.ok_or(uprobes::GoUprobeError::NoProbes)?;
            uprobes::attach(probes, &self.process, true, Some(window_start_ns))?;
        }
        Ok(Some(Box::new(profile::GoProfile::new(&self.process, window_start_ns, exact))))
    }

    fn schedtrace(&self, elapsed_ms: u64, detail: bool) -> Result<SchedTrace, CollectError> {
        let rt = self.process.read(false)?;
        let style = schedtrace_style(self.process.version());
        Ok(SchedTrace {
            runtime: "go",
            elapsed_ms,
            text: schedtrace::render(&self.process, &rt, elapsed_ms, style, detail),
            counts: schedtrace::counts(&rt, style),
        })
    }
}
