//! The SQLite backend's record writer: the rows of call records and conference sessions,
//! written in transactions on the writer's own connection, and which failures may pass.

use rusqlite::{Connection, params};

use crate::store::records::{RecordSink, RecordTx, WriteError};
use crate::store::{ConferenceRecord, Record};

/// The record writer's own connection, and the node its conference records name.
pub(super) struct SqliteSink(pub(super) Connection, pub(super) String);

impl RecordSink for SqliteSink {
    fn transaction(
        &mut self,
        write: &mut dyn FnMut(&mut dyn RecordTx) -> Result<(), WriteError>,
    ) -> Result<(), WriteError> {
        let tx = self.0.unchecked_transaction().map_err(write_error)?;
        write(&mut SqliteTx(&tx, &self.1))?;
        tx.commit().map_err(write_error)
    }

    #[cfg(test)]
    fn execute_test_sql(&mut self, sql: &str) {
        let _ = self.0.execute_batch(sql);
    }
}

struct SqliteTx<'a>(&'a Connection, &'a str);

impl RecordTx for SqliteTx<'_> {
    fn insert(&mut self, r: &Record) -> Result<i64, WriteError> {
        self.0
            .execute(
                "INSERT INTO records (conference, participant, display_name, uri, role,
                 transport, codec, srtp, joined_at, user_agent, remote)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    r.conference,
                    r.participant,
                    r.display_name,
                    r.uri,
                    r.role,
                    r.transport,
                    r.codec,
                    r.srtp,
                    r.joined_at,
                    r.user_agent,
                    r.remote,
                ],
            )
            .map_err(write_error)?;
        Ok(self.0.last_insert_rowid())
    }

    fn close(&mut self, id: i64, r: &Record) -> Result<(), WriteError> {
        self.0
            .execute(
                "UPDATE records SET left_at = ?2, reason = ?3, sip_status = ?4, packets_in = ?5,
                 packets_out = ?6, packets_lost = ?7, jitter_ms = ?8, rtt_ms = ?9, mos = ?10,
                 codec = COALESCE(?11, codec), srtp = ?12,
                 user_agent = COALESCE(?13, user_agent), remote = COALESCE(?14, remote)
                 WHERE id = ?1",
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
                    r.user_agent,
                    r.remote,
                ],
            )
            .map(drop)
            .map_err(write_error)
    }

    fn open_session(&mut self, r: &ConferenceRecord) -> Result<i64, WriteError> {
        self.0
            .execute(
                "INSERT INTO conference_records (conference, node, started_at) VALUES (?1, ?2, ?3)",
                params![r.conference, self.1, r.started_at],
            )
            .map_err(write_error)?;
        Ok(self.0.last_insert_rowid())
    }

    fn close_session(&mut self, id: i64, r: &ConferenceRecord) -> Result<(), WriteError> {
        self.0
            .execute(
                "UPDATE conference_records SET ended_at = ?2, reason = ?3, peak_participants = ?4
                 WHERE id = ?1",
                params![
                    id,
                    r.ended_at,
                    r.reason,
                    r.peak_participants.map(|p| p.min(i64::MAX as u64) as i64)
                ],
            )
            .map(drop)
            .map_err(write_error)
    }
}

/// A failed write, and whether it may succeed later as it is: the disk is full, the database
/// is locked or busy, or the file could not be read or written.
fn write_error(e: rusqlite::Error) -> WriteError {
    use rusqlite::ErrorCode::{
        CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, OutOfMemory, SystemIoFailure,
    };
    WriteError {
        passing: matches!(
            e.sqlite_error_code(),
            Some(
                DatabaseBusy
                    | DatabaseLocked
                    | DiskFull
                    | SystemIoFailure
                    | CannotOpen
                    | OutOfMemory
            )
        ),
        message: e.to_string(),
    }
}
