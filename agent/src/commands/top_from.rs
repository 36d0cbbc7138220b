//! `parkscope top --from FILE`: the viewer replaying a recording. [`RecordingSource`] streams it
//! from disk: an index of its snapshot chunks (offset, time, keyframe: 32 bytes a snapshot) is
//! built a little at every UI tick, and the snapshot shown is decoded on demand, forward from
//! the one before it or from the last keyframe at or before it (at most `KEYFRAME_EVERY`
//! snapshots away; the deltas in between are applied without building their snapshots).
//! Memory holds one decoded snapshot and the decoder's state, whatever the recording's length. A damaged recording replays up to the damage, says where
//! in the header, and the command exits 9 after `q`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parkscope_model::Snapshot;
use parkscope_recording::{Header, IndexEntry, Indexer, Item, ReadError, Reader};
use parkscope_viewer::{Mode, ReplayControl, ReplayPosition, Sample, Source, Update};

use crate::{
    error::{Failure, code},
    render,
    session::Session,
};

/// Time spent indexing per poll of the UI (one poll per 50 ms tick when idle), so indexing a
/// long recording never makes the keys wait much.
const INDEX_BUDGET: Duration = Duration::from_millis(15);

type FileReader = BufReader<File>;

fn open(path: &Path) -> Result<Reader<FileReader>, Failure> {
    let file = File::open(path).map_err(|e| {
        Failure::new(
            code::BAD_RECORDING,
            format!("cannot open recording {}: {e}", path.display()),
            "give the file `parkscope record -o FILE` wrote",
        )
    })?;
    Reader::new(BufReader::with_capacity(1 << 16, file)).map_err(|e| bad_recording(path, &e))
}

fn bad_recording(path: &Path, e: &ReadError) -> Failure {
    Failure::new(
        code::BAD_RECORDING,
        format!("recording {}: {e}", path.display()),
        "the file is truncated or corrupt, or not a parkscope recording",
    )
}

/// A recording played back from disk (see the module comment).
pub struct RecordingSource {
    header: Header,
    /// The snapshots indexed so far, in file order.
    index: Vec<IndexEntry>,
    /// Indexes the rest; `None` once the end, or damage, was reached.
    indexer: Option<Indexer<FileReader>>,
    /// The end chunk was read (the recorder closed the file).
    closed: bool,
    /// Where the recording stops being readable (found by the indexer or by a decode); the
    /// index holds only the snapshots before it.
    damage: Option<ReadError>,
    /// Decodes snapshots; its decoder's state is snapshot `cursor_next - 1` when `cursor_valid`.
    cursor: Reader<FileReader>,
    cursor_next: usize,
    cursor_valid: bool,
    /// The snapshot shown, its index, and whether the UI has it yet.
    current: usize,
    sample: Arc<Sample>,
    pending: bool,
    playing: bool,
    speed: f64,
    shown_at: Instant,
    /// A notice (damage, not closed) is due to the UI.
    notice_due: bool,
}

impl RecordingSource {
    /// Opens `path` and decodes its first snapshot: a file that is not a recording, is damaged
    /// before its first snapshot, or holds none fails here, before any terminal is touched.
    pub fn open(path: &Path) -> Result<RecordingSource, Failure> {
        let cursor = open(path)?;
        let header = cursor.header().clone();
        let indexer = open(path)?.into_indexer();
        let mut source = RecordingSource {
            header,
            index: Vec::new(),
            indexer: Some(indexer),
            closed: false,
            damage: None,
            cursor,
            cursor_next: 0,
            cursor_valid: false,
            current: 0,
            sample: Arc::new(Sample {
                snapshot: Snapshot::new(0, String::new(), Default::default()),
                sched_line: None,
            }),
            pending: true,
            playing: false,
            speed: 1.0,
            shown_at: Instant::now(),
            notice_due: false,
        };
        source.index_one();
        let first = match source.index.is_empty() {
            true => Err(source.damage.clone()),
            false => source.decode(0).map_err(Some),
        };
        match first {
            Ok(s) => source.sample = Arc::new(s),
            Err(Some(e)) => return Err(bad_recording(path, &e)),
            Err(None) => {
                return Err(Failure::new(
                    code::BAD_RECORDING,
                    format!("recording {} holds no snapshot", path.display()),
                    "record for at least one interval",
                ));
            }
        }
        Ok(source)
    }

