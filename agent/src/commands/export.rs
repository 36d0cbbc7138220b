//! `parkscope export FILE --perfetto -o OUT`: a recording (`parkscope record`) turned into
//! another tool's format, streamed chunk by chunk (parkscope-export holds only what is still
//! open). A damaged recording is exported up to the damage, then ends in one line naming the
//! byte offset and what was expected there, and exit code 9.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use parkscope_export::{ExportError, ExportStats, PerfettoWriter};
use parkscope_recording::{Item, ReadError, Reader};

use super::blocking;
use crate::{
    cli::ExportArgs,
    error::{Failure, code},
};

pub async fn run(args: ExportArgs) -> Result<i32, Failure> {
    if !args.perfetto {
        return Err(Failure::new(
            code::USAGE,
            "export needs a format",
            "add --perfetto (a Perfetto trace for ui.perfetto.dev), the one format so far",
        ));
    }
    blocking(move || perfetto(&args.file, &args.output)).await?
}

/// What reading the recording ended with.
struct Read {
    snapshots: u64,
    damage: Option<ReadError>,
    ended: bool,
}

fn perfetto(input: &Path, output: &Path) -> Result<i32, Failure> {
    let file = File::open(input).map_err(|e| {
        Failure::new(
            code::BAD_RECORDING,
            format!("cannot open recording {}: {e}", input.display()),
            "give the file `parkscope record -o FILE` wrote",
        )
    })?;
    let mut reader = Reader::new(BufReader::with_capacity(1 << 16, file)).map_err(|e| {
        Failure::new(
            code::BAD_RECORDING,
            format!("recording {}: {e}", input.display()),
            "the file is truncated or corrupt, or not a parkscope recording",
        )
    })?;
    let out = File::create(output).map_err(|e| write_failure(output, &e))?;
    let mut writer = PerfettoWriter::new(BufWriter::with_capacity(1 << 16, out));
    let mut read = Read { snapshots: 0, damage: None, ended: false };
    let pushed = loop {
        let pushed = match reader.next_item() {
            Ok(Some(Item::Snapshot(s, _))) => {
                read.snapshots += 1;
                writer.push_snapshot(&s)
            }
            Ok(Some(Item::Events(events, _))) => events.iter().try_for_each(|e| writer.push_event(e)),
            Ok(Some(Item::End(..))) | Ok(None) => break Ok(()),
            Err(e) => {
                read.damage = Some(e);
                break Ok(());
            }
        };
        if pushed.is_err() {
            break pushed;
        }
    };
    read.ended = reader.ended();
    let stats = pushed.and_then(|()| writer.finish()).map_err(|e| {
        // Nothing usable was written: leave no file that looks like a trace.
        let _ = std::fs::remove_file(output);
        export_failure(input, output, e)
    })?;
    summary(output, &stats);
    Ok(report(input, &read))
}

/// What was written, and what had to be left out, on stderr.
fn summary(output: &Path, s: &ExportStats) {
    eprintln!(
        "parkscope: wrote {}: {} snapshots, {} events; {} syscall slices, {} goroutine slices, {} waker flows",
        output.display(),
        s.snapshots,
        s.events,
        s.thread_slices,
        s.goroutine_slices,
        s.flows
    );
    if s.goroutines_without_track_max > 0 {
        eprintln!(
            "parkscope: note: up to {} waiting goroutines of a snapshot had no track of their own (the first 1000 do); all are in the per-wait-reason counters",
            s.goroutines_without_track_max
        );
    }
    if s.events_conflicting > 0 {
        eprintln!(
            "parkscope: warning: {} events contradicted a snapshot of their thread and were not drawn",
            s.events_conflicting
        );
    }
    if s.events_dropped > 0 {
        eprintln!("parkscope: warning: {} events before the first snapshot were dropped", s.events_dropped);
    }
}

/// Says on stderr what a partial read means, and gives the exit code it ends with.
fn report(input: &Path, r: &Read) -> i32 {
    if let Some(e) = &r.damage {
        eprintln!(
            "parkscope: recording {}: {e}; exported the {} snapshots before it",
            input.display(),
            r.snapshots
        );
        return code::BAD_RECORDING;
    }
    if !r.ended {
        eprintln!(
            "parkscope: recording {} was not closed (recorder killed?): exported up to its last complete chunk ({} snapshots)",
            input.display(),
            r.snapshots
        );
    }
    code::SUCCESS
}

fn export_failure(input: &Path, output: &Path, e: ExportError) -> Failure {
    match e {
        ExportError::Io(e) => write_failure(output, &e),
        ExportError::NoSnapshot => Failure::new(
            code::BAD_RECORDING,
            format!("recording {} holds no snapshot: nothing to export", input.display()),
            "record for at least one interval (the first snapshot is taken at attach)",
        ),
        e @ ExportError::OtherProcess { .. } => Failure::new(
            code::BAD_RECORDING,
            format!("recording {}: {e}", input.display()),
            "the file is corrupt: a recording holds one process",
        ),
    }
}

fn write_failure(path: &Path, e: &std::io::Error) -> Failure {
    Failure::new(
        code::INTERNAL,
        format!("cannot write {}: {e}", path.display()),
        "check that the directory exists, is writable and has room",
    )
}
