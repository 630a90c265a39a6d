//! The SQLite backend: one file in the data directory, WAL, one node.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, params};

use super::conference_records::CONFERENCE_RECORD_COLUMNS;
use super::placement::{CLAIM_ATTEMPTS, claim_sql};
use super::records::{Patience, RecordSink};
use super::{
    Backend, CONFERENCE_COLUMNS, ConferenceRecord, ConferenceRow, Lease, NodeAddress,
    RECORD_COLUMNS, Record, RecordFilter, StoreError, StoredConference, count_error, unix_ms,
};

/// The schema, one migration per version.
pub(super) const MIGRATIONS: [&str; 6] = [
    "
    CREATE TABLE conferences (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        access TEXT NOT NULL,
        passcode TEXT,
        leader_pin TEXT,
        attendees TEXT NOT NULL,
        locked INTEGER NOT NULL,
        max_participants INTEGER NOT NULL,
        wait_for_leader INTEGER NOT NULL,
        max_talkers INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE records (
        id INTEGER PRIMARY KEY,
        conference TEXT NOT NULL,
        participant TEXT NOT NULL,
        display_name TEXT NOT NULL,
        uri TEXT NOT NULL,
        role TEXT NOT NULL,
        transport TEXT NOT NULL,
        codec TEXT,
        srtp INTEGER NOT NULL,
        joined_at INTEGER NOT NULL,
        left_at INTEGER,
        reason TEXT,
        sip_status INTEGER,
        packets_in INTEGER NOT NULL DEFAULT 0,
        packets_out INTEGER NOT NULL DEFAULT 0,
        packets_lost INTEGER NOT NULL DEFAULT 0,
        jitter_ms REAL,
        rtt_ms REAL,
        mos REAL
    );
    CREATE INDEX records_by_conference ON records (conference, joined_at);
    CREATE INDEX records_by_time ON records (joined_at);
",
    "
    ALTER TABLE conferences ADD COLUMN entry_exit TEXT NOT NULL DEFAULT 'off';
",
    "
    ALTER TABLE conferences ADD COLUMN srtp TEXT;
",
    super::placement::TABLE,
    "
    ALTER TABLE records ADD COLUMN user_agent TEXT;
    ALTER TABLE records ADD COLUMN remote TEXT;
    CREATE INDEX records_by_uri ON records (uri, joined_at);
    CREATE TABLE conference_records (
        id INTEGER PRIMARY KEY,
        conference TEXT NOT NULL,
        node TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        reason TEXT,
        peak_participants INTEGER
    );
    CREATE INDEX conference_records_by_conference ON conference_records (conference, started_at);
    CREATE INDEX conference_records_by_time ON conference_records (started_at);
",
    super::webhook_deliveries::SQLITE_MIGRATION,
];

#[derive(Debug)]
pub(super) struct Sqlite {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// The node named in the conference records written.
    node: String,
}

impl Sqlite {
    /// Opens (or creates) `dir/confab.db`, migrates it, and closes records left open (one file
    /// is one node's: every open record was this node's).
    pub(super) fn open(dir: &Path, node: &str) -> Result<Sqlite, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("confab.db");
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        // WAL for concurrent readers; a corrupt file fails here or at the first read.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(open_err)?;
        if check != "ok" {
            return Err(open_err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(check),
            )));
        }
        migrate(&conn, &path)?;
        conn.execute(
            "UPDATE records SET left_at = ?1, reason = 'abandoned' WHERE left_at IS NULL",
            params![unix_ms(SystemTime::now())],
        )
        .map_err(open_err)?;
        conn.execute(
            "UPDATE conference_records SET ended_at = ?1, reason = 'abandoned'
             WHERE ended_at IS NULL",
            params![unix_ms(SystemTime::now())],
        )
        .map_err(open_err)?;
        Ok(Sqlite {
            conn: Mutex::new(conn),
            path,
            node: node.to_owned(),
        })
    }

    #[cfg(test)]
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self.conn.lock().map_err(|_| {
            count_error();
            StoreError::Poisoned
        })?;
        f(&conn).map_err(|e| {
            count_error();
            StoreError::from(e)
        })
    }
}

