//! Turning raw stacks (addresses from the kernel's stack maps or unwound over /proc, frame names
//! from /proc) into a profile's frame table and merged samples. Symbolisation happens once
//! per profile, over the distinct addresses of all stacks, through probes::stacks (blazesym:
//! ELF/DWARF/Go symbols for user code, kallsyms for the kernel). Synchronous and file-bound:
//! run it off the reactor.

use std::collections::{BTreeMap, HashMap, HashSet};

use parkscope_model::profile::{FrameInfo, FrameKind, LabelValue, Mapping, Sample};
use parkscope_probes::{
    procfs::tasks,
    stacks::{Frame, Symbolizer},
};

/// Distinct addresses to name: `(addr, is_return)`, per process for user code.
#[derive(Debug, Default)]
pub struct AddrSet {
    user: HashMap<u32, HashSet<(u64, bool)>>,
    kernel: HashSet<(u64, bool)>,
}

/// A stack as captured: the first address is an instruction pointer, the rest return addresses.
fn with_kinds(stack: &[u64]) -> impl Iterator<Item = (u64, bool)> + '_ {
    stack.iter().enumerate().map(|(i, &a)| (a, i != 0))
}

impl AddrSet {
    pub fn add_user(&mut self, pid: u32, stack: &[u64]) {
        self.user.entry(pid).or_default().extend(with_kinds(stack));
    }

    pub fn add_kernel(&mut self, stack: &[u64]) {
        self.kernel.extend(with_kinds(stack));
    }
}

/// Names for every address of an [`AddrSet`].
#[derive(Debug, Default)]
pub struct Symbols {
    user: HashMap<(u32, u64, bool), Frame>,
    kernel: HashMap<(u64, bool), Frame>,
}

impl Symbols {
    /// Names everything in `set`. `target` and its `mappings` (taken while it was alive) let
    /// the target's addresses be named from its files when the process has exited since.
    pub fn resolve(set: &AddrSet, target: u32, mappings: &[Mapping]) -> Symbols {
        let mut sym = Symbolizer::new();
        let mut out = Symbols::default();
        for (&pid, addrs) in &set.user {
            let list: Vec<(u64, bool)> = addrs.iter().copied().collect();
            let frames = if pid == target && !tasks::has_user_space(pid) {
                by_file_offsets(&mut sym, &list, mappings)
            } else {
                let (a, r): (Vec<u64>, Vec<bool>) = list.iter().copied().unzip();
                sym.user_batch(pid, &a, &r)
            };
            for ((addr, ret), frame) in list.into_iter().zip(frames) {
                out.user.insert((pid, addr, ret), frame);
            }
        }
        let list: Vec<(u64, bool)> = set.kernel.iter().copied().collect();
        let (a, r): (Vec<u64>, Vec<bool>) = list.iter().copied().unzip();
        for ((addr, ret), frame) in list.into_iter().zip(sym.kernel_batch(&a, &r)) {
            out.kernel.insert((addr, ret), frame);
        }
        out
    }

    /// The function at an exact address of `pid` (added to the set as a one-address stack).
    pub fn user_function(&self, pid: u32, addr: u64) -> Option<&str> {
        self.user.get(&(pid, addr, false)).and_then(|f| f.function.as_deref())
    }
}

/// Names addresses of an exited process from the files its mappings pointed at.
fn by_file_offsets(sym: &mut Symbolizer, list: &[(u64, bool)], mappings: &[Mapping]) -> Vec<Frame> {
    let mut out: Vec<Frame> = list
        .iter()
        .map(|&(addr, _)| Frame { addr, function: None, offset: 0, module: None, file_line: None })
        .collect();
    // Group by mapping so each file is opened once.
    let mut by_mapping: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &(addr, _)) in list.iter().enumerate() {
        if let Some(m) = mappings.iter().position(|m| m.contains(addr)) {
            by_mapping.entry(m).or_default().push(i);
        }
    }
    for (m, idxs) in by_mapping {
        let mapping = &mappings[m];
        if !mapping.path.starts_with('/') {
            continue;
        }
        let offsets: Vec<u64> =
            idxs.iter().map(|&i| list[i].0 - mapping.start + mapping.file_offset).collect();
        let rets: Vec<bool> = idxs.iter().map(|&i| list[i].1).collect();
        let frames = sym.file_offsets(std::path::Path::new(&mapping.path), &offsets, &rets);
        for (&i, mut f) in idxs.iter().zip(frames) {
            f.addr = list[i].0;
            out[i] = f;
        }
    }
    out
}

