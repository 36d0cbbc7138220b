//! schedtrace for Go targets: the exact lines the target's own runtime prints with
//! GODEBUG=schedtrace=N (and scheddetail=1 for `--detail`), computed from its live state.
//! Which fields appear follows the runtime's layout (needspinning exists or not); the purely
//! textual conventions of each release come from the layouts/schedtrace.txt table.

use std::fmt::Write as _;

use parkscope_probes::go::{GoProcess, RuntimeState, SchedtraceStyle, layout::SchedField};

use crate::runtime::SchedValue;

/// Go prints an absent M/P/G as -1 (older) or nil (newer).
fn id(style: SchedtraceStyle, v: Option<impl std::fmt::Display>) -> String {
    match v {
        Some(v) => v.to_string(),
        None if style.nil_ids => "nil".to_owned(),
        None => "-1".to_owned(),
    }
}

/// A one-byte scheduler flag is an atomic.Bool in the runtimes that have one-byte flags, and
/// Go's print writes booleans as true/false.
fn flag(value: i64, size_is_bool: bool) -> String {
    if size_is_bool { (value != 0).to_string() } else { value.to_string() }
}

/// The SCHED line (and, with `detail`, the P, M and G lines after it).
pub fn render(
    go: &GoProcess,
    rt: &RuntimeState,
    elapsed_ms: u64,
    style: SchedtraceStyle,
    detail: bool,
) -> String {
    let s = &rt.sched;
    let mut out = format!(
        "SCHED {elapsed_ms}ms: gomaxprocs={} idleprocs={} threads={} spinningthreads={}",
        s.gomaxprocs, s.npidle, s.mcount, s.nmspinning
    );
    if let Some(n) = s.needspinning {
        let _ = write!(out, " needspinning={n}");
    }
    let _ = write!(out, " idlethreads={} runqueue={}", s.nmidle, s.runqsize);
    let layout = &go.binary.layout;
    let is_bool = |key: SchedField| layout.field(key).size == 1;
    if detail {
        let _ = writeln!(
            out,
            " gcwaiting={} nmidlelocked={} stopwait={} sysmonwait={}",
            flag(s.gcwaiting, is_bool(SchedField::Gcwaiting)),
            s.nmidlelocked,
            s.stopwait,
            flag(s.sysmonwait, is_bool(SchedField::Sysmonwait))
        );
        for (i, p) in rt.ps.iter().enumerate() {
            let _ = writeln!(
                out,
                "  P{i}: status={} schedtick={} syscalltick={} m={} runqsize={} gfreecnt={} timerslen={}",
                p.status,
                p.schedtick,
                p.syscalltick,
                id(style, p.m_id),
                p.runqsize,
                p.gfreecnt,
                p.timerslen
            );
        }
        for m in &rt.ms {
            let _ = writeln!(
                out,
                "  M{}: p={} curg={} mallocing={} throwing={} preemptoff={} locks={} dying={} spinning={} blocked={} lockedg={}",
                m.id,
                id(style, m.p_id),
                id(style, m.curg_goid),
                m.mallocing,
                m.throwing,
                m.preemptoff,
                m.locks,
                m.dying,
                m.spinning,
                m.blocked,
                id(style, m.lockedg_goid)
            );
        }
        for g in &rt.goroutines {
            let _ = writeln!(
                out,
                "  G{}: status={}({}) m={} lockedm={}",
                g.goid,
                g.raw_status,
                go.wait_reason_text(g.waitreason),
                id(style, g.m_id),
                id(style, g.lockedm_id)
            );
        }
        return out;
    }
    let (open, close) = if style.spaced_brackets { ("[ ", " ]") } else { ("[", "]") };
    let queues: Vec<String> = rt.ps.iter().map(|p| p.runqsize.to_string()).collect();
    if !queues.is_empty() {
        let _ = write!(out, " {open}{}{close}", queues.join(" "));
    }
    if style.schedticks {
        out.push_str(" schedticks=[ ");
        for p in &rt.ps {
            let _ = write!(out, "{} ", p.schedtick);
        }
        out.push(']');
    }
    out.push('\n');
    out
}

/// The numbers of the SCHED line [`render`] prints, by its names: the per-P local run queues
/// (the text's unnamed `[ ]` list) as `runqsizes`, and `schedticks` where the release prints it.
pub fn counts(rt: &RuntimeState, style: SchedtraceStyle) -> Vec<(&'static str, SchedValue)> {
    let s = &rt.sched;
    let mut out = vec![
        ("gomaxprocs", SchedValue::Count(s.gomaxprocs)),
        ("idleprocs", SchedValue::Count(s.npidle)),
        ("threads", SchedValue::Count(s.mcount)),
        ("spinningthreads", SchedValue::Count(s.nmspinning)),
    ];
    if let Some(n) = s.needspinning {
        out.push(("needspinning", SchedValue::Count(n)));
    }
    out.push(("idlethreads", SchedValue::Count(s.nmidle)));
    out.push(("runqueue", SchedValue::Count(s.runqsize)));
    out.push(("runqsizes", SchedValue::PerQueue(rt.ps.iter().map(|p| p.runqsize).collect())));
    if style.schedticks {
        out.push(("schedticks", SchedValue::PerQueue(rt.ps.iter().map(|p| p.schedtick).collect())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_ids_follow_the_release_style() {
        let old = SchedtraceStyle { spaced_brackets: false, nil_ids: false, schedticks: false };
        let new = SchedtraceStyle { spaced_brackets: true, nil_ids: true, schedticks: true };
        assert_eq!(id(old, None::<i64>), "-1");
        assert_eq!(id(new, None::<i64>), "nil");
        assert_eq!(id(new, Some(3)), "3");
        assert_eq!(flag(1, true), "true");
        assert_eq!(flag(0, true), "false");
        assert_eq!(flag(2, false), "2");
    }
}
