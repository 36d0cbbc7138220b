//! Drawing: the header (target, SCHED line, counts, state), the tab bar, the current view
//! (only its visible rows are turned into widgets, so a frame costs the same with 100 or
//! 100,000 rows), the detail and help pages, and the bottom line (keys, filter prompt, errors).

use std::fmt::Write as _;

use parkscope_model::{
    Frame, FrameKind, IoWaitView, IoWaiterKind, IoWaits, Snapshot, StackId, SyscallClass, SyscallView,
    TaskView, ThreadView,
};
use ratatui::Frame as TermFrame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState, Wrap};

use crate::app::{
    App, DetailItem, GROUP_COLUMNS, GroupRow, IO_COLUMNS, Input, IoWaitKey, Overlay, SortState, TASK_COLUMNS,
    THREAD_COLUMNS, Tab, distinct_fds, goroutine_wait, goroutine_wait_ns, lists_io_waits, place_of, task_key,
    tasks_parked_on_io, thread_is_stuck,
};
use crate::history::goroutine_counts;
use crate::source::Mode;

/// Human durations as `snapshot` prints them (2.0s, 350.0ms).
pub use parkscope_model::duration::human;

/// A syscall's time: exact, or `>=` the lower bound.
pub fn blocked_text(c: &SyscallView) -> String {
    match (c.blocked_ns, c.blocked_at_least_ns) {
        (Some(ns), _) => human(ns),
        (None, Some(ns)) => format!(">={}", human(ns)),
        _ => String::new(),
    }
}

/// Colours, or none under NO_COLOR (reverse video and bold are not colour and stay).
struct Theme {
    color: bool,
}

