//! The roster of one conference: who is in it, in which state, and the policy that decides who
//! may join. A sans-I/O state machine: calls change it and queue events; nothing here knows
//! about sockets or time.
//!
//! Participant states: `inviting` (a dial-out without an answer) -> `connecting` (answered or
//! accepted; media, passcode or the leader still awaited) -> `connected` (in the mix) ->
//! `disconnected(reason)`. Disconnected participants stay in the roster as history, the most
//! recent [`MAX_HISTORY`] of them at least and twice that at most (the oldest go first).

use std::collections::{HashMap, VecDeque};
use std::fmt;

#[path = "roster_controls.rs"]
mod controls;
#[path = "policy.rs"]
mod policy;
pub use controls::{MAX_GAIN_DB, MIN_GAIN_DB, gain_db};
pub use policy::{EntryExit, Policy};

/// A participant's id, unique within the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

/// A map keyed by participant ids, hashed by [`IdHasher`].
pub(crate) type IdMap<V> = HashMap<ParticipantId, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Hashes a participant id by one multiplication. The mixer looks participants up for every
/// leg on every tick, and SipHash was ~14 % of a town hall tick's instructions. SipHash's
/// keyed hashing defends maps whose keys a remote party chooses; these ids are handed out by
/// this process from a counter, so nobody outside can pick colliding ones.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: an odd multiplier keeps distinct ids distinct in the low bits
        // (the bucket) and spreads them over the high bits (the table's tag byte).
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// A participant's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Attendee,
}

/// Why a participant left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    Hangup,
    Ejected,
    Locked,
    Rejected,
    NoAnswer,
    Busy,
    MediaTimeout,
    ConferenceEnded,
    Full,
    /// A dial-out the called party declined (SIP 603).
    Declined,
    /// Moved to another conference (from the attendant into the meeting the caller keyed).
    Transferred,
    /// Gave up at the attendant (wrong meeting ID or passcode too often).
    AttendantFailed,
    /// A WebRTC peer stopped answering ICE consent checks.
    IceTimeout,
    /// A WebRTC peer's DTLS handshake failed (or its certificate did not match).
    DtlsFailed,
    /// A bug in the bridge ended the call (a panic in the conference's tick).
    InternalError,
}

impl DisconnectReason {
    /// The name used in the API and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Hangup => "hangup",
            DisconnectReason::Ejected => "ejected",
            DisconnectReason::Locked => "locked",
            DisconnectReason::Rejected => "rejected",
            DisconnectReason::NoAnswer => "no-answer",
            DisconnectReason::Busy => "busy",
            DisconnectReason::MediaTimeout => "media-timeout",
            DisconnectReason::ConferenceEnded => "conference-ended",
            DisconnectReason::Full => "full",
            DisconnectReason::Declined => "declined",
            DisconnectReason::Transferred => "transferred",
            DisconnectReason::AttendantFailed => "attendant-failed",
            DisconnectReason::IceTimeout => "ice-timeout",
            DisconnectReason::DtlsFailed => "dtls-failed",
            DisconnectReason::InternalError => "internal-error",
        }
    }
}

/// A participant's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Inviting,
    Connecting,
    Connected,
    Disconnected(DisconnectReason),
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inviting => "inviting",
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Disconnected(_) => "disconnected",
        }
    }

    pub fn is_present(self) -> bool {
        !matches!(self, State::Disconnected(_))
    }
}

/// One roster entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Participant {
    pub id: ParticipantId,
    pub display_name: String,
    pub uri: String,
    pub role: Role,
    /// Who a trusted party says this is (a gateway's asserted identity or From, a signed-in
    /// account, a join token's `identity`): the presentity presence publishes. Never shown
    /// by the API.
    pub identity: Option<String>,
    pub state: State,
    pub muted: bool,
    pub deaf: bool,
    pub speaking: bool,
    /// Media is up (set by the leg); with `wait_for_leader` the participant may still wait.
    pub media_ready: bool,
    /// The caller put the call on hold (SIP sendonly/inactive): neither mixed nor sent the mix.
    pub on_hold: bool,
    /// The last SIP status of the participant's call (a dial-out's 180, 200 or 486, say).
    pub sip_status: Option<u16>,
    /// How loud the others hear the participant, and how loud it hears them (dB, 0: as is).
    pub input_gain_db: f32,
    pub output_gain_db: f32,
}

