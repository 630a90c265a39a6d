//! Controls in fake time, applied between ticks as the mixer thread applies them (the roster's
//! and legs' own methods): wait-for-leader, mute, deaf, eject, lock, end, hold. What each phone
//! heard is measured with codecs from outside Confab, and what the conference said is read from
//! its events. A few seconds of meeting take a fraction of a second; nothing sleeps.

use std::time::Duration;

use crate::conference::{DisconnectReason, Event, JoinError, ParticipantId, Policy, Role, State};
use crate::media::codec::Codec;
use crate::media::leg::{LegSpec, LegTimers};
use crate::testing::phone::SimPhone;
use crate::testing::room::{JoinAs, Room};

const A: f32 = 500.0;
const B: f32 = 700.0;
const C: f32 = 900.0;

fn state_of(room: &Room, id: ParticipantId) -> State {
    room.conference.roster.participant(id).unwrap().state
}

#[test]
fn controls_are_heard_and_reported() {
    let policy = Policy {
        wait_for_leader: true,
        ..Policy::default()
    };
    let mut room = Room::with_policy(policy, 3, Duration::from_secs(30));
    let tone = |hz| Some((hz, -20.0));

    // B and C wait for the leader: they hear silence and stay connecting.
    let b = room.join(Codec::Pcmu, tone(B));
    let c = room.join(Codec::Pcmu, tone(C));
    let (b_id, c_id) = (room.members[b].id, room.members[c].id);
    room.run(Duration::from_millis(1200));
    assert_eq!(state_of(&room, b_id), State::Connecting);
    let waiting = room.heard(b, C, 0.5);
    assert!(waiting < -60.0, "waiting B hears C at {waiting:.2}");

    // The leader arrives: everyone connects and hears the others.
    let a = room
        .join_as(JoinAs::new(Codec::Pcmu, tone(A)).role(Role::Leader))
        .unwrap();
    let a_id = room.members[a].id;
    room.run(Duration::from_millis(1500));
    assert_eq!(state_of(&room, b_id), State::Connected);
    for (i, f) in [(a, B), (a, C), (b, A), (b, C), (c, A), (c, B)] {
        let level = room.heard(i, f, 0.5);
        assert!((level + 20.0).abs() < 1.0, "{f} Hz heard at {level:.2}");
    }

    // Mute B: nobody hears B any more. Deafen C: C hears nothing but comfort noise.
    room.conference.roster.set_muted(b_id, true).unwrap();
    room.conference.roster.set_deaf(c_id, true).unwrap();
    room.run(Duration::from_millis(1200));
    let muted = room.heard(a, B, 0.5);
    assert!(muted < -50.0, "A still hears muted B at {muted:.2}");
    assert!((room.heard(a, C, 0.5) + 20.0).abs() < 1.0, "A hears C");
    assert!(
        (room.heard(b, A, 0.5) + 20.0).abs() < 1.0,
        "muted B hears A"
    );
    assert!(
        room.heard(c, A, 0.5) < -50.0 && room.heard(c, B, 0.5) < -50.0,
        "deaf C hears the mix"
    );
    let heard = &room.members[c].phone.heard;
    let noise = confab_dsp::signal::level_dbov(&heard[heard.len() - 4000..]);
    assert!(
        (-90.0..-50.0).contains(&noise),
        "deaf C hears {noise:.1} dBov, not comfort noise"
    );

    // Eject C: it leaves with reason `ejected` and its media stops.
    room.conference.roster.eject(c_id).unwrap();
    room.run(Duration::from_millis(600));
    assert_eq!(
        state_of(&room, c_id),
        State::Disconnected(DisconnectReason::Ejected)
    );
    let heard_after_eject = room.members[c].phone.heard.len();
    room.run(Duration::from_millis(400));
    assert_eq!(
        room.members[c].phone.heard.len(),
        heard_after_eject,
        "an ejected leg still sends"
    );
    assert!(room.heard(a, C, 0.3) < -50.0, "A hears ejected C");

    // Lock: attendees are refused, leaders still get in.
    room.conference.roster.set_locked(true);
    let refused = room.join_as(JoinAs::new(Codec::Pcmu, tone(300.0)));
    assert_eq!(refused.err(), Some(JoinError::Locked));
    room.join_as(JoinAs::new(Codec::Pcmu, tone(300.0)).role(Role::Leader))
        .unwrap();

    // End: everyone leaves with `conference-ended`.
    room.conference.roster.end();
    room.run(Duration::from_millis(200));
    assert_eq!(room.conference.leg_count(), 0);

    let all: Vec<Event> = room.events.iter().map(|e| e.event.clone()).collect();
    let has = |e: Event| all.contains(&e);
    for expected in [
        Event::State {
            participant: b_id,
            state: State::Connecting,
        },
        Event::State {
            participant: b_id,
            state: State::Connected,
        },
        Event::Muted {
            participant: b_id,
            muted: true,
        },
        Event::Deaf {
            participant: c_id,
            deaf: true,
        },
        Event::State {
            participant: c_id,
            state: State::Disconnected(DisconnectReason::Ejected),
        },
        Event::Locked { locked: true },
        Event::State {
            participant: a_id,
            state: State::Disconnected(DisconnectReason::ConferenceEnded),
        },
        Event::Ended,
    ] {
        assert!(has(expected.clone()), "no {expected:?} in {all:?}");
    }
    let position = |p, state| {
        all.iter()
            .position(|e| {
                *e == Event::State {
                    participant: p,
                    state,
                }
            })
            .unwrap()
    };
    assert!(
        position(b_id, State::Connected) > position(a_id, State::Connected),
        "B connected before the leader"
    );
}

