//! CPU profiling by perf-event sampling: one cpu-clock sampling event per thread of the target
//! (a per-pid perf event follows one thread only), user and kernel callchains, read from each
//! event's mmap ring on a dedicated thread that also picks up threads created meanwhile.
//!
//! cpu-clock (a software event) because the machines this runs on have no hardware PMU; it ticks
//! off an hrtimer while the thread runs, so its samples land where the thread spends CPU time.
//! The reading thread is a plain OS thread, not the agent's reactor: draining rings and parsing
//! records is CPU work, and opening events is a syscall per thread.

use std::{
    collections::{HashMap, HashSet},
    io,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use perf_event::{Builder, SampleFlag, Sampler, data::Record, events::Software};

/// How often the rings are drained. At ~100 Hz a ring fills with ~10 samples per drain.
const DRAIN_EVERY: Duration = Duration::from_millis(100);
/// How often /proc/PID/task is re-read for new threads.
const RESCAN_EVERY: Duration = Duration::from_millis(250);
/// Data pages per ring (one page of metadata is added): room for ~60 deep callchains.
const RING_BYTES: usize = 64 << 10;
/// Deepest callchain requested (the kernel's default limit, kernel.perf_event_max_stack, is 127).
const MAX_STACK: u16 = 127;
/// Callchain context markers (include/uapi/linux/perf_event.h): values at or above
/// PERF_CONTEXT_MAX are markers, not addresses.
const PERF_CONTEXT_KERNEL: u64 = -128i64 as u64;
const PERF_CONTEXT_USER: u64 = -512i64 as u64;
const PERF_CONTEXT_MAX: u64 = -4095i64 as u64;

/// Why CPU sampling could not start.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error("not permitted to open perf events for pid {pid}: {source}")]
    NotPermitted {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("process {pid} has no threads left to sample")]
    NoThreads { pid: u32 },
    #[error("cannot open a cpu-clock sampling event for thread {tid}: {source}")]
    Open {
        tid: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the sampling thread: {0}")]
    Thread(#[source] io::Error),
}

/// One distinct sampled stack of one thread. Addresses innermost first; each list starts with
/// an instruction pointer and continues with return addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CpuStackKey {
    pub tid: u32,
    pub kernel: Vec<u64>,
    pub user: Vec<u64>,
}

/// How often a stack was sampled and how much CPU time those samples stand for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStackTotal {
    pub count: u64,
    /// Sum of the samples' periods: cpu-clock counts nanoseconds of CPU time.
    pub cpu_ns: u64,
}

/// Everything one sampling run collected.
#[derive(Debug, Default)]
pub struct CpuSamples {
    pub stacks: HashMap<CpuStackKey, CpuStackTotal>,
    /// Samples the kernel dropped because a ring was full (PERF_RECORD_LOST).
    pub lost: u64,
    /// Threads an event was opened for, over the whole run.
    pub threads_sampled: usize,
    /// Threads seen in /proc for which opening an event failed (most exited first).
    pub open_failures: usize,
}

/// A running sampler. Dropping it without [`CpuSampler::finish`] stops the thread too.
pub struct CpuSampler {
    stop: Option<mpsc::Sender<()>>,
    samples: Arc<AtomicU64>,
    thread: Option<JoinHandle<CpuSamples>>,
}

impl std::fmt::Debug for CpuSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuSampler").field("samples", &self.samples_so_far()).finish_non_exhaustive()
    }
}

impl CpuSampler {
    /// Opens a sampling event for every current thread of `pid` at `frequency_hz` and starts
    /// the reading thread. Opening happens here, so permission problems surface at once.
    pub fn start(pid: u32, frequency_hz: u64) -> Result<Self, PerfError> {
        let mut state = SamplingState::new(pid, frequency_hz);
        let tids = list_tids(pid);
        if tids.is_empty() {
            return Err(PerfError::NoThreads { pid });
        }
        for tid in tids {
            match state.open(tid) {
                Ok(()) => {}
                Err(e) if is_permission(&e) => return Err(PerfError::NotPermitted { pid, source: e }),
                // A thread that exited between readdir and open: skip it.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => state.open_failures += 1,
                Err(source) => return Err(PerfError::Open { tid, source }),
            }
        }
        if state.samplers.is_empty() {
            return Err(PerfError::NoThreads { pid });
        }
        let samples = Arc::clone(&state.count);
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("parkscope-perf".into())
            .spawn(move || state.run(&stopped))
            .map_err(PerfError::Thread)?;
        Ok(Self { stop: Some(stop), samples, thread: Some(thread) })
    }

    /// Samples read so far (for progress reports).
    pub fn samples_so_far(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }

