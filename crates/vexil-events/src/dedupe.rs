//! Dedupe: each `event_id` is counted once, however often it is delivered (SPEC 1.4), within a
//! window (default 7 days) of its first delivery.
//!
//! The first delivery's id is stored with its log offset in the state database, inside the same
//! transaction that applies the event to the aggregates and advances the checkpoint. A crash
//! therefore either keeps all three or none: a redelivery can never be counted twice, and an
//! event can never be marked seen without being counted. Only sender-given ids are stored; a
//! generated id is a fresh UUID and cannot come back.
//!
//! Ids are remembered per log partition. A redelivered event carries the same `user_id` as its
//! first delivery, so it lands on the same partition (the bus is keyed by user) and meets the
//! id there. (Two events with one id but different users are different events to the pipeline.)
//!
//! The ids of a batch are looked up in the store together, before the batch is processed
//! ([`Deliveries::lookup`]); the stage is then [`is_redelivery`], per event.

use crate::environment;
use crate::error::Error;
use crate::event::StoredEvent;
use crate::store::{FirstDelivery, PartitionStore};
use std::borrow::Cow;
use std::collections::HashMap;

/// The dedupe decisions of one batch.
pub(crate) struct Deliveries {
    /// First offsets of the batch's ids known so far: stored ones and this batch's new ones.
    first: HashMap<String, u64>,
    new: Vec<FirstDelivery>,
}

impl Deliveries {
    /// Looks up which of `ids` were delivered before.
    pub fn lookup(store: &mut dyn PartitionStore, ids: &[&str]) -> Result<Deliveries, Error> {
        let first = if ids.is_empty() { HashMap::new() } else { store.first_deliveries(ids)? };
        Ok(Deliveries { first, new: Vec::new() })
    }

    /// Whether the record at `offset` carries an id first delivered at another offset; records
    /// the id when it is new. Asking again for the same offset (a replay) answers `false`.
    pub fn is_duplicate(&mut self, event_id: &str, offset: u64, received_at: i64) -> bool {
        match self.first.get(event_id) {
            Some(&first) => first != offset,
            None => {
                self.first.insert(event_id.to_owned(), offset);
                self.new.push(FirstDelivery { event_id: event_id.to_owned(), offset, received_at });
                false
            }
        }
    }

    /// The ids delivered for the first time, to be stored with the batch's commit.
    pub fn new_ids(&self) -> &[FirstDelivery] {
        &self.new
    }
}

/// The dedupe stage: whether `stored`, the record at `offset`, repeats an event first delivered
/// at another offset. Only a sender-given id can come back; a generated one is never looked up.
pub(crate) fn is_redelivery(deliveries: &mut Deliveries, stored: &StoredEvent, offset: u64) -> bool {
    stored.id_given && deliveries.is_duplicate(&id_of(stored), offset, stored.received_at)
}

/// The event's id as its environment's dedupe state keeps it (see [`crate::environment`]): the
/// same id sent to two environments is two events.
pub(crate) fn id_of(stored: &StoredEvent) -> Cow<'_, str> {
    environment::qualify_id(stored.env.as_deref(), &stored.event.event_id)
}
