//! The SIP participants as the shell knows them: one entry per participant, holding the
//! conference its leg is in and the one phase it is in. Phases are types, not flags spread
//! over several maps, so that a caller is never "at the attendant" and "moving" at once, and a
//! hang-up finds out in one look whether it must follow a leg on its way out of the lobby.

use std::collections::HashMap;

use super::LOBBY;
use super::dial::PendingDial;
use super::keys::InMeeting;
use super::lobby::AtLobby;
use super::shell::Caller;
use crate::conference::ParticipantId;
use crate::media::leg::LegSpec;

/// Where a SIP participant is in its call.
pub(crate) enum Phase {
    /// A dial-out not answered yet: its reserved ports wait for the answer.
    Dialing(PendingDial),
    /// In the lobby, at the language menu or the attendant.
    AtAttendant(Box<(AtLobby, Caller)>),
    /// Keyed its way into a meeting: its leg is on the way out of the lobby (a hang-up now
    /// must follow the leg there). It keeps its keypad state and language, and new leg
    /// settings a re-INVITE brought meanwhile (for the leg where it lands).
    Moving {
        keys: InMeeting,
        respec: Option<Box<LegSpec>>,
    },
    /// In the lobby, told why a meeting turned it away; hung up after.
    Refused,
    /// Done at the attendant without entering a meeting (the goodbye plays, or it is
    /// referred to another node); hung up or transferred after.
    Leaving,
    /// In a conference, answered or moved in: its keypad state and language.
    InMeeting(InMeeting),
}

/// One SIP participant.
pub(crate) struct SipParticipant {
    /// The conference its leg is in now (the lobby while at the attendant, moving out of it,
    /// refused or leaving).
    pub(crate) conference: String,
    pub(crate) phase: Phase,
}

/// Every SIP participant of this node. Bound: one per call the call core holds (itself
/// capped by `sip.max_calls`) and per dial-out under way (capped by the API's limits). Pruning:
/// an entry goes when its participant is disconnected (a control event) or its dial-out fails.
#[derive(Default)]
pub(crate) struct SipParticipants {
    by_id: HashMap<ParticipantId, SipParticipant>,
}

impl SipParticipants {
    /// A dial-out whose INVITE is going out, into `meeting`.
    pub(crate) fn dialing(&mut self, p: ParticipantId, meeting: String, pending: PendingDial) {
        self.set(p, meeting, Phase::Dialing(pending));
    }

    /// The dial-out was answered: it is in its meeting now. Its meeting and ports, if it was
    /// still dialling.
    pub(crate) fn answered(&mut self, p: ParticipantId) -> Option<(String, PendingDial)> {
        let entry = self.by_id.get_mut(&p)?;
        if !matches!(entry.phase, Phase::Dialing(_)) {
            return None;
        }
        let Phase::Dialing(pending) =
            std::mem::replace(&mut entry.phase, Phase::InMeeting(InMeeting::default()))
        else {
            return None;
        };
        Some((entry.conference.clone(), pending))
    }

    /// A caller whose leg joined `conference` directly (a meeting, not the lobby), hearing
    /// `language`.
    pub(crate) fn in_meeting(&mut self, p: ParticipantId, conference: String, language: String) {
        self.set(
            p,
            conference,
            Phase::InMeeting(InMeeting::speaking(language)),
        );
    }

    /// A caller in the lobby, to be told why a meeting refused it. Only one still known: one
    /// that left meanwhile is not put back (nothing would take it out again).
    pub(crate) fn refused(&mut self, p: ParticipantId) {
        if let Some(entry) = self.by_id.get_mut(&p) {
            entry.phase = Phase::Refused;
        }
    }

    /// A caller in the lobby whose way out is not a meeting here (it is referred to another
    /// node): hung up or transferred after.
    pub(crate) fn leaving(&mut self, p: ParticipantId) {
        if let Some(entry) = self.by_id.get_mut(&p) {
            entry.phase = Phase::Leaving;
        }
    }

    /// A caller at the attendant (or its language menu) in the lobby.
    pub(crate) fn at_attendant(&mut self, p: ParticipantId, at: AtLobby, caller: Caller) {
        self.set(
            p,
            LOBBY.to_owned(),
            Phase::AtAttendant(Box::new((at, caller))),
        );
    }

    /// The attendant of a caller at it.
    pub(crate) fn attendant_mut(&mut self, p: ParticipantId) -> Option<&mut (AtLobby, Caller)> {
        match &mut self.by_id.get_mut(&p)?.phase {
            Phase::AtAttendant(at) => Some(at),
            _ => None,
        }
    }

    /// Every caller at the attendant.
    pub(crate) fn attendants_mut(
        &mut self,
    ) -> impl Iterator<Item = (ParticipantId, &mut (AtLobby, Caller))> {
        self.by_id
            .iter_mut()
            .filter_map(|(p, e)| match &mut e.phase {
                Phase::AtAttendant(at) => Some((*p, &mut **at)),
                _ => None,
            })
    }

