//! Storage: conferences, which survive a restart, and a call record per participant leg, in
//! SQLite (WAL, the embedded default: one node) or PostgreSQL (`storage.url`: several nodes
//! sharing one database). Both sit behind [`Store`], with one schema and the same behaviour;
//! every scenario of the store's tests runs against both. Conference writes are rare and made
//! by the caller; records are written by one writer thread fed by a channel, so the mixer never
//! waits on the disk. Records open when a leg joins and close when it leaves; those a node left
//! open (the process died) are closed as `abandoned` when it starts again.

mod conference_records;
mod dispatcher;
mod placement;
mod postgres;
mod records;
mod sqlite;
mod webhook_deliveries;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use conference_records::{ConferenceFacts, ConferenceRecord};
pub use dispatcher::DispatcherTable;
pub use placement::{Lease, NodeAddress};
pub use records::{
    LegFacts, MAX_USER_AGENT, Origin, Record, RecordEvent, RecordFilter, RecordWriter,
};
pub(crate) use webhook_deliveries::{DeliveryChange, PendingDelivery};

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
    #[error("cannot start a storage thread: {0}")]
    Thread(std::io::Error),
    #[error("meeting {0} changed hands while being claimed; try again")]
    Contended(String),
    #[error("storage.url: {0}")]
    Url(String),
    #[error("PostgreSQL {url}: {source}")]
    Postgres {
        /// The URL without its password.
        url: String,
        source: ::postgres::Error,
    },
    #[error("PostgreSQL {url} did not answer in {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("PostgreSQL {url} is newer (schema {found}) than this build knows ({known})")]
    PostgresTooNew { url: String, found: i64, known: i64 },
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

