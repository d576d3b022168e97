//! The bound on what peers can make the loop hold, all connections
//! together (Redis 7's `maxmemory-clients`).
//!
//! Each connection's share is bounded by the loop's caps (its output cap
//! stops the use of its input; its input cap stops reading), but a cap
//! times ten thousand connections can still be more than a small machine
//! has. So the loop also counts what all of them hold: every buffer is a
//! `buf::Buffer`, which counts its storage in a per-thread total as it is
//! made, grown and dropped, and the pool's free buffers are taken off
//! (`held_by_connections`: O(1), read once per turn). Past the cap, the
//! connections holding the most are evicted first (`largest`: one scan of
//! the slab, only while over the cap) until the total is back under it.

use slab::Slab;

use crate::buf::{self, Pool};

use super::kinds::Kinds;
use super::state::Slot;

/// Bytes of buffer storage held by this thread's connections right now:
/// every live buffer, less the free ones in `pool`.
pub fn held_by_connections(pool: &Pool) -> usize {
    buf::held_bytes().saturating_sub(pool.free_bytes())
}

/// The keys of the connections holding any buffer, the largest first.
pub(super) fn largest<A: Kinds>(slab: &Slab<Slot<A>>) -> Vec<usize> {
    let mut held: Vec<(usize, usize)> = slab
        .iter()
        .filter_map(|(key, slot)| match slot {
            Slot::Conn(c) if c.link.held() > 0 && c.link.is_serving() => Some((c.link.held(), key)),
            _ => None,
        })
        .collect();
    held.sort_unstable_by(|a, b| b.cmp(a));
    held.into_iter().map(|(_, key)| key).collect()
}

/// The default for the cap: a quarter of the memory this process may use
/// (physical memory, or the cgroup's limit if that is lower), so that
/// peers can never take more than that whatever the per-connection caps
/// add up to; 1 GiB if neither can be read.
pub fn bound_default() -> usize {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let physical = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map(|kib| kib * 1024);
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok());
    match (physical, cgroup) {
        (Some(p), Some(c)) => p.min(c) / 4,
        (Some(m), None) | (None, Some(m)) => m / 4,
        (None, None) => 1 << 30,
    }
}