impl Backend for Sqlite {
    fn healthy(&self) -> bool {
        self.with(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .is_ok()
    }

    fn save_conference(&self, c: &StoredConference) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                &format!(
                    "INSERT OR REPLACE INTO conferences ({CONFERENCE_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ),
                params![
                    c.id,
                    c.name,
                    c.access.as_str(),
                    c.passcode,
                    c.leader_pin,
                    c.attendees.join("\n"),
                    c.locked,
                    c.max_participants as i64,
                    c.wait_for_leader,
                    c.max_talkers.map(|t| t as i64),
                    c.created_at,
                    c.entry_exit.as_str(),
                    c.srtp.map(crate::config::SrtpPolicy::as_str),
                ],
            )
            .map(drop)
        })
    }

    fn delete_conference(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|conn| conn.execute("DELETE FROM conferences WHERE id = ?1", params![id]))
            .map(|n| n > 0)
    }

    fn set_locked(&self, id: &str, locked: bool) -> Result<bool, StoreError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE conferences SET locked = ?2 WHERE id = ?1",
                params![id, locked],
            )
        })
        .map(|n| n > 0)
    }

    fn update_settings(&self, c: &StoredConference) -> Result<bool, StoreError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE conferences SET name = ?2, access = ?3, passcode = ?4, leader_pin = ?5,
                   attendees = ?6, max_participants = ?7, wait_for_leader = ?8,
                   max_talkers = ?9, entry_exit = ?10, srtp = ?11
                 WHERE id = ?1",
                params![
                    c.id,
                    c.name,
                    c.access.as_str(),
                    c.passcode,
                    c.leader_pin,
                    c.attendees.join("\n"),
                    c.max_participants as i64,
                    c.wait_for_leader,
                    c.max_talkers.map(|t| t as i64),
                    c.entry_exit.as_str(),
                    c.srtp.map(crate::config::SrtpPolicy::as_str),
                ],
            )
        })
        .map(|n| n > 0)
    }

    fn conference(&self, id: &str) -> Result<Option<StoredConference>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {CONFERENCE_COLUMNS} FROM conferences WHERE id = ?1"),
                params![id],
                conference_row,
            )
            .optional()
        })
    }

    fn conferences(&self) -> Result<Vec<StoredConference>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {CONFERENCE_COLUMNS} FROM conferences ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([], conference_row)?;
            rows.collect()
        })
    }

    fn prune_records(&self, before: i64) -> Result<usize, StoreError> {
        self.with(|conn| {
            let legs = conn.execute(
                "DELETE FROM records WHERE left_at IS NOT NULL AND joined_at < ?1",
                params![before],
            )?;
            let sessions = conn.execute(
                "DELETE FROM conference_records WHERE ended_at IS NOT NULL AND started_at < ?1",
                params![before],
            )?;
            Ok(legs + sessions)
        })
    }

    fn records(&self, f: &RecordFilter) -> Result<Vec<Record>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM records
                 WHERE (?1 IS NULL OR conference = ?1) AND (?2 IS NULL OR joined_at >= ?2)
                   AND (?3 IS NULL OR joined_at < ?3) AND (?6 IS NULL OR uri = ?6)
                 ORDER BY joined_at DESC, id DESC LIMIT ?4 OFFSET ?5"
            ))?;
            let rows = stmt.query_map(
                params![
                    f.conference,
                    f.since,
                    f.until,
                    f.limit.min(super::records::MAX_PAGE) as i64,
                    f.offset as i64,
                    f.uri,
                ],
                record_row,
            )?;
            rows.collect()
        })
    }

    fn conference_records(&self, f: &RecordFilter) -> Result<Vec<ConferenceRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {CONFERENCE_RECORD_COLUMNS} FROM conference_records
                 WHERE (?1 IS NULL OR conference = ?1) AND (?2 IS NULL OR started_at >= ?2)
                   AND (?3 IS NULL OR started_at < ?3)
                 ORDER BY started_at DESC, id DESC LIMIT ?4 OFFSET ?5"
            ))?;
            let rows = stmt.query_map(
                params![
                    f.conference,
                    f.since,
                    f.until,
                    f.limit.min(super::records::MAX_PAGE) as i64,
                    f.offset as i64,
                ],
                |r| {
                    Ok(ConferenceRecord {
                        id: r.get(0)?,
                        conference: r.get(1)?,
                        node: r.get(2)?,
                        started_at: r.get(3)?,
                        ended_at: r.get(4)?,
                        reason: r.get(5)?,
                        peak_participants: r.get::<_, Option<i64>>(6)?.map(|p| p.max(0) as u64),
                    })
                },
            )?;
            rows.collect()
        })
    }

    fn claim(
        &self,
        meeting: &str,
        me: &NodeAddress,
        now: Option<i64>,
        lease: i64,
    ) -> Result<Lease, StoreError> {
        self.placement(meeting, me, now, lease)
    }

    fn renew(
        &self,
        node: &str,
        meetings: &[String],
        now: Option<i64>,
        lease: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.with(|conn| {
            let tx = conn.unchecked_transaction()?;
            let mut renewed = Vec::new();
            {
                let mut stmt = tx.prepare(&format!(
                    "UPDATE placement SET expires_at = {DB_NOW_OR} + ?4
                     WHERE meeting = ?1 AND node = ?2 AND expires_at > {DB_NOW_OR}
                     RETURNING expires_at"
                ))?;
                for meeting in meetings {
                    let expires = stmt
                        .query_row(params![meeting, node, now, lease], |r| r.get(0))
                        .optional()?;
                    if let Some(expires) = expires {
                        renewed.push((meeting.clone(), expires));
                    }
                }
            }
            tx.commit()?;
            Ok(renewed)
        })
    }

    fn release(
        &self,
        meeting: &str,
        node: &str,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM placement WHERE meeting = ?1 AND node = ?2
                 AND (?3 IS NULL OR expires_at = ?3)",
                params![meeting, node, expires_at],
            )
        })
        .map(|n| n > 0)
    }

    fn leases(&self, now: Option<i64>) -> Result<Vec<Lease>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT meeting, node, sip, api, expires_at FROM placement
                 WHERE expires_at > COALESCE(?1, {DB_NOW}) ORDER BY meeting"
            ))?;
            let rows = stmt.query_map(params![now], lease_row)?;
            rows.collect()
        })
    }

    fn record_sink(&self, patience: Patience) -> Result<Box<dyn RecordSink>, StoreError> {
        let conn = Connection::open(&self.path).map_err(|source| StoreError::Open {
            path: self.path.clone(),
            source,
        })?;
        conn.busy_timeout(patience.busy)?;
        Ok(Box::new(SqliteSink(conn, self.node.clone())))
    }
}