impl Theme {
    fn fg(&self, c: Color) -> Style {
        if self.color { Style::default().fg(c) } else { Style::default() }
    }
    fn title(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
    fn header_row(&self) -> Style {
        if self.color {
            Style::default().fg(Color::Black).bg(Color::Cyan)
        } else {
            Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        }
    }
    fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    fn stuck(&self) -> Style {
        self.fg(Color::Red)
    }
    fn dim(&self) -> Style {
        if self.color { Style::default().fg(Color::DarkGray) } else { Style::default() }
    }
}

/// Draws the whole screen.
pub fn draw(f: &mut TermFrame<'_>, app: &mut App) {
    let theme = Theme { color: !app.no_color };
    let [header, tabs, body, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_header(f, header, app, &theme);
    draw_tabs(f, tabs, app, &theme);
    match app.overlay.clone() {
        Overlay::Help => draw_help(f, body, app, &theme),
        Overlay::Detail { item, scroll } => draw_detail(f, body, app, &item, scroll, &theme),
        Overlay::None => match app.tab {
            Tab::Threads => draw_threads(f, body, app, &theme),
            Tab::Goroutines => draw_goroutines(f, body, app, &theme),
            Tab::Tasks if app.lists_io_waits() => draw_io_waits(f, body, app, &theme),
            Tab::Tasks => draw_tasks(f, body, app, &theme),
            Tab::History => draw_history(f, body, app, &theme),
        },
    }
    draw_footer(f, footer, app, &theme);
    app.dirty = false;
}

fn clock(wall_unix_ns: u64) -> String {
    let s = wall_unix_ns / 1_000_000_000;
    format!("{:02}:{:02}:{:02} UTC", s / 3600 % 24, s / 60 % 60, s % 60)
}

fn draw_header(f: &mut TermFrame<'_>, area: Rect, app: &App, theme: &Theme) {
    let Some(sample) = app.shown.as_deref() else {
        let text = match &app.ended {
            Some(why) => format!("parkscope top: no snapshot ({why})"),
            None => "parkscope top: taking the first snapshot...".to_owned(),
        };
        f.render_widget(Paragraph::new(text), area);
        return;
    };
    let s = &sample.snapshot;
    let mut target = format!("pid {} ({})", s.pid, s.comm);
    if let Some(rt) = &s.runtime {
        let _ = write!(target, " {} {}", rt.kind.as_str(), rt.version);
        if let Some(e) = &rt.error {
            let _ = write!(target, " [runtime unreadable: {e}]");
        }
    }
    let state = match (app.mode, &app.ended, app.replay) {
        (Mode::Replay, _, Some(p)) => {
            // `+`: the recording is still being indexed, more follows.
            let more = if p.complete { "" } else { "+" };
            let mut state = format!(
                "REPLAY {}/{}{more} {}/{}{more} {}x{}",
                p.index + 1,
                p.count,
                human(p.offset_ns),
                human(p.length_ns),
                p.speed,
                if p.playing { " playing" } else { " paused" }
            );
            if let Some(at) = p.damaged_at {
                let _ = write!(state, " ENDS EARLY (damaged at byte {at})");
            }
            state
        }
        (Mode::Replay, _, None) => "REPLAY".to_owned(),
        (Mode::Live, Some(_), _) => "ENDED".to_owned(),
        (Mode::Live, None, _) if app.paused => "PAUSED".to_owned(),
        (Mode::Live, None, _) => "LIVE".to_owned(),
    };
    let state_style = if app.paused || app.ended.is_some() {
        theme.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    } else {
        theme.fg(Color::Green).add_modifier(Modifier::BOLD)
    };
    let line1 = Line::from(vec![
        Span::styled(state, state_style),
        Span::raw(format!(" {} ", clock(s.taken_at.wall_unix_ns))),
        Span::styled(target, theme.title()),
        Span::raw(if s.target_exited { " (exited)" } else { "" }),
    ]);
    let line2 = Line::styled(sample.sched_line.clone().unwrap_or_default(), theme.dim());
    let sum = &s.summary;
    let mut counts =
        format!("threads {} run {} rnbl {} blocked {}", sum.threads, sum.running, sum.runnable, sum.blocked);
    let classes: Vec<String> = SyscallClass::ALL
        .iter()
        .filter(|c| sum.blocked_in(**c) > 0)
        .map(|c| format!("{} {}", c.as_str(), sum.blocked_in(*c)))
        .collect();
    if !classes.is_empty() {
        let _ = write!(counts, " ({})", classes.join(" "));
    }
    if sum.runtime_idle > 0 {
        let _ = write!(counts, " rt-idle {}", sum.runtime_idle);
    }
    if !s.goroutines.is_empty() {
        let (waiting, runnable, _) = goroutine_counts(s);
        let _ = write!(counts, " | g {} wait {waiting} rnbl {runnable}", s.goroutines.len());
    }
    let mut tokio = Vec::new();
    if !s.tasks.is_empty() || sum.stalls > 0 {
        tokio.push(format!("tasks {} stalls {}", s.tasks.len(), sum.stalls));
    }
    if let Some(io) = &s.io_waits {
        // `?`: not read (the Tasks view says why).
        tokio.push(match &io.error {
            Some(_) if io.waits.is_empty() => "io ?".to_owned(),
            _ => format!("io {}", tasks_parked_on_io(io)),
        });
    }
    if !tokio.is_empty() {
        let _ = write!(counts, " | {}", tokio.join(" "));
    }
    let dropped = format!(" | dropped {}", sum.dropped_events);
    // On a narrow screen a zero drop count gives way (a non-zero one is always shown).
    if sum.dropped_events > 0 || counts.chars().count() + dropped.len() <= area.width as usize {
        counts.push_str(&dropped);
    }
    f.render_widget(Paragraph::new(vec![line1, line2, Line::raw(counts)]), area);
}

fn draw_tabs(f: &mut TermFrame<'_>, area: Rect, app: &App, theme: &Theme) {
    let snap = app.snapshot();
    let mut spans = Vec::new();
    for tab in app.visible_tabs() {
        let label = match (tab, snap) {
            (Tab::Threads, Some(s)) => format!("Threads {}/{}", app.thread_rows.len(), s.threads.len()),
            (Tab::Goroutines, Some(s)) => {
                format!(
                    "Goroutines {}/{} in {} stacks",
                    app.goroutines_shown,
                    s.goroutines.len(),
                    app.groups.len()
                )
            }
            (Tab::Tasks, Some(s)) if lists_io_waits(s) => format!(
                "Tasks on I/O {}/{}",
                app.io_rows.len(),
                s.io_waits.as_ref().map_or(0, |io| io.waits.len())
            ),
            (Tab::Tasks, Some(s)) => format!("Tasks {}/{}", app.task_rows.len(), s.tasks.len()),
            (Tab::Threads, None) => "Threads".to_owned(),
            (Tab::Goroutines, None) => "Goroutines".to_owned(),
            (Tab::Tasks, None) => "Tasks".to_owned(),
            (Tab::History, _) => "History".to_owned(),
        };
        let style = if tab == app.tab { theme.selected() } else { Style::default() };
        spans.push(Span::styled(format!(" {label} "), style));
        spans.push(Span::raw(" "));
    }
    if !app.filter_text.is_empty() && app.input == Input::None {
        spans.push(Span::styled(format!("filter: {}", app.filter_text), theme.fg(Color::Cyan)));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A table column: its title, width (0: takes the rest) and the narrowest screen it shows on.
struct Column {
    title: &'static str,
    width: u16,
    min_screen: u16,
}

/// The columns that fit `width`, with their indices into the view's column list.
fn fitting(columns: &[Column], width: u16) -> Vec<(usize, &Column)> {
    columns.iter().enumerate().filter(|(_, c)| width >= c.min_screen).collect()
}

fn header_cells(cols: &[(usize, &Column)], sort: SortState) -> Row<'static> {
    Row::new(cols.iter().map(|(i, c)| {
        if *i == sort.column {
            format!("{}{}", c.title, if sort.reversed { "▲" } else { "▼" })
        } else {
            c.title.to_owned()
        }
    }))
}

/// How wide the column that takes the rest (width 0) is on a screen `width` wide.
fn rest_width(cols: &[(usize, &Column)], width: u16) -> usize {
    let fixed: usize = cols.iter().map(|(_, c)| c.width as usize + 1).sum();
    (width as usize).saturating_sub(fixed).max(8)
}

/// `text` cut to `width` characters, with `…` where it was cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

fn constraints(cols: &[(usize, &Column)]) -> Vec<Constraint> {
    cols.iter()
        .map(|(_, c)| if c.width == 0 { Constraint::Min(8) } else { Constraint::Length(c.width) })
        .collect()
}

/// Renders `rows` (already cut to the visible ones) with the selection at `selected`.
fn render_table(
    f: &mut TermFrame<'_>,
    area: Rect,
    header: Row<'static>,
    widths: Vec<Constraint>,
    rows: Vec<Row<'_>>,
    selected: Option<usize>,
    theme: &Theme,
) {
    let table = Table::new(rows, widths)
        .header(header.style(theme.header_row()))
        .row_highlight_style(theme.selected())
        .column_spacing(1);
    let mut state = TableState::default().with_selected(selected);
    f.render_stateful_widget(table, area, &mut state);
}

fn empty_note(f: &mut TermFrame<'_>, area: Rect, app: &App, what: &str) {
    let text = if app.shown.is_none() {
        String::new()
    } else if app.filter.is_empty() {
        format!("no {what}")
    } else {
        format!("no {what} match the filter `{}` (Esc clears it)", app.filter_text)
    };
    f.render_widget(
        Paragraph::new(text),
        Rect { y: area.y + 1, height: area.height.saturating_sub(1), ..area },
    );
}

const THREAD_LAYOUT: [Column; 9] = [
    Column { title: THREAD_COLUMNS[0], width: 7, min_screen: 0 },
    Column { title: THREAD_COLUMNS[1], width: 15, min_screen: 0 },
    Column { title: THREAD_COLUMNS[2], width: 9, min_screen: 120 },
    Column { title: THREAD_COLUMNS[3], width: 8, min_screen: 0 },
    Column { title: THREAD_COLUMNS[4], width: 15, min_screen: 0 },
    Column { title: THREAD_COLUMNS[5], width: 0, min_screen: 0 },
    Column { title: THREAD_COLUMNS[6], width: 9, min_screen: 0 },
    Column { title: THREAD_COLUMNS[7], width: 7, min_screen: 110 },
    Column { title: THREAD_COLUMNS[8], width: 8, min_screen: 130 },
];

fn thread_cell(t: &ThreadView, column: usize) -> String {
    let call = t.syscall.as_ref();
    match column {
        0 => t.tid.to_string(),
        1 => t.name.clone(),
        2 => t.role.map_or("", |r| r.as_str()).to_owned(),
        3 => t.state.as_str().to_owned(),
        4 => call.map_or_else(|| t.wchan.clone().unwrap_or_default(), |c| c.name.clone()),
        5 => match call.and_then(|c| c.fd) {
            Some(fd) => match call.and_then(|c| c.fd_desc.as_deref()) {
                Some(d) => format!("{fd} {d}"),
                None => fd.to_string(),
            },
            None => String::new(),
        },
        6 => call.map(blocked_text).unwrap_or_default(),
        7 => call.and_then(|c| c.waker_tid).map(|w| w.to_string()).unwrap_or_default(),
        8 => match (t.goroutine, &t.task) {
            (Some(g), _) => format!("g{g}"),
            (None, Some(k)) => format!("task {}", k.task_id),
            _ => String::new(),
        },
        _ => String::new(),
    }
}

fn draw_threads(f: &mut TermFrame<'_>, area: Rect, app: &mut App, theme: &Theme) {
    let cols = fitting(&THREAD_LAYOUT, area.width);
    let range = app.threads_list.visible(app.thread_rows.len(), area.height.saturating_sub(1) as usize);
    let Some(sample) = app.shown.clone() else { return };
    let snap = &sample.snapshot;
    let rows: Vec<Row> = app.thread_rows[range.clone()]
        .iter()
        .map(|&i| {
            let t = &snap.threads[i];
            let style = if thread_is_stuck(t) { theme.stuck() } else { Style::default() };
            Row::new(cols.iter().map(|(c, _)| thread_cell(t, *c))).style(style)
        })
        .collect();
    if rows.is_empty() {
        empty_note(f, area, app, "threads");
    }
    let selected = app.threads_list.selected.checked_sub(range.start);
    render_table(f, area, header_cells(&cols, app.thread_sort), constraints(&cols), rows, selected, theme);
}

const GROUP_LAYOUT: [Column; 4] = [
    Column { title: GROUP_COLUMNS[0], width: 8, min_screen: 0 },
    Column { title: GROUP_COLUMNS[1], width: 22, min_screen: 0 },
    Column { title: GROUP_COLUMNS[2], width: 9, min_screen: 0 },
    Column { title: GROUP_COLUMNS[3], width: 0, min_screen: 0 },
];

fn draw_goroutines(f: &mut TermFrame<'_>, area: Rect, app: &mut App, theme: &Theme) {
    let cols = fitting(&GROUP_LAYOUT, area.width);
    let range = app.groups_list.visible(app.group_rows.len(), area.height.saturating_sub(1) as usize);
    let Some(sample) = app.shown.clone() else { return };
    let snap = &sample.snapshot;
    let rows: Vec<Row> = app.group_rows[range.clone()]
        .iter()
        .map(|row| match *row {
            GroupRow::Group(gi) => {
                let g = &app.groups[gi];
                let open = if app.expanded.contains(&g.key) { "-" } else { "+" };
                Row::new([
                    format!("{open}{}", g.members.len()),
                    if g.mixed { format!("{} +more", g.wait) } else { g.wait.clone() },
                    g.max_wait_ns.map(human).unwrap_or_default(),
                    g.place.clone(),
                ])
                .style(theme.title())
            }
            GroupRow::Member(_, m) => {
                let g = &snap.goroutines[m];
                let mut what = String::new();
                if let Some(n) = &g.netpoll {
                    let _ = write!(what, "fd {} {}", n.fd, n.fd_desc.as_deref().unwrap_or(n.mode.as_str()));
                } else if let Some(c) = &g.syscall {
                    let _ = write!(what, "{} fd {}", c.name, c.fd.map(|f| f.to_string()).unwrap_or_default());
                }
                if let (Some(m), Some(tid)) = (g.m, g.tid) {
                    let _ = write!(what, " M{m}/tid {tid}");
                }
                Row::new([
                    format!("  g{}", g.goid),
                    goroutine_wait(g).to_owned(),
                    goroutine_wait_ns(g).map(human).unwrap_or_default(),
                    what,
                ])
            }
        })
        .collect();
    if rows.is_empty() {
        empty_note(f, area, app, "goroutines");
    }
    let selected = app.groups_list.selected.checked_sub(range.start);
    render_table(f, area, header_cells(&cols, app.group_sort), constraints(&cols), rows, selected, theme);
}

const TASK_LAYOUT: [Column; 8] = [
    Column { title: TASK_COLUMNS[0], width: 7, min_screen: 0 },
    Column { title: TASK_COLUMNS[1], width: 18, min_screen: 0 },
    Column { title: TASK_COLUMNS[2], width: 9, min_screen: 0 },
    Column { title: TASK_COLUMNS[3], width: 8, min_screen: 0 },
    Column { title: TASK_COLUMNS[4], width: 8, min_screen: 0 },
    Column { title: TASK_COLUMNS[5], width: 7, min_screen: 100 },
    Column { title: TASK_COLUMNS[6], width: 7, min_screen: 100 },
    Column { title: TASK_COLUMNS[7], width: 0, min_screen: 0 },
];

/// What a console task waits on: from `io_waits` (`waits` indexes it), the fd and its
/// description, or `N fds`; else the task's own `io_fd`.
fn task_io_text(t: &TaskView, io: Option<&IoWaits>, waits: &[usize]) -> String {
    if let Some(io) = io
        && !waits.is_empty()
    {
        let fds = distinct_fds(io, waits);
        if fds.len() > 1 {
            return format!("{} fds", fds.len());
        }
        let w = &io.waits[waits[0]];
        return match &w.fd_desc {
            Some(d) => format!("{} {d}", w.fd),
            None => w.fd.to_string(),
        };
    }
    match (t.io_fd, &t.io_fd_desc) {
        (Some(fd), Some(d)) => format!("{fd} {d}"),
        (Some(fd), None) => fd.to_string(),
        _ => String::new(),
    }
}

fn task_cell(t: &TaskView, index: usize, column: usize, io: Option<&IoWaits>, waits: &[usize]) -> String {
    match column {
        0 => task_key(t, index).to_string(),
        1 => t.name.clone().or_else(|| t.spawn_location.clone()).unwrap_or_default(),
        2 => t.state.as_str().to_owned(),
        3 => human(t.busy_ns),
        4 => human(t.idle_ns),
        5 => t.polls.to_string(),
        6 => t.worker_tid.map(|w| w.to_string()).unwrap_or_default(),
        7 => {
            let mut s = task_io_text(t, io, waits);
            if !t.warnings.is_empty() {
                let _ = write!(s, " !{}", t.warnings.join(", "));
            }
            s
        }
        _ => String::new(),
    }
}

fn draw_tasks(f: &mut TermFrame<'_>, area: Rect, app: &mut App, theme: &Theme) {
    let cols = fitting(&TASK_LAYOUT, area.width);
    let range = app.tasks_list.visible(app.task_rows.len(), area.height.saturating_sub(1) as usize);
    let Some(sample) = app.shown.clone() else { return };
    let snap = &sample.snapshot;
    let io = snap.io_waits.as_ref();
    let rest = rest_width(&cols, area.width);
    let rows: Vec<Row> = app.task_rows[range.clone()]
        .iter()
        .map(|&i| {
            let t = &snap.tasks[i];
            let waits = t.task_id.and_then(|id| app.io_by_task.get(&id)).map_or(&[][..], Vec::as_slice);
            Row::new(cols.iter().map(|(c, col)| {
                let text = task_cell(t, i, *c, io, waits);
                if col.width == 0 { fit(&text, rest) } else { text }
            }))
        })
        .collect();
    if rows.is_empty() {
        empty_note(f, area, app, "tasks");
    }
    let selected = app.tasks_list.selected.checked_sub(range.start);
    render_table(f, area, header_cells(&cols, app.task_sort), constraints(&cols), rows, selected, theme);
}

const IO_LAYOUT: [Column; 3] = [
    Column { title: IO_COLUMNS[0], width: 9, min_screen: 0 },
    Column { title: IO_COLUMNS[1], width: 11, min_screen: 0 },
    Column { title: IO_COLUMNS[2], width: 0, min_screen: 0 },
];

/// Who waits: the task id, else `block_on` or `other`.
fn waiter_text(w: &IoWaitView) -> String {
    match (w.waiter, w.task_id) {
        (IoWaiterKind::Task, Some(id)) => id.to_string(),
        (IoWaiterKind::Task, None) => "task ?".to_owned(),
        (kind, _) => kind.as_str().to_owned(),
    }
}

fn io_cell(w: &IoWaitView, column: usize) -> String {
    match column {
        0 => waiter_text(w),
        1 => w.interest.map_or("ready", |i| i.as_str()).to_owned(),
        2 => match &w.fd_desc {
            Some(d) => format!("{} {d}", w.fd),
            None => w.fd.to_string(),
        },
        _ => String::new(),
    }
}

/// The Tasks view of a target without console tasks: its waiters parked on I/O.
fn draw_io_waits(f: &mut TermFrame<'_>, area: Rect, app: &mut App, theme: &Theme) {
    let cols = fitting(&IO_LAYOUT, area.width);
    let range = app.io_list.visible(app.io_rows.len(), area.height.saturating_sub(1) as usize);
    let Some(sample) = app.shown.clone() else { return };
    let Some(io) = sample.snapshot.io_waits.as_ref() else { return };
    let rest = rest_width(&cols, area.width);
    let rows: Vec<Row> = app.io_rows[range.clone()]
        .iter()
        .map(|&i| {
            let w = &io.waits[i];
            Row::new(cols.iter().map(|(c, col)| {
                let text = io_cell(w, *c);
                if col.width == 0 { fit(&text, rest) } else { text }
            }))
        })
        .collect();
    if rows.is_empty() {
        match &io.error {
            Some(e) => f.render_widget(
                Paragraph::new(format!("tasks parked on I/O not read: {e}")).wrap(Wrap { trim: false }),
                Rect { y: area.y + 1, height: area.height.saturating_sub(1), ..area },
            ),
            None => empty_note(f, area, app, "tasks parked on I/O"),
        }
    }
    let selected = app.io_list.selected.checked_sub(range.start);
    render_table(f, area, header_cells(&cols, app.io_sort), constraints(&cols), rows, selected, theme);
}

const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One sparkline row: `label  ▁▂▅█  now/max`, scaled to the series' own maximum.
fn spark_line(label: &str, values: &[u32], width: usize) -> String {
    let max = values.iter().copied().max().unwrap_or(0);
    let now = values.last().copied().unwrap_or(0);
    let bars: String =
        values
            .iter()
            .rev()
            .take(width)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(|&v| {
                if max == 0 || v == 0 { ' ' } else { SPARKS[((v as u64 * 7).div_ceil(max as u64)) as usize] }
            })
            .collect();
    format!("{label:<13}{bars:<width$} {now:>6} (max {max})")
}

fn draw_history(f: &mut TermFrame<'_>, area: Rect, app: &App, theme: &Theme) {
    let width = (area.width as usize).saturating_sub(13 + 20).max(1);
    let points: Vec<_> = app.history.last(width).copied().collect();
    let span = match (points.first(), points.last()) {
        (Some(a), Some(b)) => human(b.at_ns.saturating_sub(a.at_ns)),
        _ => "0s".to_owned(),
    };
    let mut lines = vec![Line::styled(
        format!("the last {span}, one column per snapshot ({} kept)", app.history.len()),
        theme.title(),
    )];
    let series = |get: &dyn Fn(&crate::history::Point) -> u32| points.iter().map(get).collect::<Vec<u32>>();
    for (i, class) in SyscallClass::ALL.iter().enumerate() {
        lines.push(Line::raw(spark_line(
            &format!("blocked {}", class.as_str()),
            &series(&|p| p.blocked_by_class[i]),
            width,
        )));
    }
    lines.push(Line::raw(spark_line("blocked", &series(&|p| p.blocked), width)));
    lines.push(Line::raw(spark_line("runnable", &series(&|p| p.runnable), width)));
    lines.push(Line::raw(spark_line("running", &series(&|p| p.running), width)));
    if app.snapshot().is_some_and(|s| !s.goroutines.is_empty()) {
        lines.push(Line::raw(spark_line("g waiting", &series(&|p| p.goroutines_waiting), width)));
        lines.push(Line::raw(spark_line("g runnable", &series(&|p| p.goroutines_runnable), width)));
    }
    f.render_widget(Paragraph::new(lines), area);
}

fn frame_line(fr: &Frame) -> String {
    let mut s = String::from("    ");
    s.push_str(&fr.short_name());
    if let Some(off) = fr.offset {
        let _ = write!(s, "+{off:#x}");
    }
    match (&fr.file, fr.line) {
        (Some(file), Some(line)) => {
            let _ = write!(s, "  {file}:{line}");
        }
        (Some(file), None) => {
            let _ = write!(s, "  {file}");
        }
        _ => {
            if let Some(m) = &fr.module {
                match fr.kind {
                    FrameKind::Kernel => {
                        let _ = write!(s, " [{m}]");
                    }
                    FrameKind::User => {
                        let _ = write!(s, "  ({})", m.rsplit('/').next().unwrap_or(m));
                    }
                }
            }
        }
    }
    s
}

fn stack_lines(out: &mut Vec<Line<'static>>, snap: &Snapshot, title: &str, id: StackId, theme: &Theme) {
    let frames = snap.stacks.get(id);
    out.push(Line::styled(format!("{title} ({} frames)", frames.len()), theme.title()));
    if frames.is_empty() {
        out.push(Line::raw("    (not collected)"));
    }
    out.extend(frames.iter().map(|fr| Line::raw(frame_line(fr))));
}

fn thread_label(snap: &Snapshot, tid: u32) -> String {
    match snap.thread(tid) {
        Some(t) => format!("{tid} ({})", t.name),
        None => format!("{tid} (not a thread of the target)"),
    }
}

fn thread_detail(out: &mut Vec<Line<'static>>, snap: &Snapshot, t: &ThreadView, theme: &Theme) {
    out.push(Line::styled(format!("Thread {} {}", t.tid, t.name), theme.title()));
    let mut kv = |k: &str, v: String| out.push(Line::raw(format!("  {k:<12}{v}")));
    kv("state", t.state.as_str().to_owned());
    if let Some(r) = t.role {
        kv("role", r.as_str().to_owned());
    }
    if let Some(c) = &t.syscall {
        kv("syscall", format!("{} (#{}, {})", c.name, c.nr, c.class.as_str()));
        if let Some(fd) = c.fd {
            kv("fd", format!("{fd} {}", c.fd_desc.as_deref().unwrap_or("")));
        }
        kv(
            "blocked",
            match (c.blocked_ns, c.blocked_at_least_ns) {
                (Some(ns), _) => format!("{} (exact)", human(ns)),
                (None, Some(ns)) => format!(">= {} (began before parkscope attached)", human(ns)),
                _ => "unknown".to_owned(),
            },
        );
        if let Some(addr) = &c.futex_addr {
            kv("futex", addr.clone());
        }
        match c.waker_tid {
            Some(w) => {
                kv("woken by", thread_label(snap, w));
                // The waker's waker, where the waker itself is blocked and was woken.
                if let Some(ww) = snap.thread(w).and_then(|wt| wt.syscall.as_ref()).and_then(|c| c.waker_tid)
                {
                    kv("  whose", format!("waker is {}", thread_label(snap, ww)));
                }
            }
            None => kv("woken by", "not seen while attached".to_owned()),
        }
    } else if let Some(w) = &t.wchan {
        kv("wchan", w.clone());
    }
    if let Some(g) = t.goroutine {
        kv("goroutine", g.to_string());
    }
    if let Some(k) = &t.task {
        let poll = k
            .poll_ns
            .map(|ns| format!(", polled for {}{}", if k.poll_ns_exact { "" } else { ">=" }, human(ns)));
        kv("task", format!("{}{}", k.task_id, poll.unwrap_or_default()));
    }
    for c in t.long_calls.iter().take(3) {
        kv("long call", format!("{} {} ended {} ago", c.name, human(c.duration_ns), human(c.ended_ns_ago)));
    }
    stack_lines(out, snap, "User stack", t.user_stack_id, theme);
    stack_lines(out, snap, "Kernel stack", t.kernel_stack_id, theme);
}

fn goroutine_detail(
    out: &mut Vec<Line<'static>>,
    snap: &Snapshot,
    g: &parkscope_model::GoroutineView,
    theme: &Theme,
) {
    out.push(Line::styled(format!("Goroutine {}", g.goid), theme.title()));
    let mut kv = |k: &str, v: String| out.push(Line::raw(format!("  {k:<12}{v}")));
    kv("status", g.status.as_str().to_owned());
    if let Some(w) = &g.wait_reason {
        kv("wait", w.clone());
    }
    if let Some(ns) = goroutine_wait_ns(g) {
        let exact = g.status_ns_exact;
        kv("waiting", format!("{}{}", if exact { "" } else { ">= " }, human(ns)));
    }
    if let Some(n) = &g.netpoll {
        kv("netpoll", format!("fd {} ({}) {}", n.fd, n.mode.as_str(), n.fd_desc.as_deref().unwrap_or("")));
    }
    if let Some(c) = &g.syscall {
        kv(
            "syscall",
            format!(
                "{} fd {} {} {}",
                c.name,
                c.fd.map(|f| f.to_string()).unwrap_or_default(),
                c.fd_desc.as_deref().unwrap_or(""),
                blocked_text(c)
            ),
        );
    }
    if g.cgo {
        kv("cgo", g.c_function.clone().unwrap_or_else(|| "in a C call".to_owned()));
    }
    if let Some(m) = g.m {
        kv(
            "thread",
            format!("M{m}{}", g.tid.map(|t| format!(" tid {}", thread_label(snap, t))).unwrap_or_default()),
        );
    }
    kv("start", g.start.clone());
    match (&g.created_by, g.parent_goid) {
        (Some(c), Some(p)) => kv("created by", format!("{c} in goroutine {p}")),
        (Some(c), None) => kv("created by", c.clone()),
        _ => {}
    }
    stack_lines(out, snap, "Stack", g.stack_id, theme);
}

/// One wait as a line: `fd 12 read tcp 10.0.0.5:8080 -> 10.0.0.9:51544`.
fn wait_text(w: &IoWaitView) -> String {
    let mut s = format!("fd {} {}", w.fd, w.interest.map_or("ready", |i| i.as_str()));
    if let Some(d) = &w.fd_desc {
        let _ = write!(s, " {d}");
    }
    s
}

/// Waiters listed on the detail page's "also on fd" and "also waits" lines.
const DETAIL_WAITERS_SHOWN: usize = 20;

fn io_wait_detail(out: &mut Vec<Line<'static>>, io: &IoWaits, w: &IoWaitView, theme: &Theme) {
    let title = match w.waiter {
        IoWaiterKind::Task => {
            format!("Task {} parked on I/O", w.task_id.map_or("?".to_owned(), |id| id.to_string()))
        }
        IoWaiterKind::BlockOn => "block_on's future parked on I/O".to_owned(),
        IoWaiterKind::Other => "A waker of another kind parked on I/O".to_owned(),
    };
    out.push(Line::styled(title, theme.title()));
    let mut kv = |k: &str, v: String| out.push(Line::raw(format!("  {k:<12}{v}")));
    kv("fd", format!("{} {}", w.fd, w.fd_desc.as_deref().unwrap_or("(not described)")));
    kv(
        "waits for",
        match w.interest {
            Some(i) => i.as_str().to_owned(),
            None => "readiness (the registration does not say which)".to_owned(),
        },
    );
    kv(
        "waiter",
        match w.waiter {
            IoWaiterKind::Task => "a tokio task, idle until the fd is ready".to_owned(),
            IoWaiterKind::BlockOn => "the future block_on runs (#[tokio::main]'s body), no task".to_owned(),
            IoWaiterKind::Other => {
                "a waker not tokio's (FuturesUnordered, another executor): task unknown".to_owned()
            }
        },
    );
    let others: Vec<String> = io
        .waits
        .iter()
        .filter(|o| o.fd == w.fd && IoWaitKey::of(o) != IoWaitKey::of(w))
        .map(|o| format!("{} {}", waiter_text(o), o.interest.map_or("ready", |i| i.as_str())))
        .collect();
    if !others.is_empty() {
        kv("also on fd", list_text(&others));
    }
    if w.waiter == IoWaiterKind::Task && w.task_id.is_some() {
        let elsewhere: Vec<String> = io
            .waits
            .iter()
            .filter(|o| {
                o.waiter == IoWaiterKind::Task
                    && o.task_id == w.task_id
                    && IoWaitKey::of(o) != IoWaitKey::of(w)
            })
            .map(wait_text)
            .collect();
        for o in elsewhere.iter().take(DETAIL_WAITERS_SHOWN) {
            kv("also waits", o.clone());
        }
        if elsewhere.len() > DETAIL_WAITERS_SHOWN {
            kv("", format!("and {} more", elsewhere.len() - DETAIL_WAITERS_SHOWN));
        }
    }
    let mut read = format!("{} registrations of the runtime's I/O driver", io.registrations);
    if io.unrecognized > 0 {
        let _ = write!(read, ", {} unrecognized", io.unrecognized);
    }
    if io.capped > 0 {
        let _ = write!(read, ", {} left out by the cap", io.capped);
    }
    kv("read", read);
}

/// Up to [`DETAIL_WAITERS_SHOWN`] items joined, then how many more.
fn list_text(items: &[String]) -> String {
    let mut s = items.iter().take(DETAIL_WAITERS_SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > DETAIL_WAITERS_SHOWN {
        let _ = write!(s, " and {} more", items.len() - DETAIL_WAITERS_SHOWN);
    }
    s
}

fn draw_detail(f: &mut TermFrame<'_>, area: Rect, app: &App, item: &DetailItem, scroll: u16, theme: &Theme) {
    let Some(snap) = app.snapshot() else { return };
    let mut lines: Vec<Line<'static>> = Vec::new();
    match item {
        DetailItem::Thread(tid) => match snap.thread(*tid) {
            Some(t) => thread_detail(&mut lines, snap, t, theme),
            None => lines.push(Line::raw(format!("thread {tid} is gone"))),
        },
        DetailItem::Goroutine(goid) => match snap.goroutines.iter().find(|g| g.goid == *goid) {
            Some(g) => goroutine_detail(&mut lines, snap, g, theme),
            None => lines.push(Line::raw(format!("goroutine {goid} is gone"))),
        },
        DetailItem::Group(key) => match app.groups.iter().find(|g| g.key == *key) {
            Some(g) => {
                lines.push(Line::styled(
                    format!("{} goroutines with this stack: {}", g.members.len(), place_of(snap, g.stack_id)),
                    theme.title(),
                ));
                let ids: Vec<String> =
                    g.members.iter().take(20).map(|&m| snap.goroutines[m].goid.to_string()).collect();
                let more = if g.members.len() > 20 {
                    format!(" and {} more", g.members.len() - 20)
                } else {
                    String::new()
                };
                lines.push(Line::raw(format!("  goids {}{more}", ids.join(" "))));
                if let Some(&first) = g.members.first() {
                    goroutine_detail(&mut lines, snap, &snap.goroutines[first], theme);
                }
            }
            None => lines.push(Line::raw("this group is gone".to_owned())),
        },
        DetailItem::Task(key) => match snap.tasks.iter().enumerate().find(|(i, t)| task_key(t, *i) == *key) {
            Some((i, t)) => {
                lines.push(Line::styled(format!("Task {}", task_key(t, i)), theme.title()));
                let mut kv = |k: &str, v: String| lines.push(Line::raw(format!("  {k:<12}{v}")));
                kv("name", t.name.clone().unwrap_or_default());
                kv("kind", t.kind.clone().unwrap_or_default());
                kv("spawned at", t.spawn_location.clone().unwrap_or_default());
                kv("state", t.state.as_str().to_owned());
                kv("busy", human(t.busy_ns));
                kv("scheduled", human(t.scheduled_ns));
                kv("idle", human(t.idle_ns));
                kv("polls", t.polls.to_string());
                kv("wakes", format!("{} ({} self)", t.wakes, t.self_wakes));
                kv("wakers", format!("{} cloned, {} dropped", t.waker_clones, t.waker_drops));
                if let Some(w) = t.worker_tid {
                    kv("worker", thread_label(snap, w));
                }
                let waits = t.task_id.and_then(|id| app.io_by_task.get(&id)).map_or(&[][..], Vec::as_slice);
                match &snap.io_waits {
                    Some(io) if !waits.is_empty() => {
                        for &w in waits {
                            kv("waits on", wait_text(&io.waits[w]));
                        }
                    }
                    _ => {
                        if let Some(fd) = t.io_fd {
                            kv("fd", format!("{fd} {}", t.io_fd_desc.as_deref().unwrap_or("")));
                        }
                    }
                }
                if let Some(e) = snap.io_waits.as_ref().and_then(|io| io.error.as_ref()) {
                    kv("I/O waits", format!("not read: {e}"));
                }
                for w in &t.warnings {
                    kv("warning", w.clone());
                }
                if let Some(stall) =
                    t.task_id.and_then(|id| snap.stalls.iter().find(|s| s.task_id == Some(id)))
                {
                    kv(
                        "stalled",
                        format!(
                            "worker {} for {}{}",
                            stall.tid,
                            if stall.exact { "" } else { ">=" },
                            human(stall.duration_ns)
                        ),
                    );
                    stack_lines(&mut lines, snap, "Worker stack", stall.user_stack_id, theme);
                }
            }
            None => lines.push(Line::raw("this task is gone".to_owned())),
        },
        DetailItem::IoWait(key) => match snap.io_waits.as_ref() {
            Some(io) => match io.waits.iter().find(|w| IoWaitKey::of(w) == *key) {
                Some(w) => io_wait_detail(&mut lines, io, w, theme),
                None => lines.push(Line::raw("this waiter is gone (its fd became ready)".to_owned())),
            },
            None => lines.push(Line::raw("this waiter is gone".to_owned())),
        },
    }
    f.render_widget(Paragraph::new(lines).scroll((scroll, 0)).wrap(Wrap { trim: false }), area);
}

const HELP: &[(&str, &str)] = &[
    ("j k  Down Up", "move (PgDn PgUp Home End)"),
    ("Enter", "details: stacks, fd and peer, waker"),
    ("Esc", "back; clears the filter"),
    ("Tab  S-Tab", "next / previous view"),
    ("h l  < >", "sort column; i reverses"),
    ("e  x", "expand a goroutine group"),
    ("/", "filter, e.g. syscall=read blocked>1s fd~tcp"),
    ("", "  wait=\"chan receive\" goid=7 func~worker"),
    ("", "  fields: tid name state role syscall class fd"),
    ("", "  blocked waker goid wait m func task"),
    ("", "  ops: = != ~ (contains) !~ > >= < <="),
    ("space", "pause the screen (collection goes on)"),
    ("[ ]  g  + -", "replay: step, go to a time, speed"),
    ("q", "quit"),
];

fn draw_help(f: &mut TermFrame<'_>, area: Rect, app: &App, theme: &Theme) {
    let mut lines = vec![Line::styled("Keys (any key closes this)", theme.title())];
    for (k, v) in HELP {
        if k.starts_with('[') && app.mode != Mode::Replay {
            continue;
        }
        lines.push(Line::raw(format!("  {k:<14}{v}")));
    }
    f.render_widget(Paragraph::new(lines), area);
}

fn draw_footer(f: &mut TermFrame<'_>, area: Rect, app: &App, theme: &Theme) {
    let line = match &app.input {
        Input::Filter(text) => {
            let mut spans = vec![
                Span::styled("/", theme.title()),
                Span::raw(text.clone()),
                Span::styled("_", theme.selected()),
            ];
            if let Some(e) = &app.filter_error {
                spans.push(Span::styled(
                    format!("  filter: {e}"),
                    theme.fg(Color::Red).add_modifier(Modifier::BOLD),
                ));
            }
            Line::from(spans)
        }
        Input::GoTo(text) => Line::from(vec![
            Span::styled("go to (e.g. 90s): ", theme.title()),
            Span::raw(text.clone()),
            Span::styled("_", theme.selected()),
        ]),
        // Why collection ended, or what went wrong last, where there is room for it.
        Input::None if app.ended.is_some() || app.warning.is_some() => {
            let w = app.ended.as_ref().or(app.warning.as_ref()).cloned().unwrap_or_default();
            Line::from(vec![
                Span::styled(format!("! {w}"), theme.fg(Color::Yellow).add_modifier(Modifier::BOLD)),
                Span::styled("  ? help  q quit", theme.dim()),
            ])
        }
        Input::None => match (&app.overlay, app.mode) {
            (Overlay::Detail { .. }, _) => {
                Line::styled("Esc back  j/k scroll  space pause  q quit", theme.dim())
            }
            (_, Mode::Replay) => Line::styled(
                "? help  / filter  Enter detail  Tab view  space play  [ ] step  g go to  + - speed  q quit",
                theme.dim(),
            ),
            _ => Line::styled(
                "? help  / filter  Enter detail  Tab view  h/l sort  i reverse  space pause  q quit",
                theme.dim(),
            ),
        },
    };
    f.render_widget(Paragraph::new(line), area);
}
