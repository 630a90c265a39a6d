//! The JSON sidecar of a recording: what it is, and who joined, left and spoke when, in
//! recording time (milliseconds from its start). The writer keeps it in memory and writes it
//! whole (to a temporary file, then renamed) at the start, every few seconds and at the end.

use serde::{Deserialize, Serialize};

/// Participants one recording tells of at most (later ones are left out).
pub(crate) const MAX_PARTICIPANTS: usize = 1000;
/// Speaking intervals kept per participant at most (later ones are left out).
pub(crate) const MAX_INTERVALS: usize = 10_000;

/// Whether a recording is still being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordingState {
    /// Being written (or the bridge stopped without closing it: the audio is playable up to
    /// its last second).
    Recording,
    /// Stopped, or its conference ended.
    Complete,
    /// The bridge stopped without closing it (killed, a crash): found so at the next start,
    /// its length read from the audio's last page, which plays.
    Interrupted,
}

/// A stretch of time in the recording (ms from its start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Interval {
    pub start_ms: u64,
    pub end_ms: u64,
}

/// One participant in a recording.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ParticipantTrack {
    /// The participant's id in its conference.
    pub id: u64,
    /// Display name, when the roster still knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it joined (0: it was there when the recording started).
    pub joined_ms: u64,
    /// When it left, if it left before the recording ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_ms: Option<u64>,
    /// When it was speaking.
    pub speaking: Vec<Interval>,
    /// Speaking since (an interval still open).
    #[serde(skip)]
    pub(crate) talking_since: Option<u64>,
}

/// A recording's metadata: the sidecar, and `GET /v1/recordings/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordingMeta {
    pub id: String,
    /// The conference (meeting ID) recorded.
    pub conference: String,
    /// When the recording started (Unix time, ms).
    pub started_at_ms: u64,
    pub state: RecordingState,
    /// Audio written so far (ms).
    pub duration_ms: u64,
    /// Size of the audio file (bytes).
    #[serde(default)]
    pub bytes: u64,
    /// `audio/ogg; codecs=opus` (48 kHz, mono).
    pub format: String,
    /// Frames lost because the writer fell behind (each 20 ms, written as silence).
    #[serde(default)]
    pub dropped_frames: u64,
    pub participants: Vec<ParticipantTrack>,
}

impl RecordingMeta {
    pub(crate) fn new(id: String, conference: String, started_at_ms: u64) -> Self {
        RecordingMeta {
            id,
            conference,
            started_at_ms,
            state: RecordingState::Recording,
            duration_ms: 0,
            bytes: 0,
            format: "audio/ogg; codecs=opus".to_owned(),
            dropped_frames: 0,
            participants: Vec::new(),
        }
    }

    fn track(&mut self, id: u64, at_ms: u64) -> Option<&mut ParticipantTrack> {
        if let Some(i) = self.participants.iter().position(|p| p.id == id) {
            return self.participants.get_mut(i);
        }
        if self.participants.len() >= MAX_PARTICIPANTS {
            return None;
        }
        self.participants.push(ParticipantTrack {
            id,
            name: None,
            joined_ms: at_ms,
            left_ms: None,
            speaking: Vec::new(),
            talking_since: None,
        });
        self.participants.last_mut()
    }

    /// A participant joined (or was there at the start) at `at_ms`.
    pub(crate) fn joined(&mut self, id: u64, at_ms: u64, name: Option<String>) {
        if let Some(t) = self.track(id, at_ms)
            && name.is_some()
        {
            t.name = name;
        }
    }

    pub(crate) fn left(&mut self, id: u64, at_ms: u64) {
        if let Some(t) = self.track(id, at_ms) {
            close_talk(t, at_ms);
            t.left_ms = Some(at_ms);
        }
    }

    pub(crate) fn talking(&mut self, id: u64, on: bool, at_ms: u64) {
        let Some(t) = self.track(id, at_ms) else {
            return;
        };
        if on {
            if t.talking_since.is_none() {
                t.talking_since = Some(at_ms);
            }
        } else {
            close_talk(t, at_ms);
        }
    }

    /// Names from the roster for participants that have none yet.
    pub(crate) fn name(&mut self, id: u64, name: &str) {
        if let Some(t) = self.participants.iter_mut().find(|p| p.id == id)
            && t.name.is_none()
            && !name.is_empty()
        {
            t.name = Some(name.to_owned());
        }
    }

    /// The recording ends at `at_ms`: open speaking intervals close there.
    pub(crate) fn finish(&mut self, at_ms: u64) {
        for t in &mut self.participants {
            close_talk(t, at_ms);
        }
        self.duration_ms = at_ms;
        self.state = RecordingState::Complete;
    }

    /// The sidecar as written now: open intervals end at `at_ms` in the copy on disk.
    pub(crate) fn snapshot(&self, at_ms: u64) -> RecordingMeta {
        let mut copy = self.clone();
        for t in &mut copy.participants {
            close_talk(t, at_ms);
        }
        copy.duration_ms = at_ms;
        copy
    }
}

fn close_talk(t: &mut ParticipantTrack, at_ms: u64) {
    if let Some(start) = t.talking_since.take()
        && t.speaking.len() < MAX_INTERVALS
    {
        t.speaking.push(Interval {
            start_ms: start,
            end_ms: at_ms.max(start),
        });
    }
}