/// A muted participant who talks is told so (speaking while muted) and is not heard; unmuted,
/// the same speech is heard.
#[test]
fn a_muted_talker_is_reported_speaking_while_muted_and_not_heard() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let a = room.join(Codec::Pcmu, Some((440.0, -20.0)));
    // Bursts of tone read as speech: 300 ms on, 200 ms off.
    room.members[a].phone.bursts = Some((15, 10));
    let b = room.join(Codec::Pcmu, Some((660.0, -80.0)));
    let a_id = room.members[a].id;
    room.conference.roster.set_muted(a_id, true).unwrap();
    room.run(Duration::from_secs(2));
    let told = room
        .events
        .iter()
        .any(|e| e.event == Event::SpeakingWhileMuted { participant: a_id });
    assert!(told, "{:?}", room.events);
    let muted = room.heard(b, 440.0, 1.5);
    assert!(muted < -50.0, "muted A heard by B at {muted:.2}");

    room.conference.roster.set_muted(a_id, false).unwrap();
    room.run(Duration::from_secs(2));
    let unmuted = room.heard(b, 440.0, 1.5);
    assert!(unmuted > -30.0, "unmuted A heard at {unmuted:.2}");
}

/// Hold, quiet, resume: the phone comes back from a new port with a new SSRC, which the leg
/// takes because the resume said a new stream may come (as the mixer thread's hold control
/// does: the roster's hold, then the leg forgets its SSRC).
#[test]
fn a_phone_back_from_hold_may_come_with_a_new_stream() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let timers = LegTimers {
        relatch_after: Duration::from_millis(400),
        ..LegTimers::default()
    };
    let a = room
        .join_as(JoinAs::new(Codec::Pcmu, Some((440.0, -20.0))).timers(timers))
        .unwrap();
    let b = room
        .join_as(JoinAs::new(Codec::Pcmu, Some((660.0, -20.0))).timers(timers))
        .unwrap();
    room.run(Duration::from_secs(1));
    let a_id = room.members[a].id;

    room.conference.roster.set_hold(a_id, true).unwrap();
    room.members[a].phone.sending = false;
    room.run(Duration::from_millis(600));
    room.conference.roster.set_hold(a_id, false).unwrap();
    room.conference.leg_mut(a_id).unwrap().forget_ssrc();
    let old = room.members[a].addr;
    room.members[a].phone = SimPhone::new(Codec::Pcmu, 440.0, -20.0, 777, room.now);
    room.members[a].addr = std::net::SocketAddr::new(old.ip(), old.port() + 2);
    room.run(Duration::from_millis(1500));
    let back = room.heard(b, 440.0, 0.5);
    assert!(back > -22.0, "B does not hear A back: {back:.2}");
    let hears = room.heard(a, 660.0, 0.5);
    assert!(hears > -22.0, "A back does not hear B: {hears:.2}");
}

