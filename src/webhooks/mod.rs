//! Webhooks (`[[webhooks]]`): conference and participant events POSTed as signed JSON to the
//! receivers the configuration names, retried with back-off for up to an hour, from a bounded
//! queue kept in the database so that it survives a restart.
//!
//! The path of an event: a mixer thread (or the recorder) hands it to the [`WebhookTap`]
//! (`event.rs`: a bounded queue, dropped and counted when full, never waited on); a forwarder
//! thread moves it onto the runtime, where the webhook task (`shell.rs`) makes one body per
//! event, enqueues it once per receiver that asked for its kind in the sans-I/O delivery
//! queue (`queue.rs`), saves and forgets rows as the queue says (keeping those the store
//! refused to try again, `unsaved.rs`), and runs the attempts
//! (`http.rs`, signed by `sign.rs`), each on a task of its own with a deadline.

mod event;
mod http;
mod queue;
mod shell;
mod sign;
mod unsaved;

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use event::{EventKind, Occurrence, WebhookTap};
pub(crate) use shell::start;

/// What the webhook task did since the process started (for `/metrics`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Deliveries a receiver answered with 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed (non-2xx, no connection, a timeout); each retry counts.
    pub attempts_failed: AtomicU64,
    /// Deliveries given up after an hour of failed attempts.
    pub failed: AtomicU64,
    /// Deliveries pruned from the full queue (its oldest).
    pub dropped: AtomicU64,
    /// Deliveries pending now.
    pub queued: AtomicU64,
}

pub(crate) static COUNTERS: Counters = Counters {
    delivered: AtomicU64::new(0),
    attempts_failed: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
    queued: AtomicU64::new(0),
};

/// The figures `/metrics` shows: delivered, attempts failed, given up, pruned, events the
/// tap dropped, pending.
pub(crate) fn figures() -> [u64; 6] {
    let c = &COUNTERS;
    [
        c.delivered.load(Ordering::Relaxed),
        c.attempts_failed.load(Ordering::Relaxed),
        c.failed.load(Ordering::Relaxed),
        c.dropped.load(Ordering::Relaxed),
        event::TAP_DROPPED.load(Ordering::Relaxed),
        c.queued.load(Ordering::Relaxed),
    ]
}
