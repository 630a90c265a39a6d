//! The PostgreSQL backend: one database shared by several nodes (`storage.url`).
//!
//! The client is synchronous and runs its own small runtime, which must not be entered from
//! the bridge's: calls go to a few store threads that own the connections, and the caller
//! waits for the answer (as it waits for SQLite's lock). A lost connection is made again at
//! the next call. Migrations run under an advisory lock, so nodes starting together migrate
//! once. Records carry the node that wrote them: a starting node closes only its own.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use postgres::{Client, NoTls};

use super::placement::{CLAIM_ATTEMPTS, claim_sql};
use super::records::{Patience, RecordSink};
use super::{
    Backend, CONFERENCE_COLUMNS, ConferenceRecord, ConferenceRow, Lease, NodeAddress,
    RECORD_COLUMNS, Record, RecordFilter, StoreError, StoredConference, count_error, unix_ms,
};
use postgres_records::{PostgresSink, record_row};

/// The schema, one migration per version (the SQLite schema's columns, in PostgreSQL's
/// types, and each record's node).
pub(super) const MIGRATIONS: [&str; 4] = [
    "
    CREATE TABLE conferences (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        access TEXT NOT NULL,
        passcode TEXT,
        leader_pin TEXT,
        attendees TEXT NOT NULL,
        locked BOOLEAN NOT NULL,
        max_participants BIGINT NOT NULL,
        wait_for_leader BOOLEAN NOT NULL,
        max_talkers BIGINT,
        created_at BIGINT NOT NULL,
        entry_exit TEXT NOT NULL DEFAULT 'off',
        srtp TEXT
    );
    CREATE TABLE records (
        id BIGSERIAL PRIMARY KEY,
        node TEXT NOT NULL,
        conference TEXT NOT NULL,
        participant TEXT NOT NULL,
        display_name TEXT NOT NULL,
        uri TEXT NOT NULL,
        role TEXT NOT NULL,
        transport TEXT NOT NULL,
        codec TEXT,
        srtp BOOLEAN NOT NULL,
        joined_at BIGINT NOT NULL,
        left_at BIGINT,
        reason TEXT,
        sip_status INTEGER,
        packets_in BIGINT NOT NULL DEFAULT 0,
        packets_out BIGINT NOT NULL DEFAULT 0,
        packets_lost BIGINT NOT NULL DEFAULT 0,
        jitter_ms DOUBLE PRECISION,
        rtt_ms DOUBLE PRECISION,
        mos DOUBLE PRECISION
    );
    CREATE INDEX records_by_conference ON records (conference, joined_at);
    CREATE INDEX records_by_time ON records (joined_at);
    CREATE INDEX records_open_by_node ON records (node) WHERE left_at IS NULL;
",
    super::placement::TABLE,
    postgres_records::MIGRATION,
    super::webhook_deliveries::POSTGRES_MIGRATION,
];

/// The advisory lock migrations take (any constant the bridge alone uses).
const MIGRATION_LOCK: i64 = 0x636f_6e66_6162;

/// Store threads, each with one connection: calls from the API and the SIP task at once.
const THREADS: usize = 4;

/// Calls waiting for a store thread. Bound: past it a call fails at once as unavailable
/// (a database that stopped answering must not queue every request of the bridge).
const QUEUE: usize = 256;

/// How long a call waits for its answer (connecting included).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

#[derive(Debug)]
pub(super) struct Postgres {
    jobs: SyncSender<Job>,
    config: postgres::Config,
    /// The URL without its password, for messages.
    url: String,
    node: String,
}

impl Postgres {
    /// Connects, migrates, and closes the records this node left open.
    pub(super) fn connect(url: &str, node: &str) -> Result<Postgres, StoreError> {
        let (config, shown) = client_config(url)?;
        let mut conn = Connection::new(config.clone());
        let err = |source| StoreError::Postgres {
            url: shown.clone(),
            source,
        };
        migrate(conn.client().map_err(err)?, &shown)?;
        conn.client()
            .map_err(err)?
            .execute(
                "UPDATE records SET left_at = $1, reason = 'abandoned'
                 WHERE left_at IS NULL AND node = $2",
                &[&unix_ms(SystemTime::now()), &node],
            )
            .map_err(err)?;
        conn.client()
            .map_err(err)?
            .execute(
                "UPDATE conference_records SET ended_at = $1, reason = 'abandoned'
                 WHERE ended_at IS NULL AND node = $2",
                &[&unix_ms(SystemTime::now()), &node],
            )
            .map_err(err)?;
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        let mut first = Some(conn);
        for i in 0..THREADS {
            let queue = Arc::clone(&queue);
            let conn = first
                .take()
                .unwrap_or_else(|| Connection::new(config.clone()));
            std::thread::Builder::new()
                .name(format!("confab-store-{i}"))
                .spawn(move || serve(conn, &queue))
                .map_err(StoreError::Thread)?;
        }
        Ok(Postgres {
            jobs,
            config,
            url: shown,
            node: node.to_owned(),
        })
    }

