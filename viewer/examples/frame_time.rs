//! Frame time of the viewer at 1k, 10k and 100k rows (goroutines, and threads), drawn on
//! ratatui's TestBackend at 160x45: `cargo run --release -p parkscope-viewer --example frame_time`.
//! A frame is the draw of the visible rows (what runs every redraw); the rebuild (filter,
//! group, sort: once per sample or key) is reported apart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use parkscope_model::{Snapshot, ThreadState};
use parkscope_viewer::app::App;
use parkscope_viewer::{Mode, Sample, Update, fixtures};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// Returns the mean frame time.
fn measure(label: &str, snapshot: Snapshot, keys: &[KeyCode]) -> Duration {
    let start = Instant::now();
    let mut app = App::new(Mode::Live, false);
    app.apply(Update::Sample(Arc::new(Sample { snapshot, sched_line: Some("SCHED 0ms".into()) })));
    let rebuild = start.elapsed();
    for &k in keys {
        app.on_key(KeyEvent::new(k, KeyModifiers::NONE));
    }
    let mut terminal = Terminal::new(TestBackend::new(160, 45)).expect("test backend");
    let frames = 200u32;
    let mut worst = Duration::ZERO;
    let start = Instant::now();
    for _ in 0..frames {
        let t = Instant::now();
        app.dirty = true;
        terminal.draw(|f| parkscope_viewer::ui::draw(f, &mut app)).expect("draw");
        worst = worst.max(t.elapsed());
    }
    let mean = start.elapsed() / frames;
    println!(
        "{label:<34} rebuild {:>8.2} ms   frame mean {:>6.3} ms  worst {:>6.3} ms",
        ms(rebuild),
        ms(mean),
        ms(worst)
    );
    mean
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A C-like process with `n` threads blocked in read().
fn threads(n: usize) -> Snapshot {
    let mut s = fixtures::c_blocker();
    let template = s.threads[1].clone();
    s.threads = (0..n as u32)
        .map(|i| {
            let mut t = template.clone();
            t.tid = 10_000 + i;
            t.state = ThreadState::Sleeping;
            t
        })
        .collect();
    s.summary = parkscope_model::Summary::count(&s.threads);
    s
}

/// The budget of one frame at 100,000 rows (60 frames a second).
const BUDGET: Duration = Duration::from_millis(16);

fn main() {
    let mut over = Vec::new();
    for n in [1_000, 10_000, 100_000] {
        let runs = [
            measure(&format!("{n} goroutines (groups)"), fixtures::go_parked(n), &[KeyCode::Tab]),
            measure(
                &format!("{n} goroutines (biggest expanded)"),
                fixtures::go_parked(n),
                &[KeyCode::Tab, KeyCode::Char('e'), KeyCode::End],
            ),
            measure(&format!("{n} threads"), threads(n), &[KeyCode::End]),
        ];
        over.extend(runs.iter().filter(|m| **m > BUDGET).map(|m| format!("{n} rows: {:.2} ms", ms(*m))));
    }
    if !over.is_empty() {
        eprintln!("frame time over the {BUDGET:?} budget: {}", over.join(", "));
        std::process::exit(1);
    }
}
