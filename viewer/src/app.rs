//! The viewer's state: the sample on screen and the newest one, the bounded history of counts,
//! which view is shown, the rows each view lists (filtered, grouped, sorted: computed once per
//! sample or key, never per frame), the selection, and what the keys do.

use std::borrow::Cow;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use parkscope_model::{
    GoroutineView, IoInterest, IoWaitView, IoWaiterKind, IoWaits, Snapshot, StackId, SyscallView, TaskState,
    TaskView, ThreadRole, ThreadView,
};

use crate::filter::{Field, Filter, Subject};
use crate::history::History;
use crate::source::{Mode, ReplayPosition, Sample, Update};

/// The views Tab cycles through (Goroutines and Tasks only when the target has them). Tasks
/// lists the console's tasks when the target serves them, else the waiters parked on I/O
/// (`Snapshot::io_waits`): see [`lists_io_waits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Threads,
    Goroutines,
    Tasks,
    History,
}

/// What the bottom line is editing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    None,
    /// The `/` prompt; the filter applies as it is typed when it parses.
    Filter(String),
    /// The `g` prompt of a replay: a time since the first sample.
    GoTo(String),
}

/// A full-screen page over the views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    Detail { item: DetailItem, scroll: u16 },
}

/// What the detail page shows (by identity, so it follows the item across samples).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetailItem {
    Thread(u32),
    Goroutine(u64),
    /// A goroutine group: its stack key.
    Group(u64),
    /// A task by its index key (task id, else console id).
    Task(u64),
    /// A waiter parked on an fd (the Tasks view without console tasks).
    IoWait(IoWaitKey),
}

/// A waiter on an fd by identity (a task waits on an fd once per interest), so its detail
/// page follows it across samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoWaitKey {
    pub fd: i32,
    pub interest: Option<IoInterest>,
    pub waiter: IoWaiterKind,
    pub task_id: Option<u64>,
}

impl IoWaitKey {
    pub fn of(w: &IoWaitView) -> IoWaitKey {
        IoWaitKey { fd: w.fd, interest: w.interest, waiter: w.waiter, task_id: w.task_id }
    }
}

/// What the run loop must do for a key besides redrawing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    None,
    Quit,
    Step(i64),
    Seek(u64),
    TogglePlay,
    Speed(f64),
}

/// A sortable column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortState {
    pub column: usize,
    pub reversed: bool,
}

/// Goroutines parked on one identical stack.
#[derive(Debug, Clone)]
pub struct Group {
    /// Stable across samples (a hash of the frames; ids are per snapshot).
    pub key: u64,
    pub stack_id: StackId,
    /// Indices into `snapshot.goroutines`: in the snapshot's order, and longest waiting first
    /// once the group has been expanded (sorting 100,000 members is done only when shown).
    pub members: Vec<usize>,
    pub members_sorted: bool,
    /// The most common wait reason (or status), and whether members differ.
    pub wait: String,
    pub mixed: bool,
    pub max_wait_ns: Option<u64>,
    /// The innermost frame outside the runtime, as `function file:line`.
    pub place: String,
}

/// A row of the goroutines view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRow {
    Group(usize),
    /// (group, goroutine index)
    Member(usize, usize),
}

/// Selection and scroll of one list.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListState {
    pub selected: usize,
    pub offset: usize,
}

impl ListState {
    fn clamp(&mut self, len: usize) {
        self.selected = self.selected.min(len.saturating_sub(1));
    }

    fn moved(&mut self, by: i64, len: usize) {
        let to = (self.selected as i64).saturating_add(by).clamp(0, len.saturating_sub(1) as i64);
        self.selected = to as usize;
    }

    /// Scrolls so the selection is within `height` rows; returns the visible range.
    pub fn visible(&mut self, len: usize, height: usize) -> std::ops::Range<usize> {
        self.clamp(len);
        if height == 0 {
            return 0..0;
        }
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(height));
        self.offset..(self.offset + height).min(len)
    }
}

/// Column names per view, in order; `SortState::column` indexes these.
pub const THREAD_COLUMNS: [&str; 9] =
    ["TID", "NAME", "ROLE", "STATE", "SYSCALL", "FD", "BLOCKED", "WAKER", "G/TASK"];
pub const THREAD_DEFAULT_SORT: usize = 6;
pub const GROUP_COLUMNS: [&str; 4] = ["COUNT", "WAIT", "LONGEST", "WHERE"];
pub const TASK_COLUMNS: [&str; 8] = ["ID", "NAME", "STATE", "BUSY", "IDLE", "POLLS", "WORKER", "I/O"];
/// The Tasks view's columns when it lists the waiters parked on I/O (no console tasks).
pub const IO_COLUMNS: [&str; 3] = ["TASK", "WAITS FOR", "FD"];
pub const IO_DEFAULT_SORT: usize = 2;

/// Goroutine groups expanded at most this large (bigger ones list their first members).
pub const MAX_EXPANDED_MEMBERS: usize = 10_000;

