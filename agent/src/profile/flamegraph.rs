//! SVG flame graphs through inferno, from the folded stacks: titled with the target, the kind
//! and the window, and coloured by where code lives (kernel orange, Go runtime aqua, other user
//! code warm red-yellow, our own separators grey, thread and goroutine roots purple) through a
//! palette map, so the colour means something rather than being random.

use inferno::flamegraph::{
    self, Options,
    color::{Color, PaletteMap},
};

use super::{FrameKind, Profile, ProfileKind, folded};

/// Renders `p` as an SVG flame graph.
pub fn encode(p: &Profile) -> std::io::Result<Vec<u8>> {
    let lines = folded::lines(p);
    let mut palette = palette(p);
    let mut opts = Options::default();
    opts.title = title(p);
    opts.subtitle = Some(match p.kind {
        ProfileKind::OffCpu => {
            let mut what = "time off CPU per thread and stack".to_owned();
            if p.sample_types.iter().any(|t| t.kind == "offwake") {
                what.push_str("; above a \"--- woken by\" frame: the waker's stack");
            }
            if p.sample_types.iter().any(|t| t.kind == "goroutine_wait") {
                what.push_str("; goroutines [reason]: goroutines not running, per stack");
            }
            format!("{what} (kernel orange, Go runtime aqua, user code red/yellow)")
        }
        ProfileKind::Cpu => {
            "cpu-clock samples per stack (kernel orange, Go runtime aqua, user code red/yellow)".to_owned()
        }
    });
    opts.count_name = p.folded_value.unit.to_owned();
    opts.name_type = "Function:".to_owned();
    opts.palette_map = Some(&mut palette);
    let mut svg = Vec::new();
    if lines.is_empty() {
        // inferno refuses empty input; an empty profile still deserves a valid (empty) graph.
        flamegraph::from_lines(&mut opts, std::iter::once("(no samples) 0"), &mut svg)
            .or_else(|_| flamegraph::from_lines(&mut opts, std::iter::once("(no samples) 1"), &mut svg))?;
    } else {
        flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut svg)?;
    }
    Ok(svg)
}

fn title(p: &Profile) -> String {
    let secs = p.duration_nanos as f64 / 1e9;
    let what = match p.kind {
        ProfileKind::OffCpu => "Off-CPU time",
        ProfileKind::Cpu => "CPU",
    };
    format!("{what}: {} (pid {}), {secs:.1} s", p.comm, p.pid)
}

/// A colour for every name the folded lines will contain.
fn palette(p: &Profile) -> PaletteMap {
    let mut map = PaletteMap::default();
    for f in &p.frames {
        let name = f.display_name().replace([';', '\n', '\r'], "_");
        let (name, color) = match f.kind {
            FrameKind::Kernel => (format!("{name}_[k]"), shade(&name, (200, 110, 0), (55, 60, 40))),
            FrameKind::Marker => (name, Color { r: 170, g: 170, b: 170 }),
            FrameKind::User if f.is_go_runtime() => {
                let c = shade(&name, (50, 170, 200), (60, 50, 55));
                (name, c)
            }
            FrameKind::User => {
                let c = shade(&name, (205, 0, 0), (50, 230, 55));
                (name, c)
            }
        };
        map.insert(name, color);
    }
    for s in &p.samples {
        let root = folded::root(s).replace([';', '\n', '\r'], "_");
        let c = shade(&root, (150, 120, 200), (40, 40, 40));
        map.insert(root, c);
    }
    map
}

/// A colour in `base + [0, span)` chosen by a hash of the name, so neighbouring frames differ
/// but a function keeps its colour across graphs.
fn shade(name: &str, base: (u8, u8, u8), span: (u8, u8, u8)) -> Color {
    // FNV-1a: stable across runs and platforms, unlike std's RandomState.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let v = (h % 1000) as u32;
    let pick = |b: u8, s: u8| (u32::from(b) + v * u32::from(s) / 1000).min(255) as u8;
    Color { r: pick(base.0, span.0), g: pick(base.1, span.1), b: pick(base.2, span.2) }
}
