//! Unit tests of the Perfetto export from model fixtures built here; every trace they write
//! is decoded back and checked for the structural rules (tracks declared before use, balanced
//! slices, sequence flags) besides what each test looks for.

use std::collections::{HashMap, HashSet};

use parkscope_model::{
    Event, EventKind, Frame, GoStatus, GoroutineView, Snapshot, StackId, Summary, SyscallClass, SyscallView,
    TaskState, TaskView, ThreadState, ThreadView, Timestamp,
};
use prost::Message;

use super::*;
use crate::proto::Trace;

const PID: u32 = 4242;
const S: u64 = 1_000_000_000;

fn thread(tid: u32, name: &str, state: ThreadState) -> ThreadView {
    ThreadView {
        tid,
        name: name.into(),
        state,
        syscall: None,
        wchan: None,
        user_stack_id: StackId::default(),
        kernel_stack_id: StackId::default(),
        completed: Vec::new(),
        long_calls: Vec::new(),
        role: None,
        goroutine: None,
        task: None,
    }
}

fn read_call(fd: i32, blocked_ns: Option<u64>, at_least_ns: Option<u64>) -> SyscallView {
    SyscallView {
        nr: 0,
        name: "read".into(),
        class: SyscallClass::Read,
        fd: Some(fd),
        fd_desc: Some("pipe:[777]".into()),
        blocked_ns,
        blocked_at_least_ns: at_least_ns,
        waker_tid: None,
        futex_addr: None,
        args: Default::default(),
    }
}

fn snapshot(at_s: u64, threads: Vec<ThreadView>) -> Snapshot {
    let taken_at = Timestamp { monotonic_ns: at_s * S, wall_unix_ns: 1_800_000_000 * S + at_s * S };
    let mut snap = Snapshot::new(PID, "blocker".into(), taken_at);
    snap.summary = Summary::count(&threads);
    snap.threads = threads;
    snap
}

/// A main thread on CPU and tid 101 blocked in read(3) since 8 s (exact times).
fn blocked_reader(at_s: u64) -> Snapshot {
    let mut reader = thread(101, "pipe_read", ThreadState::Sleeping);
    reader.syscall = Some(read_call(3, Some((at_s - 8) * S), None));
    snapshot(at_s, vec![thread(PID, "blocker", ThreadState::Running), reader])
}

fn export(entries: Vec<Entry>) -> (Trace, ExportStats) {
    let mut out = Vec::new();
    let stats = perfetto(entries, &mut out).expect("export");
    let trace = Trace::decode(out.as_slice()).expect("the output decodes as a Trace");
    check_structure(&trace);
    (trace, stats)
}

fn snap(s: Snapshot) -> Entry {
    Entry::Snapshot(Box::new(s))
}

/// A slice as the trace holds it: begin and end times, name and args (interning resolved).
#[derive(Debug)]
struct Slice {
    track: u64,
    name: String,
    begin: u64,
    end: u64,
    args: HashMap<String, String>,
}

/// The rules every trace must keep; returns nothing, panics on a break.
fn check_structure(trace: &Trace) {
    let mut declared = HashSet::new();
    let mut per_track: HashMap<u64, Vec<(u64, usize, i32)>> = HashMap::new();
    let mut clock_snapshots = 0;
    for (i, p) in trace.packet.iter().enumerate() {
        if let Some(trace_packet::Data::ClockSnapshot(c)) = &p.data {
            // The trace clock is said once, in the first; trace_processor refuses a second.
            let primary = if clock_snapshots == 0 { Some(CLOCK_MONOTONIC as i32) } else { None };
            assert_eq!(c.primary_trace_clock, primary);
            clock_snapshots += 1;
        } else if p.timestamp.is_some() {
            assert!(clock_snapshots > 0, "packet {i}: a MONOTONIC time before any ClockSnapshot maps it");
            assert_eq!(p.timestamp_clock_id, Some(CLOCK_MONOTONIC));
        }
        assert_eq!(
            p.optional_trusted_packet_sequence_id,
            Some(trace_packet::OptionalTrustedPacketSequenceId::TrustedPacketSequenceId(SEQUENCE_ID))
        );
        let cleared =
            p.sequence_flags.unwrap_or(0) & trace_packet::SequenceFlags::SeqIncrementalStateCleared as u32;
        assert_eq!(cleared != 0, i == 0, "only the first packet clears the incremental state");
        match &p.data {
            Some(trace_packet::Data::TrackDescriptor(d)) => {
                let uuid = d.uuid.expect("a track has a uuid");
                if let Some(parent) = d.parent_uuid {
                    assert!(declared.contains(&parent), "parent {parent} declared before child {uuid}");
                }
                if let Some(t) = &d.thread {
                    assert_eq!(t.pid, Some(PID as i32), "thread descriptors carry the target's pid");
                    assert!(t.tid.is_some());
                }
                declared.insert(uuid);
            }
            Some(trace_packet::Data::TrackEvent(e)) => {
                let track = e.track_uuid.expect("every event names its track");
                assert!(declared.contains(&track), "packet {i}: track {track} used before it is declared");
                assert_ne!(p.sequence_flags.unwrap_or(0) & 2, 0, "events that use interning say so");
                let ty = e.r#type.expect("typed");
                per_track.entry(track).or_default().push((p.timestamp.expect("timestamped"), i, ty));
            }
            _ => {}
        }
    }
    for (track, mut events) in per_track {
        events.sort();
        let mut depth = 0i32;
        for (ts, _, ty) in events {
            if ty == track_event::Type::SliceBegin as i32 {
                depth += 1;
                assert!(depth <= 1, "track {track}: slices overlap at {ts}");
            } else if ty == track_event::Type::SliceEnd as i32 {
                depth -= 1;
                assert!(depth >= 0, "track {track}: an end at {ts} without a begin");
            }
        }
        assert_eq!(depth, 0, "track {track}: every begin has its end");
    }
}