pub struct App {
    pub mode: Mode,
    pub no_color: bool,
    /// What the screen shows (frozen while paused).
    pub shown: Option<Arc<Sample>>,
    /// The newest sample received (collection goes on while paused).
    pub latest: Option<Arc<Sample>>,
    pub paused: bool,
    pub history: History,
    pub warning: Option<String>,
    pub ended: Option<String>,
    pub replay: Option<ReplayPosition>,
    pub tab: Tab,
    pub input: Input,
    pub overlay: Overlay,
    pub filter_text: String,
    pub filter: Filter,
    pub filter_error: Option<String>,
    pub thread_sort: SortState,
    pub group_sort: SortState,
    pub task_sort: SortState,
    pub io_sort: SortState,
    /// Rows of each view: indices into the shown snapshot.
    pub thread_rows: Vec<usize>,
    pub groups: Vec<Group>,
    pub group_rows: Vec<GroupRow>,
    pub task_rows: Vec<usize>,
    /// Indices into `io_waits.waits`: the Tasks view's rows when it lists waiters on I/O.
    pub io_rows: Vec<usize>,
    /// Console task id -> indices into `io_waits.waits` of its waits (the I/O column).
    pub io_by_task: HashMap<u64, Vec<usize>>,
    /// Goroutines that passed the filter (the groups' total).
    pub goroutines_shown: usize,
    pub expanded: HashSet<u64>,
    /// The tids of `thread_rows`, to keep the selection on its thread across samples.
    thread_tid_cache: Vec<u32>,
    /// The keys of the shown snapshot's `io_waits.waits`, to keep the selection on its waiter.
    io_key_cache: Vec<IoWaitKey>,
    pub threads_list: ListState,
    pub groups_list: ListState,
    pub tasks_list: ListState,
    pub io_list: ListState,
    /// Something changed since the last frame.
    pub dirty: bool,
}