/// What the roster tells the world.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    State {
        participant: ParticipantId,
        state: State,
    },
    Muted {
        participant: ParticipantId,
        muted: bool,
    },
    Deaf {
        participant: ParticipantId,
        deaf: bool,
    },
    Speaking {
        participant: ParticipantId,
        speaking: bool,
    },
    SpeakingWhileMuted {
        participant: ParticipantId,
    },
    DominantSpeaker {
        participant: ParticipantId,
    },
    Locked {
        locked: bool,
    },
    Ended,
    /// A participant used a keypad control (`done`: false when it was refused, a leader's
    /// control keyed by an attendee).
    Keypad {
        participant: ParticipantId,
        action: &'static str,
        done: bool,
    },
    /// A participant's gains changed (dB).
    Gain {
        participant: ParticipantId,
        input_db: f32,
        output_db: f32,
    },
    /// A participant was made a leader or an attendee.
    Role {
        participant: ParticipantId,
        role: Role,
    },
    /// A DTMF digit from a participant (emitted by the conference tick, not the roster).
    Dtmf {
        participant: ParticipantId,
        digit: char,
        duration_ms: u32,
    },
}

/// Why a join was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the conference is locked")]
    Locked,
    #[error("the conference is full")]
    Full,
    #[error("the conference has ended")]
    Ended,
}

impl JoinError {
    /// The disconnect reason recorded for a refused join.
    pub fn reason(self) -> DisconnectReason {
        match self {
            JoinError::Locked => DisconnectReason::Locked,
            JoinError::Full => DisconnectReason::Full,
            JoinError::Ended => DisconnectReason::ConferenceEnded,
        }
    }
}

/// Asked about a participant the roster does not have (or no longer has present).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no such participant: {0}")]
pub struct UnknownParticipant(pub ParticipantId);

/// Disconnected participants a roster keeps as history. Anyone who can call can add one (a
/// refused join is history too, and the attendant's lobby never ends): past twice this many,
/// the oldest are dropped down to this many.
pub const MAX_HISTORY: usize = 256;

/// The roster of one conference.
#[derive(Debug, Default)]
pub struct Roster {
    /// Bound: the present participants (the conference's limit) plus at most
    /// 2 × [`MAX_HISTORY`] disconnected ones, pruned in `add`.
    participants: Vec<Participant>,
    /// Where each participant is in `participants` (the mixer asks every tick, for every leg).
    /// Same bound and pruning as `participants`, rebuilt when they are pruned.
    index: IdMap<usize>,
    /// Participants present (not disconnected), and leaders connected: kept as states change,
    /// so that admission does not scan the history.
    present: usize,
    leaders_connected: usize,
    /// The disconnected participants, oldest departure first: history is dropped in the
    /// order people left (one who has just left keeps its entry until its leg is gone and its
    /// record closed, whenever it joined). Bound: one per disconnected entry.
    departures: VecDeque<ParticipantId>,
    policy: Policy,
    ended: bool,
    events: VecDeque<Event>,
}

/// How a participant comes in.
#[derive(Clone, Debug)]
pub struct Joining {
    pub id: ParticipantId,
    pub display_name: String,
    pub uri: String,
    pub role: Role,
    /// See [`Participant::identity`].
    pub identity: Option<String>,
}

