//! What a mixer thread is asked to do: the commands on its queue, the changes to a conference
//! they carry, and how they fail.

use std::sync::Arc;
use std::time::Duration;

use super::conference::{ConferenceCounters, ConferenceId};
use super::stats;
use crate::conference::{JoinError, Joining, Participant, ParticipantId, Policy};
use crate::media::leg::{LegStats, RtpLeg};

/// Something to change in a conference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Mute(ParticipantId, bool),
    Deaf(ParticipantId, bool),
    Hold(ParticipantId, bool),
    /// The participant used a keypad control (its name), done or refused: an event.
    Keyed(ParticipantId, &'static str, bool),
    /// How loud the participant hears the conference.
    ListenGain(ParticipantId, confab_dsp::mix::Gain),
    /// How loud the others hear the participant (its frame enters the mix at this gain).
    TalkGain(ParticipantId, confab_dsp::mix::Gain),
    /// Noise suppression of the participant's audio on or off.
    NoiseSuppression(ParticipantId, bool),
    /// Makes the participant a leader or an attendee.
    SetRole(ParticipantId, crate::conference::Role),
    /// The last SIP status of the participant's call.
    SipStatus(ParticipantId, u16),
    Eject(ParticipantId),
    Hangup(ParticipantId),
    /// Disconnect with a reason of the caller's choosing.
    Remove(ParticipantId, crate::conference::DisconnectReason),
    MuteAll,
    Lock(bool),
    /// New limits: participants, waiting for the leader (the lock is `Lock`).
    Limits {
        max_participants: usize,
        wait_for_leader: bool,
    },
    /// What the conference plays when someone enters or leaves the mix.
    EntryExit(crate::conference::roster::EntryExit),
    End,
}

/// What can be done to a leg from outside.
pub enum LegOp {
    /// Play a prompt (48 kHz) instead of the mix; `None` stops it.
    Play(Option<Arc<[i16]>>),
    /// Play the prompt of the language the leg hears (see [`voice_for`]).
    PlayIn(Voices),
    /// In-band DTMF detection on or off.
    DetectDtmf(bool),
    /// Take the leg out of the conference (answered with the leg).
    Take,
    /// New settings from signalling (codec change, an offerless call's answer).
    Respec(crate::media::leg::LegSpec),
    /// Record the participant's name from now, this long at most (it goes with the leg).
    RecordName(std::time::Duration),
    /// The language the participant hears (it goes with the leg).
    Language(Arc<str>),
}

/// One prompt in every language it is said in, the default language's first: (language,
/// 48 kHz audio).
pub type Voices = Arc<[(Arc<str>, Arc<[i16]>)]>;

/// The audio of `voices` for a leg that hears `language` (none: the default), the default's
/// when `language` has none.
pub(crate) fn voice_for<'v>(voices: &'v Voices, language: Option<&str>) -> Option<&'v Arc<[i16]>> {
    language
        .and_then(|l| voices.iter().find(|(v, _)| &**v == l))
        .or_else(|| voices.first())
        .map(|(_, audio)| audio)
}

#[cfg(test)]
mod voice_tests {
    use super::*;

    #[test]
    fn a_leg_hears_its_own_language_and_the_default_otherwise() {
        let en: Arc<[i16]> = Arc::from([1i16; 4]);
        let de: Arc<[i16]> = Arc::from([2i16; 4]);
        let voices: Voices = Arc::from([
            (Arc::from("en"), Arc::clone(&en)),
            (Arc::from("de"), Arc::clone(&de)),
        ]);
        assert_eq!(voice_for(&voices, Some("de")), Some(&de));
        assert_eq!(voice_for(&voices, Some("en")), Some(&en));
        assert_eq!(voice_for(&voices, None), Some(&en));
        // A language nobody recorded it in: the default's.
        assert_eq!(voice_for(&voices, Some("fr")), Some(&en));
        let none: Voices = Arc::from([]);
        assert_eq!(voice_for(&none, Some("de")), None);
    }
}

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no such conference")]
    NoConference,
    #[error("conference exists already")]
    ConferenceExists,
    #[error("no such participant")]
    NoParticipant,
    #[error(transparent)]
    Join(#[from] JoinError),
}

/// Where a mixer thread sends a command's answer (a one-shot: the caller may await it).
pub type Reply<T> = tokio::sync::oneshot::Sender<Result<T, CommandError>>;

/// A request to a mixer thread.
pub enum Command {
    CreateConference {
        id: ConferenceId,
        policy: Policy,
        max_talkers: usize,
        media_timeout: Duration,
        reply: Reply<Arc<ConferenceCounters>>,
    },
    AddLeg {
        conference: ConferenceId,
        joining: Joining,
        leg: Box<RtpLeg>,
        reply: Reply<()>,
    },
    /// A dial-out: the participant is `inviting`, with no leg yet.
    Invite {
        conference: ConferenceId,
        joining: Joining,
        reply: Reply<()>,
    },
    /// A dial-out was answered: its leg joins the mix (`connecting`, then `connected`).
    Answered {
        conference: ConferenceId,
        leg: Box<RtpLeg>,
        reply: Reply<()>,
    },
    Control {
        conference: ConferenceId,
        control: Control,
        reply: Reply<()>,
    },
    Roster {
        conference: ConferenceId,
        reply: Reply<Vec<Participant>>,
    },
    /// Who may join now (locked, limits).
    Policy {
        conference: ConferenceId,
        reply: Reply<Policy>,
    },
    RosterWithMedia {
        conference: ConferenceId,
        reply: Reply<Vec<(Participant, Option<LegStats>)>>,
    },
    /// A participant's identity (`Participant::identity`) and whether it is present.
    Identity {
        conference: ConferenceId,
        participant: ParticipantId,
        reply: Reply<(Option<String>, bool)>,
    },
    LegStats {
        conference: ConferenceId,
        participant: ParticipantId,
        reply: Reply<LegStats>,
    },
    /// Something done to one leg.
    Leg {
        conference: ConferenceId,
        participant: ParticipantId,
        op: LegOp,
        reply: Reply<Option<Box<RtpLeg>>>,
    },
    /// Attaches a recording's tap to the conference, or detaches it (`None`); answers the tap
    /// it replaced.
    Record {
        conference: ConferenceId,
        tap: Option<crate::recording::RecordingTap>,
        reply: Reply<Option<crate::recording::RecordingTap>>,
    },
    /// The thread's figures for the metrics.
    Metrics {
        reply: Reply<stats::MixerSnapshot>,
    },
    Shutdown,
    /// Test-only: the thread sleeps, as one far behind would (its queue fills meanwhile).
    #[cfg(test)]
    Stall(Duration),
}