impl App {
    pub fn new(mode: Mode, no_color: bool) -> App {
        App {
            mode,
            no_color,
            shown: None,
            latest: None,
            paused: false,
            history: History::default(),
            warning: None,
            ended: None,
            replay: None,
            tab: Tab::Threads,
            input: Input::None,
            overlay: Overlay::None,
            filter_text: String::new(),
            filter: Filter::default(),
            filter_error: None,
            thread_sort: SortState { column: THREAD_DEFAULT_SORT, reversed: false },
            group_sort: SortState { column: 0, reversed: false },
            task_sort: SortState { column: 2, reversed: false },
            io_sort: SortState { column: IO_DEFAULT_SORT, reversed: false },
            thread_rows: Vec::new(),
            groups: Vec::new(),
            group_rows: Vec::new(),
            task_rows: Vec::new(),
            io_rows: Vec::new(),
            io_by_task: HashMap::new(),
            goroutines_shown: 0,
            expanded: HashSet::new(),
            thread_tid_cache: Vec::new(),
            io_key_cache: Vec::new(),
            threads_list: ListState::default(),
            groups_list: ListState::default(),
            tasks_list: ListState::default(),
            io_list: ListState::default(),
            dirty: true,
        }
    }

    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.shown.as_deref().map(|s| &s.snapshot)
    }

    /// Takes one update from the source.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Sample(sample) => {
                self.history.push(&sample.snapshot);
                self.latest = Some(Arc::clone(&sample));
                // A replay's own pause is its playback; the screen always follows its position.
                if !self.paused || self.mode == Mode::Replay {
                    self.show(sample);
                }
            }
            Update::Warning(w) => {
                self.warning = Some(w);
                self.dirty = !self.paused;
            }
            Update::Ended(why) => {
                self.ended = Some(why);
                self.dirty = !self.paused;
            }
        }
    }

    /// Takes several updates at once: every sample goes into the history, but only the newest
    /// is shown (rows are rebuilt once, not once per queued sample).
    pub fn apply_batch(&mut self, updates: Vec<Update>) {
        let last_sample = updates.iter().rposition(|u| matches!(u, Update::Sample(_)));
        for (i, u) in updates.into_iter().enumerate() {
            match u {
                Update::Sample(sample) if Some(i) != last_sample => {
                    self.history.push(&sample.snapshot);
                    self.latest = Some(sample);
                }
                u => self.apply(u),
            }
        }
    }

    fn show(&mut self, sample: Arc<Sample>) {
        self.shown = Some(sample);
        if self.tab == Tab::Goroutines && self.snapshot().is_some_and(|s| s.goroutines.is_empty())
            || self.tab == Tab::Tasks && self.snapshot().is_some_and(|s| !has_tasks_tab(s))
        {
            self.tab = Tab::Threads;
        }
        self.rebuild();
    }

    /// Recomputes every view's rows from the shown snapshot, keeping the selection on the same
    /// item when it is still listed.
    pub fn rebuild(&mut self) {
        self.dirty = true;
        let Some(sample) = self.shown.clone() else { return };
        let snap = &sample.snapshot;
        let selected_tid = self.thread_tid_cache.get(self.threads_list.selected).copied();
        self.thread_rows = thread_rows(snap, &self.filter, self.thread_sort);
        self.thread_tid_cache = self.thread_rows.iter().map(|&i| snap.threads[i].tid).collect();
        if let Some(tid) = selected_tid
            && let Some(pos) = self.thread_rows.iter().position(|&i| snap.threads[i].tid == tid)
        {
            self.threads_list.selected = pos;
        }
        self.threads_list.clamp(self.thread_rows.len());

        let selected_group = match self.group_rows.get(self.groups_list.selected) {
            Some(GroupRow::Group(g) | GroupRow::Member(g, _)) => self.groups.get(*g).map(|g| g.key),
            None => None,
        };
        let (groups, shown) = group_goroutines(snap, &self.filter, self.group_sort);
        self.groups = groups;
        self.goroutines_shown = shown;
        self.rebuild_group_rows();
        if let Some(key) = selected_group
            && let Some(pos) = self
                .group_rows
                .iter()
                .position(|r| matches!(r, GroupRow::Group(g) if self.groups[*g].key == key))
        {
            self.groups_list.selected = pos;
        }
        self.groups_list.clamp(self.group_rows.len());

        self.io_by_task = io_by_task(snap);
        self.task_rows = task_rows(snap, &self.io_by_task, &self.filter, self.task_sort);
        self.tasks_list.clamp(self.task_rows.len());

        let waits = snap.io_waits.as_ref().map_or(&[][..], |io| io.waits.as_slice());
        let selected_wait =
            self.io_rows.get(self.io_list.selected).and_then(|&i| self.io_key_cache.get(i)).copied();
        self.io_rows =
            if lists_io_waits(snap) { io_wait_rows(waits, &self.filter, self.io_sort) } else { Vec::new() };
        self.io_key_cache = waits.iter().map(IoWaitKey::of).collect();
        if let Some(key) = selected_wait
            && let Some(pos) = self.io_rows.iter().position(|&i| IoWaitKey::of(&waits[i]) == key)
        {
            self.io_list.selected = pos;
        }
        self.io_list.clamp(self.io_rows.len());
    }

    fn rebuild_group_rows(&mut self) {
        self.group_rows.clear();
        let snap = self.shown.as_deref().map(|s| &s.snapshot);
        for (gi, g) in self.groups.iter_mut().enumerate() {
            self.group_rows.push(GroupRow::Group(gi));
            if self.expanded.contains(&g.key) {
                if !g.members_sorted
                    && let Some(snap) = snap
                {
                    let gs = &snap.goroutines;
                    g.members.sort_by_key(|&m| (std::cmp::Reverse(goroutine_wait_ns(&gs[m])), gs[m].goid));
                    g.members_sorted = true;
                }
                self.group_rows
                    .extend(g.members.iter().take(MAX_EXPANDED_MEMBERS).map(|&m| GroupRow::Member(gi, m)));
            }
        }
    }

    /// Applies a key; returns what the run loop must do besides redrawing.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        self.dirty = true;
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        match std::mem::replace(&mut self.input, Input::None) {
            Input::Filter(text) => return self.filter_key(text, key),
            Input::GoTo(text) => return self.goto_key(text, key),
            Input::None => {}
        }
        match &mut self.overlay {
            Overlay::Help => {
                if matches!(key.code, KeyCode::Char('q')) {
                    return Action::Quit;
                }
                self.overlay = Overlay::None;
                return Action::None;
            }
            Overlay::Detail { scroll, .. } => {
                match key.code {
                    KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace => self.overlay = Overlay::None,
                    KeyCode::Char('q') => return Action::Quit,
                    KeyCode::Char('j') | KeyCode::Down => *scroll = scroll.saturating_add(1),
                    KeyCode::Char('k') | KeyCode::Up => *scroll = scroll.saturating_sub(1),
                    KeyCode::PageDown => *scroll = scroll.saturating_add(10),
                    KeyCode::PageUp => *scroll = scroll.saturating_sub(10),
                    KeyCode::Char(' ') => return self.toggle_pause(),
                    _ => {}
                }
                return Action::None;
            }
            Overlay::None => {}
        }
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') => self.overlay = Overlay::Help,
            KeyCode::Char('j') | KeyCode::Down => self.move_selection(1),
            KeyCode::Char('k') | KeyCode::Up => self.move_selection(-1),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::Home => self.move_selection(i64::MIN / 2),
            KeyCode::End => self.move_selection(i64::MAX / 2),
            KeyCode::Tab => self.next_tab(1),
            KeyCode::BackTab => self.next_tab(-1),
            KeyCode::Char('h') | KeyCode::Char('<') | KeyCode::Left => self.move_sort(-1),
            KeyCode::Char('l') | KeyCode::Char('>') | KeyCode::Right => self.move_sort(1),
            KeyCode::Char('i') => {
                if let Some(s) = self.sort_mut() {
                    s.reversed = !s.reversed;
                    self.rebuild();
                }
            }
            KeyCode::Char('/') => self.input = Input::Filter(self.filter_text.clone()),
            KeyCode::Esc if !self.filter_text.is_empty() => self.set_filter(String::new()),
            KeyCode::Enter => self.open_detail(),
            KeyCode::Char('e') | KeyCode::Char('x') if self.tab == Tab::Goroutines => self.toggle_group(),
            KeyCode::Char(' ') => return self.toggle_pause(),
            KeyCode::Char('[') if self.mode == Mode::Replay => return Action::Step(-1),
            KeyCode::Char(']') if self.mode == Mode::Replay => return Action::Step(1),
            KeyCode::Char('g') if self.mode == Mode::Replay => self.input = Input::GoTo(String::new()),
            KeyCode::Char('+') | KeyCode::Char('=') if self.mode == Mode::Replay => {
                return Action::Speed(2.0);
            }
            KeyCode::Char('-') if self.mode == Mode::Replay => return Action::Speed(0.5),
            _ => {}
        }
        Action::None
    }

    fn toggle_pause(&mut self) -> Action {
        if self.mode == Mode::Replay {
            return Action::TogglePlay;
        }
        self.paused = !self.paused;
        if !self.paused
            && let Some(latest) = self.latest.clone()
            && !self.shown.as_ref().is_some_and(|s| Arc::ptr_eq(s, &latest))
        {
            self.show(latest);
        }
        Action::None
    }

    fn filter_key(&mut self, mut text: String, key: KeyEvent) -> Action {
        match key.code {
            KeyCode::Enter => {
                // Kept open while it does not parse, so the error stays next to the text.
                if self.filter_error.is_some() {
                    self.input = Input::Filter(text);
                }
                return Action::None;
            }
            // Esc cancels the prompt and the filter with it (Enter keeps a filter).
            KeyCode::Esc => {
                self.set_filter(String::new());
                return Action::None;
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => text.clear(),
            KeyCode::Char(c) if text.len() < crate::filter::MAX_FILTER_LEN => text.push(c),
            _ => {}
        }
        self.set_filter(text.clone());
        self.input = Input::Filter(text);
        Action::None
    }

    /// Sets the filter text; applies it when it parses, else keeps the last good one and
    /// shows why.
    pub fn set_filter(&mut self, text: String) {
        match Filter::parse(&text) {
            Ok(f) => {
                self.filter = f;
                self.filter_error = None;
                self.filter_text = text;
                self.rebuild();
            }
            Err(e) => {
                self.filter_error = Some(e.to_string());
                self.filter_text = text;
            }
        }
    }

    fn goto_key(&mut self, mut text: String, key: KeyEvent) -> Action {
        match key.code {
            KeyCode::Enter => match crate::filter::parse_duration(text.trim()) {
                Some(ns) => {
                    self.warning = None;
                    return Action::Seek(ns);
                }
                None => {
                    self.warning = Some(format!("go to: `{text}` is not a time like 90s, 1.5m"));
                    return Action::None;
                }
            },
            KeyCode::Esc => return Action::None,
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if text.len() < 32 => text.push(c),
            _ => {}
        }
        self.input = Input::GoTo(text);
        Action::None
    }

    fn tabs(&self) -> Vec<Tab> {
        let mut tabs = vec![Tab::Threads];
        if let Some(s) = self.snapshot() {
            if !s.goroutines.is_empty() {
                tabs.push(Tab::Goroutines);
            }
            if has_tasks_tab(s) {
                tabs.push(Tab::Tasks);
            }
        }
        tabs.push(Tab::History);
        tabs
    }

    /// The tabs shown in the tab bar, in order.
    pub fn visible_tabs(&self) -> Vec<Tab> {
        self.tabs()
    }

    fn next_tab(&mut self, by: i64) {
        let tabs = self.tabs();
        let at = tabs.iter().position(|t| *t == self.tab).unwrap_or(0) as i64;
        self.tab = tabs[(at + by).rem_euclid(tabs.len() as i64) as usize];
    }

    fn sort_mut(&mut self) -> Option<&mut SortState> {
        match self.tab {
            Tab::Threads => Some(&mut self.thread_sort),
            Tab::Goroutines => Some(&mut self.group_sort),
            Tab::Tasks if self.lists_io_waits() => Some(&mut self.io_sort),
            Tab::Tasks => Some(&mut self.task_sort),
            Tab::History => None,
        }
    }

    fn move_sort(&mut self, by: i64) {
        let columns = match self.tab {
            Tab::Threads => THREAD_COLUMNS.len(),
            Tab::Goroutines => GROUP_COLUMNS.len(),
            Tab::Tasks if self.lists_io_waits() => IO_COLUMNS.len(),
            Tab::Tasks => TASK_COLUMNS.len(),
            Tab::History => return,
        };
        if let Some(s) = self.sort_mut() {
            s.column = (s.column as i64 + by).rem_euclid(columns as i64) as usize;
            s.reversed = false;
            self.rebuild();
        }
    }

    /// Whether the Tasks view lists waiters on I/O (see [`lists_io_waits`]).
    pub fn lists_io_waits(&self) -> bool {
        self.snapshot().is_some_and(lists_io_waits)
    }

    fn move_selection(&mut self, by: i64) {
        match self.tab {
            Tab::Threads => self.threads_list.moved(by, self.thread_rows.len()),
            Tab::Goroutines => self.groups_list.moved(by, self.group_rows.len()),
            Tab::Tasks if self.lists_io_waits() => self.io_list.moved(by, self.io_rows.len()),
            Tab::Tasks => self.tasks_list.moved(by, self.task_rows.len()),
            Tab::History => {}
        }
    }

    fn toggle_group(&mut self) {
        let Some(&row) = self.group_rows.get(self.groups_list.selected) else { return };
        let gi = match row {
            GroupRow::Group(g) | GroupRow::Member(g, _) => g,
        };
        let key = self.groups[gi].key;
        if !self.expanded.remove(&key) {
            self.expanded.insert(key);
        }
        self.rebuild_group_rows();
        // Keep the selection on the group's own row.
        if let Some(pos) = self.group_rows.iter().position(|r| *r == GroupRow::Group(gi)) {
            self.groups_list.selected = pos;
        }
    }

    fn open_detail(&mut self) {
        let Some(snap) = self.snapshot() else { return };
        let item = match self.tab {
            Tab::Threads => self
                .thread_rows
                .get(self.threads_list.selected)
                .map(|&i| DetailItem::Thread(snap.threads[i].tid)),
            Tab::Goroutines => match self.group_rows.get(self.groups_list.selected) {
                Some(GroupRow::Group(g)) => Some(DetailItem::Group(self.groups[*g].key)),
                Some(GroupRow::Member(_, m)) => Some(DetailItem::Goroutine(snap.goroutines[*m].goid)),
                None => None,
            },
            Tab::Tasks if lists_io_waits(snap) => self.io_rows.get(self.io_list.selected).and_then(|&i| {
                snap.io_waits.as_ref().map(|io| DetailItem::IoWait(IoWaitKey::of(&io.waits[i])))
            }),
            Tab::Tasks => self
                .task_rows
                .get(self.tasks_list.selected)
                .map(|&i| DetailItem::Task(task_key(&snap.tasks[i], i))),
            Tab::History => None,
        };
        if let Some(item) = item {
            self.overlay = Overlay::Detail { item, scroll: 0 };
        }
    }
}

