//! The `snapshot --json` contract (README.md "JSON output"), rendered from the model: the
//! model's own fields, plus each stack as the list of frame strings the contract has always
//! had (`user_stack`, `kernel_stack`, a goroutine's `stack`). Streamed to the writer, so a
//! snapshot of 100,000 goroutines is never held as one string.

use std::io::Write;

use serde::Serialize;
use serde::ser::Serializer;

use crate::model::{Frame, GoroutineView, Snapshot, StackTable, StallView, ThreadView};

/// Writes `snapshot` as the contract's pretty-printed JSON, followed by a newline.
pub fn write_snapshot<W: Write>(mut out: W, snapshot: &Snapshot) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut out, &ContractSnapshot::of(snapshot))?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The contract's top level: every field of the model's snapshot, threads and goroutines with
/// their stacks rendered.
#[derive(Serialize)]
struct ContractSnapshot<'a> {
    schema_version: u32,
    pid: u32,
    comm: &'a str,
    taken_at: &'a crate::model::Timestamp,
    target_exited: bool,
    threads: Threads<'a>,
    runtime: &'a Option<crate::model::RuntimeView>,
    goroutines: Goroutines<'a>,
    tasks: &'a [crate::model::TaskView],
    task_source: &'a Option<crate::model::TaskSource>,
    stalls: Stalls<'a>,
    io_waits: &'a Option<crate::model::IoWaits>,
    summary: &'a crate::model::Summary,
    /// The structured frames the `*_stack_id` fields refer to: entry N is stack id N.
    stacks: StackList<'a>,
}

impl<'a> ContractSnapshot<'a> {
    fn of(s: &'a Snapshot) -> Self {
        ContractSnapshot {
            schema_version: s.schema_version,
            pid: s.pid,
            comm: &s.comm,
            taken_at: &s.taken_at,
            target_exited: s.target_exited,
            threads: Threads(&s.threads, &s.stacks),
            runtime: &s.runtime,
            goroutines: Goroutines(&s.goroutines, &s.stacks),
            tasks: &s.tasks,
            task_source: &s.task_source,
            stalls: Stalls(&s.stalls, &s.stacks),
            io_waits: &s.io_waits,
            summary: &s.summary,
            stacks: StackList(&s.stacks),
        }
    }
}

struct Threads<'a>(&'a [ThreadView], &'a StackTable);

impl Serialize for Threads<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|t| ContractThread {
            thread: t,
            user_stack: Rendered(self.1.get(t.user_stack_id)),
            kernel_stack: Rendered(self.1.get(t.kernel_stack_id)),
        }))
    }
}

#[derive(Serialize)]
struct ContractThread<'a> {
    #[serde(flatten)]
    thread: &'a ThreadView,
    user_stack: Rendered<'a>,
    kernel_stack: Rendered<'a>,
}

struct Goroutines<'a>(&'a [GoroutineView], &'a StackTable);

impl Serialize for Goroutines<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            self.0
                .iter()
                .map(|g| ContractGoroutine { goroutine: g, stack: Rendered(self.1.get(g.stack_id)) }),
        )
    }
}

#[derive(Serialize)]
struct ContractGoroutine<'a> {
    #[serde(flatten)]
    goroutine: &'a GoroutineView,
    stack: Rendered<'a>,
}

struct Stalls<'a>(&'a [StallView], &'a StackTable);

impl Serialize for Stalls<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            self.0
                .iter()
                .map(|st| ContractStall { stall: st, user_stack: Rendered(self.1.get(st.user_stack_id)) }),
        )
    }
}

#[derive(Serialize)]
struct ContractStall<'a> {
    #[serde(flatten)]
    stall: &'a StallView,
    user_stack: Rendered<'a>,
}

struct StackList<'a>(&'a StackTable);

impl Serialize for StackList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(_, frames)| frames))
    }
}

/// A stack as the list of its frames' text, rendered as it is written.
struct Rendered<'a>(&'a [Frame]);

impl Serialize for Rendered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(s_display))
    }
}

/// Serialises through `Display` without building the string first.
fn s_display(f: &Frame) -> impl Serialize + '_ {
    struct D<'a>(&'a Frame);
    impl Serialize for D<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self.0)
        }
    }
    D(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FrameKind, Timestamp};

    #[test]
    fn stacks_are_rendered_as_the_contract_strings_and_kept_structured() {
        let mut s = Snapshot::new(7, "x".into(), Timestamp { monotonic_ns: 5, wall_unix_ns: 6 });
        let user = s.stacks.intern(vec![Frame {
            function: Some("main.f".into()),
            offset: Some(0x10),
            module: Some("/bin/x".into()),
            ..Frame::unnamed(0x401010)
        }]);
        let kernel = s.stacks.intern(vec![Frame::parse_kernel("pipe_read+0x2f4/0x480")]);
        assert_eq!(s.stacks.get(kernel)[0].kind, FrameKind::Kernel);
        s.threads.push(ThreadView {
            tid: 8,
            name: "t".into(),
            state: crate::model::ThreadState::Sleeping,
            syscall: None,
            wchan: None,
            user_stack_id: user,
            kernel_stack_id: kernel,
            completed: vec![],
            long_calls: vec![],
            role: None,
            goroutine: None,
            task: None,
        });
        let mut out = Vec::new();
        write_snapshot(&mut out, &s).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let t = &v["threads"][0];
        assert_eq!(t["user_stack"], serde_json::json!(["main.f+0x10 (x)"]));
        assert_eq!(t["kernel_stack"], serde_json::json!(["pipe_read+0x2f4/0x480"]));
        assert_eq!(t["user_stack_id"], 1);
        assert_eq!(t["state"], "sleeping");
        assert_eq!(v["stacks"][1][0]["function"], "main.f");
        assert_eq!(v["stacks"][0], serde_json::json!([]));
        assert_eq!(v["taken_at"]["wall_unix_ns"], 6);
        assert_eq!(v["schema_version"], crate::model::SCHEMA_VERSION);
    }
}
