//! Attaching the opt-in Go uprobes (`--go-uprobes`) for snapshot and profile alike: where they
//! go comes from the target's binary (probes::go::uprobes), what they cost is said when it is
//! more than usual (runtimes whose frame setup the kernel must single-step).

use parkscope_probes::{
    go::{GoError, GoProcess},
    kernel::{KernelError, KernelProbes},
};

/// Why the Go uprobes could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum GoUprobeError {
    #[error("the target is not a Go program")]
    NotGo,
    #[error("no probes are loaded (a zero window)")]
    NoProbes,
    #[error(transparent)]
    Go(#[from] GoError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// Attaches casgstatus (and, with `park_stacks`, gopark) of `go` to `probes`. `aggregate_from`
/// is the window start of a profile (intervals summed in kernel), None for snapshots.
pub fn attach(
    probes: &mut KernelProbes,
    go: &GoProcess,
    park_stacks: bool,
    aggregate_from: Option<u64>,
) -> Result<(), GoUprobeError> {
    let plan = go.uprobe_plan()?;
    probes.attach_go_uprobes(&plan, park_stacks, aggregate_from)?;
    tracing::info!(
        casgstatus = format_args!("+{}", plan.casgstatus.past_entry),
        gopark = format_args!("+{}", plan.gopark.past_entry),
        park_stacks,
        "Go uprobes attached"
    );
    for point in [&plan.casgstatus].into_iter().chain(park_stacks.then_some(&plan.gopark)) {
        if !point.emulated {
            tracing::warn!(
                "{} of {} sets up its frame with `sub`, which the kernel single-steps: each hit costs the target about 10 us (Go >= 1.21 frames start with an emulated `push %rbp`)",
                point.function,
                go.version()
            );
        }
    }
    Ok(())
}
