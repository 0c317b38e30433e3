//! Processes a set's BPF announces the first time it counts them (`bpf/include/np_announce.h`):
//! their mappings are recorded at once, so their user stacks are named after they exit.
use super::EventRing;
use crate::error::Result;
use crate::symbol::UserSymbolizer;
use libbpf_rs::MapCore;
use std::time::Duration;

/// The `new_processes` ring of a set that includes `np_announce.h`.
pub struct Announcements {
    ring: EventRing<u32>,
}

impl Announcements {
    /// Reads the ring buffer map `new_processes`.
    pub fn new(map: &dyn MapCore) -> Result<Self> {
        Ok(Self {
            ring: EventRing::new(map)?,
        })
    }

    /// Records the mappings of every process announced, waiting up to `timeout` for one.
    pub fn take(&mut self, timeout: Duration, users: &mut UserSymbolizer) -> Result<()> {
        for tgid in self.ring.poll(timeout)? {
            users.remember(tgid);
        }
        Ok(())
    }
}
