//! The delivery queue, sans-I/O: which webhook delivery is sent when, retried when, given up
//! when. It never reads a clock, touches a socket or the database; the shell
//! (`webhooks::shell`) feeds it and does what it asks.
//!
//! Inputs, each with `now` in Unix milliseconds (wall-clock time, because pending deliveries
//! survive a restart): [`Queue::restore`] (what the store kept, once, at start),
//! [`Queue::enqueue`] (an event for one receiver), [`Queue::attempted`] (how an attempt
//! ended). Outputs: [`Queue::poll_action`] until `None` (send this delivery, save this row,
//! forget that one), then [`Queue::poll_timeout`] (wake me at). Calling `poll_action` with a
//! later `now` is the tick.
//!
//! Rules: a failed attempt is retried after 1 s, doubling to 5 min, each delay drawn between
//! half of it and all of it (jitter, so receivers that failed together are not hit together
//! again); a retry that would start more than an hour after the first attempt is not made, and
//! the delivery is given up (counted). At most [`MAX_IN_FLIGHT`] attempts per receiver at
//! once.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// Pending deliveries kept, all receivers together. Bound: this many; pruning: the oldest
/// (first enqueued) goes when a new one comes, counted as dropped. A receiver that is down
/// for an hour at thousands of events a minute loses its oldest events, and memory and the
/// database stay bounded.
pub(crate) const MAX_PENDING: usize = 10_000;

/// Attempts in progress per receiver: a receiver that hangs holds this many connections for
/// the attempt timeout, and the others go on.
pub(crate) const MAX_IN_FLIGHT: usize = 4;

/// The first retry's delay, before jitter.
pub(crate) const FIRST_DELAY_MS: i64 = 1_000;

/// The longest delay between attempts, before jitter.
pub(crate) const MAX_DELAY_MS: i64 = 5 * 60 * 1_000;

/// How long after its first attempt a delivery may still be attempted.
pub(crate) const GIVE_UP_AFTER_MS: i64 = 60 * 60 * 1_000;

/// One event for one receiver, as kept (and stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Unique on this node, increasing: the order deliveries were enqueued in.
    pub id: u64,
    /// The key of its receiver (a digest of the URL, see `webhooks::shell`).
    pub endpoint: Arc<str>,
    /// The JSON body (its `id` is the event's).
    pub body: Arc<str>,
    /// When it was enqueued (ms since the Unix epoch).
    pub created_at: i64,
    /// When it was first attempted.
    pub first_attempt_at: Option<i64>,
    /// Attempts that failed.
    pub attempts: u32,
    /// When it is due.
    pub next_at: i64,
}

/// What the shell is to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Attempt this delivery now and report with [`Queue::attempted`].
    Send(Delivery),
    /// Store this delivery's row as it is now (new, or rescheduled).
    Save(Delivery),
    /// Remove this delivery's row (delivered, given up or pruned).
    Forget(u64),
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A 2xx answer.
    Delivered,
    /// Anything else: another status, a connection or TLS failure, a timeout.
    Failed,
}

/// What the queue did, since it was made (the shell adds these to the metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub delivered: u64,
    /// Attempts that failed (each retry counts).
    pub attempts_failed: u64,
    /// Deliveries given up after an hour.
    pub given_up: u64,
    /// Deliveries pruned because the queue was full.
    pub dropped: u64,
}

/// The delivery queue (see the module's documentation).
#[derive(Debug)]
pub(crate) struct Queue {
    /// Every pending delivery, by id (the oldest first).
    pending: BTreeMap<u64, Delivery>,
    /// Per receiver: the deliveries waiting for their time, by (due, id). A delivery in
    /// flight is in `pending` but in no schedule. Bound: the configured receivers.
    schedules: HashMap<Arc<str>, BTreeSet<(i64, u64)>>,
    /// Attempts in progress per receiver, with the ids in flight.
    in_flight: HashMap<Arc<str>, BTreeSet<u64>>,
    next_id: u64,
    rng: u64,
    actions: VecDeque<Action>,
    tally: Tally,
}

impl Queue {
    /// An empty queue; `seed` draws the jitter (any value; 0 is made 1).
    pub(crate) fn new(seed: u64) -> Queue {
        Queue {
            pending: BTreeMap::new(),
            schedules: HashMap::new(),
            in_flight: HashMap::new(),
            next_id: 1,
            rng: seed.max(1),
            actions: VecDeque::new(),
            tally: Tally::default(),
        }
    }

    /// Takes back what the store kept (at start, before anything else). Deliveries beyond
    /// the bound are pruned as [`Queue::enqueue`] would.
    pub(crate) fn restore(&mut self, stored: impl IntoIterator<Item = Delivery>) {
        let mut stored: Vec<Delivery> = stored.into_iter().collect();
        stored.sort_by_key(|d| d.id);
        for d in stored {
            self.next_id = self.next_id.max(d.id.saturating_add(1));
            self.make_room();
            self.schedule(d.endpoint.clone(), d.next_at, d.id);
            self.pending.insert(d.id, d);
        }
    }

