//! Which fd a goroutine in "IO wait" is parked on: the runtime registers every pollable fd with
//! its epoll instance (`runtime.epfd`) with a pointer to the fd's pollDesc as the event data,
//! which the kernel shows in /proc/PID/fdinfo/EPFD. A pollDesc's rg/wg hold the parked
//! goroutine, so reading the pollDescs named there maps each parked g to its fd and direction.

use std::collections::HashMap;

use super::GoError;
use super::layout::{GoConst, GoStruct, Layout, PollDescField};
use super::memory::{ReadMemory, uint_at};
use super::runtime::PollMode;

/// The (fd, event data) pairs registered in an epoll instance, from its fdinfo text.
pub fn parse_epoll_fdinfo(text: &str) -> Vec<(i32, u64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("tfd:")?;
            let mut words = rest.split_ascii_whitespace();
            let fd = words.next()?.parse().ok()?;
            let data = loop {
                match words.next()? {
                    "data:" => break words.next()?,
                    w if w.starts_with("data:") => break &w[5..],
                    _ => {}
                }
            };
            Some((fd, u64::from_str_radix(data, 16).ok()?))
        })
        .collect()
}

/// The pollDesc address an event's data can mean. Go 1.21 and later pack a sequence tag with
/// the pointer (`runtime.tagBits` exists in those binaries) and unpack it as
/// `data >> tagBits << align`, where align is `runtime.tagAlignBits` since Go 1.25 and the
/// pointer's 8-byte alignment (3) before; older runtimes store the bare pointer. Either way the
/// candidate is only accepted if that pollDesc names the same fd.
fn candidate(layout: &Layout, data: u64) -> u64 {
    const POINTER_ALIGN_BITS: i64 = 3;
    match layout.constant(GoConst::TagBits) {
        Some(tag) => {
            let align = layout.constant(GoConst::TagAlignBits).unwrap_or(POINTER_ALIGN_BITS);
            if (0..64).contains(&tag) && (0..64).contains(&align) {
                (((data as i64) >> tag) << align) as u64
            } else {
                data
            }
        }
        None => data,
    }
}

/// The fdinfo text of `pid`'s epoll fd `epfd` (the kernel writes it, the target chooses what
/// is registered); empty before the netpoller starts (`epfd < 0`).
pub fn read_epoll_fdinfo(pid: u32, epfd: i32) -> Result<String, GoError> {
    if epfd < 0 {
        return Ok(String::new());
    }
    let path = format!("/proc/{pid}/fdinfo/{epfd}");
    std::fs::read_to_string(&path).map_err(|e| GoError::from_io(pid, &path, &e))
}

/// Maps parked goroutine addresses to the fd and direction they wait on, from the epoll
/// fdinfo text ([`read_epoll_fdinfo`]) and the pollDescs it names.
pub fn parked_on_fds<M: ReadMemory>(
    mem: &M,
    layout: &Layout,
    fdinfo: &str,
) -> Result<HashMap<u64, (i32, PollMode)>, GoError> {
    let mut out = HashMap::new();
    let entries = parse_epoll_fdinfo(fdinfo);
    let size = layout.size(GoStruct::PollDesc) as usize;
    let mut bufs = vec![0u8; size * entries.len()];
    let mut reqs: Vec<(u64, &mut [u8])> = entries
        .iter()
        .zip(bufs.chunks_mut(size.max(1)))
        .map(|(&(_, d), b)| (candidate(layout, d), b))
        .collect();
    let ok = mem.read_many(&mut reqs)?;
    tracing::debug!(
        registered = entries.len(),
        read = ok.iter().filter(|o| **o).count(),
        "netpoll descriptors"
    );
    let (fd_f, rg_f, wg_f) =
        (layout.field(PollDescField::Fd), layout.field(PollDescField::Rg), layout.field(PollDescField::Wg));
    for (((fd, _), (_, buf)), ok) in entries.iter().zip(&reqs).zip(ok) {
        if !ok || uint_at(buf, fd_f.offset, fd_f.size) != *fd as u64 {
            continue;
        }
        // rg/wg hold pdNil (0), pdReady (1), pdWait (2) or the parked g.
        for (f, mode) in [(rg_f, PollMode::Read), (wg_f, PollMode::Write)] {
            let g = uint_at(buf, f.offset, f.size);
            if g > 0xffff {
                out.insert(g, (*fd, mode));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fdinfo_lines() {
        let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\n\
tfd:        4 events: 80000019 data: 7f2a5c1c0000  pos:0 ino:3f2 sdev:e\n\
tfd:        3 events:       19 data:           c0000a8000  pos:0 ino:3f3 sdev:e\n";
        assert_eq!(parse_epoll_fdinfo(text), vec![(4, 0x7f2a5c1c0000), (3, 0xc0000a8000)]);
    }

    /// Go 1.19 stores the bare pointer; 1.21..1.24 pack `ptr << 16 | tag` with 19 tag bits
    /// (runtime.taggedPointerPack) and have no tagAlignBits.
    #[test]
    fn event_data_unpacks_per_release() {
        let bare = super::super::layout::from_tables("go1.19.13").unwrap();
        let go121 = super::super::layout::from_tables("go1.21.13").unwrap();
        assert_eq!((bare.constant(GoConst::TagBits), go121.constant(GoConst::TagBits)), (None, Some(19)));
        assert_eq!(go121.constant(GoConst::TagAlignBits), None);
        // A Go heap address and an mmap'd (persistentalloc) one, as pollDescs come from.
        for pd in [0xc0_0012_3400_u64, 0x7f2a_5c1c_0a48] {
            assert_eq!(candidate(&bare, pd), pd);
            assert_eq!(candidate(&go121, (pd << 16) | 0x5_a5a5), pd);
        }
    }
}