/// Whether the Tasks view lists the waiters parked on I/O (the target serves no console tasks)
/// rather than console tasks (which then show their fds in a column).
pub fn lists_io_waits(snap: &Snapshot) -> bool {
    snap.tasks.is_empty()
}

/// Whether the Tasks view is offered: console tasks, or waiters parked on I/O, or why those
/// could not be read (the view's empty line says it).
pub fn has_tasks_tab(snap: &Snapshot) -> bool {
    !snap.tasks.is_empty()
        || snap.io_waits.as_ref().is_some_and(|io| !io.waits.is_empty() || io.error.is_some())
}

/// How many distinct tasks are parked on I/O (`block_on` and `other` waiters are no tasks).
pub fn tasks_parked_on_io(io: &IoWaits) -> usize {
    let mut ids: Vec<u64> =
        io.waits.iter().filter(|w| w.waiter == IoWaiterKind::Task).filter_map(|w| w.task_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

/// The distinct fds among `waits` (indices into `io.waits`), in order of first appearance.
pub fn distinct_fds(io: &IoWaits, waits: &[usize]) -> Vec<i32> {
    let mut fds: Vec<i32> = Vec::new();
    for &i in waits {
        if !fds.contains(&io.waits[i].fd) {
            fds.push(io.waits[i].fd);
        }
    }
    fds
}

fn io_by_task(snap: &Snapshot) -> HashMap<u64, Vec<usize>> {
    let mut by_task: HashMap<u64, Vec<usize>> = HashMap::new();
    if snap.tasks.is_empty() {
        return by_task;
    }
    if let Some(io) = &snap.io_waits {
        for (i, w) in io.waits.iter().enumerate() {
            if let (IoWaiterKind::Task, Some(id)) = (w.waiter, w.task_id) {
                by_task.entry(id).or_default().push(i);
            }
        }
    }
    by_task
}

/// A task's identity for the detail page.
pub fn task_key(t: &TaskView, index: usize) -> u64 {
    t.task_id.or(t.console_id).unwrap_or(index as u64)
}

/// A thread counts as stuck: blocked, and not a runtime thread that waits by design.
pub fn thread_is_stuck(t: &ThreadView) -> bool {
    t.state.is_blocked() && !t.role.is_some_and(ThreadRole::is_idle_by_design)
}

fn thread_rows(snap: &Snapshot, filter: &Filter, sort: SortState) -> Vec<usize> {
    let mut rows: Vec<usize> =
        (0..snap.threads.len()).filter(|&i| filter.matches(&ThreadSubject(&snap.threads[i]))).collect();
    let t = |i: usize| &snap.threads[i];
    // The display order (stuck first, longest first, by tid) breaks every tie.
    let display = |i: usize| {
        let t = t(i);
        (
            !thread_is_stuck(t),
            std::cmp::Reverse(t.syscall.as_ref().and_then(SyscallView::time_ns).unwrap_or(0)),
            t.tid,
        )
    };
    let text = |s: Option<&str>| s.map(str::to_owned);
    match sort.column {
        0 => rows.sort_by_key(|&i| t(i).tid),
        1 => rows.sort_by_key(|&i| (t(i).name.clone(), display(i))),
        2 => rows.sort_by_key(|&i| {
            (t(i).role.map(ThreadRole::as_str).is_none(), t(i).role.map(ThreadRole::as_str), display(i))
        }),
        3 => rows.sort_by_key(|&i| (t(i).state, display(i))),
        4 => rows.sort_by_key(|&i| {
            (t(i).syscall.is_none(), text(t(i).syscall.as_ref().map(|c| c.name.as_str())), display(i))
        }),
        5 => rows.sort_by_key(|&i| {
            let c = t(i).syscall.as_ref();
            (
                c.and_then(|c| c.fd).is_none(),
                text(c.and_then(|c| c.fd_desc.as_deref())),
                c.and_then(|c| c.fd),
                display(i),
            )
        }),
        7 => rows.sort_by_key(|&i| {
            (
                t(i).syscall.as_ref().and_then(|c| c.waker_tid).is_none(),
                t(i).syscall.as_ref().and_then(|c| c.waker_tid),
                display(i),
            )
        }),
        8 => rows.sort_by_key(|&i| {
            (t(i).goroutine.or(t(i).task.as_ref().map(|k| k.task_id)).is_none(), t(i).goroutine, display(i))
        }),
        _ => rows.sort_by_key(|&i| display(i)),
    }
    if sort.reversed {
        rows.reverse();
    }
    rows
}

/// How long a goroutine has waited (or been in its status), the best the snapshot knows.
pub fn goroutine_wait_ns(g: &GoroutineView) -> Option<u64> {
    g.waiting_ns.or(g.status_ns).or_else(|| g.syscall.as_ref().and_then(SyscallView::time_ns))
}

/// The wait reason, else the status.
pub fn goroutine_wait(g: &GoroutineView) -> &str {
    g.wait_reason.as_deref().unwrap_or(g.status.as_str())
}

/// The innermost frame outside Go's runtime: where the goroutine's own code waits.
pub fn place_of(snap: &Snapshot, id: StackId) -> String {
    let frames = snap.stacks.get(id);
    let f = frames
        .iter()
        .find(|f| {
            f.function.as_deref().is_some_and(|n| !n.starts_with("runtime.") && !n.starts_with("internal/"))
        })
        .or(frames.first());
    match f {
        None => String::new(),
        Some(f) => {
            let mut s = f.short_name();
            if let (Some(file), Some(line)) = (&f.file, f.line) {
                s.push_str(&format!(" {}:{line}", file.rsplit('/').next().unwrap_or(file)));
            }
            s
        }
    }
}

fn stack_key(snap: &Snapshot, id: StackId, fallback: &str) -> u64 {
    let mut h = DefaultHasher::new();
    let frames = snap.stacks.get(id);
    frames.hash(&mut h);
    if frames.is_empty() {
        // Goroutines without a stack still group by what they wait for.
        fallback.hash(&mut h);
    }
    h.finish()
}

/// Groups the goroutines that pass the filter by identical stack; returns the groups and how
/// many goroutines they hold.
fn group_goroutines(snap: &Snapshot, filter: &Filter, sort: SortState) -> (Vec<Group>, usize) {
    // Stacks are interned, so one id is one stack; goroutines without a stack group by reason.
    let mut by_stack: HashMap<(StackId, &str), Vec<usize>> = HashMap::new();
    let mut shown = 0;
    let mut verdict_by_stack: HashMap<StackId, bool> = HashMap::new();
    let func_terms = filter.uses(Field::Func);
    for (i, g) in snap.goroutines.iter().enumerate() {
        let ok = if func_terms && filter.only_uses(Field::Func) {
            // A function-only filter depends on the stack alone: decide it once per stack.
            *verdict_by_stack.entry(g.stack_id).or_insert_with(|| filter.matches(&GoroutineSubject(g, snap)))
        } else {
            filter.matches(&GoroutineSubject(g, snap))
        };
        if !ok {
            continue;
        }
        shown += 1;
        let reason = if g.stack_id.is_empty() { goroutine_wait(g) } else { "" };
        by_stack.entry((g.stack_id, reason)).or_default().push(i);
    }
    let mut groups: Vec<Group> = by_stack
        .into_iter()
        .map(|((stack_id, reason), members)| {
            // One stack nearly always has one or two wait reasons: a short list beats a map.
            let mut reasons: Vec<(&str, usize)> = Vec::new();
            let mut max_wait_ns = None;
            for &m in &members {
                let g = &snap.goroutines[m];
                let r = goroutine_wait(g);
                match reasons.iter_mut().find(|(known, _)| *known == r) {
                    Some((_, n)) => *n += 1,
                    None => reasons.push((r, 1)),
                }
                max_wait_ns = max_wait_ns.max(goroutine_wait_ns(g));
            }
            let mixed = reasons.len() > 1;
            let wait = reasons
                .into_iter()
                .max_by_key(|&(r, n)| (n, std::cmp::Reverse(r)))
                .map_or("", |(r, _)| r)
                .to_owned();
            Group {
                key: stack_key(snap, stack_id, reason),
                stack_id,
                wait,
                mixed,
                max_wait_ns,
                place: if stack_id.is_empty() {
                    snap.goroutines[members[0]].start.clone()
                } else {
                    place_of(snap, stack_id)
                },
                members,
                members_sorted: false,
            }
        })
        .collect();
    match sort.column {
        1 => groups.sort_by(|a, b| {
            a.wait.cmp(&b.wait).then(b.members.len().cmp(&a.members.len())).then(a.key.cmp(&b.key))
        }),
        2 => groups.sort_by(|a, b| {
            b.max_wait_ns
                .cmp(&a.max_wait_ns)
                .then(b.members.len().cmp(&a.members.len()))
                .then(a.key.cmp(&b.key))
        }),
        3 => groups.sort_by(|a, b| a.place.cmp(&b.place).then(a.key.cmp(&b.key))),
        _ => groups.sort_by(|a, b| {
            b.members
                .len()
                .cmp(&a.members.len())
                .then(b.max_wait_ns.cmp(&a.max_wait_ns))
                .then(a.place.cmp(&b.place))
        }),
    }
    if sort.reversed {
        groups.reverse();
    }
    (groups, shown)
}

fn task_rows(
    snap: &Snapshot,
    io_by_task: &HashMap<u64, Vec<usize>>,
    filter: &Filter,
    sort: SortState,
) -> Vec<usize> {
    let waits = snap.io_waits.as_ref().map_or(&[][..], |io| io.waits.as_slice());
    let waits_of = |t: &TaskView| -> Vec<&IoWaitView> {
        t.task_id
            .and_then(|id| io_by_task.get(&id))
            .map_or_else(Vec::new, |ix| ix.iter().map(|&i| &waits[i]).collect())
    };
    let mut rows: Vec<usize> = (0..snap.tasks.len())
        .filter(|&i| {
            let t = &snap.tasks[i];
            filter.matches(&TaskSubject(t, &waits_of(t)))
        })
        .collect();
    let t = |i: usize| &snap.tasks[i];
    let state_rank = |s: TaskState| match s {
        TaskState::Running => 0,
        TaskState::Scheduled => 1,
        TaskState::Idle => 2,
        TaskState::Completed => 3,
    };
    match sort.column {
        0 => rows.sort_by_key(|&i| (task_key(t(i), i), i)),
        1 => rows.sort_by_key(|&i| (t(i).name.clone(), i)),
        3 => rows.sort_by_key(|&i| (std::cmp::Reverse(t(i).busy_ns), i)),
        4 => rows.sort_by_key(|&i| (std::cmp::Reverse(t(i).idle_ns), i)),
        5 => rows.sort_by_key(|&i| (std::cmp::Reverse(t(i).polls), i)),
        6 => rows.sort_by_key(|&i| (t(i).worker_tid.is_none(), t(i).worker_tid, i)),
        7 => rows.sort_by_key(|&i| {
            // By the first fd waited on (its description, then its number); tasks on none last.
            let first = waits_of(t(i)).first().map(|w| (w.fd_desc.clone(), w.fd));
            let fd = first.or_else(|| t(i).io_fd.map(|fd| (t(i).io_fd_desc.clone(), fd)));
            (fd.is_none(), fd, i)
        }),
        _ => rows.sort_by_key(|&i| (state_rank(t(i).state), std::cmp::Reverse(t(i).busy_ns), i)),
    }
    if sort.reversed {
        rows.reverse();
    }
    rows
}

/// The waiters on I/O that pass the filter, sorted: by fd (so waiters on one fd are together),
/// by task, or by what they wait for.
fn io_wait_rows(waits: &[IoWaitView], filter: &Filter, sort: SortState) -> Vec<usize> {
    let mut rows: Vec<usize> =
        (0..waits.len()).filter(|&i| filter.matches(&IoWaitSubject(&waits[i]))).collect();
    let w = |i: usize| &waits[i];
    let waiter_rank = |k: IoWaiterKind| match k {
        IoWaiterKind::Task => 0,
        IoWaiterKind::BlockOn => 1,
        IoWaiterKind::Other => 2,
    };
    let interest_rank = |i: Option<IoInterest>| match i {
        Some(IoInterest::Read) => 0,
        Some(IoInterest::Write) => 1,
        Some(IoInterest::ReadWrite) => 2,
        None => 3,
    };
    let who = |i: usize| (waiter_rank(w(i).waiter), w(i).task_id);
    match sort.column {
        0 => rows.sort_by_key(|&i| (who(i), w(i).fd, interest_rank(w(i).interest), i)),
        1 => rows.sort_by_key(|&i| (interest_rank(w(i).interest), w(i).fd, who(i), i)),
        _ => rows.sort_by_key(|&i| (w(i).fd, interest_rank(w(i).interest), who(i), i)),
    }
    if sort.reversed {
        rows.reverse();
    }
    rows
}

/// A thread as the filter sees it.
pub struct ThreadSubject<'a>(pub &'a ThreadView);

impl Subject for ThreadSubject<'_> {
    fn text(&self, field: Field) -> Option<Cow<'_, str>> {
        let t = self.0;
        let call = t.syscall.as_ref();
        match field {
            Field::Name => Some(t.name.as_str().into()),
            Field::State => Some(t.state.as_str().into()),
            Field::Role => t.role.map(|r| r.as_str().into()),
            Field::Syscall => call.map(|c| c.name.as_str().into()),
            Field::Class => call.map(|c| c.class.as_str().into()),
            Field::Fd => call.and_then(|c| c.fd_desc.as_deref()).map(Into::into),
            _ => None,
        }
    }

    fn number(&self, field: Field) -> Option<u64> {
        let t = self.0;
        let call = t.syscall.as_ref();
        match field {
            Field::Tid => Some(t.tid.into()),
            Field::Fd => call.and_then(|c| c.fd).and_then(|fd| u64::try_from(fd).ok()),
            Field::Blocked => call.and_then(SyscallView::time_ns),
            Field::Waker => call.and_then(|c| c.waker_tid).map(Into::into),
            Field::Goid => t.goroutine,
            Field::Task => t.task.as_ref().map(|k| k.task_id),
            _ => None,
        }
    }

    fn words(&self, visit: &mut dyn FnMut(&str) -> bool) -> bool {
        let t = self.0;
        let call = t.syscall.as_ref();
        [
            Some(t.name.as_str()),
            Some(t.state.as_str()),
            t.role.map(ThreadRole::as_str),
            call.map(|c| c.name.as_str()),
            call.and_then(|c| c.fd_desc.as_deref()),
            t.wchan.as_deref(),
        ]
        .into_iter()
        .flatten()
        .any(visit)
    }
}

