//! Conferences: the roster (who, in which state, under which policy) and talker selection.

pub mod roster;
pub mod talkers;

pub use roster::{
    DisconnectReason, Event, JoinError, Joining, Participant, ParticipantId, Policy, Role, Roster,
    State,
};

/// How dial-in callers get into a conference: the digits the attendant asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Digits every caller keys (none: the meeting ID is enough).
    pub passcode: Option<String>,
    /// Digits that make a caller a leader.
    pub leader_pin: Option<String>,
}
