//! Folded stacks, the input format of flamegraph.pl and inferno: one line per distinct stack,
//! `thread;outermost;...;innermost value`. Kernel frames carry perf's `_[k]` annotation so
//! flamegraph.pl's `--color=java` and inferno colour them apart; the thread name is the root
//! (for a Go target's goroutine samples, `goroutines [wait reason]`).

use std::collections::BTreeMap;

use super::{FrameKind, Profile, Sample};

/// The folded lines of `p`, sorted (inferno requires sorted input), using the profile's
/// [`super::FoldedValue`]. Samples whose value rounds to zero are left out.
pub fn lines(p: &Profile) -> Vec<String> {
    let fv = &p.folded_value;
    let mut merged: BTreeMap<String, i64> = BTreeMap::new();
    for s in &p.samples {
        let value = s.values.get(fv.index).copied().unwrap_or(0)
            + fv.also.and_then(|i| s.values.get(i).copied()).unwrap_or(0);
        if value <= 0 {
            continue;
        }
        let mut stack = clean(&root(s));
        for &i in s.frames.iter().rev() {
            let f = &p.frames[i];
            stack.push(';');
            stack.push_str(&clean(&f.display_name()));
            if f.kind == FrameKind::Kernel {
                stack.push_str("_[k]");
            }
        }
        *merged.entry(stack).or_default() += value;
    }
    merged
        .into_iter()
        .filter_map(|(stack, v)| {
            let v = v / fv.divisor.max(1);
            (v > 0).then(|| format!("{stack} {v}"))
        })
        .collect()
}

/// The root frame of a sample: its thread, or for a goroutine of a Go target what it waits
/// for (`goroutines [chan receive]`), so goroutines that wait alike share a tower.
pub fn root(s: &Sample) -> String {
    if s.label_str("kind") == Some("goroutine") {
        let why = s.label_str("wait_reason").or_else(|| s.label_str("status")).unwrap_or("?");
        return format!("goroutines [{why}]");
    }
    s.label_str("thread").unwrap_or("?").to_owned()
}

/// The whole folded file.
pub fn encode(p: &Profile) -> String {
    let mut out = lines(p).join("\n");
    out.push('\n');
    out
}

/// Frame names must not contain the separator, and a newline would end the line.
fn clean(name: &str) -> String {
    name.replace([';', '\n', '\r'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{FoldedValue, FrameInfo, LabelValue, ProfileKind, ValueType};

    #[test]
    fn writes_root_to_leaf_with_thread_and_kernel_annotation() {
        let frame = |kind, name: &str| FrameInfo {
            kind,
            addr: 1,
            function: Some(name.to_owned()),
            module: None,
            file: None,
            line: None,
        };
        let sample = |thread: &str, v| Sample {
            frames: vec![0, 1, 2],
            labels: vec![("thread".into(), LabelValue::Str(thread.into()))],
            values: vec![v],
        };
        let p = Profile {
            kind: ProfileKind::OffCpu,
            pid: 1,
            comm: "x".into(),
            sample_types: vec![ValueType::new("offcpu", "nanoseconds")],
            default_sample_type: None,
            folded_value: FoldedValue { index: 0, also: None, divisor: 1000, unit: "us".into() },
            period_type: ValueType::new("offcpu", "nanoseconds"),
            period: 1,
            time_nanos: 0,
            duration_nanos: 0,
            frames: vec![
                frame(FrameKind::Kernel, "schedule"),
                frame(FrameKind::User, "a;b"),
                frame(FrameKind::User, "main"),
            ],
            samples: vec![sample("t1", 5_000), sample("t1", 2_000), sample("t2", 10), sample("t3", 0)],
            mappings: vec![],
            kernel_build_id: None,
            comments: vec![],
        };
        assert_eq!(lines(&p), vec!["t1;main;a_b;schedule_[k] 7".to_owned()]);
    }
}
