//! Harness of the `recording` fuzz target (fuzz/fuzz_targets/recording.rs) and its seeds. The
//! first byte picks the mode: even, the rest is read as a whole file (framing, checksums,
//! decompression); odd, the rest is split at [`SEPARATOR`] into payloads that are framed as
//! valid stored chunks behind a valid header, so mutations reach the JSON and delta decoding
//! that a checksum would otherwise shield.

use parkscope_model::{
    Frame, GoStatus, GoroutineView, RuntimeKind, Snapshot, StallActivity, StallView, Summary, SyscallClass,
    SyscallView, TaskOnThread, ThreadState, ThreadView, Timestamp,
};

use crate::chunk::{self, CODEC_STORED, ChunkKind, Limits};
use crate::delta::Encoder;
use crate::{FORMAT_VERSION, Header, Item, Reader, Writer};

/// Splits the payloads of the structured mode.
pub const SEPARATOR: &[u8] = b"\n\x00--\x00\n";

/// Small bounds, so a fuzzed length cannot make an input cost more than a few MB.
const LIMITS: Limits = Limits { max_chunk_bytes: 1 << 20, max_raw_bytes: 4 << 20, max_entries: 100_000 };

/// Reads everything `data` holds; any outcome but a panic, hang or runaway allocation is fine.
pub fn read(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let file = if mode & 1 == 0 { rest.to_vec() } else { structured(rest) };
    let Ok(mut reader) = Reader::with_limits(file.as_slice(), LIMITS) else { return };
    while let Ok(Some(item)) = reader.next_item() {
        if let Item::Snapshot(s, _) = item {
            // What the commands do with a snapshot: walk its stacks.
            for t in &s.threads {
                let _ = s.stacks.render(t.user_stack_id);
            }
        }
    }
}

fn structured(rest: &[u8]) -> Vec<u8> {
    let mut file = chunk::file_header(FORMAT_VERSION).to_vec();
    let header = serde_json::to_vec(&sample_header()).unwrap_or_default();
    file.extend(frame(ChunkKind::Header, &header));
    for (i, payload) in split(rest).enumerate() {
        // The first byte of a piece after the first picks its kind: mostly snapshots.
        let kind = match payload.first().map(|b| b % 8) {
            Some(0) if i > 0 => ChunkKind::Events,
            Some(1) if i > 0 => ChunkKind::End,
            _ => ChunkKind::Snapshot,
        };
        file.extend(frame(kind, payload));
    }
    file
}

fn frame(kind: ChunkKind, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    chunk::frame(kind, CODEC_STORED, len, len, payload)
}

fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(at) => {
                rest = Some(&r[at + SEPARATOR.len()..]);
                Some(&r[..at])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Seeds: a whole recording (mode 0), and its snapshot payloads for the structured mode.
pub fn seeds() -> Vec<Vec<u8>> {
    let snapshots: Vec<Snapshot> = (0..4).map(sample_snapshot).collect();
    let mut whole = vec![0u8];
    if let Ok(mut w) = Writer::new(Vec::new(), &sample_header()) {
        for s in &snapshots {
            let _ = w.write_snapshot(s);
        }
        whole.extend(w.into_inner());
    }
    let mut structured = vec![1u8];
    let mut enc = Encoder::new();
    for (i, s) in snapshots.iter().enumerate() {
        if i > 0 {
            structured.extend_from_slice(SEPARATOR);
        }
        structured.extend(serde_json::to_vec(&enc.encode(s)).unwrap_or_default());
    }
    vec![whole, structured]
}

fn sample_header() -> Header {
    Header {
        schema_version: parkscope_model::SCHEMA_VERSION,
        parkscope_version: "fuzz".into(),
        kernel_release: "6.1".into(),
        pid: 7,
        comm: "x".into(),
        exe: None,
        build_id: None,
        runtime: Some(RuntimeKind::Go),
        runtime_version: None,
        interval_ns: 1_000_000_000,
        started_at: Timestamp { monotonic_ns: 1, wall_unix_ns: 2 },
    }
}

/// A small Go-like snapshot `i` of a sequence: blocked threads, waiting goroutines, one that
/// comes and goes.
fn sample_snapshot(i: u64) -> Snapshot {
    let now = 10_000_000_000 + i * 1_000_000_000;
    let mut s = Snapshot::new(7, "x".into(), Timestamp { monotonic_ns: now, wall_unix_ns: now * 2 });
    let stack = s.stacks.intern(vec![Frame::parse_kernel("pipe_read+0x1/0x2"), Frame::unnamed(0x401000)]);
    for tid in 7..10u32 {
        s.threads.push(ThreadView {
            tid,
            name: "x".into(),
            state: if tid == 9 && i % 2 == 1 { ThreadState::Running } else { ThreadState::Sleeping },
            syscall: Some(SyscallView {
                nr: 0,
                name: "read".into(),
                class: SyscallClass::Read,
                fd: Some(3),
                fd_desc: Some("pipe:[1]".into()),
                blocked_ns: Some(now - 5_000_000_000),
                blocked_at_least_ns: None,
                waker_tid: None,
                futex_addr: None,
                args: Default::default(),
            }),
            wchan: None,
            user_stack_id: stack,
            kernel_stack_id: stack,
            completed: Vec::new(),
            long_calls: Vec::new(),
            role: None,
            goroutine: None,
            // Thread 8 polls a task (tokio): its id and the poll's length change each time.
            task: (tid == 8).then_some(TaskOnThread {
                task_id: i + 1,
                poll_ns: Some(i * 1000),
                poll_ns_exact: true,
            }),
        });
    }
    s.io_waits = Some(sample_io_waits(i));
    if i.is_multiple_of(3) {
        s.stalls.push(StallView {
            tid: 8,
            task_id: Some(i + 1),
            duration_ns: 150_000_000 + i,
            exact: true,
            activity: StallActivity::Syscall {
                name: "read".into(),
                fd: Some(3),
                fd_desc: Some("pipe:[1]".into()),
            },
            user_stack_id: stack,
        });
    }
    for goid in 1..6u64 {
        if goid == 5 && i.is_multiple_of(2) {
            continue;
        }
        s.goroutines.push(GoroutineView {
            goid,
            status: GoStatus::Waiting,
            wait_reason: Some("chan receive".into()),
            waiting_ns: Some(now - 3_000_000_000),
            status_ns: None,
            status_ns_exact: false,
            transitions: None,
            cgo: false,
            c_function: None,
            m: None,
            tid: None,
            syscall: None,
            netpoll: None,
            start: "main.f".into(),
            created_by: None,
            parent_goid: None,
            stack_id: stack,
        });
    }
    s.summary = Summary::count(&s.threads);
    s
}

/// Tasks parked on I/O for the `i`-th sample snapshot: one waiter in snapshots 0..3, two in
/// 3..6, and so on (which tasks wait changes now and then, not every time). Also used by the
/// round-trip tests.
pub fn sample_io_waits(i: u64) -> parkscope_model::IoWaits {
    parkscope_model::IoWaits {
        waits: (0..(i / 3 % 2 + 1))
            .map(|k| parkscope_model::IoWaitView {
                fd: 7 + k as i32,
                fd_desc: Some(format!("tcp 127.0.0.1:{} -> 127.0.0.1:80", 4000 + k)),
                interest: Some(parkscope_model::IoInterest::Read),
                waiter: parkscope_model::IoWaiterKind::Task,
                task_id: Some(20 + k),
            })
            .collect(),
        registrations: 5,
        unrecognized: i / 3,
        capped: 0,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness over a few thousand mutations of its seeds (the fuzzer runs millions).
    /// Mutations of the seeds (bit flips, byte sets from JSON's alphabet, truncations, splices of
    /// two seeds), PARKSCOPE_FUZZ_RUNS of them (default 1,000,000): the libFuzzer target's job
    /// without its coverage guidance, for machines without cargo-fuzz. `cargo test --release -p
    /// parkscope-recording --lib -- --ignored many_mutations`.
    #[test]
    #[ignore = "long; run on demand"]
    fn many_mutations() {
        let runs: u64 =
            std::env::var("PARKSCOPE_FUZZ_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        let seeds = seeds();
        let mut x: u64 = 0x0123_4567_89ab_cdef;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..runs {
            let mut m = seeds[(next() % seeds.len() as u64) as usize].clone();
            if next() % 8 == 0 {
                // Splice: the tail of the other seed from a random point.
                let other = &seeds[(next() % seeds.len() as u64) as usize];
                let (at, from) = (next() as usize % m.len(), next() as usize % other.len());
                m.truncate(at.max(1));
                m.extend_from_slice(&other[from..]);
            }
            for _ in 0..1 + next() % 8 {
                if m.len() < 2 {
                    break;
                }
                let at = 1 + (next() as usize % (m.len() - 1));
                match next() % 4 {
                    0 => m[at] ^= 1 << (next() % 8),
                    1 => m[at] = b"0123456789{}[],\":-tfn"[(next() % 21) as usize],
                    2 => m[at] = next() as u8,
                    _ => {
                        if next() % 4 == 0 {
                            m.truncate(at);
                        }
                    }
                }
            }
            read(&m);
        }
        eprintln!("{runs} mutated inputs read, no panic");
    }

    #[test]
    fn the_harness_survives_mutated_seeds() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for seed in seeds() {
            read(&seed);
            for _ in 0..2_000 {
                let mut m = seed.clone();
                for _ in 0..1 + next() % 4 {
                    if m.len() < 2 {
                        break;
                    }
                    let at = 1 + (next() as usize % (m.len() - 1));
                    match next() % 3 {
                        0 => m[at] ^= 1 << (next() % 8),
                        1 => m[at] = b"0123456789{}[],\":-"[(next() % 18) as usize],
                        _ => m.truncate(at),
                    }
                }
                read(&m);
            }
        }
    }

    #[test]
    fn the_structured_seed_replays_every_snapshot() {
        let seed = &seeds()[1];
        let file = structured(&seed[1..]);
        let mut r = Reader::with_limits(file.as_slice(), LIMITS).unwrap();
        let mut n = 0;
        while let Some(item) = r.next_item().unwrap() {
            n += usize::from(matches!(item, Item::Snapshot(..)));
        }
        assert_eq!(n, 4);
    }
}
