//! Snapshot tests of every view, drawn on ratatui's TestBackend from model fixtures built in
//! code (80x24, the smallest screen `top` supports, and 160x45 as the end-to-end tests use).

use std::sync::Arc;
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use parkscope_model::Snapshot;
use parkscope_viewer::app::{Action, App, Tab};
use parkscope_viewer::fixtures;
use parkscope_viewer::{Mode, Sample, Update};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn app_with(snapshot: Snapshot, sched: &str) -> App {
    let mut app = App::new(Mode::Live, true);
    app.apply(Update::Sample(Arc::new(Sample { snapshot, sched_line: Some(sched.to_owned()) })));
    app
}

fn screen(app: &mut App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| parkscope_viewer::ui::draw(f, app)).unwrap();
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width).map(|x| buffer[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn key(app: &mut App, code: KeyCode) -> Action {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

const C_SCHED: &str = "SCHED 3000ms: threads=8 running=1 runnable=1 blocked=6 read=2 write=0 poll=1 futex=2 sleep=1 other=0 maxblocked=12.0s";
const GO_SCHED: &str = "SCHED 3000ms: gomaxprocs=4 idleprocs=3 threads=4 spinningthreads=0 needspinning=0 idlethreads=1 runqueue=0 [ 0 0 0 0 ]";

#[test]
fn threads_view_80x24() {
    let mut app = app_with(fixtures::c_blocker(), C_SCHED);
    insta::assert_snapshot!(screen(&mut app, 80, 24));
}

#[test]
fn threads_view_160x45() {
    let mut app = app_with(fixtures::c_blocker(), C_SCHED);
    insta::assert_snapshot!(screen(&mut app, 160, 45));
}

#[test]
fn thread_detail_shows_stacks_fd_and_wakers() {
    let mut app = app_with(fixtures::c_blocker(), C_SCHED);
    // The futex waiter is stuck longest: first row. Its waker (the spinner) is not blocked;
    // the socket reader was woken by the futex waiter, whose own waker is known.
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!("detail_sock_reader", screen(&mut app, 80, 24));
    key(&mut app, KeyCode::Esc);
    type_text(&mut app, "/name=pipe-reader");
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!("detail_pipe_reader", screen(&mut app, 80, 24));
}

#[test]
fn filter_leaves_matching_rows_and_shows_errors() {
    let mut app = app_with(fixtures::c_blocker(), C_SCHED);
    type_text(&mut app, "/fd~tcp blocked>1s");
    insta::assert_snapshot!("filter_tcp", screen(&mut app, 80, 24));
    assert_eq!(app.thread_rows.len(), 1, "only the socket reader is on tcp and blocked over 1s");
    key(&mut app, KeyCode::Enter);
    type_text(&mut app, "/ sycall=read");
    insta::assert_snapshot!("filter_error", screen(&mut app, 80, 24));
    // Filters apply as typed; the last one that parsed stays applied while this one does not.
    assert!(app.filter_error.as_deref().is_some_and(|e| e.contains("unknown field `sycall`")));
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Esc);
    assert!(app.filter_text.is_empty());
    assert_eq!(app.thread_rows.len(), 8);
}

#[test]
fn sort_column_and_reverse() {
    let mut app = app_with(fixtures::c_blocker(), C_SCHED);
    key(&mut app, KeyCode::Char('h')); // BLOCKED -> FD
    key(&mut app, KeyCode::Char('h')); // FD -> SYSCALL
    key(&mut app, KeyCode::Char('i'));
    insta::assert_snapshot!(screen(&mut app, 80, 24));
}

#[test]
fn goroutine_groups_and_expansion() {
    let mut app = app_with(fixtures::go_parked(1000), GO_SCHED);
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.tab, Tab::Goroutines);
    insta::assert_snapshot!("goroutine_groups", screen(&mut app, 80, 24));
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Char('e'));
    insta::assert_snapshot!("goroutine_group_expanded", screen(&mut app, 80, 24));
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!("goroutine_detail", screen(&mut app, 80, 24));
    key(&mut app, KeyCode::Esc);
    type_text(&mut app, r#"/wait="chan receive" func~parkOnChan"#);
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.groups.len(), 1);
    assert_eq!(app.goroutines_shown, 850);
}

#[test]
fn go_threads_view_with_roles() {
    let mut app = app_with(fixtures::go_parked(1000), GO_SCHED);
    insta::assert_snapshot!(screen(&mut app, 160, 45));
}

#[test]
fn tasks_view() {
    let mut app = app_with(fixtures::tokio_tasks(), "");
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.tab, Tab::Tasks);
    insta::assert_snapshot!("tasks", screen(&mut app, 80, 24));
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!("task_detail", screen(&mut app, 80, 24));
}