    /// Indexes one more snapshot; false when there is none (the end, or damage).
    fn index_one(&mut self) -> bool {
        let Some(indexer) = self.indexer.as_mut() else { return false };
        match indexer.next_entry() {
            Ok(Some(e)) => {
                self.index.push(e);
                return true;
            }
            Ok(None) => {
                self.closed = indexer.ended();
                self.notice_due = !self.closed;
            }
            Err(e) => self.damaged(e),
        }
        self.indexer = None;
        false
    }

    /// Indexes for at most `budget`.
    fn index_for(&mut self, budget: Duration) {
        let start = Instant::now();
        while self.indexer.is_some() && start.elapsed() < budget {
            self.index_one();
        }
    }

    /// Indexes the rest of the recording (for the exit code and the last words on stderr).
    pub fn index_all(&mut self) {
        while self.index_one() {}
    }

    /// Damage at `e.offset`: snapshots from there on are dropped from the index, and indexing
    /// stops (what follows damage is not trusted).
    fn damaged(&mut self, e: ReadError) {
        if self.damage.as_ref().is_some_and(|d| d.offset <= e.offset) {
            return;
        }
        self.index.retain(|x| x.offset < e.offset);
        // Only if the file changed under us does damage come before the snapshot shown.
        self.current = self.current.min(self.index.len().saturating_sub(1));
        self.indexer = None;
        self.damage = Some(e);
        self.notice_due = true;
    }

    /// Decodes snapshot `j` (indexed), as a sample with the thread-level SCHED line of its instant.
    fn decode(&mut self, j: usize) -> Result<Sample, ReadError> {
        let r = self.decode_snapshot(j);
        if r.is_err() {
            self.cursor_valid = false;
        }
        let snapshot = r?;
        // As `schedtrace --from`: the elapsed time counts from the recording's start.
        let elapsed_ms =
            snapshot.taken_at.monotonic_ns.saturating_sub(self.header.started_at.monotonic_ns) / 1_000_000;
        let sched_line = Some(render::schedtrace::line(elapsed_ms, &snapshot.summary));
        Ok(Sample { snapshot, sched_line })
    }

    fn decode_snapshot(&mut self, j: usize) -> Result<Snapshot, ReadError> {
        let target = self.index[j];
        let keyframe = self.index[..=j].iter().rposition(|e| e.keyframe);
        // Forward from the cursor when it stands before `j` with no keyframe in between (a
        // step or playback: one delta); else from the last keyframe at or before `j`.
        let forward =
            self.cursor_valid && self.cursor_next <= j && keyframe.is_none_or(|k| k < self.cursor_next);
        if !forward {
            let k = keyframe.ok_or_else(|| {
                ReadError::new(target.offset, "expected a keyframe at or before this snapshot, found none")
            })?;
            self.cursor.seek_to_keyframe(self.index[k].offset)?;
            self.cursor_next = k;
            self.cursor_valid = true;
        }
        // The snapshots in between change the decoder's state only: none is built.
        self.cursor.skip_to(target.offset)?;
        match self.cursor.next_item()? {
            Some(Item::Snapshot(s, offset)) if offset == target.offset => {
                self.cursor_next = j + 1;
                Ok(*s)
            }
            _ => Err(ReadError::new(
                target.offset,
                "expected the snapshot the index lists here, found something else (the file changed?)",
            )),
        }
    }

    /// Shows snapshot `j` (clamped to those indexed); damage found on the way shortens the
    /// replay and the closest readable snapshot before it is shown.
    fn go_to(&mut self, j: usize) {
        let mut j = j.min(self.index.len().saturating_sub(1));
        while j != self.current && j < self.index.len() {
            match self.decode(j) {
                Ok(s) => {
                    self.sample = Arc::new(s);
                    self.current = j;
                    self.pending = true;
                    return;
                }
                Err(e) => {
                    self.damaged(e);
                    j = j.min(self.index.len().saturating_sub(1));
                }
            }
        }
    }

    fn at(&self, i: usize) -> u64 {
        self.index.get(i).map_or(0, |e| e.taken_at.monotonic_ns)
    }

