//! parkscope's data model: what every output consumes. A [`Snapshot`] is one instant of a
//! process (its threads, what each is blocked in, its language runtime and that runtime's tasks);
//! [`Event`]s are what happened between two snapshots; a [`profile::Profile`] is one window's
//! off-CPU or CPU profile. All serialise both ways (serde), so a
//! recording can be read back into exactly what a live collection produced.
//!
//! This crate depends on nothing of parkscope's but `parkscope-common` (the syscall table): the
//! viewer, the recording format and the renderers can use it without the probes.
//!
//! Conventions: times are CLOCK_MONOTONIC nanoseconds (`*_ns` durations, `at_ns` instants);
//! the wall-clock time of a snapshot is in [`Timestamp`]. Stacks are interned in the snapshot's
//! [`StackTable`] and referenced by [`StackId`]; a frame is structured ([`Frame`]) and its text
//! is a rendering.

pub mod duration;
pub mod event;
pub mod goroutine;
pub mod profile;
pub mod runtime;
pub mod snapshot;
pub mod stack;
pub mod summary;
pub mod task;
pub mod thread;

pub use event::{Event, EventKind};
pub use goroutine::{GoStatus, GoroutineView, NetpollMode, NetpollView};
pub use runtime::{RuntimeKind, RuntimeView};
pub use snapshot::{SCHEMA_VERSION, Snapshot, Timestamp};
pub use stack::{Frame, FrameKind, StackId, StackTable};
pub use summary::Summary;
pub use task::{
    IoInterest, IoWaitView, IoWaiterKind, IoWaits, StallActivity, StallView, TaskOnThread, TaskSource,
    TaskState, TaskView,
};
pub use thread::{
    CompletedCalls, LongCall, SyscallClass, SyscallView, ThreadRole, ThreadState, ThreadView,
    sort_for_display,
};