/// A phone on hold is sent no RTP (its offer said sendonly or inactive), and the mix again
/// once it resumes; the others go on hearing each other.
#[test]
fn a_phone_on_hold_is_sent_nothing_until_it_resumes() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let a = room.join(Codec::Pcmu, Some((440.0, -20.0)));
    room.join(Codec::Pcmu, Some((660.0, -20.0)));
    let c = room.join(Codec::Pcmu, None);
    room.run(Duration::from_secs(1));
    let sent = |room: &Room| room.stats(a).map_or(0, |s| s.packets_out);
    let before = sent(&room);
    assert!(before > 40, "A was sent {before} packets in a second");
    let a_id = room.members[a].id;
    room.conference.roster.set_hold(a_id, true).unwrap();
    room.run(Duration::from_secs(1));
    let held = sent(&room);
    assert!(
        held - before <= 1,
        "A on hold was sent {} packets",
        held - before
    );
    let others = room.heard(c, 660.0, 0.5);
    assert!(
        others > -22.0,
        "C stopped hearing B while A was held: {others:.2}"
    );
    room.conference.roster.set_hold(a_id, false).unwrap();
    room.run(Duration::from_secs(1));
    let resumed = sent(&room) - held;
    assert!(
        resumed > 40,
        "A back from hold was sent {resumed} packets in a second"
    );
    let hears = room.heard(a, 660.0, 0.5);
    assert!(hears > -22.0, "A back does not hear B: {hears:.2}");
}

/// A talker's input gain, set as the mixer thread sets it: every listener hears it that much
/// quieter (a plain listener from the shared encode, a talker in its mix-minus), the others as
/// before, and it does not hear itself (its own voice leaves its mix-minus at the same gain).
#[test]
fn a_talkers_input_gain_is_what_the_others_hear() {
    use confab_dsp::mix::Gain;

    use crate::mixer::{Control, apply};

    let mut room = Room::new(3, Duration::from_secs(30));
    let a = room.join(Codec::Pcmu, Some((A, -20.0)));
    let b = room.join(Codec::Pcmu, Some((B, -20.0)));
    let c = room.join(Codec::Pcmu, None);
    room.run(Duration::from_millis(1500));
    let before = [room.heard(c, A, 0.5), room.heard(b, A, 0.5)];
    for level in before {
        assert!((level + 20.0).abs() < 1.0, "A heard at {level:.2} at unity");
    }

    let a_id = room.members[a].id;
    apply(
        &mut room.conference,
        Control::TalkGain(a_id, Gain::from_db(-12.0)),
    )
    .unwrap();
    room.run(Duration::from_millis(1200));
    let after = [room.heard(c, A, 0.5), room.heard(b, A, 0.5)];
    for (who, (was, is)) in ["listener C", "talker B"]
        .iter()
        .zip(before.iter().zip(after))
    {
        eprintln!("{who} hears A at {was:.2} dBov, then at {is:.2} dBov with -12 dB");
        assert!((was - is - 12.0).abs() < 0.5, "{who}: {was:.2} -> {is:.2}");
    }
    let b_at = room.heard(c, B, 0.5);
    assert!((b_at + 20.0).abs() < 1.0, "B is heard at {b_at:.2}");
    let own = room.heard(a, A, 0.5);
    assert!(own < -50.0, "A hears itself at {own:.2}");
    let p = room.conference.roster.participant(a_id).unwrap();
    assert_eq!((p.input_gain_db, p.output_gain_db), (-12.0, 0.0));
    assert!(room.events.iter().any(|e| e.event
        == Event::Gain {
            participant: a_id,
            input_db: -12.0,
            output_db: 0.0
        }));

    // Its output gain: A hears B 6 dB down, the others unchanged.
    apply(
        &mut room.conference,
        Control::ListenGain(a_id, Gain::from_db(-6.0)),
    )
    .unwrap();
    room.run(Duration::from_millis(1200));
    let quieter = room.heard(a, B, 0.5);
    assert!((quieter + 26.0).abs() < 1.0, "A hears B at {quieter:.2}");
    assert_eq!(
        room.conference
            .roster
            .participant(a_id)
            .unwrap()
            .output_gain_db,
        -6.0
    );
}

