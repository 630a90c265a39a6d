//! Where a meeting runs when several nodes share one database (`storage.url`): on exactly one
//! node, the holder of its lease (see [`crate::store::Lease`]). A join on any node asks
//! [`Placement::place`] first: the meeting is claimed for this node if nobody holds it, and a
//! meeting another node holds sends the caller there (SIP 302, REFER from the attendant, HTTP
//! 307 for WHIP). The node renews its leases every third of the lease time and releases those
//! of meetings that have stayed empty, so a node that dies loses its meetings within one lease
//! and a caller who dials again lands on a new owner.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::store::{NodeAddress, Store, StoreError};

/// The default lease: a dead node's meetings move after at most this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// Renewal rounds a held meeting may be empty before its lease is released (a claim is made
/// just before the first leg joins: one round of grace covers that).
const IDLE_ROUNDS: u8 = 2;

/// Where a meeting runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placed {
    Here,
    /// On another node: send the caller there.
    Elsewhere(NodeAddress),
}

/// Counters for `confab_placement_*`.
#[derive(Debug, Default)]
pub struct PlacementCounters {
    /// Callers sent to another node.
    pub redirects: AtomicU64,
    /// Renewals the database refused.
    pub renew_failures: AtomicU64,
    /// Leases found lost at a renewal (expired, perhaps taken by another node).
    pub lost: AtomicU64,
    /// Meetings this node holds now.
    pub owned: AtomicU64,
}

/// A meeting this node holds.
#[derive(Clone, Copy, Debug)]
struct Held {
    /// Renewal rounds it has been empty.
    idle: u8,
    /// Its lease's expiry as the database last wrote it.
    expires_at: i64,
}

/// This node's side of placement.
#[derive(Debug)]
pub struct Placement {
    store: Store,
    me: NodeAddress,
    lease: Duration,
    /// The meetings this node holds. Bound: the meetings claimed here (each claim is made for
    /// a join of a stored conference); pruned at each renewal of the lost ones and of those
    /// empty for [`IDLE_ROUNDS`].
    held: Mutex<HashMap<String, Held>>,
    /// When the last renewal succeeded, on this host's monotonic clock: past two thirds of a
    /// lease without one, another node may have taken the meetings, so this one stops
    /// hosting them (the fence that keeps a meeting from running on two nodes).
    renewed_at: Mutex<Instant>,
    pub counters: PlacementCounters,
}

impl Placement {
    pub fn new(store: Store, me: NodeAddress, lease: Duration) -> Placement {
        Placement {
            store,
            me,
            lease,
            held: Mutex::new(HashMap::new()),
            renewed_at: Mutex::new(Instant::now()),
            counters: PlacementCounters::default(),
        }
    }

    /// This node's name and addresses.
    pub fn me(&self) -> &NodeAddress {
        &self.me
    }

    /// Whether this node holds `meeting`'s lease (as of its last claim or renewal).
    pub fn holds(&self, meeting: &str) -> bool {
        self.held.lock().is_ok_and(|h| h.contains_key(meeting))
    }

    /// How often [`Placement::renew`] is to run.
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// Where `meeting` runs, claiming it for this node if no other node holds it. Blocking (a
    /// database round trip): call it from the blocking pool or a thread of its own.
    pub fn place(&self, meeting: &str) -> Result<Placed, StoreError> {
        self.place_at(meeting, None)
    }

    /// The other node that runs `meeting` now, without claiming it (a watcher of a roster is
    /// no reason to start a meeting here): the holder of its unexpired lease if that is not
    /// this node. Counted as a redirect when there is one. Blocking (a database read).
    pub fn runs_elsewhere(&self, meeting: &str) -> Result<Option<NodeAddress>, StoreError> {
        let owner = self
            .store
            .leases(None)?
            .into_iter()
            .find(|l| l.meeting == meeting && l.owner.node != self.me.node)
            .map(|l| l.owner);
        if owner.is_some() {
            self.counters.redirects.fetch_add(1, Ordering::Relaxed);
        }
        Ok(owner)
    }

    /// `now`: ms since the epoch (tests); none: the database's clock.
    fn place_at(&self, meeting: &str, now: Option<i64>) -> Result<Placed, StoreError> {
        let lease = self.store.claim(meeting, &self.me, now, self.lease_ms())?;
        if lease.owner.node == self.me.node {
            if let Ok(mut held) = self.held.lock() {
                held.insert(
                    meeting.to_owned(),
                    Held {
                        idle: 0,
                        expires_at: lease.expires_at,
                    },
                );
                self.counters
                    .owned
                    .store(held.len() as u64, Ordering::Relaxed);
            }
            return Ok(Placed::Here);
        }
        self.counters.redirects.fetch_add(1, Ordering::Relaxed);
        Ok(Placed::Elsewhere(lease.owner))
    }

    /// Renews this node's leases and releases those of meetings `busy` says are empty for
    /// [`IDLE_ROUNDS`] rounds; returns the meetings it no longer holds (lost, or not renewed
    /// in time): the caller ends them here, so their callers redial to the new owner.
    pub fn renew(&self, busy: &dyn Fn(&str) -> bool) -> Vec<String> {
        self.renew_at(None, Instant::now(), busy)
    }

