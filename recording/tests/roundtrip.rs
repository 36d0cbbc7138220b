//! The format against itself: every snapshot decodes to exactly what was encoded, unchanged
//! entries cost nothing, and a damaged file (truncated at every offset, bytes flipped) is a
//! clean error or a shorter replay, never a panic.

use parkscope_model::{
    Event, EventKind, Frame, GoStatus, GoroutineView, RuntimeKind, RuntimeView, Snapshot, StallActivity,
    StallView, Summary, SyscallClass, SyscallView, TaskOnThread, TaskState, TaskView, ThreadState,
    ThreadView, Timestamp,
};
use parkscope_recording::{End, Header, Item, Reader, Writer, delta::KEYFRAME_EVERY};

const SEC: u64 = 1_000_000_000;

fn frame(name: &str) -> Frame {
    Frame {
        function: Some(name.into()),
        offset: Some(0x10),
        module: Some("/bin/x".into()),
        ..Frame::unnamed(0x401000)
    }
}

fn syscall(blocked: Option<u64>, at_least: Option<u64>) -> SyscallView {
    SyscallView {
        nr: 0,
        name: "read".into(),
        class: SyscallClass::Read,
        fd: Some(3),
        fd_desc: Some("pipe:[1234]".into()),
        blocked_ns: blocked,
        blocked_at_least_ns: at_least,
        waker_tid: None,
        futex_addr: None,
        args: std::array::from_fn(|i| format!("0x{i}")),
    }
}

/// Snapshot `i` of a synthetic Go process: threads blocked since fixed instants (so their
/// durations grow), goroutines waiting since fixed instants measured on a clock slightly off the
/// snapshot's (as the collector's runtime read is), one goroutine coming and going, and a
/// thread whose state flips.
fn snapshot(i: u64) -> Snapshot {
    let now = 1_000 * SEC + i * SEC + (i * 7919) % 1000;
    let mut s = Snapshot::new(
        42,
        "demo".into(),
        Timestamp { monotonic_ns: now, wall_unix_ns: 1_700_000_000 * SEC + i * SEC },
    );
    let k = s
        .stacks
        .intern(vec![Frame::parse_kernel("pipe_read+0x2f4/0x480"), Frame::parse_kernel("vfs_read+0x1/0x2")]);
    let u = s.stacks.intern(vec![frame("read"), frame("main")]);
    for tid in 100..110u32 {
        let blocked = tid % 3 != 0;
        s.threads.push(ThreadView {
            tid,
            name: format!("t{tid}"),
            state: if blocked {
                ThreadState::Sleeping
            } else if i.is_multiple_of(2) {
                ThreadState::Running
            } else {
                ThreadState::Runnable
            },
            syscall: blocked.then(|| {
                if tid % 2 == 0 {
                    syscall(Some(now - 900 * SEC - u64::from(tid)), None)
                } else {
                    syscall(None, Some(now - 990 * SEC))
                }
            }),
            wchan: blocked.then(|| "pipe_read".into()),
            user_stack_id: if blocked { u } else { Default::default() },
            kernel_stack_id: if blocked { k } else { Default::default() },
            completed: Vec::new(),
            long_calls: Vec::new(),
            role: None,
            goroutine: None,
            // A tokio worker in a poll, whose task and poll length change between snapshots.
            task: (tid == 101).then_some(TaskOnThread {
                task_id: 7 + i % 3,
                poll_ns: Some(i * 1_000_000),
                poll_ns_exact: i.is_multiple_of(2),
            }),
        });
    }
    // Tasks parked on I/O: which ones wait changes now and then.
    s.io_waits = Some(parkscope_recording::fuzz::sample_io_waits(i));
    // A stall on the worker in some snapshots, and console tasks whose counters move.
    if i % 3 != 2 {
        s.stalls.push(StallView {
            tid: 101,
            task_id: Some(7 + i % 3),
            duration_ns: 120_000_000 + i,
            exact: i.is_multiple_of(2),
            activity: StallActivity::Syscall {
                name: "read".into(),
                fd: Some(3),
                fd_desc: Some("pipe:[1234]".into()),
            },
            user_stack_id: u,
        });
    }
    for id in 1..4u64 {
        s.tasks.push(TaskView {
            task_id: Some(id),
            console_id: Some(id + 100),
            name: Some(format!("task{id}")),
            kind: Some("task".into()),
            spawn_location: Some("src/main.rs:10:5".into()),
            state: if id == 1 { TaskState::Running } else { TaskState::Idle },
            // Only the running task's counters move.
            polls: if id == 1 { i } else { 5 },
            busy_ns: if id == 1 { i * SEC } else { SEC },
            scheduled_ns: 0,
            idle_ns: 0,
            wakes: 5,
            waker_clones: 5,
            waker_drops: 5,
            self_wakes: 0,
            warnings: if id == 3 { vec!["lost waker".into()] } else { Vec::new() },
            worker_tid: (id == 1).then_some(101),
            io_fd: None,
            io_fd_desc: None,
        });
    }
    let go_now = now - 12_345 - (i * 31) % 977;
    for goid in 1..60u64 {
        if goid == 50 && i % 4 == 1 {
            continue;
        }
        let gs = s.stacks.intern(vec![frame("runtime.gopark"), frame(&format!("main.worker{}", goid % 5))]);
        s.goroutines.push(GoroutineView {
            goid,
            status: GoStatus::Waiting,
            wait_reason: Some("chan receive".into()),
            waiting_ns: Some(go_now - 500 * SEC - goid),
            status_ns: (goid % 2 == 0).then(|| go_now - 600 * SEC),
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
            stack_id: gs,
        });
    }
    s.runtime = Some(RuntimeView {
        kind: RuntimeKind::Go,
        version: "go1.27.3".into(),
        module: None,
        layout: Some("dwarf".into()),
        gomaxprocs: Some(2),
        goroutines_dead: Some(0),
        goroutines_inconsistent: Some(0),
        error: None,
        hint: None,
    });
    s.summary = Summary::count(&s.threads);
    s.summary.window_ns = i * SEC;
    s
}