    /// What the replay ended with, for stderr once the terminal is restored, and the exit code.
    pub fn outcome(&self, path: &Path) -> (Option<String>, i32) {
        let n = self.index.len();
        match &self.damage {
            Some(e) => (
                Some(format!(
                    "parkscope: recording {}: {e}; replayed the {n} snapshots before it",
                    path.display()
                )),
                code::BAD_RECORDING,
            ),
            None if !self.closed && self.indexer.is_none() => (
                Some(format!(
                    "parkscope: recording {} was not closed (recorder killed?): replayed up to its last complete chunk ({n} snapshots)",
                    path.display()
                )),
                code::SUCCESS,
            ),
            None => (None, code::SUCCESS),
        }
    }
}

impl Source for RecordingSource {
    fn poll(&mut self) -> Option<Update> {
        if self.notice_due {
            self.notice_due = false;
            match &self.damage {
                Some(e) => {
                    return Some(Update::Ended(format!(
                        "recording ends early {e}: {} snapshots before it",
                        self.index.len()
                    )));
                }
                None if !self.closed => {
                    return Some(Update::Warning(
                        "recording was not closed (recorder killed?): it ends at its last complete chunk"
                            .into(),
                    ));
                }
                None => {}
            }
        }
        if self.playing && !self.pending {
            if self.current + 1 == self.index.len() {
                self.index_one();
            }
            if self.current + 1 < self.index.len() {
                let gap = self.at(self.current + 1).saturating_sub(self.at(self.current));
                let due = Duration::try_from_secs_f64(gap as f64 / 1e9 / self.speed).unwrap_or(Duration::MAX);
                if self.shown_at.elapsed() >= due {
                    self.go_to(self.current + 1);
                }
            } else if self.indexer.is_none() {
                self.playing = false;
            }
        }
        if self.pending {
            self.pending = false;
            self.shown_at = Instant::now();
            return Some(Update::Sample(Arc::clone(&self.sample)));
        }
        // Nothing to hand over: index a little more.
        self.index_for(INDEX_BUDGET);
        None
    }

    fn mode(&self) -> Mode {
        Mode::Replay
    }

    fn replay(&mut self) -> Option<&mut dyn ReplayControl> {
        Some(self)
    }
}

impl ReplayControl for RecordingSource {
    fn step(&mut self, by: i64) {
        self.playing = false;
        let target = usize::try_from((self.current as i64).saturating_add(by).max(0)).unwrap_or(0);
        while target >= self.index.len() && self.index_one() {}
        self.go_to(target);
    }

    fn seek(&mut self, offset_ns: u64) {
        self.playing = false;
        let at = self.at(0).saturating_add(offset_ns);
        while self.index.last().is_some_and(|e| e.taken_at.monotonic_ns <= at) && self.index_one() {}
        // Snapshots are in time order: the last one taken at or before `at`.
        let j = self.index.partition_point(|e| e.taken_at.monotonic_ns <= at).saturating_sub(1);
        self.go_to(j);
    }

    fn set_playing(&mut self, playing: bool) {
        self.playing = playing && (self.current + 1 < self.index.len() || self.indexer.is_some());
        self.shown_at = Instant::now();
    }

    fn set_speed(&mut self, speed: f64) {
        self.speed = speed.clamp(0.125, 64.0);
    }

    fn position(&self) -> ReplayPosition {
        let last = self.index.len().saturating_sub(1);
        ReplayPosition {
            index: self.current,
            count: self.index.len(),
            offset_ns: self.at(self.current).saturating_sub(self.at(0)),
            length_ns: self.at(last).saturating_sub(self.at(0)),
            playing: self.playing,
            speed: self.speed,
            complete: self.indexer.is_none(),
            damaged_at: self.damage.as_ref().map(|e| e.offset),
        }
    }
}

