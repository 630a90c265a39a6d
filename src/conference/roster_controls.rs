//! What a leader, a caller's keys or the operator change beyond joining and leaving: the lock,
//! mute all, limits, hold and SIP status, and a participant's role and gains. A child of the
//! roster (it keeps the roster's counts).

use confab_dsp::mix::Gain;

use super::{EntryExit, Event, ParticipantId, Role, Roster, State, UnknownParticipant};

/// The gains the API accepts (dB): as quiet as -30, as loud as +12.
pub const MIN_GAIN_DB: f32 = -30.0;
pub const MAX_GAIN_DB: f32 = 12.0;

/// A gain in dB, to a tenth (the mixer's gains are fixed-point: -6 comes back as -6.0).
pub fn gain_db(gain: Gain) -> f32 {
    let linear = gain.linear();
    if linear <= 0.0 {
        return f32::NEG_INFINITY;
    }
    let db = (20.0 * linear.log10() * 10.0).round() / 10.0;
    // No "-0".
    if db == 0.0 { 0.0 } else { db }
}

impl Role {
    /// The name used in the API (`leader`, `attendee`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Attendee => "attendee",
        }
    }
}

/// The roster's other controls: mute all, keypad, lock, limits, SIP status, hold.
impl Roster {
    /// Mutes everyone present but the leaders.
    pub fn mute_all(&mut self) {
        let ids: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|p| p.state.is_present() && p.role != Role::Leader)
            .map(|p| p.id)
            .collect();
        for id in ids {
            let _ = self.set_muted(id, true);
        }
    }

    /// Tells the world that `id` used a keypad control.
    pub fn keyed(
        &mut self,
        id: ParticipantId,
        action: &'static str,
        done: bool,
    ) -> Result<(), UnknownParticipant> {
        self.find_mut(id)?;
        self.events.push_back(Event::Keypad {
            participant: id,
            action,
            done,
        });
        Ok(())
    }

    pub fn set_locked(&mut self, locked: bool) {
        if self.policy.locked != locked {
            self.policy.locked = locked;
            self.events.push_back(Event::Locked { locked });
        }
    }

    /// New participant limit and leader rule (those already waiting connect with a leader).
    pub fn set_limits(&mut self, max_participants: usize, wait_for_leader: bool) {
        self.policy.max_participants = max_participants;
        self.policy.wait_for_leader = wait_for_leader;
    }

    /// What the conference plays when someone enters or leaves the mix, from now on.
    pub fn set_entry_exit(&mut self, entry_exit: EntryExit) {
        self.policy.entry_exit = entry_exit;
    }

    /// Records the last SIP status of a participant's call.
    pub fn set_sip_status(
        &mut self,
        id: ParticipantId,
        code: u16,
    ) -> Result<(), UnknownParticipant> {
        self.find_mut(id)?.sip_status = Some(code);
        Ok(())
    }

    /// Puts a participant on hold or takes it off (no event: the state does not change).
    pub fn set_hold(&mut self, id: ParticipantId, on: bool) -> Result<(), UnknownParticipant> {
        self.find_mut(id)?.on_hold = on;
        Ok(())
    }
}

impl Roster {
    /// Makes a participant a leader or an attendee. A leader who is connected counts as one at
    /// once: with `wait_for_leader`, an attendee made leader while waiting connects, and those
    /// waiting with it come in, as when a leader joins. An attendee who was the last leader
    /// leaves the others where they are, as when a leader leaves.
    pub fn set_role(&mut self, id: ParticipantId, role: Role) -> Result<(), UnknownParticipant> {
        let p = self.find_mut(id)?;
        if p.role == role {
            return Ok(());
        }
        let (from, state, ready) = (p.role, p.state, p.media_ready);
        p.role = role;
        if state == State::Connected {
            match from {
                Role::Leader => self.leaders_connected -= 1,
                Role::Attendee => self.leaders_connected += 1,
            }
        }
        self.events.push_back(Event::Role {
            participant: id,
            role,
        });
        if role == Role::Leader {
            if state == State::Connecting && ready {
                // It was waiting for a leader: it is one.
                self.set_state(id, State::Connected)?;
            }
            if self
                .participant(id)
                .is_some_and(|p| p.state == State::Connected)
            {
                self.release_waiting();
            }
        }
        Ok(())
    }

