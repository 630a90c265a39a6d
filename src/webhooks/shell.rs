//! The webhook task: the tokio shell around the delivery queue. It owns the clock, the
//! database calls (on the blocking pool: the store is synchronous) and the attempts (a task
//! each). It runs apart from the mixer threads and the control path, which only ever
//! `try_send` to the tap.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::event::{self, EventKind, Occurrence, WebhookTap};
use super::queue::{Action, Delivery, Outcome, Queue, Tally};
use super::unsaved::Unsaved;
use super::{COUNTERS, http, sign};
use crate::config::{WebhookConfig, WebhookUrl};
use crate::store::{DeliveryChange, PendingDelivery, Store};

/// Occurrences taken from the tap per round before the queue is worked (a burst of events
/// is saved in one transaction, and attempts are not held up behind it for long).
const BATCH: usize = 256;

/// How a stored key begins: what follows is the hex SHA-256 of the receiver's URL.
const KEY_PREFIX: &str = "sha256:";

/// How the webhook task knows a receiver.
#[derive(Debug)]
struct Receiver {
    /// The key of its deliveries in the database and the queue: [`receiver_key`] of its URL,
    /// never the URL itself (its path or query may carry a token, which the database would
    /// then hold at rest).
    key: Arc<str>,
    url: WebhookUrl,
    secret: Vec<u8>,
    events: Vec<EventKind>,
}

impl Receiver {
    fn new(w: &WebhookConfig) -> anyhow::Result<Receiver> {
        let url = w
            .parsed_url()
            .map_err(|why| anyhow::anyhow!("webhook {}: {why}", w.url))?;
        Ok(Receiver {
            key: Arc::from(receiver_key(&w.url)),
            url,
            secret: w.secret.as_bytes().to_vec(),
            events: w
                .events
                .iter()
                .filter_map(|e| EventKind::parse(e))
                .collect(),
        })
    }

    /// The receiver for logs: its scheme, host and port, never its path (which may carry a
    /// token).
    fn shown(&self) -> String {
        let scheme = if self.url.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.url.host_header())
    }
}

/// Starts the webhook task (on the current runtime) for `webhooks`, taking what `tap` is told
/// from `occurrences` and keeping pending deliveries in `store`. Without webhooks nothing runs
/// but the removal of deliveries still stored (see [`forget_stored`]). Fails if a receiver
/// wants HTTPS and no CA bundle is usable.
pub(crate) fn start(
    webhooks: &[WebhookConfig],
    store: Store,
    tap: &WebhookTap,
    occurrences: std::sync::mpsc::Receiver<Occurrence>,
) -> anyhow::Result<()> {
    if webhooks.is_empty() {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || forget_stored(&store));
        }
        return Ok(());
    }
    let mut receivers = Vec::with_capacity(webhooks.len());
    for w in webhooks {
        receivers.push(Arc::new(Receiver::new(w)?));
    }
    let tls = if receivers.iter().any(|r| r.url.tls) {
        Some(crate::tls::client_config(None).map_err(|e| {
            anyhow::anyhow!("webhooks: an https receiver needs the system's CA bundle: {e}")
        })?)
    } else {
        None
    };
    let (tx, rx) = mpsc::channel(event::TAP_QUEUE);
    std::thread::Builder::new()
        .name("confab-webhook-events".into())
        .spawn(move || {
            // Waits for room: back-pressure reaches the tap's queue, which drops and counts.
            while let Ok(o) = occurrences.recv() {
                if tx.blocking_send(o).is_err() {
                    return;
                }
            }
        })?;
    tap.open();
    tokio::spawn(Shell::new(receivers, tls, store).run(rx));
    Ok(())
}

/// Removes the deliveries stored for receivers when none is configured any more, as the
/// webhook task does for each receiver no longer configured: rows an older version wrote hold
/// a receiver's plain URL, which is not to stay in the database. Tried once per start (a
/// failure is logged; the next start tries again).
fn forget_stored(store: &Store) {
    let forgotten = store.pending_deliveries().and_then(|rows| {
        let changes: Vec<_> = rows.iter().map(|r| DeliveryChange::Forget(r.id)).collect();
        store.apply_deliveries(&changes).map(|()| changes.len())
    });
    match forgotten {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            deliveries = n,
            "webhooks: pending deliveries dropped (no receiver is configured)"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "webhooks: pending deliveries of removed receivers not dropped");
        }
    }
}