/// The slices of `trace`, in begin order, with interned names resolved.
fn slices(trace: &Trace) -> Vec<Slice> {
    let (mut names, mut keys) = (HashMap::new(), HashMap::new());
    let mut open: HashMap<u64, Vec<Slice>> = HashMap::new();
    let mut done = Vec::new();
    for p in &trace.packet {
        if let Some(i) = &p.interned_data {
            names.extend(i.event_names.iter().map(|n| (n.iid(), n.name().to_owned())));
            keys.extend(i.debug_annotation_names.iter().map(|n| (n.iid(), n.name().to_owned())));
        }
        let Some(trace_packet::Data::TrackEvent(e)) = &p.data else { continue };
        let track = e.track_uuid();
        if e.r#type() == track_event::Type::SliceBegin {
            let Some(track_event::NameField::NameIid(iid)) = e.name_field else { panic!("interned name") };
            let args = e
                .debug_annotations
                .iter()
                .map(|a| {
                    let Some(debug_annotation::NameField::NameIid(k)) = a.name_field else {
                        panic!("interned key")
                    };
                    let v = match &a.value {
                        Some(debug_annotation::Value::StringValue(s)) => s.clone(),
                        Some(debug_annotation::Value::IntValue(i)) => i.to_string(),
                        other => panic!("unexpected value {other:?}"),
                    };
                    (keys[&k].clone(), v)
                })
                .collect::<Vec<_>>();
            let unique: HashSet<&String> = args.iter().map(|(k, _)| k).collect();
            assert_eq!(unique.len(), args.len(), "an arg key given twice: {args:?}");
            let args = args.into_iter().collect();
            let name = names[&iid].clone();
            open.entry(track).or_default().push(Slice { track, name, begin: p.timestamp(), end: 0, args });
        } else if e.r#type() == track_event::Type::SliceEnd {
            let mut s = open.get_mut(&track).and_then(Vec::pop).expect("balanced");
            s.end = p.timestamp();
            done.push(s);
        }
    }
    done.sort_by_key(|s| (s.begin, s.track));
    done
}

fn thread_track(trace: &Trace, tid: u32) -> u64 {
    trace
        .packet
        .iter()
        .find_map(|p| match &p.data {
            Some(trace_packet::Data::TrackDescriptor(d))
                if d.thread.as_ref().and_then(|t| t.tid) == Some(tid as i32) =>
            {
                d.uuid
            }
            _ => None,
        })
        .expect("the thread has a track")
}

#[test]
fn a_read_blocked_across_three_snapshots_is_one_slice_from_its_entry_to_the_last_snapshot() {
    let (trace, stats) =
        export(vec![snap(blocked_reader(10)), snap(blocked_reader(11)), snap(blocked_reader(12))]);
    let slices = slices(&trace);
    assert_eq!(slices.len(), 1, "{slices:?}");
    let s = &slices[0];
    assert_eq!(s.track, thread_track(&trace, 101));
    assert_eq!((s.name.as_str(), s.begin, s.end - s.begin), ("read", 8 * S, 4 * S));
    assert_eq!(s.args["fd"], "3");
    assert_eq!(s.args["fd_desc"], "pipe:[777]");
    assert!(s.args["begin"].starts_with("exact"), "{:?}", s.args);
    assert!(s.args["end"].contains("recording ended"), "{:?}", s.args);
    assert_eq!((stats.snapshots, stats.thread_slices), (3, 1));
    // The process track names the target.
    let process = trace.packet.iter().find_map(|p| match &p.data {
        Some(trace_packet::Data::TrackDescriptor(d)) => d.process.clone(),
        _ => None,
    });
    let process = process.expect("a process track");
    assert_eq!((process.pid, process.process_name.as_deref()), (Some(PID as i32), Some("blocker")));
}

