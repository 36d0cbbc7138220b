//! Where the viewer's snapshots come from. The UI thread only ever polls a [`Source`] without
//! blocking; whatever collects (the live collector on its own thread, a recording reader)
//! sits behind it. Live sources hand over [`Update`]s through a bounded channel
//! ([`ChannelSource`]); replayed ones also offer [`ReplayControl`] (step, seek, speed).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use parkscope_model::Snapshot;

/// One instant as the viewer shows it: the snapshot, and the schedtrace line of the same
/// instant when the producer computed one (the agent renders it; the viewer knows no probes).
#[derive(Debug, Clone)]
pub struct Sample {
    pub snapshot: Snapshot,
    pub sched_line: Option<String>,
}

/// What a source yields.
#[derive(Debug, Clone)]
pub enum Update {
    Sample(Arc<Sample>),
    /// Something went wrong in collection but it goes on (a probe error, a failed read): shown
    /// in the header until the next one.
    Warning(String),
    /// No more samples will come (the target exited, the collector failed): why.
    Ended(String),
}

/// Whether the screen follows a live process or a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Replay,
}

/// A stream of samples the UI polls.
pub trait Source {
    /// The next update if one is ready; never blocks.
    fn poll(&mut self) -> Option<Update>;

    fn mode(&self) -> Mode;

    /// Playback controls, for recordings.
    fn replay(&mut self) -> Option<&mut dyn ReplayControl> {
        None
    }
}

/// Where a replay stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayPosition {
    /// Index of the sample shown, and how many there are.
    pub index: usize,
    pub count: usize,
    /// Time of the sample shown since the first one, and of the last one.
    pub offset_ns: u64,
    pub length_ns: u64,
    pub playing: bool,
    pub speed: f64,
    /// `count` and `length_ns` are final: false while a source streaming a recording from disk
    /// is still indexing it.
    pub complete: bool,
    /// Byte offset where the recording is damaged (it is replayed up to there).
    pub damaged_at: Option<u64>,
}

/// Playback of a recording: the keys `[` `]` (step), `g` (go to a time), `+` `-` (speed) and
/// space (play/pause) drive it.
pub trait ReplayControl {
    /// Moves `by` samples (negative: back) and stops playback.
    fn step(&mut self, by: i64);
    /// Goes to the last sample taken at or before `offset_ns` after the first.
    fn seek(&mut self, offset_ns: u64);
    fn set_playing(&mut self, playing: bool);
    /// Playback speed, 1.0 being real time.
    fn set_speed(&mut self, speed: f64);
    fn position(&self) -> ReplayPosition;
}

/// A live source: a collector thread sends [`Update`]s into a bounded channel (so a stalled
/// UI makes the collector wait rather than memory grow), the UI drains it.
pub struct ChannelSource {
    rx: Receiver<Update>,
    disconnected: bool,
}

impl ChannelSource {
    pub fn new(rx: Receiver<Update>) -> ChannelSource {
        ChannelSource { rx, disconnected: false }
    }
}

impl Source for ChannelSource {
    fn poll(&mut self) -> Option<Update> {
        if self.disconnected {
            return None;
        }
        match self.rx.try_recv() {
            Ok(u) => Some(u),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.disconnected = true;
                Some(Update::Ended("the collector stopped".to_owned()))
            }
        }
    }

    fn mode(&self) -> Mode {
        Mode::Live
    }
}

/// Replay of samples held in memory, played back at the pace they were taken (times the
/// speed). `top --from FILE` does not use it (the agent's recording source streams from disk
/// and implements [`Source`] and [`ReplayControl`] itself); it serves tests and small replays.
pub struct SampleReplay {
    samples: Vec<Arc<Sample>>,
    index: usize,
    /// The shown sample changed and has not been handed to the UI yet.
    pending: bool,
    playing: bool,
    speed: f64,
    /// When the shown sample was handed over (for playback pacing).
    shown_at: Instant,
    ended_sent: bool,
}

impl SampleReplay {
    /// Starts at the first sample, paused.
    pub fn new(samples: Vec<Sample>) -> SampleReplay {
        SampleReplay {
            samples: samples.into_iter().map(Arc::new).collect(),
            index: 0,
            pending: true,
            playing: false,
            speed: 1.0,
            shown_at: Instant::now(),
            ended_sent: false,
        }
    }

    fn at(&self, i: usize) -> u64 {
        self.samples.get(i).map_or(0, |s| s.snapshot.taken_at.monotonic_ns)
    }

    fn go_to(&mut self, index: usize) {
        let index = index.min(self.samples.len().saturating_sub(1));
        if index != self.index {
            self.index = index;
            self.pending = true;
        }
    }
}