    /// How loud the others hear the participant (`input`) and how loud it hears them
    /// (`output`); `None` leaves one as it is. An event when either changes.
    pub fn set_gains(
        &mut self,
        id: ParticipantId,
        input: Option<Gain>,
        output: Option<Gain>,
    ) -> Result<(), UnknownParticipant> {
        let p = self.find_mut(id)?;
        let before = (p.input_gain_db, p.output_gain_db);
        if let Some(g) = input {
            p.input_gain_db = gain_db(g);
        }
        if let Some(g) = output {
            p.output_gain_db = gain_db(g);
        }
        let after = (p.input_gain_db, p.output_gain_db);
        if after != before {
            self.events.push_back(Event::Gain {
                participant: id,
                input_db: after.0,
                output_db: after.1,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conference::{Joining, Policy};

    fn joining(id: u64, role: Role) -> Joining {
        Joining {
            id: ParticipantId(id),
            display_name: format!("p{id}"),
            uri: String::new(),
            role,
            identity: None,
        }
    }

    fn waiting_roster() -> Roster {
        Roster::new(Policy {
            wait_for_leader: true,
            ..Policy::default()
        })
    }

    fn state(r: &Roster, id: u64) -> Option<State> {
        r.participant(ParticipantId(id)).map(|p| p.state)
    }

    #[test]
    fn gains_read_back_in_tenths_of_a_db() {
        assert_eq!(gain_db(Gain::UNITY), 0.0);
        for db in [-30.0, -12.0, -6.0, -0.5, 3.0, 12.0] {
            assert_eq!(gain_db(Gain::from_db(db)), db, "{db} dB");
        }
        assert_eq!(gain_db(Gain::MUTE), f32::NEG_INFINITY);
    }

    #[test]
    fn a_gain_change_is_an_event_once() {
        let mut r = Roster::new(Policy::default());
        r.join(joining(1, Role::Attendee)).unwrap();
        while r.poll_event().is_some() {}
        let id = ParticipantId(1);
        r.set_gains(id, Some(Gain::from_db(-6.0)), None).unwrap();
        r.set_gains(id, Some(Gain::from_db(-6.0)), None).unwrap();
        r.set_gains(id, None, Some(Gain::from_db(3.0))).unwrap();
        assert_eq!(
            std::iter::from_fn(|| r.poll_event()).collect::<Vec<_>>(),
            [
                Event::Gain {
                    participant: id,
                    input_db: -6.0,
                    output_db: 0.0
                },
                Event::Gain {
                    participant: id,
                    input_db: -6.0,
                    output_db: 3.0
                }
            ]
        );
        let p = r.participant(id).unwrap();
        assert_eq!((p.input_gain_db, p.output_gain_db), (-6.0, 3.0));
        assert_eq!(
            r.set_gains(ParticipantId(9), None, None),
            Err(UnknownParticipant(ParticipantId(9)))
        );
    }

    #[test]
    fn promoting_a_waiting_attendee_lets_everyone_waiting_in() {
        let mut r = waiting_roster();
        for id in [1, 2] {
            r.join(joining(id, Role::Attendee)).unwrap();
            r.media_ready(ParticipantId(id)).unwrap();
        }
        assert_eq!(state(&r, 1), Some(State::Connecting));
        while r.poll_event().is_some() {}

        r.set_role(ParticipantId(1), Role::Leader).unwrap();
        assert_eq!(state(&r, 1), Some(State::Connected));
        assert_eq!(state(&r, 2), Some(State::Connected));
        let events: Vec<_> = std::iter::from_fn(|| r.poll_event()).collect();
        assert_eq!(
            events[0],
            Event::Role {
                participant: ParticipantId(1),
                role: Role::Leader
            }
        );
        assert_eq!(events.len(), 3, "{events:?}");
    }

    #[test]
    fn promoting_one_not_yet_ready_connects_it_with_its_media() {
        let mut r = waiting_roster();
        r.join(joining(1, Role::Attendee)).unwrap();
        r.join(joining(2, Role::Attendee)).unwrap();
        r.media_ready(ParticipantId(2)).unwrap();
        r.set_role(ParticipantId(1), Role::Leader).unwrap();
        assert_eq!(state(&r, 1), Some(State::Connecting));
        assert_eq!(state(&r, 2), Some(State::Connecting));
        r.media_ready(ParticipantId(1)).unwrap();
        assert_eq!(state(&r, 1), Some(State::Connected));
        assert_eq!(state(&r, 2), Some(State::Connected));
    }

    #[test]
    fn demoting_the_last_leader_holds_back_those_who_come_later() {
        let mut r = waiting_roster();
        r.join(joining(1, Role::Leader)).unwrap();
        r.media_ready(ParticipantId(1)).unwrap();
        r.join(joining(2, Role::Attendee)).unwrap();
        r.media_ready(ParticipantId(2)).unwrap();
        assert_eq!(state(&r, 2), Some(State::Connected));

        r.set_role(ParticipantId(1), Role::Attendee).unwrap();
        // Those in stay in, as when a leader leaves.
        assert_eq!(state(&r, 1), Some(State::Connected));
        assert_eq!(state(&r, 2), Some(State::Connected));
        r.join(joining(3, Role::Attendee)).unwrap();
        r.media_ready(ParticipantId(3)).unwrap();
        assert_eq!(state(&r, 3), Some(State::Connecting));
        // Promoted again (same role twice: nothing), the newcomer comes in.
        r.set_role(ParticipantId(2), Role::Leader).unwrap();
        while r.poll_event().is_some() {}
        r.set_role(ParticipantId(2), Role::Leader).unwrap();
        assert_eq!(r.poll_event(), None);
        assert_eq!(state(&r, 3), Some(State::Connected));
    }

    #[test]
    fn the_role_of_one_gone_cannot_change() {
        let mut r = Roster::new(Policy::default());
        r.join(joining(1, Role::Attendee)).unwrap();
        r.eject(ParticipantId(1)).unwrap();
        assert!(r.set_role(ParticipantId(1), Role::Leader).is_err());
    }
}
