//! tokio-console's task warnings, decided from a task's stats the way tokio-console decides
//! them (its `warnings` module and task state, re-implemented here from reading them), so a
//! snapshot flags the same tasks the console's UI would at the same instant.
//!
//! All five of tokio-console's default lints, with its default thresholds and its names (the
//! ones its `--warn`/`--allow` flags take): `self-wakes`, `lost-waker`, `never-yielded`,
//! `auto-boxed-future`, `large-future`. Blocking tasks (`kind` `blocking` or `block_on`) are
//! exempt from all but `auto-boxed-future`, as there.

/// A task's stats at one instant, times as ns since the Unix epoch (the console's wall clock).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskStats {
    pub created_at: u64,
    pub dropped_at: Option<u64>,
    pub last_wake: Option<u64>,
    pub last_poll_started: Option<u64>,
    pub last_poll_ended: Option<u64>,
    pub polls: u64,
    /// Sum of completed polls (the current one, if any, is not in it).
    pub busy_ns: u64,
    /// Sum of completed waits between a wake and the poll that followed.
    pub scheduled_ns: u64,
    pub wakes: u64,
    pub waker_clones: u64,
    pub waker_drops: u64,
    pub self_wakes: u64,
}

/// A self-wake share above this percentage is `self-wakes` (tokio-console's default).
pub const SELF_WAKE_PERCENT: u64 = 50;
/// A task still in its first poll for this long is `never-yielded` (tokio-console's default).
pub const NEVER_YIELDED_NS: u64 = 1_000_000_000;
/// A future of at least this many bytes is `large-future` (tokio-console's default).
pub const LARGE_FUTURE_BYTES: u64 = 1024;

impl TaskStats {
    pub fn is_completed(&self) -> bool {
        self.dropped_at.is_some()
    }

    /// Being polled now: the last poll started after the last one ended (None sorts first,
    /// so a first poll still running counts).
    pub fn is_running(&self) -> bool {
        self.last_poll_started > self.last_poll_ended
    }

    /// Woken and not yet polled since.
    pub fn is_scheduled(&self) -> bool {
        self.last_wake > self.last_poll_started
    }

    /// Not polled yet, or woken since its last poll started: it will run without another wake.
    pub fn is_awakened(&self) -> bool {
        self.polls == 0 || self.last_wake > self.last_poll_started
    }

    pub fn waker_count(&self) -> u64 {
        self.waker_clones.saturating_sub(self.waker_drops)
    }

    pub fn state(&self) -> parkscope_model::TaskState {
        use parkscope_model::TaskState;
        if self.is_completed() {
            TaskState::Completed
        } else if self.is_running() {
            TaskState::Running
        } else if self.is_scheduled() {
            TaskState::Scheduled
        } else {
            TaskState::Idle
        }
    }

    /// Busy time up to `now`, counting the poll in progress.
    pub fn busy_at(&self, now: u64) -> u64 {
        match self.last_poll_started {
            Some(started) if self.is_running() => self.busy_ns.saturating_add(now.saturating_sub(started)),
            _ => self.busy_ns,
        }
    }

    /// Scheduled time up to `now`, counting a wake not yet followed by a poll.
    pub fn scheduled_at(&self, now: u64) -> u64 {
        match self.last_wake {
            Some(wake) if self.is_scheduled() => self.scheduled_ns.saturating_add(now.saturating_sub(wake)),
            _ => self.scheduled_ns,
        }
    }

    /// Lifetime up to its drop, or up to `now`.
    pub fn total_at(&self, now: u64) -> u64 {
        self.dropped_at.unwrap_or(now).saturating_sub(self.created_at)
    }

    /// The rest of the lifetime: neither polled nor waiting for a worker.
    pub fn idle_at(&self, now: u64) -> u64 {
        if self.is_completed() {
            return self.total_at(now).saturating_sub(self.busy_ns.saturating_add(self.scheduled_ns));
        }
        self.total_at(now).saturating_sub(self.busy_at(now).saturating_add(self.scheduled_at(now)))
    }

    /// Self-wakes as a whole percentage of all wakes, truncated (0 without wakes).
    pub fn self_wake_percent(&self) -> u64 {
        if self.wakes == 0 {
            return 0;
        }
        // u128: a hostile counter must not overflow the product.
        (u128::from(self.self_wakes) * 100 / u128::from(self.wakes)).min(u128::from(u64::MAX)) as u64
    }
}

/// What the warnings are decided from: the stats plus what the task's fields say.
#[derive(Debug, Clone, Copy)]
pub struct LintInput<'a> {
    pub stats: &'a TaskStats,
    /// The task's `kind` field (`task`, `blocking`, `block_on`, `local`).
    pub kind: &'a str,
    pub size_bytes: Option<u64>,
    pub original_size_bytes: Option<u64>,
}