    /// Runs `f` on a store thread's connection and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn| {
            let result = conn.client().and_then(f);
            if result.as_ref().is_err_and(|e| e.is_closed()) {
                conn.client = None;
            }
            let _ = answer.send(result);
        });
        let unavailable = || {
            count_error();
            StoreError::Timeout {
                url: self.url.clone(),
                secs: ANSWER_WITHIN.as_secs(),
            }
        };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => return Err(unavailable()),
        }
        match answered.recv_timeout(ANSWER_WITHIN) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => {
                count_error();
                Err(StoreError::Postgres {
                    url: self.url.clone(),
                    source,
                })
            }
            Err(_) => Err(unavailable()),
        }
    }
}

/// A store thread: runs calls until the store is dropped.
fn serve(mut conn: Connection, queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(&mut conn),
            Err(_) => return,
        }
    }
}

/// A connection made when first needed, and again after it was lost.
struct Connection {
    config: postgres::Config,
    client: Option<Client>,
}

impl Connection {
    fn new(config: postgres::Config) -> Connection {
        Connection {
            config,
            client: None,
        }
    }

    fn client(&mut self) -> Result<&mut Client, postgres::Error> {
        let client = match self.client.take() {
            Some(client) if !client.is_closed() => client,
            _ => self.config.connect(NoTls)?,
        };
        Ok(self.client.insert(client))
    }
}

fn migrate(client: &mut Client, url: &str) -> Result<(), StoreError> {
    let err = |source| StoreError::Postgres {
        url: url.to_owned(),
        source,
    };
    let mut tx = client.transaction().map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .map_err(err)?;
    let version: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .map_err(err)?
        .get(0);
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::PostgresTooNew {
            url: url.to_owned(),
            found: version,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.batch_execute(sql).map_err(err)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(i as i64 + 1)],
        )
        .map_err(err)?;
    }
    tx.commit().map_err(err)
}

/// The client settings for `url`, and the URL without its password (for messages).
pub(super) fn client_config(url: &str) -> Result<(postgres::Config, String), StoreError> {
    let shown = without_password(url);
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Url(format!("{shown}: {e}")))?;
    config.connect_timeout(Duration::from_secs(5));
    config.application_name("confab");
    // A statement that hangs (a lock held elsewhere) fails instead of holding a thread,
    // whatever options the URL brings.
    let options = config.get_options().unwrap_or_default().to_owned();
    config.options(format!("{options} -c statement_timeout=5000").trim());
    // A database that goes silent without closing the connection (a failover, a frozen
    // host) is noticed in seconds, not after the kernel's two hours.
    config.keepalives_idle(Duration::from_secs(5));
    config.keepalives_interval(Duration::from_secs(2));
    config.keepalives_retries(3);
    config.tcp_user_timeout(Duration::from_secs(10));
    Ok((config, shown))
}

/// `url` with any password replaced, for messages and logs.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".into();
    };
    // The query may carry `password=` too: it is not shown at all.
    let rest = rest.split_once('?').map_or(rest, |(before, _)| before);
    // The user part ends at the last `@` (a password may hold `/` or `@`).
    match rest.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(name, _)| name);
            format!("{scheme}://{user}:***@{host}")
        }
        None => format!("{scheme}://{rest}"),
    }
}

impl Backend for Postgres {
    fn healthy(&self) -> bool {
        self.call(|c| c.query_one("SELECT 1", &[]).map(drop))
            .is_ok()
    }

    fn save_conference(&self, c: &StoredConference) -> Result<(), StoreError> {
        let c = c.clone();
        self.call(move |client| {
            client
                .execute(
                    &format!(
                        "INSERT INTO conferences ({CONFERENCE_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,
                           access = EXCLUDED.access, passcode = EXCLUDED.passcode,
                           leader_pin = EXCLUDED.leader_pin, attendees = EXCLUDED.attendees,
                           locked = EXCLUDED.locked,
                           max_participants = EXCLUDED.max_participants,
                           wait_for_leader = EXCLUDED.wait_for_leader,
                           max_talkers = EXCLUDED.max_talkers,
                           created_at = EXCLUDED.created_at,
                           entry_exit = EXCLUDED.entry_exit, srtp = EXCLUDED.srtp"
                    ),
                    &[
                        &c.id,
                        &c.name,
                        &c.access.as_str(),
                        &c.passcode,
                        &c.leader_pin,
                        &c.attendees.join("\n"),
                        &c.locked,
                        &(c.max_participants as i64),
                        &c.wait_for_leader,
                        &c.max_talkers.map(|t| t as i64),
                        &c.created_at,
                        &c.entry_exit.as_str(),
                        &c.srtp.map(crate::config::SrtpPolicy::as_str),
                    ],
                )
                .map(drop)
        })
    }

