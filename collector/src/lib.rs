//! Collection for one target: owns the probes, the /proc and memory readers and the runtime
//! readers, joins what they say into the model (`parkscope-model`), and streams snapshots and
//! events to consumers ([`Collector`]) or builds the profile of a window
//! ([`profile::ProfileCollector`]). Data flows one way: kernel, /proc and target memory ->
//! probes -> collector -> model -> outputs; consumers never reach into the probes.

pub mod collector;
pub mod error;
pub mod frame;
pub mod observe;
pub mod profile;
pub mod runtime;

pub use collector::{Collector, Config, Control, ProbePlan, RuntimeMode, Schedule, Started, Update};
pub use error::CollectError;
pub use observe::{ObserveOptions, Observer};
/// Which probes a [`ProbePlan`] loads (the probe layer's own type, so consumers need not import it).
pub use parkscope_probes::kernel::ProbeSelection;
/// A pidfd of the target (readable once it exits), for consumers that wait on its exit
/// themselves.
pub use parkscope_probes::procfs::process::pidfd_open;

/// Both clocks now: CLOCK_MONOTONIC (the clock of every `*_ns` instant in the model) and the
/// wall clock.
pub fn now() -> parkscope_model::Timestamp {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    parkscope_model::Timestamp {
        monotonic_ns: parkscope_probes::kernel::monotonic_now_ns(),
        wall_unix_ns: wall,
    }
}
