//! Placement leases: which node hosts a meeting. A meeting's first join claims it for the node
//! (a row with the node's addresses and an expiry); the owner renews its leases every few
//! seconds; a lease not renewed expires and the next claim takes it over (the node died).
//! Times are milliseconds since the epoch passed in by the caller, so the rules are tested
//! in stepped time. Bound: one row per meeting claimed; rows are deleted on release, and an
//! expired row is overwritten by the next claim of its meeting (meeting IDs are the stored
//! conferences', checked before a claim).

/// How other nodes and clients reach a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    /// The node's name (`storage.node`).
    pub node: String,
    /// Its SIP address, `host:port` (where a 302 sends callers).
    pub sip: String,
    /// Its API's base URL, `http(s)://host:port` (where a 307 sends WHIP joins).
    pub api: String,
}

/// A meeting's owner until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub meeting: String,
    pub owner: NodeAddress,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
}

/// The table, the same in both databases.
pub(super) const TABLE: &str = "
    CREATE TABLE placement (
        meeting TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        sip TEXT NOT NULL,
        api TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX placement_by_node ON placement (node);
";

/// Claims with an upsert that changes the row only if it is the claimant's or expired;
/// `RETURNING` gives the row when it did. Parameters: meeting, node, sip, api, now (null: the
/// database's clock, `db_now`), lease.
pub(super) fn claim_sql(p: fn(usize) -> String, db_now: &str) -> String {
    let now = format!("COALESCE(CAST({} AS BIGINT), {db_now})", p(5));
    format!(
        "INSERT INTO placement (meeting, node, sip, api, expires_at)
         VALUES ({m}, {n}, {s}, {a}, {now} + CAST({lease} AS BIGINT))
         ON CONFLICT (meeting) DO UPDATE SET node = excluded.node, sip = excluded.sip,
           api = excluded.api, expires_at = excluded.expires_at
         WHERE placement.node = excluded.node OR placement.expires_at <= {now}
         RETURNING meeting, node, sip, api, expires_at",
        m = p(1),
        n = p(2),
        s = p(3),
        a = p(4),
        lease = p(6),
    )
}

/// How many times a claim looks again when the owner it lost to released in between.
pub(super) const CLAIM_ATTEMPTS: usize = 3;
