//! Exports `snapshot --json` outputs (one file each, in time order) as a Perfetto trace: a way to
//! look at a few snapshots in ui.perfetto.dev without a recording.
//!
//! cargo run -p parkscope-export --example json_to_perfetto -- OUT.pftrace SNAP.json...

use std::io::BufWriter;

use parkscope_export::Entry;
use parkscope_model::Snapshot;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().ok_or("usage: json_to_perfetto OUT.pftrace SNAP.json...")?;
    let mut entries = Vec::new();
    for path in args {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let mut json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        // The contract lists the stack table bare; the model's own form wraps it.
        if json["stacks"].is_array() {
            json["stacks"] = serde_json::json!({ "stacks": json["stacks"].take() });
        }
        let snapshot: Snapshot = serde_json::from_value(json).map_err(|e| format!("{path}: {e}"))?;
        entries.push(Entry::Snapshot(Box::new(snapshot)));
    }
    let started = std::time::Instant::now();
    let stats = parkscope_export::perfetto(entries, BufWriter::new(std::fs::File::create(&out)?))?;
    eprintln!("{out}: exported in {:?}: {stats:?}", started.elapsed());
    Ok(())
}