/// Console tasks with their waits on I/O: one fd (its description), two fds (`2 fds`), none.
#[test]
fn tasks_view_with_io_waits() {
    let mut app = app_with(fixtures::tokio_tasks(), "");
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.tab, Tab::Tasks);
    assert!(!app.lists_io_waits(), "console tasks are listed when the target serves them");
    // The proxy task (24) waits on two sockets: its detail lists both.
    type_text(&mut app, "/fd~5432");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.task_rows.len(), 1);
    assert_eq!(app.snapshot().unwrap().tasks[app.task_rows[0]].task_id, Some(24));
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!("task_detail_two_fds", screen(&mut app, 80, 24));
}

/// A tokio target without console-subscriber: the Tasks view lists the waiters parked on I/O.
#[test]
fn io_waits_view_without_console() {
    let mut app = app_with(fixtures::tokio_io_waits(), "");
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.tab, Tab::Tasks);
    assert!(app.lists_io_waits());
    insta::assert_snapshot!("io_waits", screen(&mut app, 80, 24));
    insta::assert_snapshot!("io_waits_160x45", screen(&mut app, 160, 45));
    // Sorted by task: tasks by id, then block_on, then other.
    key(&mut app, KeyCode::Char('h'));
    key(&mut app, KeyCode::Char('h'));
    insta::assert_snapshot!("io_waits_by_task", screen(&mut app, 80, 24));
    // Task 8 waits on two fds: its detail names the other one.
    type_text(&mut app, "/task=8 fd~2001:db8");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.io_rows.len(), 1);
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!("io_wait_detail", screen(&mut app, 80, 24));
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Esc);
    // Two tasks wait on one socket (a split stream's reader and writer): the filter on its
    // description finds both, and `wait=` tells them apart.
    type_text(&mut app, "/fd~10.0.0.9:51544");
    let io = app.snapshot().unwrap().io_waits.clone().unwrap();
    let tasks: Vec<Option<u64>> = app.io_rows.iter().map(|&i| io.waits[i].task_id).collect();
    assert_eq!(tasks, [Some(5), Some(6)]);
    type_text(&mut app, " wait=write");
    assert_eq!(app.io_rows.iter().map(|&i| io.waits[i].task_id).collect::<Vec<_>>(), [Some(6)]);
    key(&mut app, KeyCode::Esc);
    type_text(&mut app, "/block_on");
    assert_eq!(app.io_rows.iter().map(|&i| io.waits[i].fd).collect::<Vec<_>>(), [15]);
}

/// A stripped tokio build: the waiters could not be read; the header says `io ?` and the Tasks
/// view why.
#[test]
fn io_waits_unreadable() {
    let mut app = app_with(fixtures::tokio_io_unreadable(), "");
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.tab, Tab::Tasks);
    insta::assert_snapshot!("io_waits_unreadable", screen(&mut app, 80, 24));
}