/// The key a receiver's deliveries are stored under: `sha256:` and the hex SHA-256 of its URL
/// as configured. It tells receivers apart across a restart without the URL at rest.
fn receiver_key(url: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, url.as_bytes());
    format!("{KEY_PREFIX}{}", sign::hex(digest.as_ref()))
}

/// The key of a stored row's `endpoint`: itself, or, in a row written before keys were stored
/// (whose endpoint is the plain URL), the key of that URL.
fn stored_key(endpoint: &str) -> String {
    if endpoint.starts_with(KEY_PREFIX) {
        endpoint.to_owned()
    } else {
        receiver_key(endpoint)
    }
}

struct Shell {
    receivers: Vec<Arc<Receiver>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    store: Store,
    queue: Queue,
    /// The queue's tally as last added to the metrics.
    reported: Tally,
    /// Changes the store refused, tried again ahead of the next ones (bound and pruning:
    /// `unsaved::MAX_UNSAVED`).
    unsaved: Unsaved,
    /// When the kept changes are tried again if nothing new comes first.
    retry_at: Option<i64>,
    /// `unsaved.dropped()` as last logged.
    reported_unsaved_dropped: u64,
}

impl Shell {
    fn new(
        receivers: Vec<Arc<Receiver>>,
        tls: Option<Arc<rustls::ClientConfig>>,
        store: Store,
    ) -> Shell {
        Shell {
            receivers,
            tls,
            store,
            queue: Queue::new(seed()),
            reported: Tally::default(),
            unsaved: Unsaved::default(),
            retry_at: None,
            reported_unsaved_dropped: 0,
        }
    }

