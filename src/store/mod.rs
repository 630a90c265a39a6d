//! Storage in SQLite (WAL): conferences, which survive a restart, and a call record per
//! participant leg. Conference writes are rare and made by the caller; records are written by
//! one writer thread fed by a channel, so the mixer never waits on the disk. Records open when
//! a leg joins and close when it leaves; those still open at start-up (the process died) are
//! closed as `abandoned`.

mod records;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

pub use records::{LegFacts, Record, RecordEvent, RecordFilter, RecordWriter};

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {path} is newer (schema {found}) than this build knows ({known})")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the database is unavailable")]
    Poisoned,
}

/// Who may join a conference (see DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Access {
    #[default]
    Anonymous,
    Authenticated,
    Closed,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Anonymous => "anonymous",
            Access::Authenticated => "authenticated",
            Access::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "anonymous" => Some(Access::Anonymous),
            "authenticated" => Some(Access::Authenticated),
            "closed" => Some(Access::Closed),
            _ => None,
        }
    }
}

/// A conference's settings as stored.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StoredConference {
    pub id: String,
    pub name: String,
    pub access: Access,
    pub passcode: Option<String>,
    pub leader_pin: Option<String>,
    pub attendees: Vec<String>,
    pub locked: bool,
    pub max_participants: usize,
    pub wait_for_leader: bool,
    pub max_talkers: Option<usize>,
    /// What the meeting plays when people enter and leave.
    pub entry_exit: crate::conference::roster::EntryExit,
    /// The conference's own SRTP policy (none: the bridge's `media.srtp`).
    pub srtp: Option<crate::config::SrtpPolicy>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The schema, one migration per version.
const MIGRATIONS: [&str; 3] = [
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
];

/// Failed database operations since start (for `confab_storage_errors_total`).
pub static STORAGE_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) fn count_error() {
    STORAGE_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The database.
#[derive(Clone, Debug)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) `dir/confab.db`, migrates it, and closes records left open.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
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
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.lock().map_err(|_| {
            count_error();
            StoreError::Poisoned
        })?;
        f(&conn).map_err(|e| {
            count_error();
            StoreError::from(e)
        })
    }

    /// Whether the database answers (for readiness).
    pub fn healthy(&self) -> bool {
        self.with(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .is_ok()
    }

    /// Inserts or replaces a conference's settings.
    pub fn save_conference(&self, c: &StoredConference) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO conferences (id, name, access, passcode, leader_pin,
                 attendees, locked, max_participants, wait_for_leader, max_talkers, created_at,
                 entry_exit, srtp)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
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

    /// Removes a conference (its records stay).
    pub fn delete_conference(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|conn| conn.execute("DELETE FROM conferences WHERE id = ?1", params![id]))
            .map(|n| n > 0)
    }

    pub fn conference(&self, id: &str) -> Result<Option<StoredConference>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!("{SELECT_CONFERENCE} WHERE id = ?1"),
                params![id],
                conference_row,
            )
            .optional()
        })
    }

    /// Every stored conference, oldest first.
    pub fn conferences(&self) -> Result<Vec<StoredConference>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(&format!("{SELECT_CONFERENCE} ORDER BY created_at, id"))?;
            let rows = stmt.query_map([], conference_row)?;
            rows.collect()
        })
    }

    /// Starts the record writer thread.
    pub fn record_writer(&self) -> Result<RecordWriter, StoreError> {
        RecordWriter::start(&self.path)
    }

    /// Deletes the closed call records of calls that began before `before` (ms since the
    /// epoch); returns how many. Records still open are kept.
    pub fn prune_records(&self, before: i64) -> Result<usize, StoreError> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM records WHERE left_at IS NOT NULL AND joined_at < ?1",
                params![before],
            )
        })
    }

    /// Call records, newest first.
    pub fn records(&self, filter: &RecordFilter) -> Result<Vec<Record>, StoreError> {
        self.with(|conn| records::query(conn, filter))
    }
}

const SELECT_CONFERENCE: &str = "SELECT id, name, access, passcode, leader_pin, attendees, locked,
    max_participants, wait_for_leader, max_talkers, created_at, entry_exit, srtp FROM conferences";

fn conference_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredConference> {
    let access: String = r.get(2)?;
    let attendees: String = r.get(5)?;
    Ok(StoredConference {
        id: r.get(0)?,
        name: r.get(1)?,
        access: Access::parse(&access).unwrap_or_default(),
        passcode: r.get(3)?,
        leader_pin: r.get(4)?,
        attendees: attendees
            .split('\n')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
        locked: r.get(6)?,
        max_participants: r.get::<_, i64>(7)?.max(0) as usize,
        wait_for_leader: r.get(8)?,
        max_talkers: r.get::<_, Option<i64>>(9)?.map(|t| t.max(0) as usize),
        created_at: r.get(10)?,
        // A value this version does not know (written by a newer one) plays nothing.
        entry_exit: crate::conference::roster::EntryExit::parse(&r.get::<_, String>(11)?)
            .unwrap_or_default(),
        // A value this version does not know (written by a newer one) is taken as the
        // strictest.
        srtp: r
            .get::<_, Option<String>>(12)?
            .map(|s| s.parse().unwrap_or(crate::config::SrtpPolicy::Required)),
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

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
