//! A bounded time series of the counts the header shows (blocked threads per syscall class,
//! runnable threads, waiting and runnable goroutines), one point per sample, for the History
//! view. Bounded so an hour (or a day) of live viewing holds constant memory.

use std::collections::VecDeque;

use parkscope_model::{GoStatus, Snapshot, SyscallClass};

/// Points kept: an hour at one sample a second.
pub const HISTORY_POINTS: usize = 3600;

/// The counts of one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Point {
    pub at_ns: u64,
    /// Blocked threads per class, in `SyscallClass::ALL` order.
    pub blocked_by_class: [u32; 6],
    pub blocked: u32,
    pub runnable: u32,
    pub running: u32,
    pub goroutines_waiting: u32,
    pub goroutines_runnable: u32,
}

/// The last [`HISTORY_POINTS`] points, oldest first.
#[derive(Debug, Clone)]
pub struct History {
    points: VecDeque<Point>,
    capacity: usize,
}

impl Default for History {
    fn default() -> Self {
        History::with_capacity(HISTORY_POINTS)
    }
}

impl History {
    pub fn with_capacity(capacity: usize) -> History {
        History { points: VecDeque::with_capacity(capacity.min(HISTORY_POINTS)), capacity: capacity.max(1) }
    }

    /// Adds the counts of `snap`; a sample older than the newest point (a replay stepping
    /// back) starts the series over, so the series is always in time order.
    pub fn push(&mut self, snap: &Snapshot) {
        let at_ns = snap.taken_at.monotonic_ns;
        if self.points.back().is_some_and(|p| p.at_ns >= at_ns) {
            self.points.clear();
        }
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        let (waiting, runnable, _) = goroutine_counts(snap);
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        self.points.push_back(Point {
            at_ns,
            blocked_by_class: blocked_by_class(snap).map(n),
            blocked: n(snap.summary.blocked),
            runnable: n(snap.summary.runnable),
            running: n(snap.summary.running),
            goroutines_waiting: n(waiting),
            goroutines_runnable: n(runnable),
        });
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The newest `n` points, oldest first.
    pub fn last(&self, n: usize) -> impl Iterator<Item = &Point> {
        self.points.iter().skip(self.points.len().saturating_sub(n))
    }
}

/// Goroutines in each status, for the header and the history.
pub fn goroutine_counts(snap: &Snapshot) -> (usize, usize, usize) {
    let mut waiting = 0;
    let mut runnable = 0;
    let mut running = 0;
    for g in &snap.goroutines {
        match g.status {
            GoStatus::Waiting => waiting += 1,
            GoStatus::Runnable => runnable += 1,
            GoStatus::Running | GoStatus::Syscall => running += 1,
            _ => {}
        }
    }
    (waiting, runnable, running)
}

/// Blocked threads per class, in [`SyscallClass::ALL`] order.
pub fn blocked_by_class(snap: &Snapshot) -> [usize; 6] {
    SyscallClass::ALL.map(|c| snap.summary.blocked_in(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parkscope_model::Timestamp;

    #[test]
    fn stays_bounded_and_in_order() {
        let mut h = History::with_capacity(3);
        for i in 1..=10u64 {
            let mut s = Snapshot::new(1, "t".into(), Timestamp { monotonic_ns: i, wall_unix_ns: 0 });
            s.summary.blocked = i as usize;
            h.push(&s);
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.last(2).map(|p| p.blocked).collect::<Vec<_>>(), vec![9, 10]);
        h.push(&Snapshot::new(1, "t".into(), Timestamp { monotonic_ns: 2, wall_unix_ns: 0 }));
        assert_eq!(h.len(), 1, "a step back in time starts over");
    }
}
