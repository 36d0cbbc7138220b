//! parkscope's terminal viewer (`parkscope top`): the threads, goroutines and tasks of a
//! stream of [`parkscope_model::Snapshot`]s, live or replayed. It depends on the model only:
//! whatever produces snapshots (the live collector on its own thread, a recording reader)
//! implements [`Source`], and the UI thread never blocks on it.
//!
//! - [`source`]: the [`Source`] seam, a live [`ChannelSource`], an in-memory [`SampleReplay`].
//! - [`app`]: state, rows per view (filtered, grouped, sorted once per sample), keys.
//! - [`ui`]: drawing (only visible rows become widgets).
//! - [`filter`]: the `/` filter language.
//! - [`history`]: the bounded time series of counts.
//! - [`term`]: raw mode, the alternate screen and the event loop.
//! - [`fixtures`]: model snapshots built in code, for tests and the frame-time benchmark.

pub mod app;
pub mod filter;
pub mod fixtures;
pub mod history;
pub mod source;
pub mod term;
pub mod ui;

pub use app::App;
pub use source::{ChannelSource, Mode, ReplayControl, ReplayPosition, Sample, SampleReplay, Source, Update};
pub use term::{is_terminal, no_color_from_env, run};