/// Accumulates frames (deduplicated) and samples (merged when stack and labels are equal).
#[derive(Debug, Default)]
pub struct ProfileBuilder {
    frames: Vec<FrameInfo>,
    frame_index: HashMap<FrameKey, usize>,
    samples: Vec<Sample>,
    sample_index: HashMap<SampleKey, usize>,
}

/// What makes two samples the same: their stack and their (sorted) labels.
type SampleKey = (Vec<usize>, Vec<(String, LabelValue)>);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FrameKey {
    User { pid: u32, addr: u64, ret: bool },
    Kernel { addr: u64, ret: bool },
    KernelName(String),
    Marker(String),
}

impl ProfileBuilder {
    /// Frames of a user stack of `pid` (innermost first), named through `symbols`.
    pub fn user_frames(&mut self, symbols: &Symbols, pid: u32, stack: &[u64]) -> Vec<usize> {
        with_kinds(stack)
            .map(|(addr, ret)| {
                self.frame(FrameKey::User { pid, addr, ret }, || {
                    let f = symbols.user.get(&(pid, addr, ret));
                    frame_info(FrameKind::User, addr, f)
                })
            })
            .collect()
    }

    /// Frames of a kernel stack (innermost first), named through `symbols`.
    /// Kernel stacks a BPF program captured begin with the program itself and the tracepoint
    /// glue that ran it (`bpf_trace_run1`, ...): those frames are dropped, so stacks start at
    /// the traced code (e.g. `__schedule`).
    pub fn kernel_frames(&mut self, symbols: &Symbols, stack: &[u64]) -> Vec<usize> {
        let named: Vec<(u64, bool, FrameInfo)> = with_kinds(stack)
            .map(|(addr, ret)| {
                (addr, ret, frame_info(FrameKind::Kernel, addr, symbols.kernel.get(&(addr, ret))))
            })
            .collect();
        let skip = tracing_glue_frames(named.iter().map(|(_, _, f)| f.function.as_deref()));
        named
            .into_iter()
            .skip(skip)
            .map(|(addr, ret, info)| self.frame(FrameKey::Kernel { addr, ret }, || info))
            .collect()
    }

    /// Frames of a kernel stack known only as /proc/PID/task/TID/stack text
    /// (`hrtimer_nanosleep+0xb5/0x130`), innermost first.
    pub fn kernel_text_frames(&mut self, lines: &[String]) -> Vec<usize> {
        lines
            .iter()
            .map(|l| {
                let name = l.split('+').next().unwrap_or(l).trim().to_owned();
                self.frame(FrameKey::KernelName(name.clone()), || FrameInfo {
                    kind: FrameKind::Kernel,
                    addr: 0,
                    function: Some(name),
                    module: None,
                    file: None,
                    line: None,
                })
            })
            .collect()
    }

    /// A pseudo frame that is not code (a separator in a waker chain).
    pub fn marker(&mut self, name: &str) -> usize {
        self.frame(FrameKey::Marker(name.to_owned()), || FrameInfo {
            kind: FrameKind::Marker,
            addr: 0,
            function: Some(name.to_owned()),
            module: None,
            file: None,
            line: None,
        })
    }

    fn frame(&mut self, key: FrameKey, make: impl FnOnce() -> FrameInfo) -> usize {
        if let Some(&i) = self.frame_index.get(&key) {
            return i;
        }
        self.frames.push(make());
        let i = self.frames.len() - 1;
        self.frame_index.insert(key, i);
        i
    }