    fn delete_conference(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.call(move |c| c.execute("DELETE FROM conferences WHERE id = $1", &[&id]))
            .map(|n| n > 0)
    }

    fn set_locked(&self, id: &str, locked: bool) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.call(move |c| {
            c.execute(
                "UPDATE conferences SET locked = $2 WHERE id = $1",
                &[&id, &locked],
            )
        })
        .map(|n| n > 0)
    }

    fn update_settings(&self, c: &StoredConference) -> Result<bool, StoreError> {
        let c = c.clone();
        self.call(move |client| {
            client.execute(
                "UPDATE conferences SET name = $2, access = $3, passcode = $4, leader_pin = $5,
                   attendees = $6, max_participants = $7, wait_for_leader = $8,
                   max_talkers = $9, entry_exit = $10, srtp = $11
                 WHERE id = $1",
                &[
                    &c.id,
                    &c.name,
                    &c.access.as_str(),
                    &c.passcode,
                    &c.leader_pin,
                    &c.attendees.join("\n"),
                    &(c.max_participants as i64),
                    &c.wait_for_leader,
                    &c.max_talkers.map(|t| t as i64),
                    &c.entry_exit.as_str(),
                    &c.srtp.map(crate::config::SrtpPolicy::as_str),
                ],
            )
        })
        .map(|n| n > 0)
    }

    fn conference(&self, id: &str) -> Result<Option<StoredConference>, StoreError> {
        let id = id.to_owned();
        self.call(move |c| {
            c.query_opt(
                &format!("SELECT {CONFERENCE_COLUMNS} FROM conferences WHERE id = $1"),
                &[&id],
            )?
            .map(|r| conference_row(&r))
            .transpose()
        })
    }

    fn conferences(&self) -> Result<Vec<StoredConference>, StoreError> {
        self.call(|c| {
            c.query(
                &format!("SELECT {CONFERENCE_COLUMNS} FROM conferences ORDER BY created_at, id"),
                &[],
            )?
            .iter()
            .map(conference_row)
            .collect()
        })
    }

    fn prune_records(&self, before: i64) -> Result<usize, StoreError> {
        self.call(move |c| {
            let legs = c.execute(
                "DELETE FROM records WHERE left_at IS NOT NULL AND joined_at < $1",
                &[&before],
            )?;
            let sessions = c.execute(
                "DELETE FROM conference_records WHERE ended_at IS NOT NULL AND started_at < $1",
                &[&before],
            )?;
            Ok(legs + sessions)
        })
        .map(|n| n as usize)
    }

    fn records(&self, f: &RecordFilter) -> Result<Vec<Record>, StoreError> {
        let f = f.clone();
        self.call(move |c| {
            c.query(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM records
                     WHERE ($1::TEXT IS NULL OR conference = $1)
                       AND ($2::BIGINT IS NULL OR joined_at >= $2)
                       AND ($3::BIGINT IS NULL OR joined_at < $3)
                       AND ($6::TEXT IS NULL OR uri = $6)
                     ORDER BY joined_at DESC, id DESC LIMIT $4 OFFSET $5"
                ),
                &[
                    &f.conference,
                    &f.since,
                    &f.until,
                    &(f.limit.min(super::records::MAX_PAGE) as i64),
                    &(i64::try_from(f.offset).unwrap_or(i64::MAX)),
                    &f.uri,
                ],
            )?
            .iter()
            .map(record_row)
            .collect()
        })
    }

    fn conference_records(&self, f: &RecordFilter) -> Result<Vec<ConferenceRecord>, StoreError> {
        let f = f.clone();
        self.call(move |c| postgres_records::conference_records(c, &f))
    }

    fn claim(
        &self,
        meeting: &str,
        me: &NodeAddress,
        now: Option<i64>,
        lease: i64,
    ) -> Result<Lease, StoreError> {
        let (meeting, me) = (meeting.to_owned(), me.clone());
        let meeting_name = meeting.clone();
        self.call(move |c| {
            let claim = claim_sql(|i| format!("${i}"), DB_NOW);
            for _ in 0..CLAIM_ATTEMPTS {
                let mut tx = c.transaction()?;
                // The holder before this claim (its row locked until the claim commits).
                let before: Option<String> = tx
                    .query_opt(
                        "SELECT node FROM placement WHERE meeting = $1 FOR UPDATE",
                        &[&meeting],
                    )?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                let params: [&(dyn postgres::types::ToSql + Sync); 6] =
                    [&meeting, &me.node, &me.sip, &me.api, &now, &lease];
                let owner = match tx.query_opt(&claim, &params)? {
                    Some(row) => Some(row),
                    None => tx.query_opt(
                        "SELECT meeting, node, sip, api, expires_at FROM placement
                         WHERE meeting = $1",
                        &[&meeting],
                    )?,
                };
                let Some(row) = owner else {
                    tx.commit()?;
                    continue;
                };
                let lease = lease_row(&row)?;
                // Taken over from a node whose lease ran out: that node is gone, and so are
                // the calls it had in this meeting.
                if let Some(lost) = before.filter(|b| *b != me.node && lease.owner.node == me.node)
                {
                    tx.execute(
                        &format!(
                            "UPDATE records SET left_at = COALESCE($1, {DB_NOW}),
                             reason = 'node-lost'
                             WHERE node = $2 AND conference = $3 AND left_at IS NULL"
                        ),
                        &[&now, &lost, &meeting],
                    )?;
                }
                tx.commit()?;
                return Ok(Some(lease));
            }
            Ok(None)
        })?
        .ok_or_else(|| StoreError::Contended(meeting_name))
    }

    fn renew(
        &self,
        node: &str,
        meetings: &[String],
        now: Option<i64>,
        lease: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let (node, meetings) = (node.to_owned(), meetings.to_vec());
        self.call(move |c| {
            c.query(
                &format!(
                    "UPDATE placement SET expires_at = COALESCE($2, {DB_NOW}) + $3::BIGINT
                     WHERE node = $1 AND meeting = ANY($4)
                       AND expires_at > COALESCE($2, {DB_NOW})
                     RETURNING meeting, expires_at"
                ),
                &[&node, &now, &lease, &meetings],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
    }

    fn release(
        &self,
        meeting: &str,
        node: &str,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let (meeting, node) = (meeting.to_owned(), node.to_owned());
        self.call(move |c| {
            c.execute(
                "DELETE FROM placement WHERE meeting = $1 AND node = $2
                 AND ($3::BIGINT IS NULL OR expires_at = $3)",
                &[&meeting, &node, &expires_at],
            )
        })
        .map(|n| n > 0)
    }

    fn leases(&self, now: Option<i64>) -> Result<Vec<Lease>, StoreError> {
        self.call(move |c| {
            c.query(
                &format!(
                    "SELECT meeting, node, sip, api, expires_at FROM placement
                     WHERE expires_at > COALESCE($1, {DB_NOW}) ORDER BY meeting"
                ),
                &[&now],
            )?
            .iter()
            .map(lease_row)
            .collect()
        })
    }

    fn record_sink(&self, _patience: Patience) -> Result<Box<dyn RecordSink>, StoreError> {
        Ok(Box::new(PostgresSink {
            conn: Connection::new(self.config.clone()),
            node: self.node.clone(),
        }))
    }
}

/// The database's clock in ms since the epoch: one clock for every node.
const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::BIGINT";

fn lease_row(r: &postgres::Row) -> Result<Lease, postgres::Error> {
    Ok(Lease {
        meeting: r.try_get(0)?,
        owner: NodeAddress {
            node: r.try_get(1)?,
            sip: r.try_get(2)?,
            api: r.try_get(3)?,
        },
        expires_at: r.try_get(4)?,
    })
}

fn conference_row(r: &postgres::Row) -> Result<StoredConference, postgres::Error> {
    Ok(ConferenceRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        access: r.try_get(2)?,
        passcode: r.try_get(3)?,
        leader_pin: r.try_get(4)?,
        attendees: r.try_get(5)?,
        locked: r.try_get(6)?,
        max_participants: r.try_get(7)?,
        wait_for_leader: r.try_get(8)?,
        max_talkers: r.try_get(9)?,
        created_at: r.try_get(10)?,
        entry_exit: r.try_get(11)?,
        srtp: r.try_get(12)?,
    }
    .into_stored())
}

#[path = "postgres_records.rs"]
mod postgres_records;
#[path = "postgres_webhooks.rs"]
mod postgres_webhooks;

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            without_password("postgres://confab:s3cret@db.example:5432/confab"),
            "postgres://confab:***@db.example:5432/confab"
        );
        assert_eq!(
            without_password("postgres://db.example/confab"),
            "postgres://db.example/confab"
        );
        assert_eq!(without_password("host=db password=x"), "(not a URL)");
        assert_eq!(
            without_password("postgres://u:pa/ss@w@db/confab?password=x&sslmode=disable"),
            "postgres://u:***@db/confab"
        );
        assert_eq!(
            without_password("postgres://u@db/confab?password=x"),
            "postgres://u:***@db/confab"
        );
    }
}