    /// Stops sampling, drains the rings one last time and returns what was collected. Blocks
    /// for up to one drain period: call it off the reactor.
    pub fn finish(mut self) -> CpuSamples {
        self.stop.take();
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for CpuSampler {
    fn drop(&mut self) {
        // Closing the channel wakes the thread, which disables and closes its events.
        self.stop.take();
    }
}

/// The reading thread's state.
struct SamplingState {
    pid: u32,
    frequency_hz: u64,
    samplers: Vec<(u32, Sampler)>,
    opened: HashSet<u32>,
    collected: CpuSamples,
    open_failures: usize,
    count: Arc<AtomicU64>,
}

impl SamplingState {
    fn new(pid: u32, frequency_hz: u64) -> Self {
        Self {
            pid,
            frequency_hz,
            samplers: Vec::new(),
            opened: HashSet::new(),
            collected: CpuSamples::default(),
            open_failures: 0,
            count: Arc::new(AtomicU64::new(0)),
        }
    }

    fn open(&mut self, tid: u32) -> io::Result<()> {
        let mut sampler = Builder::new(Software::CPU_CLOCK)
            .observe_pid(tid as i32)
            .any_cpu()
            .sample_frequency(self.frequency_hz)
            .sample(SampleFlag::TID | SampleFlag::CALLCHAIN | SampleFlag::PERIOD)
            .include_kernel()
            .sample_max_stack(MAX_STACK)
            .build()?
            .sampled(RING_BYTES)?;
        sampler.enable()?;
        self.opened.insert(tid);
        self.samplers.push((tid, sampler));
        Ok(())
    }

    fn run(mut self, stopped: &mpsc::Receiver<()>) -> CpuSamples {
        let mut last_scan = Instant::now();
        loop {
            let stop = !matches!(stopped.recv_timeout(DRAIN_EVERY), Err(mpsc::RecvTimeoutError::Timeout));
            if stop {
                for (_, s) in &mut self.samplers {
                    let _ = s.disable();
                }
            }
            self.drain();
            if stop {
                break;
            }
            if last_scan.elapsed() >= RESCAN_EVERY {
                last_scan = Instant::now();
                self.pick_up_new_threads();
            }
        }
        self.collected.threads_sampled = self.opened.len();
        self.collected.open_failures = self.open_failures;
        self.collected
    }

    fn pick_up_new_threads(&mut self) {
        for tid in list_tids(self.pid) {
            if !self.opened.contains(&tid) {
                match self.open(tid) {
                    Ok(()) => tracing::debug!(tid, "sampling new thread"),
                    Err(e) => {
                        tracing::debug!(tid, error = %e, "cannot sample new thread");
                        // Do not retry every scan: a thread that cannot be opened now won't be later.
                        self.opened.insert(tid);
                        self.open_failures += 1;
                    }
                }
            }
        }
    }

    fn drain(&mut self) {
        for (tid, sampler) in &mut self.samplers {
            while let Some(record) = sampler.next_record() {
                match record.parse_record() {
                    Ok(Record::Sample(sample)) => {
                        let (kernel, user) = split_callchain(sample.callchain().unwrap_or_default());
                        let key = CpuStackKey { tid: sample.tid().unwrap_or(*tid), kernel, user };
                        let total = self.collected.stacks.entry(key).or_default();
                        total.count += 1;
                        total.cpu_ns += sample.period().unwrap_or(0);
                        self.count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Record::Lost(lost)) => self.collected.lost += lost.lost,
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "unparseable perf record"),
                }
            }
        }
    }
}

/// Splits a perf callchain into its kernel and user parts, dropping the context markers.
pub fn split_callchain(chain: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let (mut kernel, mut user) = (Vec::new(), Vec::new());
    // Before any marker the kernel puts nothing; be safe and treat it as kernel.
    let mut in_user = false;
    for &ip in chain {
        match ip {
            PERF_CONTEXT_KERNEL => in_user = false,
            PERF_CONTEXT_USER => in_user = true,
            ip if ip >= PERF_CONTEXT_MAX => {}
            ip if in_user => user.push(ip),
            ip => kernel.push(ip),
        }
    }
    (kernel, user)
}

fn list_tids(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_kernel_and_user_parts() {
        let chain = [
            PERF_CONTEXT_KERNEL,
            0xffff_ffff_8100_0000,
            0xffff_ffff_8100_0100,
            PERF_CONTEXT_USER,
            0x4000,
            0x5000,
        ];
        let (k, u) = split_callchain(&chain);
        assert_eq!(k, vec![0xffff_ffff_8100_0000, 0xffff_ffff_8100_0100]);
        assert_eq!(u, vec![0x4000, 0x5000]);
        let (k, u) = split_callchain(&[PERF_CONTEXT_USER, 0x4000]);
        assert!(k.is_empty());
        assert_eq!(u, vec![0x4000]);
    }

    /// Samples a thread of our own that spins, and finds its samples with a user stack.
    #[test]
    fn samples_a_spinning_thread_of_our_own() {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spin = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let tid = unsafe { libc::gettid() } as u32;
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                tid
            })
        };
        let sampler = match CpuSampler::start(std::process::id(), 199) {
            Ok(s) => s,
            Err(e @ PerfError::NotPermitted { .. }) if std::env::var_os("CI").is_none() => {
                eprintln!("skipping outside CI: {e}");
                stop.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => panic!("{e}"),
        };
        std::thread::sleep(Duration::from_millis(600));
        let samples = sampler.finish();
        stop.store(true, Ordering::Relaxed);
        let spinner = spin.join().unwrap();
        let spun: u64 = samples.stacks.iter().filter(|(k, _)| k.tid == spinner).map(|(_, t)| t.count).sum();
        assert!(spun >= 30, "only {spun} samples of the spinning thread: {:?}", samples.stacks.len());
        assert!(samples.stacks.keys().filter(|k| k.tid == spinner).all(|k| !k.user.is_empty()));
        let ns: u64 = samples.stacks.iter().filter(|(k, _)| k.tid == spinner).map(|(_, t)| t.cpu_ns).sum();
        // ~0.6 s of CPU; periods are in ns of cpu-clock.
        assert!((300_000_000..=1_200_000_000).contains(&ns), "{ns} ns");
    }
}
