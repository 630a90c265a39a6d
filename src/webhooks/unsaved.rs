//! Row changes the store failed to apply (database locked, disk full, PostgreSQL down), kept
//! to be tried again, ahead of newer ones, until the store takes them. Without this, a lost
//! `Forget` sends a delivered event again after a restart, and a lost `Save` loses a pending
//! delivery at the next one. Sans-I/O: the shell applies what [`Unsaved::take`] gives.

use std::collections::{BTreeMap, HashMap};

use super::queue::MAX_PENDING;
use crate::store::DeliveryChange;

/// Changes kept, at most. Bound: twice the queue's bound, as changes are coalesced per
/// delivery (one per id): room for a `Save` of every pending delivery plus as many `Forget`s
/// of deliveries that ended while the store was down. Pruning: past it, the change made
/// longest ago goes (a lost `Forget`: that event is sent again after a restart; a lost `Save`:
/// that delivery does not survive one), counted in [`Unsaved::dropped`] and logged.
pub(crate) const MAX_UNSAVED: usize = 2 * MAX_PENDING;

/// The first wait before kept changes are tried again with nothing new to save.
pub(crate) const FIRST_RETRY_MS: u64 = 1_000;

/// The longest such wait (the wait doubles after each failure).
pub(crate) const MAX_RETRY_MS: u64 = 30_000;

/// The changes waiting, oldest first, one per delivery id.
#[derive(Debug, Default)]
pub(crate) struct Unsaved {
    /// By order of arrival (a sequence number): the change.
    changes: BTreeMap<u64, DeliveryChange>,
    /// Per delivery id, the sequence number of its change in `changes`.
    by_id: HashMap<i64, u64>,
    next_seq: u64,
    /// Changes pruned past [`MAX_UNSAVED`] since start.
    dropped: u64,
    /// Failed tries in a row (the retry's back-off).
    failures: u32,
}

impl Unsaved {
    /// Adds `batch` after what is kept, in order. A delivery's later change replaces its
    /// earlier one: a `Save` is an upsert and a `Forget` a delete, so the last of a
    /// delivery's changes alone leaves its row as the whole sequence would.
    pub(crate) fn push(&mut self, batch: impl IntoIterator<Item = DeliveryChange>) {
        for change in batch {
            let id = id_of(&change);
            if let Some(seq) = self.by_id.remove(&id) {
                self.changes.remove(&seq);
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.changes.insert(seq, change);
            self.by_id.insert(id, seq);
        }
        while self.changes.len() > MAX_UNSAVED {
            let Some((_, oldest)) = self.changes.pop_first() else {
                break;
            };
            self.by_id.remove(&id_of(&oldest));
            self.dropped += 1;
        }
    }

    /// Everything kept, oldest first, leaving nothing (given back with [`Unsaved::failed`] if
    /// the store refuses it).
    pub(crate) fn take(&mut self) -> Vec<DeliveryChange> {
        self.by_id.clear();
        std::mem::take(&mut self.changes).into_values().collect()
    }

    /// The store refused `batch` (what [`Unsaved::take`] gave, then the new changes): keep it
    /// for the next try.
    pub(crate) fn failed(&mut self, batch: Vec<DeliveryChange>) {
        self.failures = self.failures.saturating_add(1);
        self.push(batch);
    }

    /// The store took a batch: the retry's back-off starts over.
    pub(crate) fn saved(&mut self) {
        self.failures = 0;
    }

    /// How long to wait before trying again with nothing new, if anything is kept: 1 s after
    /// the first failure, doubling to 30 s.
    pub(crate) fn retry_in_ms(&self) -> Option<u64> {
        if self.changes.is_empty() {
            return None;
        }
        let doublings = self.failures.saturating_sub(1).min(16);
        Some((FIRST_RETRY_MS << doublings).min(MAX_RETRY_MS))
    }

    pub(crate) fn len(&self) -> usize {
        self.changes.len()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

fn id_of(change: &DeliveryChange) -> i64 {
    match change {
        DeliveryChange::Save(d) => d.id,
        DeliveryChange::Forget(id) => *id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PendingDelivery;

    fn save(id: i64, attempts: i64) -> DeliveryChange {
        DeliveryChange::Save(PendingDelivery {
            id,
            endpoint: "sha256:00".into(),
            body: "{}".into(),
            created_at: 1,
            first_attempt_at: None,
            attempts,
            next_at: 1,
        })
    }

    #[test]
    fn kept_changes_come_back_in_order_one_per_delivery_the_last() {
        let mut u = Unsaved::default();
        u.push([save(1, 0), save(2, 0), save(1, 1)]);
        let batch = u.take();
        u.failed(batch);
        assert_eq!(u.retry_in_ms(), Some(FIRST_RETRY_MS));
        // Delivered meanwhile: its save is not needed any more, its forget is.
        u.push([DeliveryChange::Forget(2), save(3, 0)]);
        assert_eq!(
            u.take(),
            [save(1, 1), DeliveryChange::Forget(2), save(3, 0)]
        );
        assert_eq!((u.len(), u.retry_in_ms()), (0, None));
    }

    #[test]
    fn retries_back_off_to_thirty_seconds_and_start_over_once_saved() {
        let mut u = Unsaved::default();
        let mut waits = Vec::new();
        for _ in 0..8 {
            u.failed(vec![save(1, 0)]);
            waits.push(u.retry_in_ms().unwrap());
            u.take();
        }
        assert_eq!(
            waits,
            [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
        u.saved();
        u.failed(vec![save(1, 0)]);
        assert_eq!(u.retry_in_ms(), Some(FIRST_RETRY_MS));
    }

    #[test]
    fn past_the_bound_the_oldest_changes_are_dropped_and_counted() {
        let mut u = Unsaved::default();
        let n = MAX_UNSAVED as i64 + 5;
        u.push((1..=n).map(DeliveryChange::Forget));
        assert_eq!((u.len(), u.dropped()), (MAX_UNSAVED, 5));
        let kept = u.take();
        assert_eq!(kept.first(), Some(&DeliveryChange::Forget(6)));
        assert_eq!(kept.last(), Some(&DeliveryChange::Forget(n)));
        // A change of a delivery already kept takes no more room.
        u.push(kept);
        u.push([DeliveryChange::Forget(n)]);
        assert_eq!((u.len(), u.dropped()), (MAX_UNSAVED, 5));
    }
}
