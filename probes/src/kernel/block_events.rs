//! The block-event ring buffer as an async stream: the reactor waits on the map's fd through
//! tokio's AsyncFd, so reading events never blocks the agent's event loop.

use std::os::fd::AsRawFd;

use aya::maps::{MapData, RingBuf};
use parkscope_common::BlockEvent;
use tokio::io::{Interest, unix::AsyncFd};

use super::KernelError;

/// Async reader of [`BlockEvent`]s.
pub struct BlockEventStream {
    inner: AsyncFd<RingBuf<MapData>>,
}

impl std::fmt::Debug for BlockEventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockEventStream").field("fd", &self.inner.get_ref().as_raw_fd()).finish()
    }
}

impl BlockEventStream {
    pub(super) fn new(ring: RingBuf<MapData>) -> Result<Self, KernelError> {
        // SAFETY: the RingBuf owns its map fd, keeps it open for its whole life and always
        // returns that same fd from as_raw_fd().
        let inner = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| KernelError::Reactor(e.into()))?;
        Ok(Self { inner })
    }

    /// Everything queued now, without waiting. The kernel side batches wakeups, so callers
    /// also drain on a timer (see [`Self::next_batch`]).
    pub fn drain(&mut self) -> Vec<BlockEvent> {
        let ring = self.inner.get_mut();
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            if item.len() >= size_of::<BlockEvent>() {
                // SAFETY: the kernel wrote a BlockEvent (repr(C), plain integers); the ring
                // buffer's items are 8-byte aligned but read_unaligned does not rely on that.
                out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<BlockEvent>()) });
            }
        }
        out
    }

    /// Waits until the kernel signals data, or `max_wait` passes (wakeups are batched), then
    /// returns what is queued.
    pub async fn next_batch(&mut self, max_wait: std::time::Duration) -> Vec<BlockEvent> {
        if let Ok(Ok(mut guard)) = tokio::time::timeout(max_wait, self.inner.readable_mut()).await {
            guard.clear_ready();
        }
        self.drain()
    }
}
