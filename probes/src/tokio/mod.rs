//! The tokio runtime from outside: whether a binary carries it (symbols, or the registry paths
//! of its panic locations in .rodata when stripped), which release (`tokio-1.NN.M/src/` in those
//! paths), where its thread-local `CONTEXT.current_task_id` lives relative to the thread
//! pointer (decoded from `tokio::runtime::context::set_current_task_id` with iced-x86), what a
//! thread is for from its stack, and the task id each thread is polling now (read from its TLS
//! through glibc's thread control block, never stopping the target). Facts only; nothing printed.

mod binary;
mod threads;

pub use binary::{TlsSlot, TokioBinary, TokioError, locate_task_id_slot, version_in};
pub use threads::{ThreadPointers, TokioRole, role_from_stack, voluntary_switches};
