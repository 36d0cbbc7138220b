//! A profile of one window (off-CPU or CPU), as the collector builds it and the encoders
//! (pprof, folded stacks, flame graphs) read it: a table of named frames and a list of samples,
//! each a stack (indices into the table, innermost first), labels, and one value per sample
//! type. Serialisable both ways, like the rest of the model.

use serde::{Deserialize, Serialize};

/// Which profile this is; decides sample types, units and titles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileKind {
    OffCpu,
    Cpu,
}

/// Where a frame's code lives; decides colours and folded annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameKind {
    User,
    Kernel,
    /// Not code: a separator or label frame inserted by parkscope (e.g. "--- woken by ... ---").
    Marker,
}

/// One distinct frame of the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameInfo {
    pub kind: FrameKind,
    /// The address as captured (0 for frames known only by name, like /proc's kernel stacks).
    pub addr: u64,
    pub function: Option<String>,
    /// The backing object's path (user frames).
    pub module: Option<String>,
    pub file: Option<String>,
    pub line: Option<i64>,
}

impl FrameInfo {
    /// The name shown in flame graphs and folded stacks: the function, else `[module]`, else
    /// the address.
    pub fn display_name(&self) -> String {
        if let Some(f) = &self.function {
            return f.clone();
        }
        match &self.module {
            Some(m) => {
                let short = m.rsplit('/').next().unwrap_or(m);
                format!("[{short}]")
            }
            None => format!("{:#x}", self.addr),
        }
    }

    /// Go runtime code (coloured apart, so idle scheduler loops are told from the program's code).
    pub fn is_go_runtime(&self) -> bool {
        self.kind == FrameKind::User
            && self.function.as_deref().is_some_and(|f| {
                f.starts_with("runtime.") || f.starts_with("internal/runtime/") || f.starts_with("runtime/")
            })
    }
}

/// A pprof label value: a string, or a number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelValue {
    Str(String),
    Num(i64),
}

/// One sample: a stack, labels, and one value per [`Profile::sample_types`] entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Indices into [`Profile::frames`], innermost (leaf) first.
    pub frames: Vec<usize>,
    pub labels: Vec<(String, LabelValue)>,
    pub values: Vec<i64>,
}

impl Sample {
    pub fn label_str(&self, key: &str) -> Option<&str> {
        self.labels.iter().find_map(|(k, v)| match v {
            LabelValue::Str(s) if k == key => Some(s.as_str()),
            _ => None,
        })
    }
}

/// A sample type: what a value counts and in which unit (pprof's ValueType).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueType {
    pub kind: String,
    pub unit: String,
}

impl ValueType {
    pub fn new(kind: &str, unit: &str) -> ValueType {
        ValueType { kind: kind.to_owned(), unit: unit.to_owned() }
    }
}

/// An executable mapping of the target during the window (pprof's mapping table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub start: u64,
    /// One past the last address.
    pub limit: u64,
    /// Offset into the file of `start`.
    pub file_offset: u64,
    /// The path as the kernel printed it (`/usr/lib/...`, or `[vdso]`).
    pub path: String,
    /// Hex GNU build id, or the Go build id string, when the object has one.
    pub build_id: Option<String>,
}

impl Mapping {
    pub fn contains(&self, addr: u64) -> bool {
        (self.start..self.limit).contains(&addr)
    }
}

/// A whole profile, ready to encode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub kind: ProfileKind,
    pub pid: u32,
    pub comm: String,
    pub sample_types: Vec<ValueType>,
    /// The type pprof shows by default.
    pub default_sample_type: Option<String>,
    /// The value index folded stacks and flame graphs use, and how to scale it for them.
    pub folded_value: FoldedValue,
    pub period_type: ValueType,
    pub period: i64,
    /// Wall-clock start of the window (ns since the Unix epoch).
    pub time_nanos: i64,
    pub duration_nanos: i64,
    pub frames: Vec<FrameInfo>,
    pub samples: Vec<Sample>,
    /// The target's executable mappings (for pprof's mapping table).
    pub mappings: Vec<Mapping>,
    pub kernel_build_id: Option<String>,
    pub comments: Vec<String>,
}

/// Which sample value feeds folded stacks and flame graphs, and in what unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoldedValue {
    pub index: usize,
    /// A second value summed in (each sample has a value in at most one of the two): the
    /// runtime tasks' wait time of an off-CPU profile, shown beside the threads' time.
    pub also: Option<usize>,
    /// Values are divided by this (e.g. 1000 to show nanoseconds as microseconds).
    pub divisor: i64,
    /// What a unit of the folded value is, for the flame graph's hover text ("us", "samples").
    pub unit: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_round_trips_through_json() {
        let p = Profile {
            kind: ProfileKind::OffCpu,
            pid: 7,
            comm: "t".into(),
            sample_types: vec![ValueType::new("offcpu", "nanoseconds")],
            default_sample_type: Some("offcpu".into()),
            folded_value: FoldedValue { index: 0, also: None, divisor: 1000, unit: "us".into() },
            period_type: ValueType::new("offcpu", "nanoseconds"),
            period: 1,
            time_nanos: 5,
            duration_nanos: 10,
            frames: vec![FrameInfo {
                kind: FrameKind::Kernel,
                addr: 0,
                function: Some("schedule".into()),
                module: None,
                file: None,
                line: None,
            }],
            samples: vec![Sample {
                frames: vec![0],
                labels: vec![
                    ("tid".into(), LabelValue::Num(8)),
                    ("thread".into(), LabelValue::Str("w".into())),
                ],
                values: vec![42],
            }],
            mappings: vec![Mapping {
                start: 1,
                limit: 2,
                file_offset: 0,
                path: "/bin/x".into(),
                build_id: None,
            }],
            kernel_build_id: Some("ab".into()),
            comments: vec!["c".into()],
        };
        let text = serde_json::to_string(&p).expect("serialise");
        assert_eq!(serde_json::from_str::<Profile>(&text).expect("deserialise"), p);
        assert_eq!(p.samples[0].label_str("thread"), Some("w"));
    }
}
