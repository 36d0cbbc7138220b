//! `parkscope top --from FILE`: the viewer replaying a recording. [`RecordingSource`] streams it
//! from disk: an index of its snapshot chunks (offset, time, keyframe: 32 bytes a snapshot) is
//! built a little at every UI tick, and the snapshot shown is decoded on demand, forward from
//! the one before it or from the last keyframe at or before it (at most
//! `KEYFRAME_EVERY` snapshots away). Memory holds one decoded snapshot and the decoder's state,
//! whatever the recording's length. A damaged recording replays up to the damage, says where
//! in the header, and the command exits 9 after `q`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parkscope_model::Snapshot;
use parkscope_recording::{Header, IndexEntry, Indexer, Item, ReadError, Reader};
use parkscope_viewer::{Mode, ReplayControl, ReplayPosition, Sample, Source, Update};

use crate::{
    error::{Failure, code},
    render,
    session::{Session, Wake},
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
        loop {
            match self.cursor.next_item()? {
                Some(Item::Snapshot(s, offset)) => {
                    let i = self.cursor_next;
                    if self.index.get(i).is_none_or(|e| e.offset != offset) {
                        return Err(ReadError::new(
                            offset,
                            "expected the snapshot the index lists here, found another (the file changed?)",
                        ));
                    }
                    self.cursor_next += 1;
                    if i == j {
                        return Ok(*s);
                    }
                }
                Some(Item::Events(..)) => {}
                Some(Item::End(_, offset)) => {
                    return Err(ReadError::new(offset, "expected a snapshot, found the end chunk"));
                }
                None => {
                    return Err(ReadError::new(
                        self.cursor.offset(),
                        "expected a snapshot, found the end of the file (the file changed?)",
                    ));
                }
            }
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
                let due = Duration::from_secs_f64(gap as f64 / 1e9 / self.speed);
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
    let mut source = {
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
    let stop = Arc::new(AtomicBool::new(false));
    let no_color = parkscope_viewer::no_color_from_env();
    let mut ui = {
        let stop = Arc::clone(&stop);
        tokio::task::spawn_blocking(move || {
            let r = parkscope_viewer::run(&mut source, no_color, &stop);
            (r, source)
        })
    };
    let mut exit = code::SUCCESS;
    let ui_result = loop {
        tokio::select! {
            r = &mut ui => break r,
            wake = session.wait(None) => match wake {
                Wake::Interrupted => {
                    stop.store(true, Ordering::Relaxed);
                    exit = code::INTERRUPTED;
                }
                Wake::TargetExited | Wake::Deadline => {}
            },
        }
    };
    super::top::print_kept_log();
    let (drawn, source) = ui_result.map_err(|e| Failure::internal(&e.into()))?;
    drawn.map_err(|e| Failure::internal(&anyhow::Error::from(e).context("drawing the terminal")))?;
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