/// `top --from FILE`.
pub async fn run(path: PathBuf) -> Result<i32, Failure> {
    let source = {
        let path = path.clone();
        super::blocking(move || RecordingSource::open(&path)).await??
    };
    if !parkscope_viewer::is_terminal() {
        return Err(Failure::new(
            code::NOT_A_TERMINAL,
            "top needs a terminal: stdin or stdout is not a tty",
            format!(
                "for a file or a pipe use `parkscope snapshot --from {0}` (one view) or `parkscope schedtrace --from {0}` (a line per snapshot)",
                path.display()
            ),
        ));
    }
    let mut session = Session::signals().map_err(|e| Failure::internal(&e.into()))?;
    let (source, exit) = super::top::run_viewer(source, &mut session).await?;
    if exit != code::SUCCESS {
        return Ok(exit);
    }
    // The exit code covers the whole file, also the part not yet indexed when `q` came.
    let (words, exit) = super::blocking(move || {
        let mut source = source;
        source.index_all();
        source.outcome(&path)
    })
    .await?;
    if let Some(words) = words {
        eprintln!("{words}");
    }
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parkscope_model::Timestamp;
    use parkscope_recording::{End, Writer, delta::KEYFRAME_EVERY};

    const SEC: u64 = 1_000_000_000;

    /// Snapshot `i`, told apart by its time and its summary's thread count.
    fn snapshot(i: u64) -> Snapshot {
        let mut s = Snapshot::new(
            7,
            "demo".into(),
            Timestamp { monotonic_ns: 500 * SEC + i * SEC, wall_unix_ns: 1_700_000_000 * SEC + i * SEC },
        );
        s.summary.threads = i as usize;
        s.summary.blocked = (i % 5) as usize;
        // Ten threads, one of which changes state: deltas carry one entry, so the writer makes
        // keyframes only every KEYFRAME_EVERY snapshots.
        for tid in 100..110u32 {
            s.threads.push(parkscope_model::ThreadView {
                tid,
                name: format!("t{tid}"),
                state: if tid == 100 && i % 2 == 1 {
                    parkscope_model::ThreadState::Runnable
                } else {
                    parkscope_model::ThreadState::Sleeping
                },
                syscall: None,
                wchan: None,
                user_stack_id: Default::default(),
                kernel_stack_id: Default::default(),
                completed: Vec::new(),
                long_calls: Vec::new(),
                role: None,
                goroutine: None,
                task: None,
            });
        }
        s
    }

    fn header() -> Header {
        Header {
            schema_version: parkscope_model::SCHEMA_VERSION,
            parkscope_version: "test".into(),
            kernel_release: "test".into(),
            pid: 7,
            comm: "demo".into(),
            exe: None,
            build_id: None,
            runtime: None,
            runtime_version: None,
            interval_ns: SEC,
            started_at: Timestamp { monotonic_ns: 500 * SEC - 20_000_000, wall_unix_ns: 0 },
        }
    }

    /// A recording of `n` snapshots written by the recorder's own writer; with its end chunk
    /// when `closed`. Returns the file and each snapshot chunk's offset.
    fn record(name: &str, n: u64, closed: bool) -> (PathBuf, Vec<u64>) {
        let path =
            std::env::temp_dir().join(format!("parkscope-top-from-{}-{name}.psrec", std::process::id()));
        let mut w = Writer::new(Vec::new(), &header()).unwrap();
        let mut offsets = Vec::new();
        for i in 0..n {
            offsets.push(w.bytes());
            w.write_snapshot(&snapshot(i)).unwrap();
        }
        let bytes = if closed {
            let end = End { reason: "duration".into(), snapshots: n, ended_at: Timestamp::default() };
            w.finish(&end).unwrap()
        } else {
            w.into_inner()
        };
        std::fs::write(&path, bytes).unwrap();
        (path, offsets)
    }

    /// The snapshot number of what the source hands over next, if a sample.
    fn shown(source: &mut RecordingSource) -> Option<u64> {
        loop {
            match source.poll() {
                Some(Update::Sample(s)) => return Some(s.snapshot.summary.threads as u64),
                Some(_) => {}
                None => return None,
            }
        }
    }

    #[test]
    fn steps_and_seeks_stay_in_range_and_decode_exactly() {
        let n = 2 * KEYFRAME_EVERY + 50;
        let (path, _) = record("steps", n, true);
        let mut s = RecordingSource::open(&path).unwrap();
        assert_eq!(shown(&mut s), Some(0));
        assert_eq!(shown(&mut s), None, "nothing new while paused");
        s.step(-1);
        assert_eq!(shown(&mut s), None, "no step before the first");
        assert_eq!(s.position().index, 0);
        s.step(1);
        assert_eq!(shown(&mut s), Some(1));
        // Far past the end: the last one (indexing the rest on the way).
        s.step(1_000_000);
        assert_eq!(shown(&mut s), Some(n - 1));
        let p = s.position();
        assert_eq!((p.index, p.count, p.complete, p.damaged_at), (n as usize - 1, n as usize, true, None));
        assert_eq!(p.length_ns, (n - 1) * SEC);
        s.step(1);
        assert_eq!(shown(&mut s), None, "no step after the last");
        // Keyframes where the writer puts them, deltas in between: seeks below decode from one.
        let keyframes: Vec<usize> = (0..s.index.len()).filter(|&i| s.index[i].keyframe).collect();
        assert_eq!(keyframes, [0, KEYFRAME_EVERY as usize, 2 * KEYFRAME_EVERY as usize]);
        // Back across a keyframe, and a seek into the middle of a keyframe's run: decoded from
        // the keyframe before it, exactly what was written.
        s.seek(KEYFRAME_EVERY * SEC + SEC / 2);
        assert_eq!(shown(&mut s), Some(KEYFRAME_EVERY));
        s.step(-1);
        let Some(Update::Sample(got)) = s.poll() else { panic!("a sample") };
        assert_eq!(got.snapshot, snapshot(KEYFRAME_EVERY - 1));
        // The thread-level SCHED line of the snapshot's own instant, timed from the start.
        let line = got.sched_line.as_deref().unwrap();
        assert!(line.starts_with(&format!("SCHED {}ms:", (KEYFRAME_EVERY - 1) * 1000 + 20)), "{line}");
        s.seek(0);
        assert_eq!(shown(&mut s), Some(0));
        s.seek(u64::MAX);
        assert_eq!(shown(&mut s), Some(n - 1));
        assert_eq!(s.outcome(&path), (None, code::SUCCESS));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn playback_follows_the_recorded_pace_and_stops_at_the_end() {
        let (path, _) = record("play", 3, true);
        let mut s = RecordingSource::open(&path).unwrap();
        assert_eq!(shown(&mut s), Some(0));
        s.set_speed(64.0);
        s.set_playing(true);
        let start = Instant::now();
        let mut seen = Vec::new();
        while seen.len() < 2 && start.elapsed() < Duration::from_secs(5) {
            seen.extend(shown(&mut s));
        }
        assert_eq!(seen, [1, 2]);
        // Two recorded seconds at 64x: at least 31 ms.
        assert!(start.elapsed() >= Duration::from_millis(31), "{:?}", start.elapsed());
        assert_eq!(shown(&mut s), None);
        assert!(!s.position().playing, "playback stops at the end");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_truncated_recording_replays_up_to_the_damage_and_exits_9() {
        let (path, offsets) = record("torn", 8, false);
        let bytes = std::fs::read(&path).unwrap();
        // Cut inside the sixth snapshot's chunk.
        std::fs::write(&path, &bytes[..offsets[5] as usize + 20]).unwrap();
        let mut s = RecordingSource::open(&path).unwrap();
        assert_eq!(shown(&mut s), Some(0));
        s.step(100);
        let mut ended = None;
        let mut last = None;
        while let Some(u) = s.poll() {
            match u {
                Update::Sample(x) => last = Some(x.snapshot.summary.threads),
                Update::Ended(why) => ended = Some(why),
                Update::Warning(w) => panic!("unexpected warning {w}"),
            }
        }
        assert_eq!(last, Some(4), "the last snapshot before the damage");
        let why = ended.expect("the viewer is told the recording ends early");
        assert!(why.starts_with(&format!("recording ends early at byte {}: ", offsets[5])), "{why}");
        let p = s.position();
        assert_eq!((p.count, p.complete, p.damaged_at), (5, true, Some(offsets[5])));
        s.seek(u64::MAX);
        assert_eq!(shown(&mut s), None, "nothing past the damage");
        let (words, exit) = s.outcome(&path);
        assert_eq!(exit, code::BAD_RECORDING);
        let words = words.unwrap();
        assert!(words.contains(&format!("at byte {}: expected", offsets[5])), "{words}");
        assert!(words.ends_with("replayed the 5 snapshots before it"), "{words}");
        std::fs::remove_file(path).unwrap();
    }

    /// A delta whose framing is sound but which names a thread the snapshot before it lacks:
    /// found when decoded, not when indexed; the replay stops before it just the same.
    #[test]
    fn a_delta_that_does_not_decode_ends_the_replay_there() {
        use parkscope_recording::{ChunkKind, Limits, chunk};
        let (path, offsets) = record("bad-delta", 8, true);
        let bytes = std::fs::read(&path).unwrap();
        let (c, next) = chunk::read_chunk(&mut &bytes[offsets[3] as usize..], offsets[3], &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(next, offsets[4]);
        let mut delta: serde_json::Value = serde_json::from_slice(&c.raw).unwrap();
        assert_eq!(delta["keyframe"], false);
        delta["threads"]["order"] = serde_json::json!([999]);
        let mut damaged = bytes[..offsets[3] as usize].to_vec();
        damaged.extend(chunk::encode(ChunkKind::Snapshot, &serde_json::to_vec(&delta).unwrap()).unwrap());
        damaged.extend_from_slice(&bytes[offsets[4] as usize..]);
        std::fs::write(&path, damaged).unwrap();

        let mut s = RecordingSource::open(&path).unwrap();
        s.index_all();
        assert_eq!(s.position().count, 8, "the index cannot see it");
        s.step(5);
        let mut last = None;
        let mut ended = None;
        while let Some(u) = s.poll() {
            match u {
                Update::Sample(x) => last = Some(x.snapshot.summary.threads),
                Update::Ended(why) => ended = Some(why),
                Update::Warning(w) => panic!("unexpected warning {w}"),
            }
        }
        assert_eq!(last, Some(2), "the last snapshot before the bad delta");
        let why = ended.unwrap();
        assert!(
            why.contains(&format!("at byte {}: expected threads 999 in the previous snapshot", offsets[3])),
            "{why}"
        );
        assert_eq!(s.position().count, 3);
        assert_eq!(s.position().damaged_at, Some(offsets[3]));
        assert_eq!(s.outcome(&path).1, code::BAD_RECORDING);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn an_unclosed_recording_replays_whole_and_says_so() {
        let (path, _) = record("unclosed", 3, false);
        let mut s = RecordingSource::open(&path).unwrap();
        s.index_all();
        let mut warned = false;
        while let Some(u) = s.poll() {
            warned |= matches!(u, Update::Warning(w) if w.contains("not closed"));
        }
        assert!(warned);
        let (words, exit) = s.outcome(&path);
        assert_eq!(exit, code::SUCCESS);
        assert!(words.unwrap().contains("was not closed"));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn what_is_not_a_replayable_recording_fails_before_the_terminal() {
        let fail = |path: &Path| RecordingSource::open(path).err().expect("open fails");
        let dir = std::env::temp_dir();
        let other = dir.join(format!("parkscope-top-from-{}-other", std::process::id()));
        std::fs::write(&other, b"not a recording at all\n").unwrap();
        let f = fail(&other);
        assert_eq!(f.code, code::BAD_RECORDING);
        assert!(f.cause.contains("at byte 0: expected a parkscope recording"), "{}", f.cause);
        assert!(f.hint.is_some());
        std::fs::remove_file(&other).unwrap();

        let (empty, _) = record("empty", 0, true);
        let f = fail(&empty);
        assert_eq!(f.code, code::BAD_RECORDING);
        assert!(f.cause.ends_with("holds no snapshot"), "{}", f.cause);
        std::fs::remove_file(&empty).unwrap();

        // Damaged inside its first snapshot: nothing to show.
        let (torn, offsets) = record("torn-first", 2, true);
        let bytes = std::fs::read(&torn).unwrap();
        std::fs::write(&torn, &bytes[..offsets[0] as usize + 10]).unwrap();
        let f = fail(&torn);
        assert_eq!(f.code, code::BAD_RECORDING);
        assert!(
            f.cause.contains(&format!("at byte {}: expected a 16-byte chunk header", offsets[0])),
            "{}",
            f.cause
        );
        std::fs::remove_file(&torn).unwrap();

        let f = fail(&dir.join("parkscope-no-such-recording"));
        assert_eq!(f.code, code::BAD_RECORDING);
        assert!(f.cause.starts_with("cannot open recording"), "{}", f.cause);
    }
}