/// Failed database operations since start (for `confab_storage_errors_total`).
pub static STORAGE_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) fn count_error() {
    STORAGE_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// What each database does for the store; both give the same answers to the same calls.
trait Backend: webhook_deliveries::DeliveryBackend + Send + Sync + std::fmt::Debug {
    fn healthy(&self) -> bool;
    fn save_conference(&self, c: &StoredConference) -> Result<(), StoreError>;
    fn delete_conference(&self, id: &str) -> Result<bool, StoreError>;
    /// Sets a stored conference's lock alone (one UPDATE: nothing else of the row is written,
    /// and a conference deleted meanwhile is not brought back); false when none is stored.
    fn set_locked(&self, id: &str, locked: bool) -> Result<bool, StoreError>;
    /// Writes a stored conference's settings but its lock and creation time (one UPDATE);
    /// false when none is stored.
    fn update_settings(&self, c: &StoredConference) -> Result<bool, StoreError>;
    fn conference(&self, id: &str) -> Result<Option<StoredConference>, StoreError>;
    /// Every stored conference, oldest first.
    fn conferences(&self) -> Result<Vec<StoredConference>, StoreError>;
    fn prune_records(&self, before: i64) -> Result<usize, StoreError>;
    fn records(&self, filter: &RecordFilter) -> Result<Vec<Record>, StoreError>;
    /// Conference sessions, newest first (`uri` is not used).
    fn conference_records(
        &self,
        filter: &RecordFilter,
    ) -> Result<Vec<ConferenceRecord>, StoreError>;
    /// A connection of its own for the record writer.
    fn record_sink(
        &self,
        patience: records::Patience,
    ) -> Result<Box<dyn records::RecordSink>, StoreError>;
    /// Takes `meeting` for `me` until `now + lease` unless another node holds it unexpired
    /// (times in ms since the epoch; no `now`: the database's clock); returns the owner.
    fn claim(
        &self,
        meeting: &str,
        me: &NodeAddress,
        now: Option<i64>,
        lease: i64,
    ) -> Result<Lease, StoreError>;
    /// Extends to `now + lease` the unexpired leases `node` holds on `meetings`; returns
    /// those renewed with their new expiry.
    fn renew(
        &self,
        node: &str,
        meetings: &[String],
        now: Option<i64>,
        lease: i64,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Gives up `node`'s lease on `meeting` (only the one expiring at `expires_at`, if given);
    /// false if it held none.
    fn release(
        &self,
        meeting: &str,
        node: &str,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError>;
    /// The unexpired leases, by meeting.
    fn leases(&self, now: Option<i64>) -> Result<Vec<Lease>, StoreError>;
}

/// The database: SQLite in a data directory, or PostgreSQL shared by several nodes.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// The SQLite file, for tests that reach under the store.
    #[cfg(test)]
    sqlite: Option<Arc<sqlite::Sqlite>>,
}

impl Store {
    /// Opens (or creates) `dir/confab.db`, migrates it, and closes records left open.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_as(dir, "")
    }

    /// [`Store::open`], its records naming `node`.
    fn open_as(dir: &Path, node: &str) -> Result<Store, StoreError> {
        let sqlite = Arc::new(sqlite::Sqlite::open(dir, node)?);
        Ok(Store {
            backend: sqlite.clone(),
            #[cfg(test)]
            sqlite: Some(sqlite),
        })
    }

    /// The store the configuration names: PostgreSQL at `storage.url` (migrated; records this
    /// node left open closed), else SQLite in `storage.data_dir`. `node` names this node in the
    /// records it writes, so one node's start never closes another's calls.
    pub fn connect(config: &crate::config::StorageConfig, node: &str) -> Result<Store, StoreError> {
        match config
            .url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            None => Store::open_as(&config.data_dir, node),
            Some(url) => Ok(Store {
                backend: Arc::new(postgres::Postgres::connect(url, node)?),
                #[cfg(test)]
                sqlite: None,
            }),
        }
    }

    /// Whether the database answers (for readiness).
    pub fn healthy(&self) -> bool {
        self.backend.healthy()
    }

    /// Inserts or replaces a conference's settings.
    pub fn save_conference(&self, c: &StoredConference) -> Result<(), StoreError> {
        self.backend.save_conference(c)
    }

    /// Removes a conference (its records stay).
    pub fn delete_conference(&self, id: &str) -> Result<bool, StoreError> {
        self.backend.delete_conference(id)
    }

    pub fn conference(&self, id: &str) -> Result<Option<StoredConference>, StoreError> {
        self.backend.conference(id)
    }

    /// Keeps a conference's lock, whoever set it (the operator, a leader's keypad or a WHIP
    /// leader), so that a restart and the other nodes keep it; false when no such conference
    /// is stored (the attendant's lobby, or one that has just been deleted).
    pub fn set_locked(&self, id: &str, locked: bool) -> Result<bool, StoreError> {
        self.backend.set_locked(id, locked)
    }

    /// Changes a stored conference's settings but leaves its lock as stored: a PATCH that does
    /// not set the lock cannot undo a leader's keypad lock made since it read the conference.
    /// False when no such conference is stored (deleted meanwhile: not made again).
    pub fn update_settings(&self, c: &StoredConference) -> Result<bool, StoreError> {
        self.backend.update_settings(c)
    }

    /// Every stored conference, oldest first.
    pub fn conferences(&self) -> Result<Vec<StoredConference>, StoreError> {
        self.backend.conferences()
    }

    /// Starts the record writer thread.
    pub fn record_writer(&self) -> Result<RecordWriter, StoreError> {
        self.record_writer_with(records::Patience::default())
    }

    fn record_writer_with(&self, patience: records::Patience) -> Result<RecordWriter, StoreError> {
        RecordWriter::start(self.backend.record_sink(patience)?, patience)
    }

    /// Deletes the closed call records of calls (and conference sessions) that began before
    /// `before` (ms since the epoch); returns how many. Records still open are kept.
    pub fn prune_records(&self, before: i64) -> Result<usize, StoreError> {
        self.backend.prune_records(before)
    }

    /// Call records, newest first.
    pub fn records(&self, filter: &RecordFilter) -> Result<Vec<Record>, StoreError> {
        self.backend.records(filter)
    }

    /// Conference sessions, newest first (the filter's `uri` is not used).
    pub fn conference_records(
        &self,
        filter: &RecordFilter,
    ) -> Result<Vec<ConferenceRecord>, StoreError> {
        self.backend.conference_records(filter)
    }

    /// Takes `meeting` for `me` until `now + lease` unless another node holds it unexpired;
    /// returns the owner either way. Times are ms since the epoch; without `now`, the
    /// database's own clock (what nodes use: one clock for all, whatever each host's says).
    /// Atomic: of nodes claiming one meeting at once, one wins and the others are told it.
    pub fn claim(
        &self,
        meeting: &str,
        me: &NodeAddress,
        now: Option<i64>,
        lease: i64,
    ) -> Result<Lease, StoreError> {
        self.backend.claim(meeting, me, now, lease)
    }

    /// Extends to `now + lease` the unexpired leases `node` holds on `meetings`; returns those
    /// renewed with their new expiry (a meeting missing from them was lost: expired, and
    /// perhaps taken by another node).
    pub fn renew(
        &self,
        node: &str,
        meetings: &[String],
        now: Option<i64>,
        lease: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.backend.renew(node, meetings, now, lease)
    }

    /// Gives up `node`'s lease on `meeting`: only the one expiring at `expires_at` when given,
    /// so a release decided before a new claim of the same meeting cannot undo that claim.
    /// False if it held none.
    pub fn release(
        &self,
        meeting: &str,
        node: &str,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.backend.release(meeting, node, expires_at)
    }

    /// The unexpired leases, by meeting.
    pub fn leases(&self, now: Option<i64>) -> Result<Vec<Lease>, StoreError> {
        self.backend.leases(now)
    }
}