fn header() -> Header {
    Header {
        schema_version: parkscope_model::SCHEMA_VERSION,
        parkscope_version: "test".into(),
        kernel_release: "6.0".into(),
        pid: 42,
        comm: "demo".into(),
        exe: Some("/bin/x".into()),
        build_id: None,
        runtime: Some(RuntimeKind::Go),
        runtime_version: Some("go1.27.3".into()),
        interval_ns: SEC,
        started_at: Timestamp { monotonic_ns: 1_000 * SEC, wall_unix_ns: 1_700_000_000 * SEC },
    }
}

fn record(n: u64, end: bool) -> (Vec<u8>, Vec<Snapshot>, Vec<u64>) {
    let mut w = Writer::new(Vec::new(), &header()).unwrap();
    let mut snaps = Vec::new();
    let mut sizes = Vec::new();
    for i in 0..n {
        let s = snapshot(i);
        sizes.push(w.write_snapshot(&s).unwrap().bytes);
        w.write_events(&[Event {
            at_ns: s.taken_at.monotonic_ns + 1,
            kind: EventKind::BlockEnded {
                tid: 100,
                nr: 0,
                name: "read".into(),
                class: SyscallClass::Read,
                fd: Some(3),
                duration_ns: 5,
                ret: 1,
            },
        }])
        .unwrap();
        snaps.push(s);
    }
    let out = if end {
        w.finish(&End { reason: "duration".into(), snapshots: n, ended_at: Timestamp::default() }).unwrap()
    } else {
        w.into_inner()
    };
    (out, snaps, sizes)
}