/// A goroutine as the filter sees it.
pub struct GoroutineSubject<'a>(pub &'a GoroutineView, pub &'a Snapshot);

impl GoroutineSubject<'_> {
    fn fd_desc(&self) -> Option<&str> {
        let g = self.0;
        g.netpoll
            .as_ref()
            .and_then(|n| n.fd_desc.as_deref())
            .or_else(|| g.syscall.as_ref().and_then(|c| c.fd_desc.as_deref()))
    }
}

impl Subject for GoroutineSubject<'_> {
    fn text(&self, field: Field) -> Option<Cow<'_, str>> {
        let g = self.0;
        match field {
            Field::State => Some(g.status.as_str().into()),
            Field::Wait => g.wait_reason.as_deref().map(Into::into),
            Field::Syscall => g.syscall.as_ref().map(|c| c.name.as_str().into()),
            Field::Class => g.syscall.as_ref().map(|c| c.class.as_str().into()),
            Field::Fd => self.fd_desc().map(Into::into),
            Field::Func => {
                let mut names: Vec<&str> =
                    self.1.stacks.get(g.stack_id).iter().filter_map(|f| f.function.as_deref()).collect();
                names.push(&g.start);
                Some(names.join("\n").into())
            }
            _ => None,
        }
    }

    fn number(&self, field: Field) -> Option<u64> {
        let g = self.0;
        match field {
            Field::Goid => Some(g.goid),
            Field::Tid => g.tid.map(Into::into),
            Field::M => g.m.and_then(|m| u64::try_from(m).ok()),
            Field::Blocked => goroutine_wait_ns(g),
            Field::Fd => g
                .netpoll
                .as_ref()
                .map(|n| n.fd)
                .or_else(|| g.syscall.as_ref().and_then(|c| c.fd))
                .and_then(|fd| u64::try_from(fd).ok()),
            _ => None,
        }
    }

    fn words(&self, visit: &mut dyn FnMut(&str) -> bool) -> bool {
        let g = self.0;
        let fixed =
            [Some(g.status.as_str()), g.wait_reason.as_deref(), Some(g.start.as_str()), self.fd_desc()];
        fixed.into_iter().flatten().any(&mut *visit)
            || self.1.stacks.get(g.stack_id).iter().filter_map(|f| f.function.as_deref()).any(visit)
    }
}