    /// A new delivery of `body` to `endpoint`, due at once.
    pub(crate) fn enqueue(&mut self, now: i64, endpoint: Arc<str>, body: Arc<str>) -> u64 {
        self.make_room();
        let id = self.next_id;
        self.next_id += 1;
        let d = Delivery {
            id,
            endpoint: endpoint.clone(),
            body,
            created_at: now,
            first_attempt_at: None,
            attempts: 0,
            next_at: now,
        };
        self.schedule(endpoint, now, id);
        self.actions.push_back(Action::Save(d.clone()));
        self.pending.insert(id, d);
        id
    }

    /// How the attempt of delivery `id` ended. A delivery pruned meanwhile is not taken
    /// back, but its connection is over only now: its in-flight slot is given back here, not
    /// when it was pruned (else a receiver that hangs would get more than its share of
    /// connections, one batch more for every prune).
    pub(crate) fn attempted(&mut self, now: i64, id: u64, outcome: Outcome) {
        for set in self.in_flight.values_mut() {
            set.remove(&id);
        }
        let Some(d) = self.pending.get_mut(&id) else {
            return;
        };
        match outcome {
            Outcome::Delivered => {
                self.tally.delivered += 1;
                self.pending.remove(&id);
                self.actions.push_back(Action::Forget(id));
            }
            Outcome::Failed => {
                self.tally.attempts_failed += 1;
                d.attempts = d.attempts.saturating_add(1);
                let base = backoff(d.attempts);
                let delay = base / 2 + (next_random(&mut self.rng) % (base as u64 / 2 + 1)) as i64;
                let first = d.first_attempt_at.unwrap_or(now);
                let next_at = now.saturating_add(delay);
                if next_at > first.saturating_add(GIVE_UP_AFTER_MS) {
                    self.tally.given_up += 1;
                    self.pending.remove(&id);
                    self.actions.push_back(Action::Forget(id));
                } else {
                    d.next_at = next_at;
                    let (endpoint, saved) = (d.endpoint.clone(), d.clone());
                    self.actions.push_back(Action::Save(saved));
                    self.schedule(endpoint, next_at, id);
                }
            }
        }
    }

    /// The next thing to do at `now`: rows to save or forget first, then deliveries that
    /// are due, oldest due first across receivers with room for another attempt.
    pub(crate) fn poll_action(&mut self, now: i64) -> Option<Action> {
        if let Some(a) = self.actions.pop_front() {
            return Some(a);
        }
        let (endpoint, (_, id)) = self
            .schedules
            .iter()
            .filter(|(e, _)| self.flying(e) < MAX_IN_FLIGHT)
            .filter_map(|(e, s)| s.first().map(|head| (e, *head)))
            .filter(|(_, (due, _))| *due <= now)
            .min_by_key(|(_, head)| *head)
            .map(|(e, head)| (e.clone(), head))?;
        let schedule = self.schedules.get_mut(&endpoint)?;
        schedule.pop_first();
        let d = self.pending.get_mut(&id)?;
        d.first_attempt_at.get_or_insert(now);
        self.in_flight.entry(endpoint).or_default().insert(id);
        Some(Action::Send(d.clone()))
    }

    /// When the next delivery falls due (`None`: nothing waits, or only behind attempts in
    /// progress, whose results wake the shell anyway).
    pub(crate) fn poll_timeout(&self) -> Option<i64> {
        if !self.actions.is_empty() {
            return Some(i64::MIN);
        }
        self.schedules
            .iter()
            .filter(|(e, _)| self.flying(e) < MAX_IN_FLIGHT)
            .filter_map(|(_, s)| s.first().map(|(due, _)| *due))
            .min()
    }

    /// Pending deliveries (due, waiting or in flight).
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn tally(&self) -> Tally {
        self.tally
    }

    fn flying(&self, endpoint: &str) -> usize {
        self.in_flight.get(endpoint).map_or(0, BTreeSet::len)
    }

    fn schedule(&mut self, endpoint: Arc<str>, due: i64, id: u64) {
        self.schedules
            .entry(endpoint)
            .or_default()
            .insert((due, id));
    }

    /// Prunes the oldest deliveries until one more fits.
    fn make_room(&mut self) {
        while self.pending.len() >= MAX_PENDING {
            let Some((id, d)) = self.pending.pop_first() else {
                return;
            };
            if let Some(s) = self.schedules.get_mut(&d.endpoint) {
                s.remove(&(d.next_at, id));
            }
            // An attempt under way keeps its in-flight slot until it ends (`attempted`).
            self.tally.dropped += 1;
            self.actions.push_back(Action::Forget(id));
        }
    }
}

/// The delay before jitter after `attempts` failed attempts: 1 s, 2 s, 4 s, … 5 min.
pub(crate) fn backoff(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(20);
    (FIRST_DELAY_MS << doublings).min(MAX_DELAY_MS)
}

/// xorshift64: jitter needs spread, not secrecy.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
