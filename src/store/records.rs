//! Call records: one row per participant leg. The mixer threads send [`RecordEvent`]s down an
//! unbounded channel (a send never blocks a tick, and none is lost); one writer thread owns its
//! own connection and writes them in transactions of whatever has queued up. When the database
//! refuses (disk full, locked by another process), the calls go on, the failure is counted, and
//! the events are kept (up to a bound) and written once it takes them again.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, params};

use super::StoreError;
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
    /// Joined at or after (ms since the epoch).
    pub since: Option<i64>,
    /// Joined before.
    pub until: Option<i64>,
    pub limit: usize,
    pub offset: usize,
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
    pub(super) fn start(path: &Path) -> Result<RecordWriter, StoreError> {
        Self::start_with(path, Patience::default())
    }

    pub(super) fn start_with(path: &Path, patience: Patience) -> Result<RecordWriter, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        conn.busy_timeout(patience.busy)?;
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("confab-records".into())
            .spawn(move || write_loop(conn, receiver, patience))
            .map_err(|e| StoreError::Directory {
                path: path.to_owned(),
                source: e,
            })?;
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

fn write_loop(conn: Connection, events: Receiver<RecordEvent>, patience: Patience) {
    // Records open in the database, by participant. Bound: the participants present (each
    // record closes when its leg leaves).
    let mut open: HashMap<ParticipantId, i64> = HashMap::new();
    let mut backlog: VecDeque<RecordEvent> = VecDeque::new();
    let anchor = Anchor::now();
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
                            let _ = conn.execute_batch(&sql);
                            continue;
                        }
                        event => event,
                    };
                    take(event, anchor, &mut backlog, &mut flushes);
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        // A flush (shutdown among others) tries at once, whatever the back-off.
        let due = next_attempt.is_none_or(|t| Instant::now() >= t) || !flushes.is_empty();
        if !backlog.is_empty() && (due || last) {
            match write(&conn, &mut open, &backlog) {
                Ok(()) => {
                    if next_attempt.is_some() {
                        tracing::info!(events = backlog.len(), "call records written again");
                    }
                    backlog.clear();
                    retry = patience.retry;
                    next_attempt = None;
                }
                Err(e) if !passing(&e) => {
                    // Not the disk or a lock: an event the database will never take. Each is
                    // written on its own and the ones refused are dropped (counted), so one
                    // bad record cannot hold back every later one.
                    tracing::error!(error = %e, "a call record was refused; writing one by one");
                    for event in backlog.drain(..) {
                        let one = VecDeque::from([event]);
                        if write(&conn, &mut open, &one).is_err() {
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

/// Whether a failed write may succeed later as it is: the disk is full, the database is
/// locked or busy, or the file could not be read or written.
fn passing(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{
        CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, OutOfMemory, SystemIoFailure,
    };
    matches!(
        e.sqlite_error_code(),
        Some(DatabaseBusy | DatabaseLocked | DiskFull | SystemIoFailure | CannotOpen | OutOfMemory)
    )
}

/// Queues an event for the next write (a flush is answered after it); a leg's facts become
/// its row here, stamped with the wall-clock time of when they happened.
fn take(
    event: RecordEvent,
    anchor: Anchor,
    backlog: &mut VecDeque<RecordEvent>,
    flushes: &mut Vec<Sender<()>>,
) {
    let event = match event {
        RecordEvent::Leg {
            participant,
            open,
            facts,
        } => {
            let mut record = Box::new(facts.row(anchor.unix_ms(facts.at), !open));
            record.participant = participant.to_string();
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

/// Writes the backlog in one transaction; `open` follows only if it commits.
fn write(
    conn: &Connection,
    open: &mut HashMap<ParticipantId, i64>,
    backlog: &VecDeque<RecordEvent>,
) -> rusqlite::Result<()> {
    // What this transaction opened (Some) and closed (None), over `open`.
    let mut changed: HashMap<ParticipantId, Option<i64>> = HashMap::new();
    let tx = conn.unchecked_transaction()?;
    for event in backlog {
        match event {
            RecordEvent::Open {
                participant,
                record,
            } => {
                let id = insert(&tx, record)?;
                changed.insert(*participant, Some(id));
            }
            RecordEvent::Close {
                participant,
                record,
            } => {
                let id = match changed.get(participant) {
                    Some(known) => *known,
                    None => open.get(participant).copied(),
                };
                match id {
                    Some(id) => close(&tx, id, record)?,
                    // Never opened (a refused join): one closed row.
                    None => {
                        let id = insert(&tx, record)?;
                        close(&tx, id, record)?;
                    }
                }
                changed.insert(*participant, None);
            }
            RecordEvent::Flush(_) | RecordEvent::Leg { .. } => {}
            #[cfg(test)]
            RecordEvent::Sql(_) => {}
        }
    }
    tx.commit()?;
    for (participant, id) in changed {
        match id {
            Some(id) => open.insert(participant, id),
            None => open.remove(&participant),
        };
    }
    Ok(())
}

fn insert(conn: &Connection, r: &Record) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO records (conference, participant, display_name, uri, role, transport,
         codec, srtp, joined_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            r.conference,
            r.participant,
            r.display_name,
            r.uri,
            r.role,
            r.transport,
            r.codec,
            r.srtp,
            r.joined_at
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

fn close(conn: &Connection, id: i64, r: &Record) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE records SET left_at = ?2, reason = ?3, sip_status = ?4, packets_in = ?5,
         packets_out = ?6, packets_lost = ?7, jitter_ms = ?8, rtt_ms = ?9, mos = ?10,
         codec = COALESCE(?11, codec), srtp = ?12 WHERE id = ?1",
        params![
            id,
            r.left_at,
            r.reason,
            r.sip_status,
            r.packets_in as i64,
            r.packets_out as i64,
            r.packets_lost,
            r.jitter_ms,
            r.rtt_ms,
            r.mos,
            r.codec,
            r.srtp,
        ],
    )
    .map(drop)
}

pub(super) fn query(conn: &Connection, f: &RecordFilter) -> rusqlite::Result<Vec<Record>> {
    let mut stmt = conn.prepare(
        "SELECT id, conference, participant, display_name, uri, role, transport, codec, srtp,
         joined_at, left_at, reason, sip_status, packets_in, packets_out, packets_lost, jitter_ms,
         rtt_ms, mos FROM records
         WHERE (?1 IS NULL OR conference = ?1) AND (?2 IS NULL OR joined_at >= ?2)
           AND (?3 IS NULL OR joined_at < ?3)
         ORDER BY joined_at DESC, id DESC LIMIT ?4 OFFSET ?5",
    )?;
    let rows = stmt.query_map(
        params![
            f.conference,
            f.since,
            f.until,
            f.limit.min(10_000) as i64,
            f.offset as i64
        ],
        |r| {
            Ok(Record {
                id: r.get(0)?,
                conference: r.get(1)?,
                participant: r.get(2)?,
                display_name: r.get(3)?,
                uri: r.get(4)?,
                role: r.get(5)?,
                transport: r.get(6)?,
                codec: r.get(7)?,
                srtp: r.get(8)?,
                joined_at: r.get(9)?,
                left_at: r.get(10)?,
                reason: r.get(11)?,
                sip_status: r.get(12)?,
                packets_in: r.get::<_, i64>(13)?.max(0) as u64,
                packets_out: r.get::<_, i64>(14)?.max(0) as u64,
                packets_lost: r.get(15)?,
                jitter_ms: r.get(16)?,
                rtt_ms: r.get(17)?,
                mos: r.get(18)?,
            })
        },
    )?;
    rows.collect()
}
