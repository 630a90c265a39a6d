//! The PostgreSQL backend's record writer: the rows of call records, written in transactions
//! on the writer's own connection, and which failures may pass.

use postgres::Client;

use super::Connection;
use crate::store::Record;
use crate::store::records::{RecordSink, RecordTx, WriteError};

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
                 transport, codec, srtp, joined_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
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
                 codec = COALESCE($11, codec), srtp = $12 WHERE id = $1",
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
