//! Call records: one row per participant leg. The mixer threads send [`RecordEvent`]s down an
//! unbounded channel (a send never blocks a tick, and none is lost); one writer thread owns its
//! own connection (a [`RecordSink`] of either database) and writes them in transactions of
//! whatever has queued up. When the database refuses (disk full, locked by another process,
//! PostgreSQL down), the calls go on, the failure is counted, and the events are kept (up to a
//! bound) and written once it takes them again.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::StoreError;
use super::conference_records::{ConferenceFacts, ConferenceRecord};
use crate::conference::{DisconnectReason, ParticipantId, Role};
use crate::media::leg::LegStats;

/// A call record as stored and as the API shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    pub id: i64,
    pub conference: String,
    pub participant: String,
    pub display_name: String,
    pub uri: String,
    pub role: String,
    pub transport: String,
    pub codec: Option<String>,
    pub srtp: bool,
    /// Milliseconds since the Unix epoch.
    pub joined_at: i64,
    pub left_at: Option<i64>,
    pub reason: Option<String>,
    pub sip_status: Option<u16>,
    pub packets_in: u64,
    pub packets_out: u64,
    pub packets_lost: i64,
    pub jitter_ms: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub mos: Option<f64>,
    /// The far end's software (SIP User-Agent or Server, WHIP's HTTP User-Agent), cleaned.
    pub user_agent: Option<String>,
    /// The far end's address as the bridge saw it (`ip:port`).
    pub remote: Option<String>,
}

/// The longest User-Agent a record keeps (bytes, cut at a char boundary).
pub const MAX_USER_AGENT: usize = 256;

/// Where a leg comes from, as its call record shows it: values from the network, so cleaned of
/// control characters and bounded before they are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub user_agent: Option<String>,
    pub remote: Option<String>,
}

impl Origin {
    /// The origin of a leg whose far end calls itself `user_agent` (any text from the
    /// network) and was seen at `remote`.
    pub fn new(user_agent: Option<&str>, remote: Option<std::net::SocketAddr>) -> Origin {
        Origin {
            user_agent: user_agent
                .map(|ua| crate::conference::clean_text(ua, MAX_USER_AGENT))
                .filter(|ua| !ua.is_empty()),
            remote: remote.map(|a| a.to_string()),
        }
    }

    /// This origin, the far end now calling itself `user_agent` (a dial-out's answer).
    pub fn answered_by(self, user_agent: Option<&str>) -> Origin {
        Origin {
            user_agent: Origin::new(user_agent, None).user_agent,
            ..self
        }
    }
}

/// What a conference knows of a leg when it joins or leaves: the writer makes the row of it
/// (so the mixer's tick neither builds rows nor reads the wall clock).
#[derive(Clone, Debug)]
pub struct LegFacts {
    pub conference: String,
    pub display_name: String,
    pub uri: String,
    pub role: Role,
    /// The leg's figures (none for a join refused before it had a leg).
    pub stats: Option<LegStats>,
    /// Why it left, once it has.
    pub reason: Option<DisconnectReason>,
    pub sip_status: Option<u16>,
    /// When, on the mixer's clock.
    pub at: Instant,
    /// Where the leg comes from, if known.
    pub origin: Option<std::sync::Arc<Origin>>,
}

impl LegFacts {
    /// The row of these facts, stamped `at_ms` (ms since the Unix epoch) as the time of
    /// joining (and of leaving, for a closing row).
    pub fn row(&self, at_ms: i64, closing: bool) -> Record {
        let stats = self.stats;
        let srtp = stats.is_some_and(|s| s.srtp);
        Record {
            conference: self.conference.clone(),
            participant: String::new(),
            display_name: self.display_name.clone(),
            uri: self.uri.clone(),
            role: match self.role {
                Role::Leader => "leader".into(),
                Role::Attendee => "attendee".into(),
            },
            transport: match (stats.is_some_and(|s| s.webrtc), srtp) {
                (true, _) => "webrtc",
                (false, true) => "srtp",
                (false, false) => "rtp",
            }
            .into(),
            codec: stats.and_then(|s| s.codec).map(|c| c.name().to_owned()),
            srtp,
            joined_at: at_ms,
            left_at: closing.then_some(at_ms),
            reason: self.reason.map(|r| r.as_str().to_owned()),
            sip_status: self.sip_status,
            packets_in: stats.map_or(0, |s| s.packets_in),
            packets_out: stats.map_or(0, |s| s.packets_out),
            packets_lost: stats.map_or(0, |s| s.packets_lost),
            jitter_ms: stats.map(|s| s.jitter_ms),
            rtt_ms: stats.and_then(|s| s.rtt_ms),
            mos: stats.filter(|s| s.packets_in > 0).map(|s| s.mos),
            user_agent: self.origin.as_ref().and_then(|o| o.user_agent.clone()),
            remote: self.origin.as_ref().and_then(|o| o.remote.clone()),
            id: 0,
        }
    }
}

