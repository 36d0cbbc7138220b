//! The model every output renders lives in the `parkscope-model` crate; this module names it for
//! the agent. The `snapshot --json` contract is rendered from it by `render::json`.

pub use parkscope_model::*;
