//! Call records: one row per participant leg. The mixer threads send [`RecordEvent`]s down an
//! unbounded channel (a send never blocks a tick, and none is lost); one writer thread owns its
//! own connection and writes them in transactions of whatever has queued up.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;

use rusqlite::{Connection, params};

use super::StoreError;
use crate::conference::ParticipantId;

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

/// What happened to a leg, for its record.
#[derive(Clone, Debug)]
pub enum RecordEvent {
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

impl RecordWriter {
    pub(super) fn start(path: &Path) -> Result<RecordWriter, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("confab-records".into())
            .spawn(move || write_loop(conn, receiver))
            .map_err(|e| StoreError::Directory {
                path: path.to_owned(),
                source: e,
            })?;
        Ok(RecordWriter {
            sender,
            thread: Some(thread),
        })
    }

    /// Waits until everything sent so far is written.
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

fn write_loop(conn: Connection, events: Receiver<RecordEvent>) {
    let mut open: HashMap<ParticipantId, i64> = HashMap::new();
    while let Ok(first) = events.recv() {
        let mut batch = vec![first];
        batch.extend(events.try_iter().take(4096));
        let mut flushes = Vec::new();
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            for event in batch {
                match event {
                    RecordEvent::Open {
                        participant,
                        record,
                    } => {
                        let id = insert(&tx, &record)?;
                        open.insert(participant, id);
                    }
                    RecordEvent::Close {
                        participant,
                        record,
                    } => match open.remove(&participant) {
                        Some(id) => close(&tx, id, &record)?,
                        // Never opened (a refused join): one closed row.
                        None => {
                            let id = insert(&tx, &record)?;
                            close(&tx, id, &record)?;
                        }
                    },
                    RecordEvent::Flush(done) => flushes.push(done),
                }
            }
            tx.commit()
        })();
        if let Err(e) = result {
            super::count_error();
            tracing::error!(error = %e, "call records could not be written");
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
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
