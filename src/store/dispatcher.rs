//! Kamailio's dispatcher set, kept by the nodes themselves (`storage.dispatcher_set`).
//!
//! Kamailio's dispatcher module reads its destinations from a `dispatcher` table (db_postgres)
//! and reloads it on a timer (deploy/kamailio/kamailio.cfg, `WITH_DB`). With the table in the
//! nodes' own database, a node that starts lists itself, a node that drains or stops takes
//! itself out, and the proxy follows without a file to edit. The hash no longer decides where
//! a meeting runs: a node asked for a meeting another node holds answers 302 with the owner,
//! and the proxy follows the redirect.
//!
//! Each node writes only its own row, named by its node name (the `description` column):
//! a node that restarts with a new address replaces its row. A node that dies leaves its row
//! until it starts again; the proxy's OPTIONS probes take it out of the rotation meanwhile.

use postgres::Client;

use super::postgres::client_config;
use super::{NodeAddress, StoreError};

/// Kamailio's schema for the table and its version row (db_postgres checks the version, 4),
/// made when missing, so the proxy can be pointed at the nodes' database as it is. An
/// operator who loaded Kamailio's own schema keeps it.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS version (
    id SERIAL PRIMARY KEY NOT NULL,
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_table_name_idx UNIQUE (table_name)
);
INSERT INTO version (table_name, table_version) VALUES ('version', 1)
    ON CONFLICT (table_name) DO NOTHING;
CREATE TABLE IF NOT EXISTS dispatcher (
    id SERIAL PRIMARY KEY NOT NULL,
    setid INTEGER DEFAULT 0 NOT NULL,
    destination VARCHAR(192) DEFAULT '' NOT NULL,
    flags INTEGER DEFAULT 0 NOT NULL,
    priority INTEGER DEFAULT 0 NOT NULL,
    attrs VARCHAR(128) DEFAULT '' NOT NULL,
    description VARCHAR(64) DEFAULT '' NOT NULL
);
INSERT INTO version (table_name, table_version) VALUES ('dispatcher', 4)
    ON CONFLICT (table_name) DO NOTHING;
";

/// The advisory lock the schema is made under (nodes starting together make it once).
const SCHEMA_LOCK: i64 = 0x636f_6e66_6473;

/// This node's row in Kamailio's dispatcher table, on its own connection (used from the
/// placement thread only, never from the runtime).
pub struct DispatcherTable {
    config: postgres::Config,
    /// The URL without its password, for messages.
    url: String,
    client: Option<Client>,
    set: i32,
    /// `sip:host:port`, as Kamailio sends to it.
    destination: String,
    node: String,
    /// Whether the schema is known to be there.
    schema: bool,
}

impl DispatcherTable {
    /// This node (`me`) in dispatcher set `set` of the database at `url`. Connects when first
    /// used.
    pub fn new(url: &str, set: u32, me: &NodeAddress) -> Result<DispatcherTable, StoreError> {
        let (config, shown) = client_config(url)?;
        let set = i32::try_from(set)
            .map_err(|_| StoreError::Url(format!("dispatcher set {set} is out of range")))?;
        Ok(DispatcherTable {
            config,
            url: shown,
            client: None,
            set,
            destination: format!("sip:{}", me.sip),
            node: me.node.clone(),
            schema: false,
        })
    }

    /// Brings the table to this node listed (`true`: started, not draining) or not. Every
    /// call writes the whole wish, so a row deleted or changed by hand comes back.
    pub fn keep(&mut self, listed: bool) -> Result<(), StoreError> {
        let result = self.write(listed);
        if result.is_err() {
            // Connected again at the next call.
            self.client = None;
        }
        result
    }

    fn write(&mut self, listed: bool) -> Result<(), StoreError> {
        let url = self.url.clone();
        let err = |source| StoreError::Postgres {
            url: url.clone(),
            source,
        };
        if self.client.is_none() {
            self.client = Some(self.config.connect(postgres::NoTls).map_err(err)?);
        }
        let Some(client) = self.client.as_mut() else {
            return Ok(());
        };
        let mut tx = client.transaction().map_err(err)?;
        if !self.schema {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
                .map_err(err)?;
            tx.batch_execute(SCHEMA).map_err(err)?;
        }
        // Any other row of this node (another set, an old address) goes.
        tx.execute(
            "DELETE FROM dispatcher WHERE description = $1
             AND NOT ($4 AND setid = $2 AND destination = $3)",
            &[&self.node, &self.set, &self.destination, &listed],
        )
        .map_err(err)?;
        if listed {
            tx.execute(
                "INSERT INTO dispatcher (setid, destination, description)
                 SELECT $1::integer, $2::varchar, $3::varchar WHERE NOT EXISTS
                 (SELECT 1 FROM dispatcher WHERE description = $3::varchar)",
                &[&self.set, &self.destination, &self.node],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        self.schema = true;
        Ok(())
    }
}