/// The warnings tokio-console gives the task at `now`, each as `name` or `name: detail`.
/// A task in its first poll for less than the threshold gets no `never-yielded` yet (the
/// console re-checks it later; so does the next snapshot).
pub fn warnings(task: LintInput<'_>, now: u64) -> Vec<String> {
    let stats = task.stats;
    let blocking = matches!(task.kind, "blocking" | "block_on");
    let mut out = Vec::new();
    if !blocking {
        let percent = stats.self_wake_percent();
        if percent > SELF_WAKE_PERCENT {
            out.push(format!("self-wakes: {percent}% of {} wakes were self-wakes", stats.wakes));
        }
        if !stats.is_completed() && stats.waker_count() == 0 && !stats.is_running() && !stats.is_awakened() {
            out.push("lost-waker: no waker left, it will never be woken again".to_owned());
        }
        if stats.state() == parkscope_model::TaskState::Running && stats.polls <= 1 {
            let busy = stats.busy_at(now);
            if busy >= NEVER_YIELDED_NS {
                out.push(format!("never-yielded: in its first poll for {} ms", busy / 1_000_000));
            }
        }
    }
    if let (Some(size), Some(original)) = (task.size_bytes, task.original_size_bytes)
        && size != original
    {
        out.push(format!("auto-boxed-future: boxed by the runtime (was {original} bytes, now {size})"));
    }
    if !blocking && let Some(size) = task.size_bytes.filter(|&s| s >= LARGE_FUTURE_BYTES) {
        out.push(format!("large-future: {size} bytes"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn lint(stats: &TaskStats, kind: &str, now: u64) -> Vec<String> {
        warnings(LintInput { stats, kind, size_bytes: None, original_size_bytes: None }, now)
            .into_iter()
            .map(|w| w.split(':').next().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn a_pending_forever_task_has_lost_its_waker() {
        // `std::future::pending()`: polled once, never cloned its waker, never woken.
        let stats = TaskStats {
            created_at: 10 * S,
            last_poll_started: Some(10 * S),
            last_poll_ended: Some(10 * S + 1000),
            polls: 1,
            busy_ns: 1000,
            ..TaskStats::default()
        };
        assert_eq!(lint(&stats, "task", 20 * S), ["lost-waker"]);
        // Holding a waker somewhere (a timer) is not lost.
        let timer = TaskStats { waker_clones: 1, ..stats.clone() };
        assert!(lint(&timer, "task", 20 * S).is_empty());
        // Nor is one woken since its poll, nor a blocking task.
        let woken = TaskStats { last_wake: Some(11 * S), wakes: 1, ..stats.clone() };
        assert!(lint(&woken, "task", 20 * S).is_empty());
        assert!(lint(&stats, "blocking", 20 * S).is_empty());
    }

    #[test]
    fn self_wakes_over_half_of_all_wakes() {
        let base = TaskStats { created_at: S, polls: 10, ..TaskStats::default() };
        let over = TaskStats { wakes: 10, self_wakes: 6, waker_clones: 1, ..base.clone() };
        assert_eq!(lint(&over, "task", 2 * S), ["self-wakes"]);
        // Exactly half is not over half; no wakes is 0%.
        let half = TaskStats { wakes: 10, self_wakes: 5, waker_clones: 1, ..base.clone() };
        assert!(lint(&half, "task", 2 * S).is_empty());
        let none = TaskStats { waker_clones: 1, ..base };
        assert!(lint(&none, "task", 2 * S).is_empty());
        // Truncated, as the console prints it: 2 of 3 is 66%.
        assert_eq!(TaskStats { wakes: 3, self_wakes: 2, ..TaskStats::default() }.self_wake_percent(), 66);
    }

    #[test]
    fn never_yielded_after_a_second_in_the_first_poll() {
        let stats = TaskStats { created_at: S, last_poll_started: Some(S), polls: 1, ..TaskStats::default() };
        assert!(stats.is_running());
        assert!(lint(&stats, "task", S + S / 2).is_empty(), "not yet: half a second");
        assert_eq!(lint(&stats, "task", 2 * S + 1), ["never-yielded"]);
        assert_eq!(stats.busy_at(3 * S), 2 * S);
        // A task that has yielded before is a long poll, not never-yielded.
        let yielded = TaskStats { polls: 2, waker_clones: 1, ..stats.clone() };
        assert!(lint(&yielded, "task", 5 * S).is_empty());
        assert!(lint(&stats, "block_on", 5 * S).is_empty());
    }

    #[test]
    fn times_run_up_to_now_like_the_console_shows_them() {
        let stats = TaskStats {
            created_at: 0,
            last_wake: Some(8 * S),
            last_poll_started: Some(5 * S),
            last_poll_ended: Some(6 * S),
            polls: 3,
            busy_ns: 2 * S,
            scheduled_ns: S,
            wakes: 3,
            waker_clones: 3,
            waker_drops: 3,
            ..TaskStats::default()
        };
        assert_eq!(stats.state(), parkscope_model::TaskState::Scheduled);
        assert_eq!(stats.scheduled_at(10 * S), 3 * S);
        assert_eq!(stats.busy_at(10 * S), 2 * S);
        assert_eq!(stats.idle_at(10 * S), 5 * S);
        let done = TaskStats { dropped_at: Some(9 * S), ..stats };
        assert_eq!(done.state(), parkscope_model::TaskState::Completed);
        assert_eq!(done.total_at(100 * S), 9 * S);
        assert_eq!(done.idle_at(100 * S), 6 * S);
    }

    #[test]
    fn future_sizes() {
        let stats = TaskStats { polls: 1, waker_clones: 1, ..TaskStats::default() };
        let names = |size, original| {
            warnings(
                LintInput { stats: &stats, kind: "task", size_bytes: size, original_size_bytes: original },
                0,
            )
            .into_iter()
            .map(|w| w.split(':').next().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
        };
        assert_eq!(names(Some(8), Some(20_000)), ["auto-boxed-future"]);
        assert_eq!(names(Some(2048), Some(2048)), ["large-future"]);
        assert!(names(Some(512), Some(512)).is_empty());
    }
}