/// The wall-clock time of an instant on the mixers' clock, from one reading of both clocks.
#[derive(Clone, Copy, Debug)]
struct Anchor {
    instant: Instant,
    wall: SystemTime,
}

impl Anchor {
    fn now() -> Self {
        Anchor {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn unix_ms(&self, at: Instant) -> i64 {
        let wall = match at.checked_duration_since(self.instant) {
            Some(after) => self.wall + after,
            None => self.wall - self.instant.saturating_duration_since(at),
        };
        super::unix_ms(wall)
    }
}

/// What happened to a leg, for its record.
#[derive(Clone, Debug)]
pub enum RecordEvent {
    /// A leg joined (`open`) or left: the facts the writer makes its row of.
    Leg {
        participant: ParticipantId,
        open: bool,
        facts: Box<LegFacts>,
    },
    /// A leg joined: its record opens (`id`, `left_at` and the figures are not used).
    Open {
        participant: ParticipantId,
        record: Box<Record>,
    },
    /// The leg left: the record closes with the final figures (`left_at`, `reason`, ...).
    Close {
        participant: ParticipantId,
        record: Box<Record>,
    },
    /// Where a participant's call goes, before it has a leg (a dial-out): its record shows it
    /// even when the call is never answered.
    Origin {
        participant: ParticipantId,
        origin: Box<Origin>,
    },
    /// A conference started or ended on this node.
    Conference(Box<ConferenceFacts>),
    /// A conference session's row: opened when `ended_at` is none, else closed.
    Session(Box<ConferenceRecord>),
    /// Answer once everything sent before is written.
    Flush(Sender<()>),
    /// Test-only: run SQL on the writer's own connection (to fill its disk, or free it).
    #[cfg(test)]
    Sql(String),
}

/// Which records to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordFilter {
    pub conference: Option<String>,
    /// The participant's URI, exactly (legs' records only).
    pub uri: Option<String>,
    /// Joined at or after (ms since the epoch).
    pub since: Option<i64>,
    /// Joined before.
    pub until: Option<i64>,
    pub limit: usize,
    pub offset: usize,
}

/// The most records one query lists.
pub(super) const MAX_PAGE: usize = 10_000;

/// A failed write, and whether it may succeed later as it is (the disk, a lock, the connection)
/// or never will (a record the database refuses).
#[derive(Debug)]
pub(crate) struct WriteError {
    pub passing: bool,
    pub message: String,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The record writer's own connection to either database.
pub(crate) trait RecordSink: Send {
    /// Runs `write` in one transaction, committed only if it returns `Ok`.
    fn transaction(
        &mut self,
        write: &mut dyn FnMut(&mut dyn RecordTx) -> Result<(), WriteError>,
    ) -> Result<(), WriteError>;

    /// Test-only: runs SQL on this connection (to fill its disk, or free it).
    #[cfg(test)]
    fn execute_test_sql(&mut self, sql: &str);
}

/// The writes of one transaction.
pub(crate) trait RecordTx {
    /// Inserts an open record; returns its id.
    fn insert(&mut self, r: &Record) -> Result<i64, WriteError>;
    /// Closes record `id` with the final figures of `r`.
    fn close(&mut self, id: i64, r: &Record) -> Result<(), WriteError>;
    /// Inserts an open conference session; returns its id.
    fn open_session(&mut self, r: &ConferenceRecord) -> Result<i64, WriteError>;
    /// Closes session `id` with the end of `r`.
    fn close_session(&mut self, id: i64, r: &ConferenceRecord) -> Result<(), WriteError>;
}

/// The writer thread and the way to it.
#[derive(Debug)]
pub struct RecordWriter {
    pub sender: Sender<RecordEvent>,
    thread: Option<JoinHandle<()>>,
}

/// Events kept while the database refuses them (disk full, database locked), to be written
/// once it takes them again. Bound: this many; past it the oldest are dropped (counted as
/// storage errors), so a disk that never comes back cannot take the bridge's memory.
const MAX_BACKLOG: usize = 100_000;

/// How the writer waits for a database that refuses writes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Patience {
    /// How long one write waits for a lock held elsewhere.
    pub busy: Duration,
    /// The first pause before writing the backlog again; it doubles up to `max_retry`.
    pub retry: Duration,
    pub max_retry: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Patience {
            busy: Duration::from_secs(5),
            retry: Duration::from_millis(500),
            max_retry: Duration::from_secs(30),
        }
    }
}