/// A task as the filter sees it, with its waits on I/O: `fd`'s text compares test each fd it
/// waits on, its number compares the first.
pub struct TaskSubject<'a>(pub &'a TaskView, pub &'a [&'a IoWaitView]);

impl TaskSubject<'_> {
    /// The descriptions of the fds it waits on (the task's own `io_fd_desc` when `io_waits`
    /// lists none for it).
    fn fd_descs(&self) -> impl Iterator<Item = &str> {
        let listed = self.1.iter().filter_map(|w| w.fd_desc.as_deref());
        let own = if self.1.is_empty() { self.0.io_fd_desc.as_deref() } else { None };
        listed.chain(own)
    }
}

impl Subject for TaskSubject<'_> {
    fn text(&self, field: Field) -> Option<Cow<'_, str>> {
        let t = self.0;
        match field {
            Field::Name => t.name.as_deref().map(Into::into),
            Field::State => Some(t.state.as_str().into()),
            // Several fds: one per line, so `~` finds any of them.
            Field::Fd => {
                let descs: Vec<&str> = self.fd_descs().collect();
                (!descs.is_empty()).then(|| descs.join("\n").into())
            }
            Field::Wait => {
                let waits: Vec<&str> =
                    self.1.iter().filter_map(|w| w.interest.map(IoInterest::as_str)).collect();
                (!waits.is_empty()).then(|| waits.join("\n").into())
            }
            Field::Func => t.spawn_location.as_deref().map(Into::into),
            _ => None,
        }
    }

    fn number(&self, field: Field) -> Option<u64> {
        let t = self.0;
        match field {
            Field::Task => t.task_id,
            Field::Tid => t.worker_tid.map(Into::into),
            Field::Fd => self.1.first().map(|w| w.fd).or(t.io_fd).and_then(|fd| u64::try_from(fd).ok()),
            // An idle task has been waiting since its last poll.
            Field::Blocked => (t.state == TaskState::Idle).then_some(t.idle_ns),
            _ => None,
        }
    }

    fn words(&self, visit: &mut dyn FnMut(&str) -> bool) -> bool {
        let t = self.0;
        [t.name.as_deref(), Some(t.state.as_str()), t.kind.as_deref(), t.spawn_location.as_deref()]
            .into_iter()
            .flatten()
            .chain(self.fd_descs())
            .chain(t.warnings.iter().map(String::as_str))
            .any(visit)
    }
}