#[test]
fn a_lower_bound_begin_says_so_and_takes_the_earliest_bound() {
    let at = |at_s: u64, bound_s: u64| {
        let mut reader = thread(101, "pipe_read", ThreadState::Sleeping);
        reader.syscall = Some(read_call(3, None, Some(bound_s * S)));
        snap(snapshot(at_s, vec![reader]))
    };
    // Latest possible begins: 10 - 1 = 9 s, then a better bound 11 - 5 = 6 s, then a weaker
    // one 12 - 3 = 9 s that must not move the begin back.
    let (trace, _) = export(vec![at(10, 1), at(11, 5), at(12, 3)]);
    let slices = slices(&trace);
    assert_eq!(slices.len(), 1, "{slices:?}");
    assert_eq!((slices[0].begin, slices[0].end), (6 * S, 12 * S));
    assert!(slices[0].args["begin"].starts_with("lower bound"), "{:?}", slices[0].args);
    // The third bound (begin <= 9 s) allowed a new call after the second sighting (11 s)? No:
    // 9 s is before 11 s, so nothing is assumed.
    assert!(!slices[0].args.contains_key("one_call"), "{:?}", slices[0].args);
    // A bound that leaves room for a return and a new call in between is flagged.
    let (trace, _) = export(vec![at(10, 9), at(20, 1)]);
    let slices = super::tests::slices(&trace);
    assert_eq!((slices.len(), slices[0].begin), (1, S));
    assert!(slices[0].args["one_call"].starts_with("assumed"), "{:?}", slices[0].args);
}

#[test]
fn a_call_that_returned_ends_when_last_seen_and_a_new_exact_call_is_a_new_slice() {
    let reader = |at_s: u64, since_s: u64| {
        let mut t = thread(101, "pipe_read", ThreadState::Sleeping);
        t.syscall = Some(read_call(3, Some((at_s - since_s) * S), None));
        snap(snapshot(at_s, vec![t]))
    };
    let running = snap(snapshot(12, vec![thread(101, "pipe_read", ThreadState::Running)]));
    // Same syscall and fd at 13 s but entered at 12.5 s: after the first was last seen (11 s).
    let mut again = thread(101, "pipe_read", ThreadState::Sleeping);
    again.syscall = Some(read_call(3, Some(S / 2), None));
    let again = snap(snapshot(13, vec![again]));
    let (trace, _) = export(vec![reader(10, 8), reader(11, 8), running, again]);
    let slices = slices(&trace);
    let spans: Vec<(u64, u64)> = slices.iter().map(|s| (s.begin, s.end)).collect();
    assert_eq!(spans, [(8 * S, 11 * S), (12 * S + S / 2, 13 * S)]);
    assert!(slices[0].args["end"].contains("returned by the next snapshot"));
}

#[test]
fn a_streamed_return_ends_the_open_slice_exactly_and_a_call_between_snapshots_gets_its_own() {
    let ended = |at_ns: u64, duration_ns: u64, fd: i32| {
        Entry::Event(Event {
            at_ns,
            kind: EventKind::BlockEnded {
                tid: 101,
                nr: 0,
                name: "read".into(),
                class: SyscallClass::Read,
                fd: Some(fd),
                duration_ns,
                ret: 5,
            },
        })
    };
    let idle = |at_s| snap(snapshot(at_s, vec![thread(101, "pipe_read", ThreadState::Running)]));
    let entries = vec![
        snap(blocked_reader(10)),
        snap(blocked_reader(11)),
        ended(11 * S + 300, 3 * S + 300, 3), // returned 300 ns after the snapshot at 11 s
        idle(12),
        ended(12 * S + 700, 200, 4), // a 200 ns call between snapshots
        idle(13),
    ];
    let (trace, stats) = export(entries);
    let slices = slices(&trace);
    let spans: Vec<(u64, u64)> = slices.iter().map(|s| (s.begin, s.end)).collect();
    assert_eq!(spans, [(8 * S, 11 * S + 300), (12 * S + 500, 12 * S + 700)]);
    assert!(slices[0].args["end"].starts_with("exact"));
    assert_eq!((slices[0].args["fd_desc"].as_str(), slices[0].args["ret"].as_str()), ("pipe:[777]", "5"));
    assert_eq!((slices[1].args["fd"].as_str(), slices[1].args["ret"].as_str()), ("4", "5"));
    assert_eq!((stats.events, stats.events_conflicting), (2, 0));
}

