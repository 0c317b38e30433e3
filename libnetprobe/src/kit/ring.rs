//! A set's event ring: BPF reserves (failed reserves are counted in `stats`) and submits
//! with batched wakeups (`np_common.h`); this side polls with a timeout and decodes.
use crate::error::{Context, Error, Result};
use libbpf_rs::{MapCore, RingBuffer, RingBufferBuilder};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Events of type `T` (a skeleton-generated struct) from a BPF ring buffer map.
pub struct EventRing<T> {
    ring: RingBuffer<'static>,
    pending: Rc<RefCell<Vec<T>>>,
}

impl<T: plain::Plain + Default + 'static> EventRing<T> {
    /// Opens the ring buffer `map`.
    pub fn new(map: &dyn MapCore) -> Result<Self> {
        let pending: Rc<RefCell<Vec<T>>> = Rc::default();
        let sink = Rc::clone(&pending);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(map, move |data: &[u8]| {
                let mut ev = T::default();
                if plain::copy_from_bytes(&mut ev, data).is_ok() {
                    sink.borrow_mut().push(ev);
                }
                0
            })
            .context(|| "ring buffer".into())?;
        let ring = builder.build().context(|| "ring buffer".into())?;
        Ok(Self { ring, pending })
    }

    /// Waits up to `timeout` for a wakeup, then takes everything waiting in the ring (BPF
    /// wakes the reader only past a fill mark, so a quiet ring is read on the timeout).
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<T>> {
        if let Err(e) = self.ring.poll(timeout) {
            if e.kind() != libbpf_rs::ErrorKind::Interrupted {
                return Err(Error::Bpf {
                    context: "poll ring buffer".into(),
                    source: e,
                });
            }
        }
        self.ring
            .consume()
            .context(|| "consume ring buffer".into())?;
        let mut pending = self.pending.borrow_mut();
        let room = pending.len();
        Ok(std::mem::replace(&mut *pending, Vec::with_capacity(room)))
    }
}
