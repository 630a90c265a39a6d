//! Controls end to end through the engine over real UDP on 127.0.0.1: wait-for-leader, mute,
//! deaf, eject, lock and end, sent as `engine.control` commands, as endpoints hear them and as
//! the engine's event stream says. Real time: about 5 s.
//!
//! The same controls, and the media timeout, are tested in fake time beside the code:
//! `src/mixer/conference/sim_control_tests.rs` and `sim_tests.rs`.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use confab::conference::{DisconnectReason, Event, JoinError, Policy, Role, State};
use confab::engine::{Engine, EngineError, Joiner};
use confab::media::codec::Codec;
use confab::media::leg::LegSpec;
use confab::mixer::{CommandError, Control};
use support::Endpoint;

fn join(
    engine: &Engine,
    e: &Endpoint,
    name: &str,
    role: Role,
) -> Result<(confab::conference::ParticipantId, SocketAddr), EngineError> {
    let spec = LegSpec::new(Codec::Pcmu, e.addr());
    engine
        .add_rtp_leg(
            "7",
            Joiner {
                display_name: name.into(),
                uri: format!("sip:{name}@test"),
                role,
                identity: None,
            },
            spec,
        )
        .wait()
}

fn state_of(engine: &Engine, id: confab::conference::ParticipantId) -> State {
    engine
        .roster("7")
        .wait()
        .unwrap()
        .into_iter()
        .find(|p| p.id == id)
        .unwrap()
        .state
}

const A: f32 = 500.0;
const B: f32 = 700.0;
const C: f32 = 900.0;

#[test]
fn controls_are_heard_and_reported() {
    let _turn = support::exclusive();
    let engine = support::engine(Duration::from_secs(30));
    let events = engine.take_events().unwrap();
    engine
        .create_conference(
            "7",
            Policy {
                wait_for_leader: true,
                ..Policy::default()
            },
        )
        .wait()
        .unwrap();
    let mut a = Endpoint::new(Codec::Pcmu, A, -20.0, 1);
    let mut b = Endpoint::new(Codec::Pcmu, B, -20.0, 2);
    let mut c = Endpoint::new(Codec::Pcmu, C, -20.0, 3);

    // B and C wait for the leader: they hear silence and stay connecting.
    let (b_id, b_addr) = join(&engine, &b, "b", Role::Attendee).unwrap();
    let (c_id, c_addr) = join(&engine, &c, "c", Role::Attendee).unwrap();
    support::run(
        &mut [(&mut b, b_addr), (&mut c, c_addr)],
        Duration::from_millis(1200),
        |_| {},
    );
    assert_eq!(state_of(&engine, b_id), State::Connecting);
    assert!(
        b.level_of(C, 0.5) < -60.0,
        "waiting B hears C at {}",
        b.level_of(C, 0.5)
    );

    // The leader arrives: everyone connects and hears the others.
    let (a_id, a_addr) = join(&engine, &a, "a", Role::Leader).unwrap();
    support::run(
        &mut [(&mut a, a_addr), (&mut b, b_addr), (&mut c, c_addr)],
        Duration::from_millis(1500),
        |_| {},
    );
    assert_eq!(state_of(&engine, b_id), State::Connected);
    for (e, f) in [(&a, B), (&a, C), (&b, A), (&b, C), (&c, A), (&c, B)] {
        let level = e.level_of(f, 0.5);
        assert!((level + 20.0).abs() < 1.0, "{f} Hz heard at {level:.2}");
    }

    // Mute B: nobody hears B any more. Deafen C: C hears nothing but comfort noise.
    engine
        .control("7", Control::Mute(b_id, true))
        .wait()
        .unwrap();
    engine
        .control("7", Control::Deaf(c_id, true))
        .wait()
        .unwrap();
    support::run(
        &mut [(&mut a, a_addr), (&mut b, b_addr), (&mut c, c_addr)],
        Duration::from_millis(1200),
        |_| {},
    );
    assert!(
        a.level_of(B, 0.5) < -50.0,
        "A still hears muted B at {:.2}",
        a.level_of(B, 0.5)
    );
    assert!((a.level_of(C, 0.5) + 20.0).abs() < 1.0, "A hears C");
    assert!(
        (b.level_of(A, 0.5) + 20.0).abs() < 1.0,
        "muted B still hears A"
    );
    assert!(
        c.level_of(A, 0.5) < -50.0 && c.level_of(B, 0.5) < -50.0,
        "deaf C hears the mix"
    );
    let c_noise = confab_dsp::signal::level_dbov(&c.heard[c.heard.len() - 4000..]);
    assert!(
        (-90.0..-50.0).contains(&c_noise),
        "deaf C hears {c_noise:.1} dBov, not comfort noise"
    );

    // Eject C: it leaves with reason `ejected` and its media stops.
    engine.control("7", Control::Eject(c_id)).wait().unwrap();
    support::run(
        &mut [(&mut a, a_addr), (&mut b, b_addr), (&mut c, c_addr)],
        Duration::from_millis(600),
        |_| {},
    );
    assert_eq!(
        state_of(&engine, c_id),
        State::Disconnected(DisconnectReason::Ejected)
    );
    let heard_after_eject = c.heard.len();
    support::run(
        &mut [(&mut a, a_addr), (&mut c, c_addr)],
        Duration::from_millis(400),
        |_| {},
    );
    assert_eq!(
        c.heard.len(),
        heard_after_eject,
        "an ejected leg still sends"
    );
    assert!(a.level_of(C, 0.3) < -50.0, "A hears ejected C");

    // Lock: attendees are refused, leaders still get in.
    engine.control("7", Control::Lock(true)).wait().unwrap();
    let d = Endpoint::new(Codec::Pcmu, 300.0, -20.0, 4);
    match join(&engine, &d, "d", Role::Attendee) {
        Err(EngineError::Command(CommandError::Join(JoinError::Locked))) => {}
        other => panic!("locked join: {other:?}"),
    }
    join(&engine, &d, "d2", Role::Leader).unwrap();

    // End: everyone leaves with `conference-ended`.
    engine.control("7", Control::End).wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let all: Vec<Event> = events.try_iter().map(|e| e.event).collect();
    let has = |e: Event| all.contains(&e);
    assert!(has(Event::State {
        participant: b_id,
        state: State::Connecting
    }));
    assert!(has(Event::State {
        participant: b_id,
        state: State::Connected
    }));
    assert!(has(Event::Muted {
        participant: b_id,
        muted: true
    }));
    assert!(has(Event::Deaf {
        participant: c_id,
        deaf: true
    }));
    assert!(has(Event::State {
        participant: c_id,
        state: State::Disconnected(DisconnectReason::Ejected)
    }));
    assert!(has(Event::Locked { locked: true }));
    assert!(has(Event::State {
        participant: a_id,
        state: State::Disconnected(DisconnectReason::ConferenceEnded)
    }));
    assert!(has(Event::Ended));
    let connected_before_leader = all
        .iter()
        .position(|e| {
            *e == Event::State {
                participant: b_id,
                state: State::Connected,
            }
        })
        .unwrap()
        < all
            .iter()
            .position(|e| {
                *e == Event::State {
                    participant: a_id,
                    state: State::Connected,
                }
            })
            .unwrap();
    assert!(!connected_before_leader, "B connected before the leader");
}
