//! blazesym on a thread of its own. Its symbolizer caches what is costly (parsed ELF symbol
//! tables and DWARF, kallsyms) but is not `Send`, while parkscope's observer moves between
//! tokio's blocking threads from view to view; so one thread owns it for as long as the
//! [`super::Symbolizer`] lives, and lookups are requests over a channel. Replies are our own
//! [`Named`] values, so nothing borrowed from blazesym crosses threads.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use blazesym::symbolize::source::{Elf, Kernel, Process, Source};
use blazesym::symbolize::{Input, Sym, Symbolized, Symbolizer};
use blazesym::{MaybeDefault, Pid};

use super::Named;

/// Distinct files and processes blazesym is asked about before its symbolizer is replaced by a
/// fresh one: it keeps an entry per path and per process it has seen, so a long run over many
/// targets must start over now and then to stay bounded.
const MAX_SOURCES: usize = 1024;

enum Request {
    /// Addresses by offset into the file at `path`.
    ElfOffsets { path: PathBuf, offsets: Vec<u64> },
    /// Absolute addresses of a process (blazesym reads its map): only for addresses outside any
    /// file, which are few.
    Process { pid: NonZeroU32, addrs: Vec<u64> },
    /// Kernel addresses, from kallsyms.
    Kernel { addrs: Vec<u64> },
}

/// One name per address asked about (in order); `None` when blazesym failed as a whole (file
/// gone or unreadable, thread died), which callers must not remember as "no name here".
pub(super) type Reply = Option<Vec<Option<Named>>>;

/// The handle on the thread; started on first use.
#[derive(Default)]
pub(super) struct Blaze {
    worker: Option<Worker>,
}

struct Worker {
    requests: Sender<Request>,
    replies: Receiver<Reply>,
    thread: Option<JoinHandle<()>>,
}

impl Blaze {
    /// `offsets` are the offsets of the addresses to look up (return addresses already moved
    /// back into their call instruction).
    pub fn elf_offsets(&mut self, path: PathBuf, offsets: Vec<u64>) -> Reply {
        self.call(Request::ElfOffsets { path, offsets })
    }

    pub fn process(&mut self, pid: NonZeroU32, addrs: Vec<u64>) -> Reply {
        self.call(Request::Process { pid, addrs })
    }

    pub fn kernel(&mut self, addrs: Vec<u64>) -> Reply {
        self.call(Request::Kernel { addrs })
    }

    fn call(&mut self, request: Request) -> Reply {
        if self.worker.is_none() {
            self.worker = Worker::start()
                .map_err(|e| tracing::debug!(error = %e, "cannot start the symbolizer thread"))
                .ok();
        }
        let Some(worker) = &self.worker else { return None };
        let reply = worker.requests.send(request).ok().and_then(|()| worker.replies.recv().ok());
        match reply {
            Some(reply) => reply,
            None => {
                // The thread died (a panic inside blazesym): name nothing now, start a new one
                // next time.
                tracing::debug!("the symbolizer thread ended; restarting it on the next lookup");
                self.worker = None;
                None
            }
        }
    }
}

impl Worker {
    fn start() -> std::io::Result<Worker> {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (outbox, replies) = mpsc::channel::<Reply>();
        let thread = std::thread::Builder::new().name("parkscope-sym".into()).spawn(move || {
            let mut state = State::new();
            // Ends when the handle (the sender) is dropped.
            for request in inbox {
                if outbox.send(state.serve(request)).is_err() {
                    break;
                }
            }
        })?;
        Ok(Worker { requests, replies, thread: Some(thread) })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; it is idle (calls are synchronous).
        let (closed, _) = mpsc::channel();
        self.requests = closed;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread's side: the symbolizer and what it has been asked about.
struct State {
    symbolizer: Symbolizer,
    sources: HashSet<SourceKey>,
}

#[derive(PartialEq, Eq, Hash)]
enum SourceKey {
    Path(PathBuf),
    Pid(u32),
}

impl State {
    fn new() -> Self {
        let symbolizer = Symbolizer::builder()
            .enable_code_info(true)
            .enable_inlined_fns(true)
            .enable_demangling(true)
            .build();
        Self { symbolizer, sources: HashSet::new() }
    }

    fn note(&mut self, key: SourceKey) {
        if self.sources.contains(&key) {
            return;
        }
        if self.sources.len() >= MAX_SOURCES {
            *self = Self::new();
        }
        self.sources.insert(key);
    }

    fn serve(&mut self, request: Request) -> Reply {
        let result = match &request {
            Request::ElfOffsets { path, offsets } => {
                self.note(SourceKey::Path(path.clone()));
                let src = Source::Elf(Elf::new(path));
                self.symbolizer.symbolize(&src, Input::FileOffset(offsets))
            }
            Request::Process { pid, addrs } => {
                self.note(SourceKey::Pid(pid.get()));
                let src = Source::Process(Process::new(Pid::Pid(*pid)));
                self.symbolizer.symbolize(&src, Input::AbsAddr(addrs))
            }
            Request::Kernel { addrs } => {
                let src = Source::Kernel(Kernel {
                    // kallsyms always matches the running kernel; a vmlinux found on disk
                    // might not, and parsing one costs seconds.
                    vmlinux: MaybeDefault::None,
                    ..Kernel::default()
                });
                self.symbolizer.symbolize(&src, Input::AbsAddr(addrs))
            }
        };
        match result {
            Ok(results) => Some(results.into_iter().map(|r| Symbolized::into_sym(r).map(named)).collect()),
            Err(e) => {
                // Failure names nothing rather than failing the whole stack.
                tracing::debug!(error = %e, "symbolization failed");
                None
            }
        }
    }
}

fn named(sym: Sym<'_>) -> Named {
    // With inlining, the symbol is the real (outer) function, which `offset` refers to, while
    // the innermost inlined function's location is the instruction's true line.
    let code_info = sym.inlined.last().and_then(|f| f.code_info.as_ref()).or(sym.code_info.as_deref());
    let file_line = code_info.map(|ci| match ci.line {
        Some(line) => format!("{}:{line}", ci.file.to_string_lossy()),
        None => ci.file.to_string_lossy().into_owned(),
    });
    Named {
        function: sym.name.into_owned(),
        offset: sym.offset as u64,
        file_line,
        module: sym.module.as_ref().map(|m| m.to_string_lossy().into_owned()),
    }
}
