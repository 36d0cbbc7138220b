//! Exports `snapshot --json` outputs (one file each, in time order) as a Perfetto trace: a way to
//! look at a few snapshots in ui.perfetto.dev without a recording.
//!
//! cargo run -p parkscope-export --example json_to_perfetto -- OUT.pftrace SNAP.json...

use std::io::BufWriter;

use parkscope_export::PerfettoWriter;
use parkscope_model::Snapshot;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().ok_or("usage: json_to_perfetto OUT.pftrace SNAP.json...")?;
    let mut snapshots = Vec::new();
    for path in args {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let mut json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        // The contract lists the stack table bare; the model's own form wraps it.
        if json["stacks"].is_array() {
            json["stacks"] = serde_json::json!({ "stacks": json["stacks"].take() });
        }
        let snapshot: Snapshot = serde_json::from_value(json).map_err(|e| format!("{path}: {e}"))?;
        snapshots.push(snapshot);
    }
    // Timed apart from freeing the snapshots (which costs more than the export at 100k goroutines).
    let started = std::time::Instant::now();
    let mut writer = PerfettoWriter::new(BufWriter::new(std::fs::File::create(&out)?));
    for snapshot in &snapshots {
        writer.push_snapshot(snapshot)?;
    }
    let stats = writer.finish()?;
    eprintln!("{out}: exported in {:?}: {stats:?}", started.elapsed());
    Ok(())
}