/// Everything a damaged file yields: the snapshots read, then an error or the end.
fn replay(bytes: &[u8]) -> (Vec<Snapshot>, Option<parkscope_recording::ReadError>) {
    let mut r = match Reader::new(bytes) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out = Vec::new();
    loop {
        match r.next_item() {
            Ok(Some(Item::Snapshot(s, _))) => out.push(*s),
            Ok(Some(_)) => {}
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

#[test]
fn every_snapshot_decodes_exactly_and_unchanged_entries_cost_nothing() {
    let n = KEYFRAME_EVERY + 20;
    let (bytes, snaps, sizes) = record(n, true);
    let (back, err) = replay(&bytes);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(back.len(), snaps.len());
    for (i, (a, b)) in snaps.iter().zip(&back).enumerate() {
        assert_eq!(a, b, "snapshot {i}");
    }
    // A delta carries the flipping threads, the worker whose task poll changed (101) and the
    // goroutine that comes and goes, not the 59 unchanged goroutines nor the blocked threads
    // whose durations grew.
    let mut enc = parkscope_recording::delta::Encoder::new();
    assert!(enc.encode(&snapshot(0)).keyframe);
    for i in 1..6 {
        let d = enc.encode(&snapshot(i));
        assert!(!d.keyframe);
        let changed_threads: Vec<u32> = d.threads.upsert.iter().map(|t| t.tid).collect();
        assert_eq!(changed_threads, [101, 102, 105, 108], "snapshot {i}: only the threads that changed");
        let tasks: Vec<Option<u64>> = d.tasks.upsert.iter().map(|t| t.task_id).collect();
        assert_eq!(tasks, [Some(1)], "snapshot {i}: only the running task changed");
        let goroutines = d.goroutines.upsert.len() + d.goroutines.removed.len();
        assert!(goroutines <= 1, "snapshot {i}: only goroutine 50 comes or goes, not {goroutines}");
        assert!(d.new_stacks.is_empty() && d.stack_table.is_none());
        // The I/O waits change at snapshot 3 only (1 wait in 0..3, 2 in 3..6).
        assert_eq!(d.io_waits_unchanged, i != 3, "snapshot {i}: I/O waits carried only when changed");
        assert_eq!(d.io_waits.is_some(), i == 3);
    }
    assert!(sizes[5] * 2 < sizes[0], "delta {} B vs keyframe {} B", sizes[5], sizes[0]);
    let mut r = Reader::new(bytes.as_slice()).unwrap();
    let mut ended = false;
    while let Some(item) = r.next_item().unwrap() {
        ended |= matches!(item, Item::End(..));
    }
    assert!(ended && r.ended());
}

#[test]
fn truncation_at_every_offset_is_a_clean_error_or_a_shorter_replay() {
    let (bytes, snaps, _) = record(4, true);
    for cut in 0..bytes.len() {
        let (back, err) = replay(&bytes[..cut]);
        assert!(back.len() <= snaps.len());
        assert_eq!(back, snaps[..back.len()], "cut at {cut}");
        if let Some(e) = err {
            assert!(e.offset <= cut as u64, "cut at {cut}: error at {}", e.offset);
            assert!(!e.what.is_empty());
        }
    }
}

#[test]
fn flipped_bytes_are_a_clean_error_or_a_shorter_replay() {
    let (bytes, snaps, _) = record(4, true);
    // A small xorshift: deterministic, no dependency.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..2_000 {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 3 {
            let at = (next() % b.len() as u64) as usize;
            b[at] ^= 1 << (next() % 8);
        }
        let (back, _) = replay(&b);
        // A flip the CRC cannot see does not exist for 1-3 bit flips: what is replayed is a
        // prefix of what was recorded.
        assert_eq!(back, snaps[..back.len()]);
    }
}

/// Real recordings (`parkscope record` of examples/bin/blocker and parked-go1.27 -n 3, 3 s at
/// 1 s, kept in tests/data): truncations all through them and random bit flips are a clean
/// error or a prefix of the full replay.
#[test]
fn real_recordings_survive_truncation_and_flips() {
    for name in ["blocker.psrec", "parked-go1.27.psrec"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
        let bytes = std::fs::read(&path).unwrap();
        let (full, err) = replay(&bytes);
        assert!(err.is_none() && full.len() >= 3, "{name}: {err:?}");
        assert!(full.iter().any(|s| !s.threads.is_empty()));
        if name.contains("go") {
            assert!(full.iter().all(|s| !s.goroutines.is_empty()), "{name}: goroutines recorded");
        }
        // Every offset near chunk boundaries matters most; a stride keeps the debug-build test short
        // while still cutting inside every chunk's header and payload.
        let stride = if name.contains("go") { 7 } else { 2 };
        for cut in (0..bytes.len()).step_by(stride).chain(bytes.len().saturating_sub(40)..bytes.len()) {
            let (back, _) = replay(&bytes[..cut]);
            assert_eq!(back, full[..back.len()], "{name} cut at {cut}");
        }
        let mut x: u64 = 0xdead_beef_cafe_f00d;
        for _ in 0..400 {
            let mut b = bytes.clone();
            for _ in 0..1 + x % 3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x % b.len() as u64) as usize;
                b[at] ^= 1 << (x % 8);
            }
            let (back, _) = replay(&b);
            assert_eq!(back, full[..back.len()], "{name}");
        }
    }
}

/// A goroutine list read while it changed can list a goid twice: such a snapshot is a keyframe,
/// and it and the next decode exactly.
#[test]
fn repeated_keys_are_kept_exactly() {
    let mut w = Writer::new(Vec::new(), &header()).unwrap();
    let mut snaps = vec![snapshot(0), snapshot(1), snapshot(2)];
    let dup = snaps[1].goroutines[3].clone();
    snaps[1].goroutines.push(dup);
    let mut keyframes = Vec::new();
    for s in &snaps {
        keyframes.push(w.write_snapshot(s).unwrap().keyframe);
    }
    assert_eq!(keyframes, [true, true, true]);
    let (back, err) = replay(&w.into_inner());
    assert!(err.is_none());
    assert_eq!(back, snaps);
}

