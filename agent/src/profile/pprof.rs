//! pprof encoding: the messages of github.com/google/pprof proto/profile.proto written by hand
//! as prost structs (field numbers cited from that file; no protoc at build time), filled from
//! a [`Profile`] with a deduplicated string table, gzip-compressed as `go tool pprof` expects.

use std::{collections::HashMap, io::Write};

use flate2::{Compression, write::GzEncoder};
use prost::Message;

use super::{FrameKind, LabelValue, Profile};

/// profile.proto `message Profile`.
#[derive(Clone, PartialEq, Message)]
pub struct PbProfile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<PbValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<PbSample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<PbMapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<PbLocation>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<PbFunction>,
    /// Index 0 must be "".
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<PbValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// String table indices of free-form comments.
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    /// String table index of the sample type shown by default.
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// profile.proto `message ValueType`.
#[derive(Clone, PartialEq, Message)]
pub struct PbValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// profile.proto `message Sample`: `location_id[0]` is the leaf.
#[derive(Clone, PartialEq, Message)]
pub struct PbSample {
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<PbLabel>,
}

/// profile.proto `message Label`: exactly one of str and num is set.
#[derive(Clone, PartialEq, Message)]
pub struct PbLabel {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// profile.proto `message Mapping`.
#[derive(Clone, PartialEq, Message)]
pub struct PbMapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// profile.proto `message Location`.
#[derive(Clone, PartialEq, Message)]
pub struct PbLocation {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<PbLine>,
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

/// profile.proto `message Line`.
#[derive(Clone, PartialEq, Message)]
pub struct PbLine {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
    #[prost(int64, tag = "3")]
    pub column: i64,
}

/// profile.proto `message Function`.
#[derive(Clone, PartialEq, Message)]
pub struct PbFunction {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

/// The string table: index 0 is "", every other string once.
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings::default();
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// Address range of the kernel's text in the pprof mapping we give kernel frames.
const KERNEL_START: u64 = 0xffff_8000_0000_0000;
/// Below the legacy vsyscall page, which /proc/PID/maps lists as a mapping of its own.
const KERNEL_LIMIT: u64 = 0xffff_ffff_ff60_0000;

/// Builds the protobuf message for `p`.
pub fn to_proto(p: &Profile) -> PbProfile {
    let mut strings = Strings::new();
    let mut out = PbProfile {
        sample_type: p
            .sample_types
            .iter()
            .map(|t| PbValueType { r#type: strings.get(&t.kind), unit: strings.get(&t.unit) })
            .collect(),
        period_type: Some(PbValueType {
            r#type: strings.get(&p.period_type.kind),
            unit: strings.get(&p.period_type.unit),
        }),
        period: p.period,
        time_nanos: p.time_nanos,
        duration_nanos: p.duration_nanos,
        default_sample_type: p.default_sample_type.as_deref().map_or(0, |t| strings.get(t)),
        ..Default::default()
    };
    out.comment = p.comments.iter().map(|c| strings.get(c)).collect();

    // Mappings: the target's executable mappings (ids 1..), then one for the kernel.
    let mut has_names = vec![(false, false); p.mappings.len() + 1];
    let kernel_mapping_id = p.mappings.len() as u64 + 1;
    let mapping_of = |addr: u64, kind: FrameKind| -> u64 {
        match kind {
            FrameKind::Kernel if (KERNEL_START..KERNEL_LIMIT).contains(&addr) => kernel_mapping_id,
            FrameKind::User => p.mappings.iter().position(|m| m.contains(addr)).map_or(0, |i| i as u64 + 1),
            _ => 0,
        }
    };

    // Functions, one per distinct (name, file); locations, one per frame.
    let mut functions: HashMap<(String, Option<String>), u64> = HashMap::new();
    for (i, f) in p.frames.iter().enumerate() {
        let mapping_id = mapping_of(f.addr, f.kind);
        let mut line = Vec::new();
        if let Some(name) = &f.function {
            let key = (name.clone(), f.file.clone());
            let next_id = functions.len() as u64 + 1;
            let function_id = *functions.entry(key).or_insert_with(|| {
                out.function.push(PbFunction {
                    id: next_id,
                    name: strings.get(name),
                    system_name: strings.get(name),
                    filename: f.file.as_deref().map_or(0, |s| strings.get(s)),
                    start_line: 0,
                });
                next_id
            });
            line.push(PbLine { function_id, line: f.line.unwrap_or(0), column: 0 });
            if mapping_id > 0 {
                let h = &mut has_names[mapping_id as usize - 1];
                h.0 = true;
                h.1 |= f.file.is_some();
            }
        }
        out.location.push(PbLocation {
            id: i as u64 + 1,
            mapping_id,
            address: f.addr,
            line,
            is_folded: false,
        });
    }

    for (i, m) in p.mappings.iter().enumerate() {
        out.mapping.push(PbMapping {
            id: i as u64 + 1,
            memory_start: m.start,
            memory_limit: m.limit,
            file_offset: m.file_offset,
            filename: strings.get(&m.path),
            build_id: m.build_id.as_deref().map_or(0, |b| strings.get(b)),
            has_functions: has_names[i].0,
            has_filenames: has_names[i].1,
            has_line_numbers: has_names[i].1,
            has_inline_frames: false,
        });
    }
    out.mapping.push(PbMapping {
        id: kernel_mapping_id,
        memory_start: KERNEL_START,
        memory_limit: KERNEL_LIMIT,
        file_offset: 0,
        // perf's and pprof's conventional name for the running kernel's symbols.
        filename: strings.get("[kernel.kallsyms]"),
        build_id: p.kernel_build_id.as_deref().map_or(0, |b| strings.get(b)),
        has_functions: true,
        ..Default::default()
    });

    for s in &p.samples {
        out.sample.push(PbSample {
            location_id: s.frames.iter().map(|&i| i as u64 + 1).collect(),
            value: s.values.clone(),
            label: s
                .labels
                .iter()
                .map(|(k, v)| match v {
                    LabelValue::Str(sv) => {
                        PbLabel { key: strings.get(k), str: strings.get(sv), ..Default::default() }
                    }
                    LabelValue::Num(n) => PbLabel { key: strings.get(k), num: *n, ..Default::default() },
                })
                .collect(),
        });
    }
    out.string_table = strings.table;
    out
}

/// The gzip-compressed protobuf bytes of `p`.
pub fn encode(p: &Profile) -> std::io::Result<Vec<u8>> {
    let bytes = to_proto(p).encode_to_vec();
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&bytes)?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{FoldedValue, FrameInfo, ProfileKind, Sample, ValueType};

    fn profile() -> Profile {
        let frame = |kind, addr, name: &str| FrameInfo {
            kind,
            addr,
            function: Some(name.to_owned()),
            module: None,
            file: None,
            line: None,
        };
        Profile {
            kind: ProfileKind::OffCpu,
            pid: 42,
            comm: "t".into(),
            sample_types: vec![ValueType::new("offcpu", "nanoseconds")],
            default_sample_type: Some("offcpu".into()),
            folded_value: FoldedValue { index: 0, also: None, divisor: 1, unit: "ns".into() },
            period_type: ValueType::new("offcpu", "nanoseconds"),
            period: 1,
            time_nanos: 1,
            duration_nanos: 2,
            frames: vec![
                frame(FrameKind::Kernel, 0xffff_ffff_8100_0000, "schedule"),
                frame(FrameKind::User, 0x1000, "main"),
            ],
            samples: vec![Sample {
                frames: vec![0, 1],
                labels: vec![
                    ("thread".into(), LabelValue::Str("main".into())),
                    ("tid".into(), LabelValue::Num(7)),
                ],
                values: vec![123],
            }],
            mappings: vec![],
            kernel_build_id: Some("abcd".into()),
            comments: vec!["hello".into()],
        }
    }

    #[test]
    fn round_trips_through_prost_with_a_sound_string_table() {
        let p = profile();
        let pb = to_proto(&p);
        let decoded = PbProfile::decode(pb.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, pb);
        assert_eq!(pb.string_table[0], "");
        let s = |i: i64| pb.string_table[i as usize].as_str();
        assert_eq!(s(pb.sample_type[0].r#type), "offcpu");
        assert_eq!(s(pb.default_sample_type), "offcpu");
        assert_eq!(pb.sample[0].location_id, vec![1, 2]);
        assert_eq!(s(pb.sample[0].label[0].key), "thread");
        assert_eq!(pb.sample[0].label[1].num, 7);
        // The kernel frame points at the kernel mapping, the user frame at none (no mappings).
        assert_eq!(pb.location[0].mapping_id, 1);
        assert_eq!(s(pb.mapping[0].filename), "[kernel.kallsyms]");
        assert_eq!(pb.location[1].mapping_id, 0);
        let mut uniq = pb.string_table.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), pb.string_table.len(), "strings are deduplicated");
    }
}