impl Roster {
    pub fn new(policy: Policy) -> Self {
        Roster {
            policy,
            ..Roster::default()
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn participants(&self) -> &[Participant] {
        &self.participants
    }

    pub fn participant(&self, id: ParticipantId) -> Option<&Participant> {
        self.index.get(&id).and_then(|&i| self.participants.get(i))
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn present_count(&self) -> usize {
        self.present
    }

    fn leader_connected(&self) -> bool {
        self.leaders_connected > 0
    }

    /// Keeps the counts of present participants and connected leaders, and the order of
    /// departures, as one changes state.
    fn count(&mut self, id: ParticipantId, role: Role, from: Option<State>, to: State) {
        if !to.is_present() && from.is_none_or(State::is_present) {
            self.departures.push_back(id);
        }
        let leader_connected = |s: State| role == Role::Leader && s == State::Connected;
        if let Some(from) = from {
            self.present -= usize::from(from.is_present());
            self.leaders_connected -= usize::from(leader_connected(from));
        }
        self.present += usize::from(to.is_present());
        self.leaders_connected += usize::from(leader_connected(to));
    }

    /// Drops the oldest history once there is twice [`MAX_HISTORY`] of it. Allocates (the
    /// index is rebuilt), once per [`MAX_HISTORY`] departures: between ticks.
    fn prune_history(&mut self) {
        let history = self.participants.len() - self.present;
        if history <= 2 * MAX_HISTORY {
            return;
        }
        let drop = history - MAX_HISTORY;
        let gone: std::collections::HashSet<ParticipantId> = self
            .departures
            .drain(..drop.min(self.departures.len()))
            .collect();
        self.participants
            .retain(|p| p.state.is_present() || !gone.contains(&p.id));
        self.index.clear();
        for (i, p) in self.participants.iter().enumerate() {
            // A present entry wins over history under the same id (a refused rejoin).
            let present_there = self
                .index
                .get(&p.id)
                .is_some_and(|&j| self.participants[j].state.is_present());
            if !present_there {
                self.index.insert(p.id, i);
            }
        }
    }

    fn admit(&self, role: Role) -> Result<(), JoinError> {
        if self.ended {
            return Err(JoinError::Ended);
        }
        if self.policy.locked && role != Role::Leader {
            return Err(JoinError::Locked);
        }
        if self.policy.max_participants > 0 && self.present_count() >= self.policy.max_participants
        {
            return Err(JoinError::Full);
        }
        Ok(())
    }

    fn add(&mut self, joining: Joining, state: State) {
        self.prune_history();
        self.count(joining.id, joining.role, None, state);
        // A refused rejoin under the same id keeps the present entry reachable.
        if !self
            .participant(joining.id)
            .is_some_and(|p| p.state.is_present())
        {
            self.index.insert(joining.id, self.participants.len());
        }
        self.participants.push(Participant {
            id: joining.id,
            display_name: joining.display_name,
            uri: joining.uri,
            role: joining.role,
            identity: joining.identity,
            state,
            muted: false,
            deaf: false,
            speaking: false,
            media_ready: false,
            on_hold: false,
            sip_status: None,
            input_gain_db: 0.0,
            output_gain_db: 0.0,
        });
        self.events.push_back(Event::State {
            participant: joining.id,
            state,
        });
    }

    /// A dial-out: the participant is `inviting` until answered.
    pub fn invite(&mut self, joining: Joining) -> Result<(), JoinError> {
        self.admit(joining.role)?;
        self.add(joining, State::Inviting);
        Ok(())
    }

    /// A dial-in (or an answered leg negotiated elsewhere): the participant is `connecting`.
    /// A refused join is kept in the history as disconnected with the refusal's reason.
    pub fn join(&mut self, joining: Joining) -> Result<(), JoinError> {
        match self.admit(joining.role) {
            Ok(()) => {
                self.add(joining, State::Connecting);
                Ok(())
            }
            Err(e) => {
                self.add(joining, State::Disconnected(e.reason()));
                Err(e)
            }
        }
    }

    fn find_mut(&mut self, id: ParticipantId) -> Result<&mut Participant, UnknownParticipant> {
        self.index
            .get(&id)
            .and_then(|&i| self.participants.get_mut(i))
            .filter(|p| p.state.is_present())
            .ok_or(UnknownParticipant(id))
    }

    fn set_state(&mut self, id: ParticipantId, state: State) -> Result<(), UnknownParticipant> {
        let p = self.find_mut(id)?;
        if p.state != state {
            let (role, from) = (p.role, p.state);
            p.state = state;
            if !state.is_present() {
                p.speaking = false;
            }
            self.count(id, role, Some(from), state);
            self.events.push_back(Event::State {
                participant: id,
                state,
            });
        }
        Ok(())
    }

    /// A dial-out was answered: `inviting` -> `connecting`.
    pub fn answered(&mut self, id: ParticipantId) -> Result<(), UnknownParticipant> {
        if self.find_mut(id)?.state == State::Inviting {
            self.set_state(id, State::Connecting)?;
        }
        Ok(())
    }

    /// The participant's media is up. It connects now, unless attendees wait for a leader.
    pub fn media_ready(&mut self, id: ParticipantId) -> Result<(), UnknownParticipant> {
        let p = self.find_mut(id)?;
        p.media_ready = true;
        let (role, state) = (p.role, p.state);
        if state != State::Connecting {
            return Ok(());
        }
        if role == Role::Attendee && self.policy.wait_for_leader && !self.leader_connected() {
            return Ok(());
        }
        self.set_state(id, State::Connected)?;
        if role == Role::Leader {
            self.release_waiting();
        }
        Ok(())
    }

    fn release_waiting(&mut self) {
        let waiting: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|p| p.state == State::Connecting && p.media_ready)
            .map(|p| p.id)
            .collect();
        for id in waiting {
            let _ = self.set_state(id, State::Connected);
        }
    }

    /// The participant left (or was made to leave) with `reason`.
    pub fn disconnect(
        &mut self,
        id: ParticipantId,
        reason: DisconnectReason,
    ) -> Result<(), UnknownParticipant> {
        self.set_state(id, State::Disconnected(reason))
    }

    pub fn set_muted(&mut self, id: ParticipantId, muted: bool) -> Result<(), UnknownParticipant> {
        let p = self.find_mut(id)?;
        if p.muted != muted {
            p.muted = muted;
            self.events.push_back(Event::Muted {
                participant: id,
                muted,
            });
        }
        Ok(())
    }

    pub fn set_deaf(&mut self, id: ParticipantId, deaf: bool) -> Result<(), UnknownParticipant> {
        let p = self.find_mut(id)?;
        if p.deaf != deaf {
            p.deaf = deaf;
            self.events.push_back(Event::Deaf {
                participant: id,
                deaf,
            });
        }
        Ok(())
    }

    /// Ejects a participant.
    pub fn eject(&mut self, id: ParticipantId) -> Result<(), UnknownParticipant> {
        self.disconnect(id, DisconnectReason::Ejected)
    }

    /// Ends the conference: everyone present is disconnected with `conference-ended`.
    pub fn end(&mut self) {
        if self.ended {
            return;
        }
        let ids: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|p| p.state.is_present())
            .map(|p| p.id)
            .collect();
        for id in ids {
            let _ = self.disconnect(id, DisconnectReason::ConferenceEnded);
        }
        self.ended = true;
        self.events.push_back(Event::Ended);
    }

    /// The speech detector's verdict for a participant. A muted participant who talks is
    /// reported as speaking while muted (once per talk spurt).
    pub fn set_speaking(
        &mut self,
        id: ParticipantId,
        speaking: bool,
    ) -> Result<(), UnknownParticipant> {
        let p = self.find_mut(id)?;
        if p.speaking == speaking {
            return Ok(());
        }
        p.speaking = speaking;
        let muted = p.muted;
        self.events.push_back(Event::Speaking {
            participant: id,
            speaking,
        });
        if speaking && muted {
            self.events
                .push_back(Event::SpeakingWhileMuted { participant: id });
        }
        Ok(())
    }

    /// Records a new dominant speaker.
    pub fn dominant_speaker(&mut self, id: ParticipantId) {
        self.events
            .push_back(Event::DominantSpeaker { participant: id });
    }

    /// Whether a participant's audio enters the mix.
    pub fn heard(&self, id: ParticipantId) -> bool {
        self.participant(id)
            .is_some_and(|p| p.state == State::Connected && !p.muted && !p.on_hold)
    }

    /// Whether a participant hears the mix (connected, not deaf, not on hold).
    pub fn hears(&self, id: ParticipantId) -> bool {
        self.participant(id)
            .is_some_and(|p| p.state == State::Connected && !p.deaf && !p.on_hold)
    }
}

#[cfg(test)]
#[path = "roster_tests.rs"]
mod tests;
