//! The PostgreSQL backend's record writer: the rows of call records, written in transactions
//! on the writer's own connection, and which failures may pass.

use postgres::Client;

use super::Connection;
use crate::store::conference_records::CONFERENCE_RECORD_COLUMNS;
use crate::store::records::{MAX_PAGE, RecordSink, RecordTx, WriteError};
use crate::store::{ConferenceRecord, Record, RecordFilter};

/// The schema's third version: where each leg comes from, and conference sessions.
pub(super) const MIGRATION: &str = "
    ALTER TABLE records ADD COLUMN user_agent TEXT;
    ALTER TABLE records ADD COLUMN remote TEXT;
    CREATE INDEX records_by_uri ON records (uri, joined_at);
    CREATE TABLE conference_records (
        id BIGSERIAL PRIMARY KEY,
        conference TEXT NOT NULL,
        node TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        ended_at BIGINT,
        reason TEXT,
        peak_participants BIGINT
    );
    CREATE INDEX conference_records_by_conference ON conference_records (conference, started_at);
    CREATE INDEX conference_records_by_time ON conference_records (started_at);
    CREATE INDEX conference_records_open_by_node ON conference_records (node)
        WHERE ended_at IS NULL;
";

/// Conference sessions, newest first.
pub(super) fn conference_records(
    c: &mut Client,
    f: &RecordFilter,
) -> Result<Vec<ConferenceRecord>, postgres::Error> {
    c.query(
        &format!(
            "SELECT {CONFERENCE_RECORD_COLUMNS} FROM conference_records
             WHERE ($1::TEXT IS NULL OR conference = $1)
               AND ($2::BIGINT IS NULL OR started_at >= $2)
               AND ($3::BIGINT IS NULL OR started_at < $3)
             ORDER BY started_at DESC, id DESC LIMIT $4 OFFSET $5"
        ),
        &[
            &f.conference,
            &f.since,
            &f.until,
            &(f.limit.min(MAX_PAGE) as i64),
            &(i64::try_from(f.offset).unwrap_or(i64::MAX)),
        ],
    )?
    .iter()
    .map(|r| {
        Ok(ConferenceRecord {
            id: r.try_get(0)?,
            conference: r.try_get(1)?,
            node: r.try_get(2)?,
            started_at: r.try_get(3)?,
            ended_at: r.try_get(4)?,
            reason: r.try_get(5)?,
            peak_participants: r.try_get::<_, Option<i64>>(6)?.map(|p| p.max(0) as u64),
        })
    })
    .collect()
}

pub(super) fn record_row(r: &postgres::Row) -> Result<Record, postgres::Error> {
    Ok(Record {
        id: r.try_get(0)?,
        conference: r.try_get(1)?,
        participant: r.try_get(2)?,
        display_name: r.try_get(3)?,
        uri: r.try_get(4)?,
        role: r.try_get(5)?,
        transport: r.try_get(6)?,
        codec: r.try_get(7)?,
        srtp: r.try_get(8)?,
        joined_at: r.try_get(9)?,
        left_at: r.try_get(10)?,
        reason: r.try_get(11)?,
        sip_status: r
            .try_get::<_, Option<i32>>(12)?
            .and_then(|s| u16::try_from(s).ok()),
        packets_in: r.try_get::<_, i64>(13)?.max(0) as u64,
        packets_out: r.try_get::<_, i64>(14)?.max(0) as u64,
        packets_lost: r.try_get(15)?,
        jitter_ms: r.try_get(16)?,
        rtt_ms: r.try_get(17)?,
        mos: r.try_get(18)?,
        user_agent: r.try_get(19)?,
        remote: r.try_get(20)?,
    })
}

/// The record writer's own connection; its rows name this node.
pub(super) struct PostgresSink {
    pub(super) conn: Connection,
    pub(super) node: String,
}

