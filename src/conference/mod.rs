//! Conferences: the roster (who, in which state, under which policy) and talker selection.

pub mod roster;
pub mod talkers;

pub use roster::{
    DisconnectReason, Event, JoinError, Joining, Participant, ParticipantId, Policy, Role, Roster,
    State,
};
