//! The CPU profile of one window, from the per-CPU cpu-clock samples the kernel counted for the
//! target (probes::kernel::CpuSamples): one sample per distinct (thread, kernel stack, user
//! stack), valued in samples and in CPU nanoseconds (samples x the fixed sampling period, which
//! is what each cpu-clock sample stands for), labelled with thread name and tid.

use std::collections::HashMap;

use parkscope_model::profile::{FoldedValue, LabelValue, Mapping, Profile, ProfileKind, ValueType};
use parkscope_probes::kernel::CpuSamples;

use super::build::{AddrSet, ProfileBuilder, Symbols};

/// The inputs of one CPU profile.
#[derive(Debug)]
pub struct CpuInput {
    pub pid: u32,
    pub comm: String,
    pub samples: CpuSamples,
    pub frequency_hz: u64,
    pub duration_ns: u64,
    pub time_nanos: i64,
    pub names: HashMap<u32, String>,
    pub mappings: Vec<Mapping>,
    pub kernel_build_id: Option<String>,
    pub cut_short: Option<String>,
}

/// The sample types: samples/count, cpu/nanoseconds.
fn sample_types() -> Vec<ValueType> {
    vec![ValueType::new("samples", "count"), ValueType::new("cpu", "nanoseconds")]
}

/// Builds the profile (symbolises every stack; file-bound, run it off the reactor).
pub fn build(input: CpuInput) -> Profile {
    let mut set = AddrSet::default();
    for key in input.samples.stacks.keys() {
        set.add_kernel(&key.kernel);
        set.add_user(input.pid, &key.user);
    }
    let symbols = Symbols::resolve(&set, input.pid, &input.mappings);
    let mut b = ProfileBuilder::default();
    let mut total = 0u64;
    for (key, t) in &input.samples.stacks {
        let mut frames = b.kernel_frames(&symbols, &key.kernel);
        frames.extend(b.user_frames(&symbols, input.pid, &key.user));
        let name = input.names.get(&key.tid).cloned().unwrap_or_else(|| format!("tid {}", key.tid));
        let labels = vec![
            ("thread".to_owned(), LabelValue::Str(name)),
            ("tid".to_owned(), LabelValue::Num(i64::from(key.tid))),
        ];
        b.add(frames, labels, vec![t.count as i64, t.cpu_ns as i64]);
        total += t.count;
    }
    let (frames, samples) = b.finish();
    let s = &input.samples;
    let mut comments = vec![
        format!(
            "parkscope CPU profile of pid {} ({}): cpu-clock at {} Hz on each of {} CPUs (period {} ns), \
             {:.3} s, {total} samples",
            input.pid,
            input.comm,
            input.frequency_hz,
            s.cpus,
            s.period_ns,
            input.duration_ns as f64 / 1e9
        ),
        format!("{} threads sampled", s.threads_sampled),
    ];
    if s.lost > 0 {
        comments.push(format!(
            "warning: {} of {} samples lost (the kernel's sample count map was full)",
            s.lost, s.samples_seen
        ));
    }
    if s.stack_failures > 0 {
        comments.push(format!(
            "warning: {} stack captures failed (stack map full or collisions): those samples lack that part of their stack",
            s.stack_failures
        ));
    }
    if let Some(why) = &input.cut_short {
        comments.push(format!("window cut short: {why}"));
    }
    Profile {
        kind: ProfileKind::Cpu,
        pid: input.pid,
        comm: input.comm.clone(),
        sample_types: sample_types(),
        default_sample_type: Some("cpu".to_owned()),
        folded_value: FoldedValue { index: 0, also: None, divisor: 1, unit: "samples".to_owned() },
        period_type: sample_types().swap_remove(1),
        period: s.period_ns as i64,
        time_nanos: input.time_nanos,
        duration_nanos: input.duration_ns as i64,
        frames,
        samples,
        mappings: input.mappings.clone(),
        kernel_build_id: input.kernel_build_id.clone(),
        comments,
    }
}