impl Source for SampleReplay {
    fn poll(&mut self) -> Option<Update> {
        if self.samples.is_empty() {
            return (!std::mem::replace(&mut self.ended_sent, true))
                .then(|| Update::Ended("the recording holds no snapshot".to_owned()));
        }
        if self.playing && !self.pending && self.index + 1 < self.samples.len() {
            let gap = self.at(self.index + 1).saturating_sub(self.at(self.index));
            let due = Duration::from_nanos((gap as f64 / self.speed) as u64);
            if self.shown_at.elapsed() >= due {
                self.index += 1;
                self.pending = true;
            }
        }
        if self.pending {
            self.pending = false;
            self.shown_at = Instant::now();
            if self.index + 1 == self.samples.len() {
                self.playing = false;
            }
            return Some(Update::Sample(Arc::clone(&self.samples[self.index])));
        }
        None
    }

    fn mode(&self) -> Mode {
        Mode::Replay
    }

    fn replay(&mut self) -> Option<&mut dyn ReplayControl> {
        Some(self)
    }
}

impl ReplayControl for SampleReplay {
    fn step(&mut self, by: i64) {
        self.playing = false;
        let target = (self.index as i64).saturating_add(by).max(0) as usize;
        self.go_to(target);
    }

    fn seek(&mut self, offset_ns: u64) {
        let at = self.at(0).saturating_add(offset_ns);
        // Samples are in time order: the last one taken at or before `at`.
        let index =
            self.samples.partition_point(|s| s.snapshot.taken_at.monotonic_ns <= at).saturating_sub(1);
        self.go_to(index);
    }

    fn set_playing(&mut self, playing: bool) {
        self.playing = playing && self.index + 1 < self.samples.len();
        self.shown_at = Instant::now();
    }

    fn set_speed(&mut self, speed: f64) {
        self.speed = speed.clamp(0.125, 64.0);
    }

    fn position(&self) -> ReplayPosition {
        let last = self.samples.len().saturating_sub(1);
        ReplayPosition {
            index: self.index,
            count: self.samples.len(),
            offset_ns: self.at(self.index).saturating_sub(self.at(0)),
            length_ns: self.at(last).saturating_sub(self.at(0)),
            playing: self.playing,
            speed: self.speed,
            complete: true,
            damaged_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parkscope_model::Timestamp;

    fn sample(at_s: u64) -> Sample {
        let t = Timestamp { monotonic_ns: 100_000_000_000 + at_s * 1_000_000_000, wall_unix_ns: 0 };
        Sample { snapshot: Snapshot::new(1, "t".into(), t), sched_line: None }
    }

    fn shown(u: Option<Update>) -> Option<u64> {
        match u {
            Some(Update::Sample(s)) => Some(s.snapshot.taken_at.monotonic_ns / 1_000_000_000 - 100),
            _ => None,
        }
    }

    #[test]
    fn replay_steps_seeks_and_stays_in_range() {
        let mut r = SampleReplay::new((0..5).map(|i| sample(i * 2)).collect());
        assert_eq!(shown(r.poll()), Some(0));
        assert_eq!(shown(r.poll()), None, "nothing new while paused");
        r.step(1);
        assert_eq!(shown(r.poll()), Some(2));
        r.step(-5);
        assert_eq!(shown(r.poll()), Some(0));
        r.step(100);
        assert_eq!(shown(r.poll()), Some(8));
        r.seek(5_000_000_000);
        assert_eq!(shown(r.poll()), Some(4), "the last sample at or before the time");
        assert_eq!(r.position().index, 2);
        assert_eq!(r.position().length_ns, 8_000_000_000);
        r.seek(0);
        assert_eq!(shown(r.poll()), Some(0));
    }

    #[test]
    fn replay_plays_at_the_recorded_pace_times_speed() {
        let mut r = SampleReplay::new(vec![sample(0), sample(1)]);
        assert_eq!(shown(r.poll()), Some(0));
        r.set_speed(64.0);
        r.set_playing(true);
        // One recorded second at 64x is under 16 ms.
        let start = Instant::now();
        let mut got = None;
        while got.is_none() && start.elapsed() < Duration::from_secs(2) {
            got = shown(r.poll());
        }
        assert_eq!(got, Some(1));
        assert!(start.elapsed() >= Duration::from_millis(15));
        assert!(!r.position().playing, "playback stops at the end");
    }

    #[test]
    fn a_closed_channel_ends_the_live_source() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let mut s = ChannelSource::new(rx);
        assert!(s.poll().is_none());
        tx.send(Update::Warning("w".into())).unwrap();
        assert!(matches!(s.poll(), Some(Update::Warning(_))));
        drop(tx);
        assert!(matches!(s.poll(), Some(Update::Ended(_))));
        assert!(s.poll().is_none());
    }
}