#[test]
fn a_known_waker_is_a_flow_from_its_track_to_the_woken_thread() {
    let mut s = blocked_reader(10);
    s.threads[1].syscall.as_mut().expect("blocked").waker_tid = Some(PID);
    let mut outside = blocked_reader(11);
    outside.threads[1].syscall.as_mut().expect("blocked").waker_tid = Some(99_999);
    let (trace, stats) = export(vec![snap(s.clone()), snap(s), snap(outside)]);
    assert_eq!(stats.flows, 2, "once per waker of a slice");
    let flows: Vec<(u64, Vec<u64>, Vec<u64>)> = trace
        .packet
        .iter()
        .filter_map(|p| match &p.data {
            Some(trace_packet::Data::TrackEvent(e)) if e.r#type() == track_event::Type::Instant => {
                Some((e.track_uuid(), e.flow_ids.clone(), e.terminating_flow_ids.clone()))
            }
            _ => None,
        })
        .collect();
    let (main, reader) = (thread_track(&trace, PID), thread_track(&trace, 101));
    assert_eq!(flows[0], (main, vec![1], vec![]));
    assert_eq!(flows[1], (reader, vec![], vec![1]));
    assert_eq!((flows[3].0, &flows[3].2), (reader, &vec![2]));
    assert!(![main, reader].contains(&flows[2].0), "a waker outside the target has a track of its own");
}

fn goroutine(goid: u64, status: GoStatus, reason: Option<&str>, waiting_s: Option<u64>) -> GoroutineView {
    GoroutineView {
        goid,
        status,
        wait_reason: reason.map(str::to_owned),
        waiting_ns: waiting_s.map(|s| s * S),
        status_ns: None,
        status_ns_exact: false,
        transitions: None,
        cgo: false,
        c_function: None,
        m: None,
        tid: None,
        syscall: None,
        netpoll: None,
        start: "main.worker".into(),
        created_by: Some("main.main".into()),
        parent_goid: Some(1),
        stack_id: StackId::default(),
    }
}