/// A conference row as either database gives it, before it is read into settings.
struct ConferenceRow {
    id: String,
    name: String,
    access: String,
    passcode: Option<String>,
    leader_pin: Option<String>,
    attendees: String,
    locked: bool,
    max_participants: i64,
    wait_for_leader: bool,
    max_talkers: Option<i64>,
    created_at: i64,
    entry_exit: String,
    srtp: Option<String>,
}

impl ConferenceRow {
    fn into_stored(self) -> StoredConference {
        StoredConference {
            id: self.id,
            name: self.name,
            access: Access::parse(&self.access).unwrap_or_default(),
            passcode: self.passcode,
            leader_pin: self.leader_pin,
            attendees: self
                .attendees
                .split('\n')
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
            locked: self.locked,
            max_participants: self.max_participants.max(0) as usize,
            wait_for_leader: self.wait_for_leader,
            max_talkers: self.max_talkers.map(|t| t.max(0) as usize),
            created_at: self.created_at,
            // A value this version does not know (written by a newer one) plays nothing.
            entry_exit: crate::conference::roster::EntryExit::parse(&self.entry_exit)
                .unwrap_or_default(),
            // A value this version does not know (written by a newer one) is taken as the
            // strictest.
            srtp: self
                .srtp
                .map(|s| s.parse().unwrap_or(crate::config::SrtpPolicy::Required)),
        }
    }
}

/// The columns of a conference row, in the order both backends select and insert them.
const CONFERENCE_COLUMNS: &str = "id, name, access, passcode, leader_pin, attendees, locked,
    max_participants, wait_for_leader, max_talkers, created_at, entry_exit, srtp";

/// The columns of a record row, in the order both backends select them.
const RECORD_COLUMNS: &str = "id, conference, participant, display_name, uri, role, transport,
    codec, srtp, joined_at, left_at, reason, sip_status, packets_in, packets_out, packets_lost,
    jitter_ms, rtt_ms, mos, user_agent, remote";

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