/// A waiter parked on I/O as the filter sees it: `task` its task id, `fd` its fd,
/// `wait` what it waits for (`read`, `write`, `read_write`), `role` the kind of waiter
/// (`task`, `block_on`, `other`).
pub struct IoWaitSubject<'a>(pub &'a IoWaitView);

impl Subject for IoWaitSubject<'_> {
    fn text(&self, field: Field) -> Option<Cow<'_, str>> {
        let w = self.0;
        match field {
            Field::Fd => w.fd_desc.as_deref().map(Into::into),
            Field::Wait => w.interest.map(|i| i.as_str().into()),
            Field::Role => Some(w.waiter.as_str().into()),
            _ => None,
        }
    }

    fn number(&self, field: Field) -> Option<u64> {
        let w = self.0;
        match field {
            Field::Task => w.task_id,
            Field::Fd => u64::try_from(w.fd).ok(),
            _ => None,
        }
    }

    fn words(&self, visit: &mut dyn FnMut(&str) -> bool) -> bool {
        let w = self.0;
        [Some(w.waiter.as_str()), w.interest.map(IoInterest::as_str), w.fd_desc.as_deref()]
            .into_iter()
            .flatten()
            .any(visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn io_rows_for(snap: &Snapshot, filter: &str) -> Vec<(i32, Option<u64>)> {
        let waits = &snap.io_waits.as_ref().unwrap().waits;
        let sort = SortState { column: IO_DEFAULT_SORT, reversed: false };
        io_wait_rows(waits, &Filter::parse(filter).unwrap(), sort)
            .into_iter()
            .map(|i| (waits[i].fd, waits[i].task_id))
            .collect()
    }

    #[test]
    fn io_wait_filter_by_fd_description_finds_its_row() {
        let snap = fixtures::tokio_io_waits();
        assert_eq!(io_rows_for(&snap, "fd~admin.sock"), [(16, Some(8))]);
        assert_eq!(io_rows_for(&snap, "fd~PIPE"), [(11, Some(12))]);
        // A bare word searches the description too; the listener of block_on is no task.
        assert_eq!(io_rows_for(&snap, "9000"), [(15, None)]);
        assert_eq!(io_rows_for(&snap, "fd~listen"), [(6, Some(3)), (15, None)]);
        assert_eq!(io_rows_for(&snap, "fd=13"), [(13, None)]);
        assert_eq!(io_rows_for(&snap, "task=8"), [(9, Some(8)), (16, Some(8))]);
        assert!(io_rows_for(&snap, "fd~10.0.0.99").is_empty());
    }

    #[test]
    fn console_task_filter_tests_every_fd_it_waits_on() {
        let snap = fixtures::tokio_tasks();
        let by_task = io_by_task(&snap);
        let ids = |filter: &str| -> Vec<Option<u64>> {
            let sort = SortState { column: 0, reversed: false };
            task_rows(&snap, &by_task, &Filter::parse(filter).unwrap(), sort)
                .into_iter()
                .map(|i| snap.tasks[i].task_id)
                .collect()
        };
        // Task 24 waits on two sockets: either description finds it.
        assert_eq!(ids("fd~10.0.0.7:40022"), [Some(24)]);
        assert_eq!(ids("fd~10.0.0.20:5432"), [Some(24)]);
        assert_eq!(ids("fd~10.0.0."), [Some(21), Some(24)]);
        assert_eq!(ids("wait=write"), [Some(24)]);
    }

    #[test]
    fn tasks_tab_offered_for_io_waits_or_their_error() {
        let mut snap = fixtures::tokio_io_waits();
        assert!(has_tasks_tab(&snap) && lists_io_waits(&snap));
        assert_eq!(tasks_parked_on_io(snap.io_waits.as_ref().unwrap()), 5);
        snap.io_waits.as_mut().unwrap().waits.clear();
        assert!(!has_tasks_tab(&snap), "nothing parked and nothing to explain: no Tasks view");
        assert!(has_tasks_tab(&fixtures::tokio_io_unreadable()));
        assert!(!has_tasks_tab(&fixtures::c_blocker()));
    }
}