#[test]
fn goroutines_get_wait_reason_slices_and_past_the_limit_only_counters() {
    let many = GOROUTINE_TRACK_LIMIT as u64 + 500;
    let go_snap = |at_s: u64| {
        let mut s = snapshot(at_s, vec![thread(PID, "parked", ThreadState::Sleeping)]);
        let frame = Frame { function: Some("runtime.gopark".into()), ..Frame::unnamed(0x401000) };
        let stack = s.stacks.intern(vec![frame]);
        s.goroutines = (1..=many)
            .map(|goid| {
                let mut g = goroutine(goid, GoStatus::Waiting, Some("chan receive"), Some(goid % 7));
                g.stack_id = stack;
                g
            })
            .collect();
        s.goroutines.push(goroutine(many + 1, GoStatus::Runnable, None, None));
        snap(s)
    };
    let (trace, stats) = export(vec![go_snap(20), go_snap(21)]);
    assert_eq!(stats.goroutines_without_track_max, 500);
    let slices = slices(&trace);
    assert_eq!(slices.len(), GOROUTINE_TRACK_LIMIT, "one slice per tracked goroutine");
    // The longest waiting got the tracks: 6 s waits begin at 20 - 6 = 14 s.
    assert!(slices.iter().all(|s| s.name == "chan receive" && s.end == 21 * S));
    assert_eq!(slices[0].begin, 14 * S);
    assert!(slices[0].args["stack"].starts_with("runtime.gopark"));
    assert!(slices[0].args["begin"].starts_with("lower bound"));
    // Every goroutine is in the wait-reason counter.
    let counter_track = trace.packet.iter().find_map(|p| match &p.data {
        Some(trace_packet::Data::TrackDescriptor(d))
            if matches!(&d.static_or_dynamic_name,
                Some(track_descriptor::StaticOrDynamicName::Name(n)) if n == "goroutines waiting: chan receive") =>
        {
            d.uuid
        }
        _ => None,
    });
    let counter_track = counter_track.expect("a wait-reason counter");
    let values: Vec<i64> = trace
        .packet
        .iter()
        .filter_map(|p| match &p.data {
            Some(trace_packet::Data::TrackEvent(e)) if e.track_uuid == Some(counter_track) => {
                match e.counter_value_field {
                    Some(track_event::CounterValueField::CounterValue(v)) => Some(v),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect();
    assert_eq!(values, [many as i64, many as i64]);
}

#[test]
fn blocked_thread_counters_follow_the_summary_per_class() {
    let (trace, _) = export(vec![snap(blocked_reader(10))]);
    let mut by_name = HashMap::new();
    for p in &trace.packet {
        if let Some(trace_packet::Data::TrackDescriptor(d)) = &p.data
            && let Some(track_descriptor::StaticOrDynamicName::Name(n)) = &d.static_or_dynamic_name
        {
            by_name.insert(d.uuid(), n.clone());
        }
    }
    let values: HashMap<String, i64> = trace
        .packet
        .iter()
        .filter_map(|p| match &p.data {
            Some(trace_packet::Data::TrackEvent(e)) => match e.counter_value_field {
                Some(track_event::CounterValueField::CounterValue(v)) => {
                    Some((by_name[&e.track_uuid()].clone(), v))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(values["threads blocked: read"], 1);
    assert_eq!(values["threads blocked: futex"], 0);
    assert_eq!(values["threads running"], 1);
}

#[test]
fn a_second_process_and_an_empty_recording_are_errors() {
    let mut other = blocked_reader(11);
    other.pid = PID + 1;
    let err = perfetto(vec![snap(blocked_reader(10)), snap(other)], Vec::new()).expect_err("two processes");
    assert!(matches!(err, ExportError::OtherProcess { .. }), "{err}");
    let err = perfetto(Vec::new(), Vec::new()).expect_err("nothing");
    assert!(matches!(err, ExportError::NoSnapshot), "{err}");
}

#[test]
fn a_begin_that_would_overlap_the_previous_slice_is_moved_to_its_end() {
    // read(3) exactly since 8 s, seen at 10 and 11 s; at 12 s a write(4) whose bound says it
    // began at 10.5 s, while the read was still seen at 11 s: the snapshots disagree.
    let mut writer = thread(101, "pipe_read", ThreadState::Sleeping);
    let mut call = read_call(4, None, Some(S + S / 2));
    (call.nr, call.name) = (1, "write".into());
    writer.syscall = Some(call);
    let (trace, _) =
        export(vec![snap(blocked_reader(10)), snap(blocked_reader(11)), snap(snapshot(12, vec![writer]))]);
    let slices = slices(&trace);
    let spans: Vec<(&str, u64, u64)> = slices.iter().map(|s| (s.name.as_str(), s.begin, s.end)).collect();
    assert_eq!(spans, [("read", 8 * S, 11 * S), ("write", 11 * S, 12 * S)]);
    assert!(slices[1].args.contains_key("begin_moved"), "{:?}", slices[1].args);
}

#[test]
fn task_counters_follow_the_tasks_and_go_on_at_zero() {
    let task = |state| TaskView {
        task_id: Some(7),
        console_id: None,
        name: None,
        kind: Some("task".into()),
        spawn_location: None,
        state,
        polls: 1,
        busy_ns: 0,
        scheduled_ns: 0,
        idle_ns: 0,
        wakes: 0,
        waker_clones: 0,
        waker_drops: 0,
        self_wakes: 0,
        warnings: Vec::new(),
        worker_tid: None,
        io_fd: None,
        io_fd_desc: None,
    };
    let mut first = snapshot(10, vec![thread(PID, "tokio", ThreadState::Sleeping)]);
    first.tasks = vec![task(TaskState::Idle), task(TaskState::Idle), task(TaskState::Running)];
    let second = snapshot(11, vec![thread(PID, "tokio", ThreadState::Sleeping)]);
    let (trace, _) = export(vec![snap(first), snap(second)]);
    let mut names = HashMap::new();
    let mut values: HashMap<String, Vec<i64>> = HashMap::new();
    for p in &trace.packet {
        match &p.data {
            Some(trace_packet::Data::TrackDescriptor(d)) => {
                if let Some(track_descriptor::StaticOrDynamicName::Name(n)) = &d.static_or_dynamic_name {
                    names.insert(d.uuid(), n.clone());
                }
            }
            Some(trace_packet::Data::TrackEvent(e)) => {
                if let Some(track_event::CounterValueField::CounterValue(v)) = e.counter_value_field {
                    values.entry(names[&e.track_uuid()].clone()).or_default().push(v);
                }
            }
            _ => {}
        }
    }
    assert_eq!(values["tasks idle"], [2, 0]);
    assert_eq!(values["tasks running"], [1, 0]);
    assert_eq!(values["workers stalled in a poll"], [0, 0]);
    assert!(!values.contains_key("goroutines waiting"), "no goroutine counters for a tokio target");
}