#[test]
fn history_view_and_help() {
    let mut app = App::new(Mode::Live, true);
    for i in 0..30u64 {
        let mut s = fixtures::c_blocker();
        s.taken_at = fixtures::taken_at(i);
        // A read-blocked thread comes and goes.
        if i % 3 == 0 {
            s.summary.read -= 1;
            s.summary.blocked -= 1;
        }
        app.apply(Update::Sample(Arc::new(Sample { snapshot: s, sched_line: None })));
    }
    key(&mut app, KeyCode::BackTab);
    assert_eq!(app.tab, Tab::History);
    insta::assert_snapshot!("history", screen(&mut app, 80, 24));
    key(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!("help", screen(&mut app, 80, 24));
}

#[test]
fn pause_freezes_the_screen_while_samples_arrive() {
    let mut app = app_with(fixtures::c_blocker(), C_SCHED);
    key(&mut app, KeyCode::Char(' '));
    let before = screen(&mut app, 80, 24);
    let mut later = fixtures::c_blocker();
    later.taken_at = fixtures::taken_at(5);
    later.threads.truncate(3);
    app.apply(Update::Sample(Arc::new(Sample { snapshot: later, sched_line: None })));
    assert_eq!(screen(&mut app, 80, 24), before);
    assert_eq!(app.history.len(), 2, "collection goes on while paused");
    key(&mut app, KeyCode::Char(' '));
    assert_eq!(app.thread_rows.len(), 3, "unpausing shows the newest sample");
}

#[test]
fn a_hundred_thousand_goroutines() {
    let snapshot = fixtures::go_parked(100_000);
    let start = Instant::now();
    let mut app = app_with(snapshot, GO_SCHED);
    let rebuild = start.elapsed();
    key(&mut app, KeyCode::Tab);
    // Expand the biggest group: 85,000 rows, of which a screenful is drawn.
    key(&mut app, KeyCode::Char('e'));
    key(&mut app, KeyCode::End);
    insta::assert_snapshot!(screen(&mut app, 80, 24));
    let mut terminal = Terminal::new(TestBackend::new(160, 45)).unwrap();
    let frames = 20;
    let start = Instant::now();
    for _ in 0..frames {
        app.dirty = true;
        terminal.draw(|f| parkscope_viewer::ui::draw(f, &mut app)).unwrap();
    }
    let per_frame = start.elapsed() / frames;
    eprintln!("100k goroutines: rebuild {rebuild:?}, frame {per_frame:?} (this build's profile)");
    // Generous for debug builds; the release figure (<= 16 ms) comes from the frame_time example.
    assert!(per_frame.as_millis() < 200, "a frame took {per_frame:?}");
}

#[test]
fn replay_keys_drive_the_source() {
    let mut app = App::new(Mode::Replay, true);
    let mut s = fixtures::c_blocker();
    s.taken_at = fixtures::taken_at(0);
    app.apply(Update::Sample(Arc::new(Sample { snapshot: s, sched_line: None })));
    app.replay = Some(parkscope_viewer::ReplayPosition {
        index: 0,
        count: 61,
        offset_ns: 0,
        length_ns: 60_000_000_000,
        playing: false,
        speed: 1.0,
        complete: true,
        damaged_at: None,
    });
    assert_eq!(key(&mut app, KeyCode::Char('[')), Action::Step(-1));
    assert_eq!(key(&mut app, KeyCode::Char(']')), Action::Step(1));
    assert_eq!(key(&mut app, KeyCode::Char(' ')), Action::TogglePlay);
    assert!(!app.paused, "a replay's space is its playback, not the screen's pause");
    assert_eq!(key(&mut app, KeyCode::Char('+')), Action::Speed(2.0));
    assert_eq!(key(&mut app, KeyCode::Char('g')), Action::None);
    type_text(&mut app, "1.5m");
    assert_eq!(key(&mut app, KeyCode::Enter), Action::Seek(90_000_000_000));
    key(&mut app, KeyCode::Char('g'));
    type_text(&mut app, "soon");
    assert_eq!(key(&mut app, KeyCode::Enter), Action::None);
    insta::assert_snapshot!("replay_goto_error", screen(&mut app, 80, 24));
}

/// A recording streamed from disk: its length is not final while it is indexed (`+`), and a
/// damaged one says in the header where it ends and in the footer why.
#[test]
fn replay_of_a_damaged_recording_says_where_it_ends() {
    let mut app = App::new(Mode::Replay, true);
    let mut s = fixtures::c_blocker();
    s.taken_at = fixtures::taken_at(2);
    app.apply(Update::Sample(Arc::new(Sample { snapshot: s, sched_line: None })));
    app.apply(Update::Ended(
        "recording ends early at byte 4242: expected a 16-byte chunk header, found 3 bytes before the end (truncated)"
            .into(),
    ));
    app.replay = Some(parkscope_viewer::ReplayPosition {
        index: 2,
        count: 3,
        offset_ns: 2_000_000_000,
        length_ns: 2_000_000_000,
        playing: false,
        speed: 1.0,
        complete: false,
        damaged_at: Some(4242),
    });
    insta::assert_snapshot!("replay_damaged", screen(&mut app, 160, 12));
}

#[test]
fn live_keys_do_not_step() {
    let mut app = app_with(fixtures::c_blocker(), C_SCHED);
    assert_eq!(key(&mut app, KeyCode::Char('[')), Action::None);
    assert_eq!(key(&mut app, KeyCode::Char('q')), Action::Quit);
}

/// How many cells of an 80x24 frame of `snapshot` (after `keys`) have a colour.
fn coloured_cells(snapshot: parkscope_model::Snapshot, keys: &[KeyCode], no_color: bool) -> usize {
    use ratatui::style::Color;
    let mut app = App::new(Mode::Live, no_color);
    app.apply(Update::Sample(Arc::new(Sample { snapshot, sched_line: None })));
    for k in keys {
        key(&mut app, *k);
    }
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| parkscope_viewer::ui::draw(f, &mut app)).unwrap();
    terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
        .count()
}

#[test]
fn no_color_draws_without_colours() {
    let coloured = |no_color| coloured_cells(fixtures::c_blocker(), &[], no_color);
    assert!(coloured(false) > 0, "colours are used by default");
    assert_eq!(coloured(true), 0, "NO_COLOR: no foreground or background colour anywhere");
}

#[test]
fn no_color_io_waits_view() {
    let coloured = |no_color| coloured_cells(fixtures::tokio_io_waits(), &[KeyCode::Tab], no_color);
    assert!(coloured(false) > 0, "colours are used by default");
    assert_eq!(coloured(true), 0, "NO_COLOR: no foreground or background colour anywhere");
}

#[test]
fn a_batch_shows_the_newest_sample_and_keeps_every_point() {
    let mut app = App::new(Mode::Live, true);
    let updates = (0..3u64)
        .map(|i| {
            let mut s = fixtures::c_blocker();
            s.taken_at = fixtures::taken_at(i);
            s.threads.truncate(4 + i as usize);
            Update::Sample(Arc::new(Sample { snapshot: s, sched_line: None }))
        })
        .collect();
    app.apply_batch(updates);
    assert_eq!(app.history.len(), 3);
    assert_eq!(app.thread_rows.len(), 6);
    assert_eq!(app.snapshot().unwrap().taken_at, fixtures::taken_at(2));
}
