//! The tokio runtime from outside: whether a binary carries it (symbols, or the registry paths
//! of its panic locations in .rodata when stripped), which release (`tokio-1.NN.M/src/` in those
//! paths), where its thread-local `CONTEXT.current_task_id` lives relative to the thread
//! pointer (decoded from `tokio::runtime::context::set_current_task_id` with iced-x86), what a
//! thread is for from its stack, and the task id each thread is polling now (read from its TLS
//! through glibc's thread control block, never stopping the target), and which tasks wait on which
//! fd (their wakers in the reactor's registrations). Facts only; nothing printed.

mod binary;
mod io_waits;
mod threads;

pub use binary::{TlsSlot, TokioBinary, TokioError, WakerSymbols, locate_task_id_slot, version_in};
pub use io_waits::{IoInterest, IoWait, IoWaitRead, IoWaitReader, IoWaiter, MAX_REGISTRATIONS};
pub use threads::{ThreadPointers, TokioRole, VoluntarySwitches, role_from_stack};
