//! The `--from FILE` paths of `snapshot`, `schedtrace` and `profile`: the same outputs as live,
//! from a recording (`parkscope record`). A damaged recording is replayed up to the damage, then
//! ends in one line naming the byte offset and what was expected there, and exit code 9.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use parkscope_model::{FrameKind as ModelFrameKind, GoStatus, Snapshot, StackId, ThreadRole};
use parkscope_recording::{Header, Item, ReadError, Reader};

use super::{blocking, write_stdout};
use crate::{
    cli::{ProfileArgs, ProfileKindArg, SchedtraceArgs, SnapshotArgs, parse_duration},
    error::{Failure, code},
    profile::{FoldedValue, FrameInfo, FrameKind, LabelValue, Profile, ProfileKind, Sample, ValueType},
    render,
};

/// How a read of the whole recording ended.
struct Outcome {
    header: Header,
    snapshots: u64,
    /// Damage found after the header: what was read before it is still used.
    error: Option<ReadError>,
    /// The end chunk was read (the recorder closed the file itself), or reading stopped before.
    ended: bool,
}

/// Reads `path` on the blocking pool, handing each snapshot to `each` (false: stop early).
async fn read_all<S: Send + 'static>(
    path: &Path,
    mut state: S,
    mut each: impl FnMut(&mut S, &Header, Snapshot) -> bool + Send + 'static,
) -> Result<(Outcome, S), Failure> {
    let owned = path.to_owned();
    let (outcome, state) = blocking(move || {
        let file = File::open(&owned).map_err(|e| {
            Failure::new(
                code::BAD_RECORDING,
                format!("cannot open recording {}: {e}", owned.display()),
                "give the file `parkscope record -o FILE` wrote",
            )
        })?;
        let mut reader =
            Reader::new(BufReader::with_capacity(1 << 16, file)).map_err(|e| bad_recording(&owned, &e))?;
        let header = reader.header().clone();
        let mut snapshots = 0;
        let mut stopped = false;
        let error = loop {
            match reader.next_item() {
                Ok(Some(Item::Snapshot(s, _))) => {
                    snapshots += 1;
                    if !each(&mut state, &header, *s) {
                        stopped = true;
                        break None;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        Ok::<_, Failure>((Outcome { header, snapshots, error, ended: stopped || reader.ended() }, state))
    })
    .await??;
    Ok((outcome, state))
}

fn bad_recording(path: &Path, e: &ReadError) -> Failure {
    Failure::new(
        code::BAD_RECORDING,
        format!("recording {}: {e}", path.display()),
        "the file is truncated or corrupt, or not a parkscope recording",
    )
}

/// Says on stderr what a partial read means, and gives the exit code it ends with.
fn report(path: &Path, o: &Outcome) -> i32 {
    if let Some(e) = &o.error {
        eprintln!(
            "parkscope: recording {}: {e}; used the {} snapshots before it",
            path.display(),
            o.snapshots
        );
        return code::BAD_RECORDING;
    }
    if !o.ended {
        eprintln!(
            "parkscope: recording {} was not closed (recorder killed?): read up to its last complete chunk ({} snapshots)",
            path.display(),
            o.snapshots
        );
    }
    code::SUCCESS
}

fn from(path: &Option<PathBuf>) -> Result<&Path, Failure> {
    path.as_deref().ok_or_else(|| Failure::new(code::USAGE, "--from FILE is missing", "give a recording"))
}

/// When `--at` points: an offset from the start, or a wall-clock instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Offset(u64),
    WallNs(u64),
}

fn parse_at(s: &str) -> Result<At, String> {
    if let Ok(d) = parse_duration(s) {
        return Ok(At::Offset(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)));
    }
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Ok(At::WallNs((secs * 1e9) as u64));
    }
    parse_rfc3339(s).ok_or_else(|| {
        format!("`{s}` is neither an offset (4s, 1m30s is 90s) nor a time (2026-12-02T19:30:05Z, or seconds since the epoch)")
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)` (UTC without a zone) as ns since the epoch.
fn parse_rfc3339(s: &str) -> Option<At> {
    let b = s.as_bytes();
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ns = 0i64;
    if let Some(f) = rest.strip_prefix('.') {
        let digits = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
        let padded = format!("{:0<9}", &f[..digits.min(9)]);
        frac_ns = padded.parse().ok()?;
        rest = &f[digits..];
    }
    let offset_s = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = rest[1..].split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    let ns = secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)?;
    u64::try_from(ns).ok().map(At::WallNs)
}

/// `snapshot --from FILE [--at T] [--json]`.
pub async fn snapshot(args: SnapshotArgs) -> Result<i32, Failure> {
    let path = from(&args.from)?.to_owned();
    let at = match &args.at {
        Some(s) => Some(parse_at(s).map_err(|e| Failure::new(code::USAGE, e, "e.g. --at 4s"))?),
        None => None,
    };
    // The last snapshot taken at or before T (the last of all without --at); the first one's
    // time is kept to say where the recording starts when T is before it.
    let (outcome, (chosen, first)) =
        read_all(&path, (None::<Snapshot>, None::<u64>), move |(chosen, first), header, s| {
            first.get_or_insert(s.taken_at.wall_unix_ns);
            let in_range = match at {
                None => true,
                Some(At::Offset(ns)) => {
                    s.taken_at.monotonic_ns <= header.started_at.monotonic_ns.saturating_add(ns)
                }
                Some(At::WallNs(ns)) => s.taken_at.wall_unix_ns <= ns,
            };
            if !in_range {
                return false;
            }
            *chosen = Some(s);
            true
        })
        .await?;
    let Some(view) = chosen else {
        let exit = report(&path, &outcome);
        if exit != code::SUCCESS {
            return Ok(exit);
        }
        return Err(match first {
            Some(_) => Failure::new(
                code::USAGE,
                format!(
                    "recording {} has no snapshot at or before {}",
                    path.display(),
                    args.at.unwrap_or_default()
                ),
                "give a later --at, e.g. an offset like 2s from the recording's start",
            ),
            None => Failure::new(
                code::BAD_RECORDING,
                format!("recording {} holds no snapshot", path.display()),
                "record for at least one interval",
            ),
        });
    };
    let mut exit = report(&path, &outcome);
    let unreadable =
        view.runtime.as_ref().filter(|rt| !rt.is_read()).map(|rt| (rt.error.clone(), rt.hint.clone()));
    super::snapshot::print(view, args.json).await?;
    if let Some((cause, hint)) = unreadable {
        super::warn_go_unreadable(&cause.unwrap_or_default(), hint.as_deref(), "printed its threads only");
        if exit == code::SUCCESS {
            exit = code::GO_UNREADABLE;
        }
    }
    Ok(exit)
}

/// `schedtrace --from FILE [--detail]`: the thread-level SCHED line of each snapshot, stamped
/// with its time since the recording began. (A live Go target's runtime-style lines come from
/// scheduler state the model does not carry; the thread-level lines are printed for every target.)
pub async fn schedtrace(args: SchedtraceArgs) -> Result<i32, Failure> {
    let path = from(&args.from)?.to_owned();
    let detail = args.detail;
    let (outcome, text) = read_all(&path, String::new(), move |text, header, s| {
        let elapsed_ms = s.taken_at.monotonic_ns.saturating_sub(header.started_at.monotonic_ns) / 1_000_000;
        text.push_str(&render::schedtrace::line(elapsed_ms, &s.summary));
        text.push('\n');
        if detail {
            text.push_str(&render::schedtrace::detail(&s));
        }
        true
    })
    .await?;
    write_stdout(&text).await?;
    Ok(report(&path, &outcome))
}

const OFFCPU: (&str, &str) = ("offcpu", "nanoseconds");
const GOROUTINE_WAIT: (&str, &str) = ("goroutine_wait", "nanoseconds");

/// A sample's identity: its frames and sorted labels.
type SampleKey = (Vec<usize>, Vec<(String, LabelValue)>);

/// What the profile is built of while the recording is read.
#[derive(Default)]
struct ProfileState {
    frames: Vec<FrameInfo>,
    frame_index: HashMap<(ModelFrameKind, u64, Option<String>, Option<String>), usize>,
    samples: Vec<Sample>,
    sample_index: HashMap<SampleKey, usize>,
    previous_ns: Option<u64>,
    first_wall_ns: Option<u64>,
    span_ns: u64,
    pid: u32,
    comm: String,
}

impl ProfileState {
    fn stack(&mut self, s: &Snapshot, ids: &[StackId]) -> Vec<usize> {
        let mut out = Vec::new();
        for &id in ids {
            for f in s.stacks.get(id) {
                let key = (f.kind, f.address, f.function.clone(), f.module.clone());
                let next = self.frames.len();
                let i = *self.frame_index.entry(key).or_insert(next);
                if i == next {
                    self.frames.push(FrameInfo {
                        kind: match f.kind {
                            ModelFrameKind::User => FrameKind::User,
                            ModelFrameKind::Kernel => FrameKind::Kernel,
                        },
                        addr: f.address,
                        function: f.function.clone(),
                        module: f.module.clone(),
                        file: f.file.clone(),
                        line: f.line.map(i64::from),
                    });
                }
                out.push(i);
            }
        }
        out
    }

    fn add(&mut self, frames: Vec<usize>, mut labels: Vec<(String, LabelValue)>, values: Vec<i64>) {
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let key = (frames, labels);
        match self.sample_index.get(&key) {
            Some(&i) => {
                for (acc, v) in self.samples[i].values.iter_mut().zip(&values) {
                    *acc += v;
                }
            }
            None => {
                self.sample_index.insert(key.clone(), self.samples.len());
                self.samples.push(Sample { frames: key.0, labels: key.1, values });
            }
        }
    }

    /// Adds what snapshot `s` says about the interval that ends with it: each thread blocked at
    /// `s` is counted blocked for the interval (or for as long as it has been, if shorter), and
    /// so is each waiting goroutine.
    fn add_snapshot(&mut self, s: &Snapshot) {
        let now = s.taken_at.monotonic_ns;
        self.first_wall_ns.get_or_insert(s.taken_at.wall_unix_ns);
        self.pid = s.pid;
        self.comm.clone_from(&s.comm);
        let Some(prev) = self.previous_ns.replace(now) else { return };
        let interval = now.saturating_sub(prev);
        self.span_ns += interval;
        for t in &s.threads {
            if !t.state.is_blocked() {
                continue;
            }
            let known = t.syscall.as_ref().and_then(|c| c.time_ns());
            let weight = known.map_or(interval, |k| k.min(interval));
            let frames = self.stack(s, &[t.kernel_stack_id, t.user_stack_id]);
            let mut labels = vec![
                ("kind".to_owned(), LabelValue::Str("thread".into())),
                ("thread".to_owned(), LabelValue::Str(t.name.clone())),
                ("tid".to_owned(), LabelValue::Num(i64::from(t.tid))),
                ("state".to_owned(), LabelValue::Str(t.state.as_str().into())),
            ];
            if let Some(c) = &t.syscall {
                labels.push(("syscall".to_owned(), LabelValue::Str(c.name.clone())));
            }
            if let Some(role) = t.role.filter(|r| *r != ThreadRole::Goroutine) {
                labels.push(("role".to_owned(), LabelValue::Str(role.as_str().into())));
            }
            self.add(frames, labels, vec![weight as i64, 0]);
        }
        for g in &s.goroutines {
            if g.status != GoStatus::Waiting {
                continue;
            }
            let weight = g.waiting_ns.map_or(interval, |w| w.min(interval));
            let frames = self.stack(s, &[g.stack_id]);
            let labels = vec![
                ("kind".to_owned(), LabelValue::Str("goroutine".into())),
                ("wait_reason".to_owned(), LabelValue::Str(g.wait_reason.clone().unwrap_or_default())),
            ];
            self.add(frames, labels, vec![0, weight as i64]);
        }
    }
}

/// `profile --from FILE -o OUT.pb.gz`: an off-CPU profile sampled at the recording's interval.
pub async fn profile(args: ProfileArgs) -> Result<i32, Failure> {
    if args.kind != ProfileKindArg::Offcpu {
        return Err(Failure::new(
            code::USAGE,
            "--from builds off-CPU profiles only (a recording holds no CPU samples)",
            "drop --kind cpu",
        ));
    }
    let path = from(&args.from)?.to_owned();
    let (outcome, state) = read_all(&path, ProfileState::default(), |st, _, s| {
        st.add_snapshot(&s);
        true
    })
    .await?;
    if outcome.snapshots < 2 {
        let exit = report(&path, &outcome);
        return Err(Failure::new(
            if exit == code::SUCCESS { code::USAGE } else { exit },
            format!(
                "recording {} holds {} snapshots; a profile needs two",
                path.display(),
                outcome.snapshots
            ),
            "record for at least two intervals",
        ));
    }
    let interval = outcome.header.interval_ns;
    let profile = Profile {
        kind: ProfileKind::OffCpu,
        pid: state.pid,
        comm: state.comm.clone(),
        sample_types: vec![
            ValueType::new(OFFCPU.0, OFFCPU.1),
            ValueType::new(GOROUTINE_WAIT.0, GOROUTINE_WAIT.1),
        ],
        default_sample_type: Some(OFFCPU.0.to_owned()),
        folded_value: FoldedValue { index: 0, also: Some(1), divisor: 1000, unit: "us".to_owned() },
        period_type: ValueType::new(OFFCPU.0, OFFCPU.1),
        period: i64::try_from(interval).unwrap_or(i64::MAX),
        time_nanos: i64::try_from(state.first_wall_ns.unwrap_or(0)).unwrap_or(i64::MAX),
        duration_nanos: i64::try_from(state.span_ns).unwrap_or(i64::MAX),
        frames: state.frames,
        samples: state.samples,
        mappings: Vec::new(),
        kernel_build_id: None,
        comments: vec![format!(
            "off-CPU time sampled from a parkscope recording every {} ms: each thread blocked (goroutine waiting) at a snapshot counts for the interval before it, or its time blocked if shorter; waits shorter than the interval between snapshots are missed",
            interval / 1_000_000
        )],
    };
    let p = profile.clone();
    let pprof = blocking(move || crate::profile::pprof::encode(&p))
        .await?
        .map_err(|e| write_failure(&args.output, &e))?;
    write_file(&args.output, pprof).await?;
    if let Some(out) = &args.folded {
        write_file(out, crate::profile::folded::encode(&profile).into_bytes()).await?;
    }
    if let Some(out) = &args.flamegraph {
        let p = profile.clone();
        let svg = blocking(move || crate::profile::flamegraph::encode(&p))
            .await?
            .map_err(|e| write_failure(out, &e))?;
        write_file(out, svg).await?;
    }
    Ok(report(&path, &outcome))
}

async fn write_file(path: &Path, bytes: Vec<u8>) -> Result<(), Failure> {
    let owned = path.to_owned();
    blocking(move || std::fs::write(owned, bytes)).await?.map_err(|e| write_failure(path, &e))
}

fn write_failure(path: &Path, e: &std::io::Error) -> Failure {
    Failure::new(
        code::INTERNAL,
        format!("cannot write {}: {e}", path.display()),
        "check that the directory exists and is writable",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_is_an_offset_or_a_time() {
        assert_eq!(parse_at("4s"), Ok(At::Offset(4_000_000_000)));
        assert_eq!(parse_at("1733167805.5"), Ok(At::WallNs(1_733_167_805_500_000_000)));
        // date -u -d 2026-12-02T19:30:05Z +%s = 1796239805
        assert_eq!(parse_at("2026-12-02T19:30:05Z"), Ok(At::WallNs(1_796_239_805_000_000_000)));
        assert_eq!(parse_at("2026-12-02T20:30:05.25+01:00"), Ok(At::WallNs(1_796_239_805_250_000_000)));
        assert!(parse_at("yesterday").is_err());
        assert!(parse_at("2026-13-02T19:30:05Z").is_err());
    }
}
