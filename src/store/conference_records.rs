//! Conference records: one row per conference session on a node, from the moment the
//! conference starts there (created through the API, loaded at start, taken over from another
//! node) to its end (deleted, or ended there). Written by the record writer like the legs'
//! records, so the mixer that starts and ends conferences never waits on the database; a
//! session a node left open (it stopped or died) is closed as `abandoned` when it starts again.

use std::time::Instant;

/// A conference session as stored and as the API shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConferenceRecord {
    pub id: i64,
    pub conference: String,
    /// The node that ran it (its `cluster.node` name; empty for a store opened without one).
    pub node: String,
    /// Milliseconds since the Unix epoch.
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// Why it ended: `ended` (deleted, or ended on this node), `abandoned` (the node stopped).
    pub reason: Option<String>,
    /// The most participants present at once, known once it ended.
    pub peak_participants: Option<u64>,
}

/// What a mixer knows when a conference starts or ends; the writer stamps the wall-clock time.
#[derive(Clone, Debug)]
pub struct ConferenceFacts {
    pub conference: String,
    /// Started (true) or ended.
    pub started: bool,
    pub peak_participants: usize,
    /// When, on the mixer's clock.
    pub at: Instant,
}

impl ConferenceFacts {
    /// The row of these facts, stamped `at_ms` (ms since the Unix epoch) as the time of its
    /// start (and of its end, for a closing row).
    pub(super) fn row(&self, at_ms: i64) -> ConferenceRecord {
        ConferenceRecord {
            conference: self.conference.clone(),
            started_at: at_ms,
            ended_at: (!self.started).then_some(at_ms),
            reason: (!self.started).then(|| "ended".to_owned()),
            peak_participants: (!self.started).then_some(self.peak_participants as u64),
            ..ConferenceRecord::default()
        }
    }
}

/// The columns of a conference record row, in the order both backends select them.
pub(super) const CONFERENCE_RECORD_COLUMNS: &str =
    "id, conference, node, started_at, ended_at, reason, peak_participants";
