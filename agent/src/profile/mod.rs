//! Profiles as the agent builds them before encoding: a table of named frames and a list of
//! samples, each a stack (indices into the table, innermost first) + labels + one value per
//! sample type. The collectors (off-CPU from the kernel's totals and, for Go targets, goroutines
//! from the Go runtime; CPU from the per-CPU cpu-clock samples the kernel counted) fill it;
//! pprof, folded and SVG encoders only read it.

pub mod build;
pub mod cpu;
pub mod flamegraph;
pub mod folded;
pub mod goroutines;
pub mod ksyscall;
pub mod offcpu;
pub mod pprof;

use parkscope_probes::stacks::ModuleMapping;

/// Which profile this is; decides sample types, units and titles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileKind {
    OffCpu,
    Cpu,
}

/// Where a frame's code lives; decides colours and folded annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    User,
    Kernel,
    /// Not code: a separator or label frame inserted by us (e.g. "--- woken by ... ---").
    Marker,
}

/// One distinct frame of the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A pprof label value: a string, or a number with an optional unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LabelValue {
    Str(String),
    Num(i64),
}

/// One sample: a stack, labels, and one value per [`Profile::sample_types`] entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Indices into [`Profile::frames`], innermost (leaf) first.
    pub frames: Vec<usize>,
    pub labels: Vec<(&'static str, LabelValue)>,
    pub values: Vec<i64>,
}

impl Sample {
    pub fn label_str(&self, key: &str) -> Option<&str> {
        self.labels.iter().find_map(|(k, v)| match v {
            LabelValue::Str(s) if *k == key => Some(s.as_str()),
            _ => None,
        })
    }
}

/// A sample type: what a value counts and in which unit (pprof's ValueType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueType {
    pub kind: &'static str,
    pub unit: &'static str,
}

/// A whole profile, ready to encode.
#[derive(Debug, Clone)]
pub struct Profile {
    pub kind: ProfileKind,
    pub pid: u32,
    pub comm: String,
    pub sample_types: Vec<ValueType>,
    /// The type pprof shows by default.
    pub default_sample_type: Option<&'static str>,
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
    pub mappings: Vec<ModuleMapping>,
    pub kernel_build_id: Option<String>,
    pub comments: Vec<String>,
}

/// Which sample value feeds folded stacks and flame graphs, and in what unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldedValue {
    pub index: usize,
    /// A second value summed in (each sample has a value in at most one of the two): the
    /// goroutine wait time of a Go target's off-CPU profile, shown beside the threads' time.
    pub also: Option<usize>,
    /// Values are divided by this (e.g. 1000 to show nanoseconds as microseconds).
    pub divisor: i64,
    /// What a unit of the folded value is, for the flame graph's hover text ("us", "samples").
    pub unit: &'static str,
}
