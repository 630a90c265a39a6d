//! The roster as a state machine: joins, refusals, states, the leader, and its history.

use super::*;

fn joining(id: u64, role: Role) -> Joining {
    Joining {
        id: ParticipantId(id),
        display_name: format!("P{id}"),
        uri: format!("sip:{id}@test"),
        role,
        identity: None,
    }
}

fn drain(r: &mut Roster) -> Vec<Event> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

fn pid(id: u64) -> ParticipantId {
    ParticipantId(id)
}

#[test]
fn dial_out_goes_through_every_state() {
    let mut r = Roster::new(Policy::default());
    r.invite(joining(1, Role::Attendee)).unwrap();
    assert_eq!(r.participant(pid(1)).unwrap().state, State::Inviting);
    r.answered(pid(1)).unwrap();
    r.media_ready(pid(1)).unwrap();
    r.disconnect(pid(1), DisconnectReason::Hangup).unwrap();
    let states: Vec<State> = drain(&mut r)
        .into_iter()
        .filter_map(|e| match e {
            Event::State { state, .. } => Some(state),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [
            State::Inviting,
            State::Connecting,
            State::Connected,
            State::Disconnected(DisconnectReason::Hangup)
        ]
    );
    // History stays; a disconnected participant cannot be changed.
    assert_eq!(r.participants().len(), 1);
    assert_eq!(r.set_muted(pid(1), true), Err(UnknownParticipant(pid(1))));
}

#[test]
fn lock_refuses_attendees_but_not_leaders() {
    let mut r = Roster::new(Policy::default());
    r.set_locked(true);
    assert_eq!(r.join(joining(1, Role::Attendee)), Err(JoinError::Locked));
    assert_eq!(
        r.participant(pid(1)).unwrap().state,
        State::Disconnected(DisconnectReason::Locked)
    );
    r.join(joining(2, Role::Leader)).unwrap();
    r.set_locked(false);
    r.join(joining(3, Role::Attendee)).unwrap();
    let events = drain(&mut r);
    assert!(events.contains(&Event::Locked { locked: true }));
    assert!(events.contains(&Event::Locked { locked: false }));
}

#[test]
fn full_conference_refuses() {
    let mut r = Roster::new(Policy {
        max_participants: 2,
        ..Policy::default()
    });
    r.join(joining(1, Role::Attendee)).unwrap();
    r.join(joining(2, Role::Attendee)).unwrap();
    assert_eq!(r.join(joining(3, Role::Leader)), Err(JoinError::Full));
    r.disconnect(pid(1), DisconnectReason::Hangup).unwrap();
    r.join(joining(4, Role::Attendee)).unwrap();
}

#[test]
fn attendees_wait_for_the_leader() {
    let mut r = Roster::new(Policy {
        wait_for_leader: true,
        ..Policy::default()
    });
    r.join(joining(1, Role::Attendee)).unwrap();
    r.media_ready(pid(1)).unwrap();
    assert_eq!(r.participant(pid(1)).unwrap().state, State::Connecting);
    assert!(!r.hears(pid(1)));
    r.join(joining(2, Role::Leader)).unwrap();
    r.media_ready(pid(2)).unwrap();
    assert_eq!(r.participant(pid(1)).unwrap().state, State::Connected);
    assert!(r.hears(pid(1)) && r.heard(pid(1)));
}

#[test]
fn mute_deaf_mute_all_and_speaking_while_muted() {
    let mut r = Roster::new(Policy::default());
    for (id, role) in [(1, Role::Leader), (2, Role::Attendee), (3, Role::Attendee)] {
        r.join(joining(id, role)).unwrap();
        r.media_ready(pid(id)).unwrap();
    }
    drain(&mut r);
    r.mute_all();
    assert!(r.heard(pid(1)) && !r.heard(pid(2)) && !r.heard(pid(3)));
    r.set_speaking(pid(2), true).unwrap();
    r.set_speaking(pid(2), true).unwrap();
    r.set_deaf(pid(3), true).unwrap();
    assert!(!r.hears(pid(3)));
    let events = drain(&mut r);
    assert_eq!(
        events,
        [
            Event::Muted {
                participant: pid(2),
                muted: true
            },
            Event::Muted {
                participant: pid(3),
                muted: true
            },
            Event::Speaking {
                participant: pid(2),
                speaking: true
            },
            Event::SpeakingWhileMuted {
                participant: pid(2)
            },
            Event::Deaf {
                participant: pid(3),
                deaf: true
            },
        ]
    );
}

#[test]
fn end_disconnects_everyone_and_refuses_joins() {
    let mut r = Roster::new(Policy::default());
    r.join(joining(1, Role::Attendee)).unwrap();
    r.invite(joining(2, Role::Attendee)).unwrap();
    r.eject(pid(1)).unwrap();
    r.end();
    assert!(r.ended());
    assert_eq!(
        r.participant(pid(1)).unwrap().state,
        State::Disconnected(DisconnectReason::Ejected)
    );
    assert_eq!(
        r.participant(pid(2)).unwrap().state,
        State::Disconnected(DisconnectReason::ConferenceEnded)
    );
    assert_eq!(r.join(joining(3, Role::Leader)), Err(JoinError::Ended));
    assert!(drain(&mut r).contains(&Event::Ended));
}

#[test]
fn history_is_bounded_and_counts_follow_every_state() {
    // A caller who joins and leaves forever (or a scanner refused forever) keeps at most
    // 2 x MAX_HISTORY entries; the present participants and the leader are never dropped.
    let mut r = Roster::new(Policy {
        max_participants: 3,
        wait_for_leader: true,
        ..Policy::default()
    });
    r.join(joining(1, Role::Leader)).unwrap();
    r.media_ready(pid(1)).unwrap();
    r.join(joining(2, Role::Attendee)).unwrap();
    r.media_ready(pid(2)).unwrap();
    for k in 0..10_000u64 {
        let id = 100 + k;
        match k % 3 {
            // In and out.
            0 => {
                r.join(joining(id, Role::Attendee)).unwrap();
                r.media_ready(pid(id)).unwrap();
                r.disconnect(pid(id), DisconnectReason::Hangup).unwrap();
            }
            // Refused: the conference is full while a third is in.
            1 => {
                r.join(joining(id, Role::Attendee)).unwrap();
                assert_eq!(
                    r.join(joining(id + 1_000_000, Role::Attendee)),
                    Err(JoinError::Full)
                );
                r.disconnect(pid(id), DisconnectReason::Hangup).unwrap();
            }
            // A refused rejoin under a present participant's id keeps that one reachable.
            _ => {
                r.join(joining(id, Role::Attendee)).unwrap();
                assert_eq!(r.join(joining(2, Role::Attendee)), Err(JoinError::Full));
                assert_eq!(r.participant(pid(2)).unwrap().state, State::Connected);
                r.disconnect(pid(id), DisconnectReason::Hangup).unwrap();
            }
        }
        drain(&mut r);
        // Pruned before each add: one add and one departure past the bound at most.
        assert!(r.participants().len() <= 2 + 2 * MAX_HISTORY + 2);
    }
    assert_eq!(r.participant(pid(1)).unwrap().state, State::Connected);
    assert_eq!(r.participant(pid(2)).unwrap().state, State::Connected);
    assert_eq!(r.present_count(), 2);
    assert!(r.leader_connected());
    // The recent history is there, the oldest is gone.
    assert!(r.participant(pid(100 + 9_999 - 3)).is_some());
    assert!(r.participant(pid(100)).is_none());
    // The counts agree with a scan, and admission still works: one more fits, then full.
    let scanned = r
        .participants()
        .iter()
        .filter(|p| p.state.is_present())
        .count();
    assert_eq!(scanned, r.present_count());
    r.join(joining(7, Role::Attendee)).unwrap();
    assert_eq!(r.join(joining(8, Role::Attendee)), Err(JoinError::Full));
    // The leader leaves: attendees who arrive now wait.
    r.disconnect(pid(1), DisconnectReason::Hangup).unwrap();
    assert!(!r.leader_connected());
}

#[test]
fn history_goes_in_the_order_people_left_not_joined() {
    let mut r = Roster::new(Policy::default());
    // The first to join stays for the whole run and leaves last.
    r.join(joining(1, Role::Attendee)).unwrap();
    for k in 0..2 * MAX_HISTORY as u64 {
        r.join(joining(100 + k, Role::Attendee)).unwrap();
        r.disconnect(pid(100 + k), DisconnectReason::Hangup)
            .unwrap();
    }
    r.disconnect(pid(1), DisconnectReason::Hangup).unwrap();
    // The next join prunes: the one who just left is kept, the earliest departures go.
    r.join(joining(9, Role::Attendee)).unwrap();
    assert_eq!(
        r.participant(pid(1)).unwrap().state,
        State::Disconnected(DisconnectReason::Hangup)
    );
    assert!(r.participant(pid(100)).is_none());
    assert!(
        r.participant(pid(100 + 2 * MAX_HISTORY as u64 - 1))
            .is_some()
    );
    assert!(r.participants().len() <= MAX_HISTORY + 1);
}