    /// The caller at the attendant, as it called.
    pub(crate) fn caller(&self, p: ParticipantId) -> Option<&Caller> {
        match &self.by_id.get(&p)?.phase {
            Phase::AtAttendant(at) => Some(&at.1),
            _ => None,
        }
    }

    /// Takes a caller's place at the attendant (to give it a new one); it is leaving until it
    /// gets one.
    pub(crate) fn take_attendant(&mut self, p: ParticipantId) -> Option<(AtLobby, Caller)> {
        let entry = self.by_id.get_mut(&p)?;
        if !matches!(entry.phase, Phase::AtAttendant(_)) {
            return None;
        }
        match std::mem::replace(&mut entry.phase, Phase::Leaving) {
            Phase::AtAttendant(at) => Some(*at),
            _ => None,
        }
    }

    /// A caller at the attendant keyed its way into a meeting and hears `language` there:
    /// its leg now moves out of the lobby.
    pub(crate) fn moving(&mut self, p: ParticipantId, language: String) {
        if let Some(entry) = self.by_id.get_mut(&p) {
            entry.phase = Phase::Moving {
                keys: InMeeting::speaking(language),
                respec: None,
            };
        }
    }

    /// Callers whose attendant is done without a meeting are leaving.
    pub(crate) fn attendants_done(&mut self) {
        for entry in self.by_id.values_mut() {
            if let Phase::AtAttendant(at) = &entry.phase
                && let AtLobby::Attendant(attendant) = &at.0
                && attendant.finished()
            {
                entry.phase = Phase::Leaving;
            }
        }
    }

    /// New leg settings (a re-INVITE's) for a participant: kept for later when its leg is on
    /// its way out of the lobby (the lobby no longer has it, its meeting not yet), otherwise
    /// handed back to be applied now.
    pub(crate) fn defer_respec(&mut self, p: ParticipantId, spec: LegSpec) -> Option<LegSpec> {
        match self.by_id.get_mut(&p).map(|e| &mut e.phase) {
            Some(Phase::Moving { respec, .. }) => {
                *respec = Some(Box::new(spec));
                None
            }
            _ => Some(spec),
        }
    }

    /// The caller's leg arrived in `meeting`: none when the participant is not known (it
    /// left meanwhile), else the leg settings a re-INVITE brought on the way, if any.
    pub(crate) fn moved_in(
        &mut self,
        p: ParticipantId,
        meeting: String,
    ) -> Option<Option<LegSpec>> {
        let entry = self.by_id.get_mut(&p)?;
        let (keys, respec) = match std::mem::replace(&mut entry.phase, Phase::Leaving) {
            Phase::Moving { keys, respec } => (keys, respec.map(|s| *s)),
            Phase::InMeeting(keys) => (keys, None),
            _ => (InMeeting::default(), None),
        };
        entry.conference = meeting;
        entry.phase = Phase::InMeeting(keys);
        Some(respec)
    }

    /// Whether the participant's leg is on its way out of the lobby.
    pub(crate) fn is_moving(&self, p: ParticipantId) -> bool {
        self.by_id
            .get(&p)
            .is_some_and(|e| matches!(e.phase, Phase::Moving { .. }))
    }

    /// The conference the participant's leg is in.
    pub(crate) fn conference(&self, p: ParticipantId) -> Option<&str> {
        self.by_id.get(&p).map(|e| e.conference.as_str())
    }

    /// Whether the participant is in `conference` (whatever its phase there).
    pub(crate) fn is_in(&self, p: ParticipantId, conference: &str) -> bool {
        self.conference(p) == Some(conference)
    }

    /// The language the participant hears (empty: the default).
    pub(crate) fn language(&self, p: ParticipantId) -> String {
        match self.by_id.get(&p).map(|e| &e.phase) {
            Some(Phase::AtAttendant(at)) => at.1.language.clone(),
            Some(Phase::Moving { keys, .. } | Phase::InMeeting(keys)) => keys.language().to_owned(),
            _ => String::new(),
        }
    }

    /// The keypad state and meeting of a participant in a meeting (none elsewhere: keys at
    /// the attendant are the attendant's, and a leg on its way has no meeting yet).
    pub(crate) fn keys_mut(&mut self, p: ParticipantId) -> Option<(&str, &mut InMeeting)> {
        let entry = self.by_id.get_mut(&p)?;
        match &mut entry.phase {
            Phase::InMeeting(keys) if entry.conference != LOBBY => {
                Some((entry.conference.as_str(), keys))
            }
            _ => None,
        }
    }

    /// Forgets a participant; whether it was known.
    pub(crate) fn remove(&mut self, p: ParticipantId) -> bool {
        self.by_id.remove(&p).is_some()
    }

    /// How many participants are known.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    fn set(&mut self, p: ParticipantId, conference: String, phase: Phase) {
        self.by_id.insert(p, SipParticipant { conference, phase });
    }
}

#[cfg(test)]
#[path = "participants_tests.rs"]
mod tests;