    async fn run(mut self, mut occurrences: mpsc::Receiver<Occurrence>) {
        self.restore().await;
        let by_key: HashMap<Arc<str>, Arc<Receiver>> = self
            .receivers
            .iter()
            .map(|r| (Arc::clone(&r.key), Arc::clone(r)))
            .collect();
        let (done_tx, mut done) = mpsc::unbounded_channel::<(u64, Outcome)>();
        loop {
            let sends = self.work(now_ms()).await;
            for d in sends {
                let receiver = by_key.get(&d.endpoint).cloned();
                let (tls, done) = (self.tls.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let outcome = match receiver {
                        Some(r) => attempt(&r, tls.as_ref(), &d).await,
                        None => Outcome::Failed,
                    };
                    let _ = done.send((d.id, outcome));
                });
            }
            self.report();
            // The queue's next due time, or the retry of changes the store refused.
            let wake = match (self.queue.poll_timeout(), self.retry_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let wait = wake.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64)
            });
            tokio::select! {
                o = occurrences.recv() => {
                    let Some(o) = o else { return };
                    self.take(&o);
                    for _ in 1..BATCH {
                        match occurrences.try_recv() {
                            Ok(o) => self.take(&o),
                            Err(_) => break,
                        }
                    }
                }
                Some((id, outcome)) = done.recv() => self.queue.attempted(now_ms(), id, outcome),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Does what the queue asks at `now`: applies its row changes (and those kept from a
    /// failure before), and returns the deliveries to attempt.
    async fn work(&mut self, now: i64) -> Vec<Delivery> {
        let mut changes = Vec::new();
        let mut sends = Vec::new();
        while let Some(action) = self.queue.poll_action(now) {
            match action {
                Action::Save(d) => changes.push(DeliveryChange::Save(row(&d))),
                Action::Forget(id) => changes.push(DeliveryChange::Forget(id as i64)),
                Action::Send(d) => sends.push(d),
            }
        }
        // Rows first: a delivery is stored before it is attempted.
        self.persist(now, changes).await;
        sends
    }

    /// Takes back the deliveries the store kept; those of receivers no longer configured are
    /// forgotten.
    async fn restore(&mut self) {
        // Until the rows are read the queue must not make new ids: they would be those of rows
        // still stored (a database down at start). Events meanwhile wait in the tap, which
        // drops and counts past its bound.
        let mut wait = Duration::from_secs(1);
        let rows = loop {
            let store = self.store.clone();
            match tokio::task::spawn_blocking(move || store.pending_deliveries()).await {
                Ok(Ok(rows)) => break rows,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, retry_in = ?wait, "webhooks: pending deliveries not read back");
                }
                Err(_) => return,
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(60));
        };
        let (mut known, mut gone, mut adopted) = (Vec::new(), Vec::new(), Vec::new());
        for mut r in rows {
            let key = stored_key(&r.endpoint);
            if !self.receivers.iter().any(|x| *x.key == *key) {
                gone.push(DeliveryChange::Forget(r.id));
                continue;
            }
            if r.endpoint != key {
                // Written before keys were stored: saved again under its key (a save rewrites
                // the endpoint), so the plain URL leaves the database now.
                r.endpoint = key;
                adopted.push(DeliveryChange::Save(r.clone()));
            }
            known.push(r);
        }
        if !gone.is_empty() {
            tracing::info!(
                deliveries = gone.len(),
                "webhooks: pending deliveries to receivers no longer configured dropped"
            );
        }
        if !adopted.is_empty() {
            tracing::info!(
                deliveries = adopted.len(),
                "webhooks: pending deliveries stored with their receiver's URL saved under its key"
            );
        }
        gone.append(&mut adopted);
        self.persist(now_ms(), gone).await;
        if !known.is_empty() {
            tracing::info!(
                deliveries = known.len(),
                "webhooks: pending deliveries taken back"
            );
        }
        self.queue.restore(known.into_iter().map(|r| Delivery {
            id: r.id.max(0) as u64,
            endpoint: Arc::from(r.endpoint.as_str()),
            body: Arc::from(r.body.as_str()),
            created_at: r.created_at,
            first_attempt_at: r.first_attempt_at,
            attempts: u32::try_from(r.attempts.max(0)).unwrap_or(u32::MAX),
            next_at: r.next_at,
        }));
    }

    /// Makes an occurrence's body and enqueues it for each receiver that asked for it.
    fn take(&mut self, o: &Occurrence) {
        let Some((kind, body)) = event::body(o, &event_id(o.at_ms)) else {
            return;
        };
        // Mutes are the one event a caller makes at will (`*6` over and over): past half the
        // queue they are let go (counted), so that they cannot push out the events of every
        // other meeting while a receiver is down.
        if kind == EventKind::ParticipantMuted && self.queue.len() >= super::queue::MAX_PENDING / 2
        {
            event::TAP_DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let body: Arc<str> = Arc::from(body);
        let now = now_ms();
        for r in self.receivers.iter().filter(|r| r.events.contains(&kind)) {
            self.queue
                .enqueue(now, Arc::clone(&r.key), Arc::clone(&body));
        }
    }

    /// Applies the changes kept from a failure, then `changes`, in one transaction; if the
    /// store refuses them they are all kept for the next try. With nothing new, kept changes
    /// are tried only once their retry is due (a store that is down is not asked at every
    /// attempt's end).
    async fn persist(&mut self, now: i64, changes: Vec<DeliveryChange>) {
        let due = self.retry_at.is_none_or(|at| now >= at);
        if changes.is_empty() && (self.unsaved.len() == 0 || !due) {
            return;
        }
        let mut batch = self.unsaved.take();
        batch.extend(changes);
        // Shared with the blocking task, so that the batch is still here to keep when the
        // task fails, even by a panic (its copy is dropped by then).
        let batch = Arc::new(batch);
        let (store, theirs) = (self.store.clone(), Arc::clone(&batch));
        let applied = tokio::task::spawn_blocking(move || store.apply_deliveries(&theirs)).await;
        let error = match applied {
            Ok(Ok(())) => {
                self.unsaved.saved();
                self.retry_at = None;
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        let batch = Arc::try_unwrap(batch).unwrap_or_else(|still_shared| (*still_shared).clone());
        self.unsaved.failed(batch);
        let retry_in = self.unsaved.retry_in_ms().unwrap_or(0);
        // From when the failure is known: a locked SQLite answers after its busy timeout, and
        // a retry counted from before it would be due at once.
        let failed_at = now.max(now_ms());
        self.retry_at = Some(failed_at.saturating_add(i64::try_from(retry_in).unwrap_or(i64::MAX)));
        // Counted in confab_storage_errors_total; the deliveries go on from memory.
        tracing::warn!(
            error = %error,
            kept = self.unsaved.len(),
            retry_in_ms = retry_in,
            "webhooks: pending deliveries not saved; the changes are kept and tried again"
        );
        let dropped = self.unsaved.dropped();
        if dropped > self.reported_unsaved_dropped {
            tracing::warn!(
                changes = dropped - self.reported_unsaved_dropped,
                "webhooks: too many changes left unsaved; the oldest were dropped"
            );
            self.reported_unsaved_dropped = dropped;
        }
    }

    /// Adds what the queue did since the last report to the metrics.
    fn report(&mut self) {
        let now = self.queue.tally();
        let was = std::mem::replace(&mut self.reported, now);
        let add = |c: &std::sync::atomic::AtomicU64, n: u64, m: u64| {
            c.fetch_add(n.saturating_sub(m), Ordering::Relaxed);
        };
        add(&COUNTERS.delivered, now.delivered, was.delivered);
        add(
            &COUNTERS.attempts_failed,
            now.attempts_failed,
            was.attempts_failed,
        );
        add(&COUNTERS.failed, now.given_up, was.given_up);
        add(&COUNTERS.dropped, now.dropped, was.dropped);
        if now.given_up > was.given_up {
            tracing::warn!(
                deliveries = now.given_up - was.given_up,
                "webhooks: deliveries given up after an hour of failed attempts"
            );
        }
        if now.dropped > was.dropped {
            tracing::warn!(
                deliveries = now.dropped - was.dropped,
                "webhooks: the queue is full; its oldest deliveries were dropped"
            );
        }
        COUNTERS
            .queued
            .store(self.queue.len() as u64, Ordering::Relaxed);
    }
}

/// One attempt of `d` to `r`: signed with the attempt's time, answered 2xx or failed.
async fn attempt(r: &Receiver, tls: Option<&Arc<rustls::ClientConfig>>, d: &Delivery) -> Outcome {
    let t = now_ms().div_euclid(1000);
    let signature = sign::signature(&r.secret, t, d.body.as_bytes());
    let result = http::post(
        &r.url,
        tls,
        &[(sign::HEADER, &signature)],
        d.body.as_bytes(),
        http::ATTEMPT_TIMEOUT,
    )
    .await;
    match result {
        Ok(status) if (200..300).contains(&status) => Outcome::Delivered,
        Ok(status) => {
            tracing::debug!(receiver = %r.shown(), status, attempt = d.attempts + 1, "webhook refused");
            Outcome::Failed
        }
        Err(e) => {
            tracing::debug!(receiver = %r.shown(), error = %e, attempt = d.attempts + 1, "webhook attempt failed");
            Outcome::Failed
        }
    }
}

fn row(d: &Delivery) -> PendingDelivery {
    PendingDelivery {
        id: i64::try_from(d.id).unwrap_or(i64::MAX),
        endpoint: d.endpoint.to_string(),
        body: d.body.to_string(),
        created_at: d.created_at,
        first_attempt_at: d.first_attempt_at,
        attempts: i64::from(d.attempts),
        next_at: d.next_at,
    }
}

fn now_ms() -> i64 {
    crate::store::unix_ms(SystemTime::now())
}

/// An event's id: 128 random bits in hex (unique, so a receiver can drop a repeat).
fn event_id(at_ms: i64) -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No randomness (never seen): the time and a count are unique on this node still.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        b[..8].copy_from_slice(&at_ms.to_be_bytes());
        b[8..].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    }
    sign::hex(&b)
}

/// The jitter's seed.
fn seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b) ^ now_ms() as u64
}

#[cfg(test)]
#[path = "shell_tests.rs"]
mod tests;