    /// Adds a sample, summing its values into an existing one with the same stack and labels.
    pub fn add(&mut self, frames: Vec<usize>, mut labels: Vec<(String, LabelValue)>, values: Vec<i64>) {
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let key = (frames, labels);
        match self.sample_index.get(&key) {
            Some(&i) => {
                for (acc, v) in self.samples[i].values.iter_mut().zip(&values) {
                    *acc += v;
                }
            }
            None => {
                let (frames, labels) = key.clone();
                self.samples.push(Sample { frames, labels, values });
                self.sample_index.insert(key, self.samples.len() - 1);
            }
        }
    }

    /// The frames seen so far (for role detection on a stack being built).
    pub fn frame_info(&self, i: usize) -> &FrameInfo {
        &self.frames[i]
    }

    pub fn finish(self) -> (Vec<FrameInfo>, Vec<Sample>) {
        (self.frames, self.samples)
    }
}

fn frame_info(kind: FrameKind, addr: u64, f: Option<&Frame>) -> FrameInfo {
    let (file, line) = match f.and_then(|f| f.file_line.as_deref()) {
        Some(fl) => match fl.rsplit_once(':') {
            Some((file, line)) if line.parse::<i64>().is_ok() => (Some(file.to_owned()), line.parse().ok()),
            _ => (Some(fl.to_owned()), None),
        },
        None => (None, None),
    };
    FrameInfo {
        kind,
        addr,
        function: f.and_then(|f| f.function.clone()),
        module: f.and_then(|f| f.module.clone()),
        file,
        line,
    }
}

/// How many innermost frames of a kernel stack belong to the BPF program that captured it and
/// the tracepoint machinery that called it: everything up to the last glue frame among the
/// first few (the program's own JIT address has no useful name).
fn tracing_glue_frames<'a>(functions: impl Iterator<Item = Option<&'a str>>) -> usize {
    const GLUE: [&str; 4] = ["bpf_trace_run", "__bpf_trace_", "__traceiter_", "bpf_prog_"];
    functions
        .take(6)
        .enumerate()
        .filter(|(_, f)| f.is_some_and(|f| GLUE.iter().any(|g| f.starts_with(g))))
        .map(|(i, _)| i + 1)
        .last()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_equal_samples_and_dedups_frames() {
        let mut b = ProfileBuilder::default();
        let symbols = Symbols::default();
        let s1 = b.kernel_text_frames(&["schedule+0x1/0x2".into(), "do_nanosleep+0x5/0x9".into()]);
        let s2 = b.kernel_text_frames(&["schedule+0x7/0x2".into()]);
        assert_eq!(s1[0], s2[0], "same function name, one frame");
        let u = b.user_frames(&symbols, 1, &[0x1000, 0x2000]);
        let mut stack = s1.clone();
        stack.extend(&u);
        b.add(stack.clone(), vec![("thread".into(), LabelValue::Str("a".into()))], vec![5, 1]);
        b.add(stack.clone(), vec![("thread".into(), LabelValue::Str("a".into()))], vec![7, 2]);
        b.add(stack, vec![("thread".into(), LabelValue::Str("b".into()))], vec![1, 1]);
        let (frames, samples) = b.finish();
        assert_eq!(frames.len(), 4);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].values, vec![12, 3]);
        assert_eq!(frames[0].function.as_deref(), Some("schedule"));
        assert_eq!(frames[2].display_name(), "0x1000");
    }

    #[test]
    fn bpf_glue_frames_are_dropped() {
        let stack = [None, Some("bpf_trace_run1"), Some("__schedule"), Some("schedule")];
        assert_eq!(tracing_glue_frames(stack.into_iter()), 2);
        let plain = [Some("__schedule"), Some("schedule")];
        assert_eq!(tracing_glue_frames(plain.into_iter()), 0);
        // Deep in a stack, a name is not glue.
        let deep = [Some("a"), Some("b"), Some("c"), Some("d"), Some("e"), Some("f"), Some("bpf_prog_x")];
        assert_eq!(tracing_glue_frames(deep.into_iter()), 0);
    }
}
