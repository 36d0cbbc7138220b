//! Collection for one target: owns the probes, the /proc and memory readers and the runtime
//! readers, joins what they say into the model (`parkscope-model`), and streams snapshots and
//! events to consumers ([`Collector`]) or builds the profile of a window
//! ([`profile::ProfileCollector`]). Data flows one way: kernel, /proc and target memory ->
//! probes -> collector -> model -> outputs; consumers never reach into the probes.

pub mod collector;
pub mod error;
pub mod observe;
pub mod profile;
pub mod runtime;

pub use collector::{Collector, Config, Control, ProbePlan, RuntimeMode, Schedule, Started, Update};
pub use error::CollectError;
pub use observe::{ObserveOptions, Observer};
/// Which probes a [`ProbePlan`] loads (the probe layer's own type, so consumers need not import it).
pub use parkscope_probes::kernel::ProbeSelection;
