//! Text renderings of the model: the snapshot table and schedtrace lines. Pure functions of the
//! model, so they are unit-tested without a target.
pub mod json;
pub mod schedtrace;
pub mod table;
