//! Webhook deliveries still to make, kept so that they survive a restart (see
//! `crate::webhooks`). Each node keeps its own (the `node` column): a node reloads only its
//! rows at start. The delivery queue decides what is saved and forgotten; its bound
//! (`webhooks::queue::MAX_PENDING`) bounds the table too.

use super::StoreError;

/// A pending delivery as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingDelivery {
    /// Unique per node, increasing in the order deliveries were enqueued.
    pub id: i64,
    /// The receiver's key: `sha256:` and the hex SHA-256 of its URL, never the URL (whose
    /// path or query may carry a token). Rows written by older versions hold the plain URL
    /// until the webhook task starts and saves them again under the key.
    pub endpoint: String,
    /// The JSON body.
    pub body: String,
    /// Milliseconds since the Unix epoch, like the other times.
    pub created_at: i64,
    pub first_attempt_at: Option<i64>,
    /// Failed attempts so far.
    pub attempts: i64,
    pub next_at: i64,
}

/// One change to the stored deliveries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DeliveryChange {
    /// Insert the delivery, or update its receiver's key and schedule (`endpoint`,
    /// `first_attempt_at`, `attempts`, `next_at`) if its row is there.
    Save(PendingDelivery),
    /// Remove it (delivered, given up, or pruned).
    Forget(i64),
}

/// What each database does for the webhook deliveries.
pub(super) trait DeliveryBackend {
    /// Applies `changes` in order, in one transaction.
    fn apply_deliveries(&self, changes: &[DeliveryChange]) -> Result<(), StoreError>;
    /// This node's pending deliveries, by id.
    fn pending_deliveries(&self) -> Result<Vec<PendingDelivery>, StoreError>;
}

/// The table, in SQLite's types (the schema's sixth version).
pub(super) const SQLITE_MIGRATION: &str = "
    CREATE TABLE webhook_deliveries (
        node TEXT NOT NULL,
        id INTEGER NOT NULL,
        endpoint TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        first_attempt_at INTEGER,
        attempts INTEGER NOT NULL,
        next_at INTEGER NOT NULL,
        PRIMARY KEY (node, id)
    );
";

/// The table, in PostgreSQL's types (its schema's fourth version).
pub(super) const POSTGRES_MIGRATION: &str = "
    CREATE TABLE webhook_deliveries (
        node TEXT NOT NULL,
        id BIGINT NOT NULL,
        endpoint TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        first_attempt_at BIGINT,
        attempts BIGINT NOT NULL,
        next_at BIGINT NOT NULL,
        PRIMARY KEY (node, id)
    );
";

/// The columns, in the order both backends select and insert them.
pub(super) const COLUMNS: &str =
    "id, endpoint, body, created_at, first_attempt_at, attempts, next_at";

/// What an upsert changes of a row that is there: its schedule, and its endpoint (a row an
/// older version stored with the receiver's plain URL is saved again under the key), never
/// its body.
pub(super) const ON_CONFLICT: &str = "ON CONFLICT (node, id) DO UPDATE SET
    endpoint = excluded.endpoint, first_attempt_at = excluded.first_attempt_at,
    attempts = excluded.attempts, next_at = excluded.next_at";

impl super::Store {
    /// Saves and forgets webhook deliveries, in order, in one transaction.
    pub(crate) fn apply_deliveries(&self, changes: &[DeliveryChange]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.backend.apply_deliveries(changes)
    }

    /// This node's pending webhook deliveries, oldest first.
    pub(crate) fn pending_deliveries(&self) -> Result<Vec<PendingDelivery>, StoreError> {
        self.backend.pending_deliveries()
    }
}