impl RecordSink for PostgresSink {
    fn transaction(
        &mut self,
        write: &mut dyn FnMut(&mut dyn RecordTx) -> Result<(), WriteError>,
    ) -> Result<(), WriteError> {
        let result = (|| {
            let client = self.conn.client().map_err(write_error)?;
            let mut tx = client.transaction().map_err(write_error)?;
            write(&mut PostgresTx {
                tx: &mut tx,
                node: &self.node,
            })?;
            tx.commit().map_err(write_error)
        })();
        if self.conn.client.as_ref().is_some_and(Client::is_closed) {
            self.conn.client = None;
        }
        result
    }

    #[cfg(test)]
    fn execute_test_sql(&mut self, sql: &str) {
        if let Ok(client) = self.conn.client() {
            let _ = client.batch_execute(sql);
        }
    }
}

struct PostgresTx<'a, 'b> {
    tx: &'a mut postgres::Transaction<'b>,
    node: &'a str,
}

impl RecordTx for PostgresTx<'_, '_> {
    fn insert(&mut self, r: &Record) -> Result<i64, WriteError> {
        self.tx
            .query_one(
                "INSERT INTO records (node, conference, participant, display_name, uri, role,
                 transport, codec, srtp, joined_at, user_agent, remote)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                &[
                    &self.node,
                    &r.conference,
                    &r.participant,
                    &r.display_name,
                    &r.uri,
                    &r.role,
                    &r.transport,
                    &r.codec,
                    &r.srtp,
                    &r.joined_at,
                    &r.user_agent,
                    &r.remote,
                ],
            )
            .and_then(|row| row.try_get(0))
            .map_err(write_error)
    }

    fn close(&mut self, id: i64, r: &Record) -> Result<(), WriteError> {
        self.tx
            .execute(
                "UPDATE records SET left_at = $2, reason = $3, sip_status = $4, packets_in = $5,
                 packets_out = $6, packets_lost = $7, jitter_ms = $8, rtt_ms = $9, mos = $10,
                 codec = COALESCE($11, codec), srtp = $12,
                 user_agent = COALESCE($13, user_agent), remote = COALESCE($14, remote)
                 WHERE id = $1",
                &[
                    &id,
                    &r.left_at,
                    &r.reason,
                    &r.sip_status.map(i32::from),
                    &(r.packets_in.min(i64::MAX as u64) as i64),
                    &(r.packets_out.min(i64::MAX as u64) as i64),
                    &r.packets_lost,
                    &r.jitter_ms,
                    &r.rtt_ms,
                    &r.mos,
                    &r.codec,
                    &r.srtp,
                    &r.user_agent,
                    &r.remote,
                ],
            )
            .map(drop)
            .map_err(write_error)
    }

    fn open_session(&mut self, r: &ConferenceRecord) -> Result<i64, WriteError> {
        self.tx
            .query_one(
                "INSERT INTO conference_records (conference, node, started_at)
                 VALUES ($1, $2, $3) RETURNING id",
                &[&r.conference, &self.node, &r.started_at],
            )
            .and_then(|row| row.try_get(0))
            .map_err(write_error)
    }

    fn close_session(&mut self, id: i64, r: &ConferenceRecord) -> Result<(), WriteError> {
        self.tx
            .execute(
                "UPDATE conference_records SET ended_at = $2, reason = $3,
                 peak_participants = $4 WHERE id = $1",
                &[
                    &id,
                    &r.ended_at,
                    &r.reason,
                    &r.peak_participants.map(|p| p.min(i64::MAX as u64) as i64),
                ],
            )
            .map(drop)
            .map_err(write_error)
    }
}

/// Whether a failed write may succeed later as it is: the connection (lost, refused, class
/// 08), resources such as a full disk (53), an operator's shutdown (57), a conflict (40).
pub(super) fn write_error(e: postgres::Error) -> WriteError {
    let passing = match e.code() {
        None => std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()),
        Some(code) => ["08", "53", "57", "40"]
            .iter()
            .any(|class| code.code().starts_with(class)),
    };
    WriteError {
        passing: passing || e.is_closed(),
        message: e.to_string(),
    }
}
