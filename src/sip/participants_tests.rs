//! One entry per SIP participant, in one phase: what the shell asks of it, without sockets.

use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::conference::Admission;
use crate::sip::attendant::{Attendant, AttendantSettings, Outcome};

fn caller(language: &str) -> Caller {
    Caller {
        key: "udp:192.0.2.7".into(),
        display_name: "Ann".into(),
        uri: "sip:ann@example.com".into(),
        asserted_identity: None,
        language: language.into(),
        menu: false,
    }
}

/// A caller at the attendant of meeting 4242 (passcode 1234), with the attendant it has.
fn at_attendant(participants: &mut SipParticipants, p: ParticipantId, language: &str) {
    let admission = Arc::new(Admission {
        passcode: Some("1234".into()),
        ..Admission::default()
    });
    let (attendant, _) = Attendant::new(
        Instant::now(),
        AttendantSettings::default(),
        Some(("4242".into(), admission)),
    );
    participants.at_attendant(p, AtLobby::Attendant(attendant), caller(language));
}

/// Keys the passcode at the attendant; the outcomes.
fn key_passcode(participants: &mut SipParticipants, p: ParticipantId) -> Vec<Outcome> {
    let directory = |_: &str| None;
    let (at, _) = participants.attendant_mut(p).unwrap();
    let AtLobby::Attendant(attendant) = at else {
        panic!("not at the attendant");
    };
    "1234#"
        .chars()
        .flat_map(|d| attendant.digit(Instant::now(), d, &directory))
        .collect()
}

#[test]
fn a_caller_who_keys_a_meeting_is_moving_until_its_leg_arrives_and_keeps_its_language() {
    let mut participants = SipParticipants::default();
    let p = ParticipantId(7);
    at_attendant(&mut participants, p, "fr");
    assert_eq!(participants.conference(p), Some(LOBBY));
    assert_eq!(participants.language(p), "fr");
    assert!(participants.caller(p).is_some());
    // Keys at the attendant are the attendant's, not the keypad's.
    assert!(participants.keys_mut(p).is_none());

    let outcomes = key_passcode(&mut participants, p);
    assert!(
        outcomes.iter().any(|o| matches!(o, Outcome::Join { .. })),
        "{outcomes:?}"
    );
    participants.moving(p, "fr".into());
    // From the moment it is sent on, a hang-up must follow the leg (the attendant, now done,
    // is not asked again, and no tick in between changes that).
    assert!(participants.is_moving(p));
    participants.attendants_done();
    assert!(participants.is_moving(p));
    assert!(participants.attendant_mut(p).is_none());
    assert!(participants.keys_mut(p).is_none());

    assert_eq!(participants.moved_in(p, "4242".into()), Some(None));
    assert!(!participants.is_moving(p));
    assert!(participants.is_in(p, "4242"));
    assert_eq!(participants.language(p), "fr");
    let (meeting, _) = participants.keys_mut(p).unwrap();
    assert_eq!(meeting, "4242");
}

#[test]
fn refused_and_departing_callers_are_not_moving_so_their_hang_up_is_not_held_for_a_move() {
    let mut participants = SipParticipants::default();
    let (refused, leaving, waiting) = (ParticipantId(1), ParticipantId(2), ParticipantId(3));
    participants.in_meeting(refused, LOBBY.into(), "en".into());
    participants.refused(refused);
    at_attendant(&mut participants, leaving, "");
    at_attendant(&mut participants, waiting, "");
    // Done at the attendant without a meeting: leaving; one still keying stays.
    key_passcode(&mut participants, leaving);
    participants.attendants_done();
    for p in [refused, leaving, waiting] {
        assert!(!participants.is_moving(p), "{p}");
        assert!(participants.is_in(p, LOBBY), "{p}");
        assert!(participants.keys_mut(p).is_none(), "{p}");
    }
    assert!(participants.attendant_mut(leaving).is_none());
    assert!(participants.attendant_mut(waiting).is_some());
    assert_eq!(participants.attendants_mut().count(), 1);
}

#[test]
fn a_direct_caller_has_keys_in_its_meeting_and_every_entry_goes_with_its_participant() {
    let mut participants = SipParticipants::default();
    let p = ParticipantId(9);
    participants.in_meeting(p, "4242".into(), "de".into());
    assert!(participants.keys_mut(p).is_some());
    // The language it came with (a pass from another node's attendant, or the default).
    assert_eq!(participants.language(p), "de");
    // Not a dial-out: an answer changes nothing.
    assert!(participants.answered(p).is_none());
    assert!(participants.keys_mut(p).is_some());
    // A language menu's choice gives the caller a new place at the attendant.
    at_attendant(&mut participants, ParticipantId(10), "de");
    let (at, caller) = participants.take_attendant(ParticipantId(10)).unwrap();
    assert!(participants.attendant_mut(ParticipantId(10)).is_none());
    participants.at_attendant(ParticipantId(10), at, caller);
    assert_eq!(participants.language(ParticipantId(10)), "de");
    assert_eq!(participants.len(), 2);

    assert!(participants.remove(p));
    assert!(participants.remove(ParticipantId(10)));
    assert!(!participants.remove(p));
    assert_eq!(participants.len(), 0);
    // One that left during its move is not put back by the move's end.
    assert_eq!(participants.moved_in(p, "4242".into()), None);
    assert_eq!(participants.len(), 0);
}

#[test]
fn a_refusal_or_a_referral_for_a_caller_gone_meanwhile_does_not_bring_it_back() {
    let mut participants = SipParticipants::default();
    let p = ParticipantId(11);
    at_attendant(&mut participants, p, "");
    key_passcode(&mut participants, p);
    participants.moving(p, String::new());
    // It hung up and its disconnection was seen before the move's end came back.
    assert!(participants.remove(p));
    participants.refused(p);
    participants.leaving(p);
    assert_eq!(participants.len(), 0);
    // One still there and referred elsewhere is leaving, not moving (its hang-up then is
    // not held for a move that will not come).
    let q = ParticipantId(12);
    at_attendant(&mut participants, q, "");
    participants.moving(q, String::new());
    participants.leaving(q);
    assert!(!participants.is_moving(q));
    assert!(participants.is_in(q, LOBBY));
}

#[test]
fn a_re_invite_during_a_move_is_applied_where_the_leg_lands() {
    use crate::media::codec::Codec;
    use crate::media::leg::LegSpec;
    let mut participants = SipParticipants::default();
    let p = ParticipantId(13);
    let g722 = LegSpec::new(Codec::G722, "192.0.2.7:4000".parse().unwrap());
    // In a meeting: applied now.
    participants.in_meeting(ParticipantId(14), "4242".into(), "en".into());
    assert_eq!(
        participants.defer_respec(ParticipantId(14), g722),
        Some(g722)
    );
    // On its way out of the lobby (neither the lobby nor the meeting has the leg): kept.
    at_attendant(&mut participants, p, "");
    key_passcode(&mut participants, p);
    participants.moving(p, String::new());
    assert_eq!(participants.defer_respec(p, g722), None);
    assert_eq!(participants.moved_in(p, "4242".into()), Some(Some(g722)));
    // Only once.
    assert_eq!(participants.moved_in(p, "4242".into()), Some(None));
    assert_eq!(participants.defer_respec(p, g722), Some(g722));
}
