//! The terminal side: raw mode and the alternate screen (restored on every way out, a panic
//! included), and the loop that drains the source without blocking, redraws when something
//! changed, and hands keys to the app.

use std::io::{self, IsTerminal, Stdout};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::event::{self, Event, KeyEventKind};
use crossterm::execute;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::app::{Action, App};
use crate::source::Source;

/// How often the loop wakes to drain the source when no key comes.
const TICK: Duration = Duration::from_millis(50);
/// Updates taken per tick at most, so a flood never starves the keys.
const MAX_UPDATES_PER_TICK: usize = 16;

/// Whether both stdin and stdout are a terminal (the viewer needs one for each).
pub fn is_terminal() -> bool {
    io::stdin().is_terminal() && io::stdout().is_terminal()
}

/// Whether NO_COLOR asks for no colour (set and not empty, per no-color.org).
pub fn no_color_from_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Restores the terminal when dropped.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        enable_raw_mode()?;
        let guard = TerminalGuard;
        execute!(io::stdout(), EnterAlternateScreen)?;
        Ok(guard)
    }
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Runs the viewer until `q` (or `stop` is set, e.g. by SIGTERM). Blocks the calling thread:
/// call it from a thread of its own, not from an async reactor.
pub fn run(source: &mut dyn Source, no_color: bool, stop: &Arc<AtomicBool>) -> io::Result<()> {
    let _guard = TerminalGuard::enter()?;
    // A panic must not leave the terminal raw: restore it before the message is printed.
    let previous = Arc::new(std::panic::take_hook());
    {
        let previous = Arc::clone(&previous);
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    }
    let mut terminal: Terminal<CrosstermBackend<Stdout>> =
        Terminal::new(CrosstermBackend::new(io::stdout()))?;
    terminal.clear()?;
    let mut app = App::new(source.mode(), no_color);
    let result = event_loop(&mut terminal, &mut app, source, stop);
    let _ = terminal.show_cursor();
    let _ = std::panic::take_hook();
    result
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    source: &mut dyn Source,
    stop: &AtomicBool,
) -> io::Result<()> {
    loop {
        let updates: Vec<_> = std::iter::from_fn(|| source.poll()).take(MAX_UPDATES_PER_TICK).collect();
        if !updates.is_empty() {
            app.apply_batch(updates);
        }
        if let Some(r) = source.replay() {
            let pos = Some(r.position());
            if app.replay != pos {
                app.replay = pos;
                app.dirty = true;
            }
        }
        if app.dirty {
            terminal.draw(|f| crate::ui::draw(f, app))?;
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if !event::poll(TICK)? {
            continue;
        }
        match event::read()? {
            Event::Key(key) if key.kind != KeyEventKind::Release => {
                let action = app.on_key(key);
                if let Some(r) = source.replay() {
                    match action {
                        Action::Step(by) => r.step(by),
                        Action::Seek(ns) => r.seek(ns),
                        Action::TogglePlay => {
                            let playing = r.position().playing;
                            r.set_playing(!playing);
                        }
                        Action::Speed(factor) => {
                            let speed = r.position().speed;
                            r.set_speed(speed * factor);
                        }
                        Action::None | Action::Quit => {}
                    }
                }
                if action == Action::Quit {
                    return Ok(());
                }
            }
            Event::Resize(..) => app.dirty = true,
            _ => {}
        }
    }
}