/// Attendees waiting for a leader come in when one of them is made leader (as the mixer
/// thread does it), and hear each other.
#[test]
fn making_a_waiting_attendee_leader_lets_the_waiting_in() {
    use crate::mixer::{Control, apply};

    let policy = Policy {
        wait_for_leader: true,
        ..Policy::default()
    };
    let mut room = Room::with_policy(policy, 3, Duration::from_secs(30));
    let b = room.join(Codec::Pcmu, Some((B, -20.0)));
    let c = room.join(Codec::Pcmu, Some((C, -20.0)));
    let (b_id, c_id) = (room.members[b].id, room.members[c].id);
    room.run(Duration::from_millis(1200));
    assert_eq!(state_of(&room, c_id), State::Connecting);

    apply(&mut room.conference, Control::SetRole(b_id, Role::Leader)).unwrap();
    room.run(Duration::from_millis(1200));
    assert_eq!(state_of(&room, b_id), State::Connected);
    assert_eq!(state_of(&room, c_id), State::Connected);
    let heard = room.heard(c, B, 0.5);
    assert!((heard + 20.0).abs() < 1.0, "C hears B at {heard:.2}");
    assert!(room.events.iter().any(|e| e.event
        == Event::Role {
            participant: b_id,
            role: Role::Leader
        }));
    assert_eq!(
        apply(
            &mut room.conference,
            Control::SetRole(ParticipantId(999), Role::Leader)
        ),
        Err(crate::mixer::CommandError::NoParticipant)
    );
}

/// A shared encode at 40 ms whose only listener stops listening (deafened) drops the half
/// packet it held: when the listener hears again, its first packet carries nothing from
/// before (here the talker's tone, which stopped meanwhile). Deafened at either half of a
/// packet, so that one of the two runs leaves a half packet behind.
#[test]
fn an_idle_shared_encode_keeps_no_old_audio_for_a_listener_who_comes_back() {
    for phase in [0u64, 1] {
        let mut room = Room::new(3, Duration::from_secs(30));
        let t = room.join(Codec::Pcmu, Some((440.0, -20.0)));
        let l = room
            .join_as(JoinAs::new(Codec::Pcmu, None).spec(|s| LegSpec { ptime_ms: 40, ..s }))
            .unwrap();
        let l_id = room.members[l].id;
        room.run(Duration::from_millis(1000 + 20 * phase));
        let before = room.heard(l, 440.0, 0.5);
        assert!(
            (before + 20.0).abs() < 1.0,
            "the listener hears the talker at {before:.1}"
        );
        room.conference.roster.set_deaf(l_id, true).unwrap();
        room.members[t].phone.sending = false;
        room.run(Duration::from_millis(1000));
        let from = room.members[l].phone.heard.len();
        room.conference.roster.set_deaf(l_id, false).unwrap();
        room.run(Duration::from_millis(500));
        let heard = &room.members[l].phone.heard[from..];
        assert!(heard.len() >= 2400, "{} samples heard after", heard.len());
        let first = confab_dsp::signal::tone_level_dbov(&heard[..800], 8000, 440.0);
        assert!(
            first < -50.0,
            "phase {phase}: the first 100 ms heard again carry the old tone at {first:.1} dBov"
        );
    }
}