/// The index lists every snapshot (offset, time, keyframe) without decoding; a reader moved to
/// any indexed keyframe decodes from there exactly what was recorded.
#[test]
fn the_index_finds_every_snapshot_and_seeks_resume_at_keyframes() {
    let n = 2 * KEYFRAME_EVERY + 15;
    let (bytes, snaps, _) = record(n, true);
    let reader = Reader::new(std::io::Cursor::new(bytes.as_slice())).unwrap();
    let mut indexer = reader.into_indexer();
    let mut index = Vec::new();
    while let Some(e) = indexer.next_entry().unwrap() {
        index.push(e);
    }
    assert!(indexer.ended(), "the end chunk was seen");
    assert_eq!(index.len() as u64, n);
    for (e, s) in index.iter().zip(&snaps) {
        assert_eq!(e.taken_at, s.taken_at);
    }
    let keyframes: Vec<usize> = (0..index.len()).filter(|&i| index[i].keyframe).collect();
    assert_eq!(keyframes.first(), Some(&0));
    assert!(keyframes.len() >= 3, "a keyframe at least every {KEYFRAME_EVERY}: {keyframes:?}");
    // The offsets are those the sequential reader reports.
    let mut r = Reader::new(bytes.as_slice()).unwrap();
    let mut offsets = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        if let Item::Snapshot(_, off) = item {
            offsets.push(off);
        }
    }
    assert_eq!(index.iter().map(|e| e.offset).collect::<Vec<_>>(), offsets);

    // From the last keyframe back to the first: decode a few snapshots after each.
    let mut r = Reader::new(std::io::Cursor::new(bytes.as_slice())).unwrap();
    for &k in keyframes.iter().rev() {
        r.seek_to_keyframe(index[k].offset).unwrap();
        for s in snaps.iter().skip(k).take(3) {
            match r.next_item().unwrap() {
                Some(Item::Snapshot(got, _)) => assert_eq!(*got, *s),
                other => panic!("expected snapshot {k}.., found {other:?}"),
            }
            // Events follow each snapshot.
            assert!(matches!(r.next_item().unwrap(), Some(Item::Events(..))));
        }
    }
    // Skipping the deltas between a keyframe and a later snapshot builds the same state.
    for &k in &keyframes {
        for ahead in [1, 7, 14] {
            let Some(want) = snaps.get(k + ahead) else { continue };
            r.seek_to_keyframe(index[k].offset).unwrap();
            r.skip_to(index[k + ahead].offset).unwrap();
            match r.next_item().unwrap() {
                Some(Item::Snapshot(got, off)) => {
                    assert_eq!(off, index[k + ahead].offset);
                    assert_eq!(*got, *want, "snapshot {} after skipping from {k}", k + ahead);
                }
                other => panic!("expected snapshot {}, found {other:?}", k + ahead),
            }
        }
    }
    r.seek_to_keyframe(index[0].offset).unwrap();
    let err = r.skip_to(index[2].offset + 1).unwrap_err();
    assert!(err.what.contains("middle"), "{err}");
    // A delta is not a place to start.
    let delta = (0..index.len()).find(|&i| !index[i].keyframe).unwrap();
    r.seek_to_keyframe(index[delta].offset).unwrap();
    let err = r.next_item().unwrap_err();
    assert_eq!(err.offset, index[delta].offset);
    assert!(err.what.contains("expected a keyframe"), "{err}");
}

/// A truncated recording indexes up to the damage, which is an error at the torn chunk.
#[test]
fn the_index_of_a_truncated_recording_stops_at_the_torn_chunk() {
    let (bytes, _, _) = record(5, false);
    let mut r = Reader::new(bytes.as_slice()).unwrap();
    let mut offsets = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        if let Item::Snapshot(_, off) = item {
            offsets.push(off);
        }
    }
    let cut = offsets[3] as usize + 20;
    let mut indexer = Reader::new(&bytes[..cut]).unwrap().into_indexer();
    let mut found = 0;
    let err = loop {
        match indexer.next_entry() {
            Ok(Some(_)) => found += 1,
            Ok(None) => panic!("a torn chunk is an error"),
            Err(e) => break e,
        }
    };
    assert_eq!(found, 3);
    assert_eq!(err.offset, offsets[3]);
    assert!(err.what.contains("truncated"), "{err}");
}