impl Sqlite {
    fn placement(
        &self,
        meeting: &str,
        me: &NodeAddress,
        now: Option<i64>,
        lease: i64,
    ) -> Result<Lease, StoreError> {
        self.with(|conn| -> rusqlite::Result<Option<Lease>> {
            for _ in 0..CLAIM_ATTEMPTS {
                let claimed = conn
                    .query_row(
                        &claim_sql(|i| format!("?{i}"), DB_NOW),
                        params![meeting, me.node, me.sip, me.api, now, lease],
                        lease_row,
                    )
                    .optional()?;
                let owner = match claimed {
                    Some(lease) => Some(lease),
                    None => conn
                        .query_row(
                            "SELECT meeting, node, sip, api, expires_at FROM placement
                             WHERE meeting = ?1",
                            params![meeting],
                            lease_row,
                        )
                        .optional()?,
                };
                if owner.is_some() {
                    return Ok(owner);
                }
            }
            Ok(None)
        })?
        .ok_or_else(|| StoreError::Contended(meeting.to_owned()))
    }
}

/// The database's clock in ms since the epoch.
const DB_NOW: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

/// `?3` (the caller's `now`) or the database's clock.
const DB_NOW_OR: &str =
    "COALESCE(?3, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER))";

fn lease_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        meeting: r.get(0)?,
        owner: NodeAddress {
            node: r.get(1)?,
            sip: r.get(2)?,
            api: r.get(3)?,
        },
        expires_at: r.get(4)?,
    })
}

fn conference_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredConference> {
    Ok(ConferenceRow {
        id: r.get(0)?,
        name: r.get(1)?,
        access: r.get(2)?,
        passcode: r.get(3)?,
        leader_pin: r.get(4)?,
        attendees: r.get(5)?,
        locked: r.get(6)?,
        max_participants: r.get(7)?,
        wait_for_leader: r.get(8)?,
        max_talkers: r.get(9)?,
        created_at: r.get(10)?,
        entry_exit: r.get(11)?,
        srtp: r.get(12)?,
    }
    .into_stored())
}

fn record_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
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
        user_agent: r.get(19)?,
        remote: r.get(20)?,
    })
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let version: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| {
            r.get::<_, Option<i64>>(0)
        })?
        .unwrap_or(0);
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: version,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            params![i as i64 + 1],
        )?;
        tx.commit()?;
    }
    Ok(())
}

#[path = "sqlite_records.rs"]
mod sqlite_records;
#[path = "sqlite_webhooks.rs"]
mod sqlite_webhooks;
use sqlite_records::SqliteSink;