impl RecordWriter {
    pub(super) fn start(
        sink: Box<dyn RecordSink>,
        patience: Patience,
    ) -> Result<RecordWriter, StoreError> {
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("confab-records".into())
            .spawn(move || write_loop(sink, receiver, patience))
            .map_err(StoreError::Thread)?;
        Ok(RecordWriter {
            sender,
            thread: Some(thread),
        })
    }

    /// Waits until everything sent so far is written, or one attempt to write it failed (a
    /// full disk does not hold up a shutdown; what is kept is tried again while the writer
    /// runs, and a record left open is closed as `abandoned` at the next start).
    pub fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.sender.send(RecordEvent::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

impl Drop for RecordWriter {
    fn drop(&mut self) {
        self.flush();
        // The thread ends when every sender is gone; the engine may still hold one, so it is
        // not joined here (all that was sent is written by the flush above).
        drop(self.thread.take());
    }
}

fn write_loop(mut sink: Box<dyn RecordSink>, events: Receiver<RecordEvent>, patience: Patience) {
    // Records open in the database. Bound: the participants and conferences present (each
    // record closes when its leg leaves or its conference ends).
    let mut open = Open::default();
    let mut backlog: VecDeque<RecordEvent> = VecDeque::new();
    let anchor = Anchor::now();
    // Origins of calls not answered yet. Bound: the dial-outs ringing (each ends in a record
    // that takes it out).
    let mut origins: HashMap<ParticipantId, Origin> = HashMap::new();
    let mut flushes = Vec::new();
    let mut retry = patience.retry;
    // After a failure, when to try again (events keep queueing meanwhile).
    let mut next_attempt: Option<Instant> = None;
    loop {
        // With nothing kept, wait for the next event; with a backlog, wait no longer than
        // the pause before trying it again.
        let next = match next_attempt {
            None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(t) => events.recv_timeout(t.saturating_duration_since(Instant::now())),
        };
        let last = match next {
            Ok(event) => {
                for event in std::iter::once(event).chain(events.try_iter().take(4096)) {
                    #[cfg(test)]
                    let event = match event {
                        RecordEvent::Sql(sql) => {
                            sink.execute_test_sql(&sql);
                            continue;
                        }
                        event => event,
                    };
                    take(event, anchor, &mut origins, &mut backlog, &mut flushes);
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        // A flush (shutdown among others) tries at once, whatever the back-off.
        let due = next_attempt.is_none_or(|t| Instant::now() >= t) || !flushes.is_empty();
        if !backlog.is_empty() && (due || last) {
            match write(sink.as_mut(), &mut open, &backlog) {
                Ok(()) => {
                    if next_attempt.is_some() {
                        tracing::info!(events = backlog.len(), "call records written again");
                    }
                    backlog.clear();
                    retry = patience.retry;
                    next_attempt = None;
                }
                Err(e) if !e.passing => {
                    // Not the disk or a lock: an event the database will never take. Each is
                    // written on its own and the ones refused are dropped (counted), so one
                    // bad record cannot hold back every later one.
                    tracing::error!(error = %e, "a call record was refused; writing one by one");
                    for event in backlog.drain(..) {
                        let one = VecDeque::from([event]);
                        if write(sink.as_mut(), &mut open, &one).is_err() {
                            super::count_error();
                        }
                    }
                }
                Err(e) => {
                    super::count_error();
                    tracing::error!(error = %e, kept = backlog.len(), "call records could not be written; kept to try again");
                    next_attempt = Some(Instant::now() + retry);
                    retry = (retry * 2).min(patience.max_retry);
                }
            }
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        if last {
            return;
        }
    }
}

/// Queues an event for the next write (a flush is answered after it); a leg's facts become
/// its row here, stamped with the wall-clock time of when they happened.
fn take(
    event: RecordEvent,
    anchor: Anchor,
    origins: &mut HashMap<ParticipantId, Origin>,
    backlog: &mut VecDeque<RecordEvent>,
    flushes: &mut Vec<Sender<()>>,
) {
    let event = match event {
        RecordEvent::Origin {
            participant,
            origin,
        } => {
            origins.insert(participant, *origin);
            return;
        }
        RecordEvent::Leg {
            participant,
            open,
            facts,
        } => {
            let mut record = Box::new(facts.row(anchor.unix_ms(facts.at), !open));
            record.participant = participant.to_string();
            let known = if open {
                origins.get(&participant).cloned()
            } else {
                origins.remove(&participant)
            };
            if let Some(known) = known {
                record.user_agent = record.user_agent.take().or(known.user_agent);
                record.remote = record.remote.take().or(known.remote);
            }
            if open {
                RecordEvent::Open {
                    participant,
                    record,
                }
            } else {
                RecordEvent::Close {
                    participant,
                    record,
                }
            }
        }
        RecordEvent::Conference(facts) => {
            RecordEvent::Session(Box::new(facts.row(anchor.unix_ms(facts.at))))
        }
        event => event,
    };
    match event {
        RecordEvent::Flush(done) => flushes.push(done),
        event => {
            if backlog.len() >= MAX_BACKLOG {
                backlog.pop_front();
                super::count_error();
            }
            backlog.push_back(event);
        }
    }
}

/// The records open in the database: legs' by participant, sessions by conference.
#[derive(Default)]
struct Open {
    legs: HashMap<ParticipantId, i64>,
    sessions: HashMap<String, i64>,
}

/// What one transaction opened (Some) and closed (None), over [`Open`].
#[derive(Default)]
struct Changed {
    legs: HashMap<ParticipantId, Option<i64>>,
    sessions: HashMap<String, Option<i64>>,
}

/// Writes the backlog in one transaction; `open` follows only if it commits.
fn write(
    sink: &mut dyn RecordSink,
    open: &mut Open,
    backlog: &VecDeque<RecordEvent>,
) -> Result<(), WriteError> {
    let mut changed = Changed::default();
    sink.transaction(&mut |tx| {
        changed = Changed::default();
        for event in backlog {
            match event {
                RecordEvent::Open {
                    participant,
                    record,
                } => {
                    let id = tx.insert(record)?;
                    changed.legs.insert(*participant, Some(id));
                }
                RecordEvent::Close {
                    participant,
                    record,
                } => {
                    let id = match changed.legs.get(participant) {
                        Some(known) => *known,
                        None => open.legs.get(participant).copied(),
                    };
                    match id {
                        Some(id) => tx.close(id, record)?,
                        // Never opened (a refused join): one closed row.
                        None => {
                            let id = tx.insert(record)?;
                            tx.close(id, record)?;
                        }
                    }
                    changed.legs.insert(*participant, None);
                }
                RecordEvent::Session(record) => write_session(tx, open, &mut changed, record)?,
                RecordEvent::Flush(_)
                | RecordEvent::Leg { .. }
                | RecordEvent::Origin { .. }
                | RecordEvent::Conference(_) => {}
                #[cfg(test)]
                RecordEvent::Sql(_) => {}
            }
        }
        Ok(())
    })?;
    for (participant, id) in changed.legs {
        match id {
            Some(id) => open.legs.insert(participant, id),
            None => open.legs.remove(&participant),
        };
    }
    for (conference, id) in changed.sessions {
        match id {
            Some(id) => open.sessions.insert(conference, id),
            None => open.sessions.remove(&conference),
        };
    }
    Ok(())
}

/// Opens or closes a conference session's row.
fn write_session(
    tx: &mut dyn RecordTx,
    open: &Open,
    changed: &mut Changed,
    record: &ConferenceRecord,
) -> Result<(), WriteError> {
    let known = match changed.sessions.get(&record.conference) {
        Some(known) => *known,
        None => open.sessions.get(&record.conference).copied(),
    };
    match (record.ended_at, known) {
        (None, _) => {
            // A conference started again under the same id while one was open (it cannot
            // be, but then the old one ended here).
            if let Some(old) = known {
                tx.close_session(
                    old,
                    &ConferenceRecord {
                        ended_at: Some(record.started_at),
                        reason: Some("ended".into()),
                        ..record.clone()
                    },
                )?;
            }
            let id = tx.open_session(record)?;
            changed.sessions.insert(record.conference.clone(), Some(id));
        }
        (Some(_), Some(id)) => {
            tx.close_session(id, record)?;
            changed.sessions.insert(record.conference.clone(), None);
        }
        // Its start was never written (the writer started after it): nothing to close.
        (Some(_), None) => {}
    }
    Ok(())
}