    fn renew_at(
        &self,
        now: Option<i64>,
        mono: Instant,
        busy: &dyn Fn(&str) -> bool,
    ) -> Vec<String> {
        // Only the meetings held before the renewal: one claimed meanwhile is not lost.
        let before: Vec<String> = match self.held.lock() {
            Ok(held) => held.keys().cloned().collect(),
            Err(_) => return Vec::new(),
        };
        let renewed = match self
            .store
            .renew(&self.me.node, &before, now, self.lease_ms())
        {
            Ok(renewed) => {
                if let Ok(mut at) = self.renewed_at.lock() {
                    *at = mono;
                }
                renewed
            }
            Err(e) => {
                self.counters.renew_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "placement: leases not renewed");
                let since = self
                    .renewed_at
                    .lock()
                    .map_or(Duration::MAX, |at| mono.saturating_duration_since(*at));
                if since < self.lease * 2 / 3 {
                    return Vec::new();
                }
                // Too long without a renewal: another node may hold them now. None renewed:
                // every meeting held is given up below.
                Vec::new()
            }
        };
        let renewed: HashMap<String, i64> = renewed.into_iter().collect();
        let Ok(mut held) = self.held.lock() else {
            return Vec::new();
        };
        let mut lost = Vec::new();
        let mut idle = Vec::new();
        for meeting in &before {
            let Some(h) = held.get_mut(meeting) else {
                continue;
            };
            let Some(expires_at) = renewed.get(meeting) else {
                held.remove(meeting);
                lost.push(meeting.clone());
                continue;
            };
            h.expires_at = *expires_at;
            h.idle = if busy(meeting) { 0 } else { h.idle + 1 };
            if h.idle >= IDLE_ROUNDS {
                idle.push((meeting.clone(), h.expires_at));
                held.remove(meeting);
            }
        }
        self.counters
            .owned
            .store(held.len() as u64, Ordering::Relaxed);
        drop(held);
        for (meeting, expires_at) in &idle {
            // Only the lease just renewed: a claim since (a caller joined) keeps its own.
            if let Err(e) = self
                .store
                .release(meeting, &self.me.node, Some(*expires_at))
            {
                tracing::warn!(%meeting, error = %e, "placement: lease not released");
            }
        }
        if !lost.is_empty() {
            self.counters
                .lost
                .fetch_add(lost.len() as u64, Ordering::Relaxed);
            tracing::warn!(meetings = ?lost, "placement: leases lost (not renewed in time)");
        }
        lost
    }

    /// Releases every lease this node holds (at the end of a drain or a stop).
    pub fn release_all(&self) {
        let held: Vec<(String, Held)> = match self.held.lock() {
            Ok(mut held) => held.drain().collect(),
            Err(_) => return,
        };
        for (meeting, h) in held {
            let _ = self
                .store
                .release(&meeting, &self.me.node, Some(h.expires_at));
        }
        self.counters.owned.store(0, Ordering::Relaxed);
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeAddress {
        NodeAddress {
            node: name.into(),
            sip: format!("{name}.example:5060"),
            api: format!("http://{name}.example:8080"),
        }
    }

    #[test]
    fn a_node_keeps_busy_meetings_releases_empty_ones_and_notices_lost_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lease = Duration::from_secs(15);
        let a = Placement::new(store.clone(), node("a"), lease);
        let b = Placement::new(store.clone(), node("b"), lease);
        assert_eq!(a.place_at("1111", Some(0)).unwrap(), Placed::Here);
        assert_eq!(a.place_at("2222", Some(0)).unwrap(), Placed::Here);
        assert_eq!(
            b.place_at("1111", Some(1_000)).unwrap(),
            Placed::Elsewhere(node("a"))
        );
        assert_eq!(b.counters.redirects.load(Ordering::Relaxed), 1);
        // 1111 has callers, 2222 stays empty: released after two rounds, then b may take it.
        let busy = |m: &str| m == "1111";
        for t in [5_000, 10_000] {
            assert!(a.renew_at(Some(t), Instant::now(), &busy).is_empty());
        }
        assert_eq!(a.counters.owned.load(Ordering::Relaxed), 1);
        assert_eq!(b.place_at("2222", Some(10_001)).unwrap(), Placed::Here);
        assert_eq!(
            b.place_at("1111", Some(24_000)).unwrap(),
            Placed::Elsewhere(node("a"))
        );
        // a stops renewing (it hung): its lease runs out and b takes the meeting over.
        assert_eq!(b.place_at("1111", Some(25_000)).unwrap(), Placed::Here);
        assert_eq!(a.renew_at(Some(26_000), Instant::now(), &busy), ["1111"]);
        assert_eq!(a.counters.lost.load(Ordering::Relaxed), 1);
        assert_eq!(
            a.place_at("1111", Some(26_000)).unwrap(),
            Placed::Elsewhere(node("b"))
        );
        b.release_all();
        assert!(store.leases(Some(26_000)).unwrap().is_empty());
    }
}
