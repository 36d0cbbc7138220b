//! Profile encoders: pprof (gzipped protobuf), folded stacks and SVG flame graphs, each reading a
//! `parkscope_model::profile::Profile` that the collector built (or replay rebuilt from a
//! recording). They are outputs, so they live with the other renderings in the agent.

pub mod flamegraph;
pub mod folded;
pub mod pprof;

pub use parkscope_model::profile::{
    FoldedValue, FrameInfo, FrameKind, LabelValue, Profile, ProfileKind, Sample, ValueType,
};
