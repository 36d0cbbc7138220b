//! Thread ids across pid namespaces: a target in a container knows its threads by the ids of its
//! own (innermost) pid namespace, while /proc, the kernel's probes and everything parkscope
//! prints use the ids of the namespace /proc was mounted in (the host's). The `NSpid` line of
//! /proc/PID/task/TID/status lists a thread's id in each namespace, outermost first.

use std::collections::HashMap;
use std::path::PathBuf;

use ::procfs::process::Process;

use super::{ProcError, procfs_error};

/// Translates thread ids a process uses for itself (e.g. the Go runtime's `m.procid`, from
/// gettid) into the ids /proc gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TidMap {
    /// The process lives in /proc's own pid namespace: its ids are /proc's.
    Same,
    /// Namespace tid -> /proc tid, for every thread alive when read.
    Nested(HashMap<u32, u32>),
}

impl TidMap {
    /// Reads the map of process `pid`: one status read when it is in /proc's namespace, one
    /// per thread when it is not.
    pub fn read(pid: u32) -> Result<TidMap, ProcError> {
        let status_path = PathBuf::from(format!("/proc/{pid}/status"));
        let raw = i32::try_from(pid).map_err(|_| ProcError::NoSuchProcess(pid))?;
        let process = Process::new(raw).map_err(|e| procfs_error(pid, &status_path, e))?;
        let status = process.status().map_err(|e| procfs_error(pid, &status_path, e))?;
        // Kernels before 4.1 have no NSpid line; they also give no way to tell, so the ids are
        // taken as they are.
        if status.nspid.as_ref().is_none_or(|ids| ids.len() <= 1) {
            return Ok(TidMap::Same);
        }
        let tasks = process.tasks().map_err(|e| procfs_error(pid, &status_path, e))?;
        let mut map = HashMap::new();
        for task in tasks.flatten() {
            // A thread that exits meanwhile is simply not in the map.
            let Ok(status) = task.status() else { continue };
            if let Some((host, inner)) = status.nspid.as_deref().and_then(host_and_inner) {
                map.insert(inner, host);
            }
        }
        Ok(TidMap::Nested(map))
    }

    /// The /proc id of the thread the process calls `ns_tid`; None when no live thread has it.
    pub fn host_tid(&self, ns_tid: u32) -> Option<u32> {
        match self {
            TidMap::Same => Some(ns_tid),
            TidMap::Nested(map) => map.get(&ns_tid).copied(),
        }
    }

    /// Whether the process is in another pid namespace than /proc's.
    pub fn is_nested(&self) -> bool {
        matches!(self, TidMap::Nested(_))
    }
}

/// (first, last) of an NSpid list: the id in /proc's namespace and in the innermost one.
fn host_and_inner(ids: &[i32]) -> Option<(u32, u32)> {
    let host = u32::try_from(*ids.first()?).ok()?;
    let inner = u32::try_from(*ids.last()?).ok()?;
    Some((host, inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outermost_is_the_host_id_innermost_the_process_own() {
        assert_eq!(host_and_inner(&[4242, 7]), Some((4242, 7)));
        assert_eq!(host_and_inner(&[4242, 17, 7]), Some((4242, 7)));
        assert_eq!(host_and_inner(&[99]), Some((99, 99)));
        assert_eq!(host_and_inner(&[]), None);
        assert_eq!(host_and_inner(&[-1, 3]), None);
    }

    #[test]
    fn own_process_is_in_the_same_namespace() {
        // The tests run in /proc's namespace (the test harness reads /proc itself).
        let map = TidMap::read(std::process::id()).unwrap();
        assert_eq!(map, TidMap::Same);
        assert_eq!(map.host_tid(12345), Some(12345));
        assert!(!map.is_nested());
    }

    #[test]
    fn missing_process_is_an_error() {
        assert!(TidMap::read(u32::MAX - 1).is_err());
    }
}
