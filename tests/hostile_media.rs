//! Media that once killed a mixer thread, sent to a real engine over UDP on 127.0.0.1: phones
//! and softclients with silence suppression or DTX (the sequence goes on, the timestamp jumps
//! by each pause), and an attacker's packets whose timestamps jump anywhere. Everyone is still
//! mixed, in that conference and in another on the same mixer thread.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use confab::conference::{Policy, Role};
use confab::engine::{Engine, Joiner};
use confab::media::codec::Codec;
use confab::media::leg::LegSpec;
use support::Endpoint;

fn join(engine: &Engine, conference: &str, e: &Endpoint, name: &str) -> std::net::SocketAddr {
    let joiner = Joiner {
        display_name: name.into(),
        uri: format!("sip:{name}@test"),
        role: Role::Attendee,
    };
    engine
        .add_rtp_leg(conference, joiner, LegSpec::new(e.codec, e.addr()))
        .unwrap()
        .1
}

#[test]
fn silence_suppression_and_hostile_timestamps_stop_nobody() {
    let _turn = support::exclusive();
    // One mixer thread: both conferences share it, as they would on a busy node.
    let engine = support::engine(Duration::from_secs(30));
    engine.create_conference("calm", Policy::default()).unwrap();
    engine
        .create_conference("pauses", Policy::default())
        .unwrap();

    let mut a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 1);
    let mut b = Endpoint::new(Codec::G722, 660.0, -20.0, 2);
    let to_a = join(&engine, "calm", &a, "a");
    let to_b = join(&engine, "calm", &b, "b");

    // Talkers that pause between bursts, one per codec, and a listener.
    let mut talkers = [
        Endpoint::new(Codec::Pcmu, 500.0, -20.0, 11),
        Endpoint::new(Codec::G722, 700.0, -20.0, 12),
        Endpoint::new(Codec::Opus, 900.0, -20.0, 13),
    ];
    let mut to_talkers = Vec::new();
    for (i, t) in talkers.iter_mut().enumerate() {
        t.bursts = Some((25, 15 + 5 * i as u64));
        t.silence_suppression = true;
        to_talkers.push(join(&engine, "pauses", t, &format!("t{i}")));
    }
    let mut listener = Endpoint::new(Codec::Opus, 1200.0, -90.0, 20);
    let to_listener = join(&engine, "pauses", &listener, "listener");
    // The attacker: a participant of that conference whose timestamps jump anywhere while its
    // sequence numbers stay contiguous.
    let mut attacker = Endpoint::new(Codec::Pcmu, 300.0, -90.0, 30);
    let to_attacker = join(&engine, "pauses", &attacker, "attacker");
    let jumps = [2000u32, 1 << 31, 80_000, u32::MAX, 7, 16_000, 3];
    let mut timestamp = 0u32;

    let [t0, t1, t2] = &mut talkers;
    let mut endpoints = [
        (&mut a, to_a),
        (&mut b, to_b),
        (t0, to_talkers[0]),
        (t1, to_talkers[1]),
        (t2, to_talkers[2]),
        (&mut listener, to_listener),
    ];
    support::run(&mut endpoints, Duration::from_secs(4), |tick| {
        let jump = jumps[tick as usize % jumps.len()];
        timestamp = timestamp.wrapping_add(jump);
        attacker.send_raw(to_attacker, 0, timestamp, &[0xFF; 160]);
    });

    let panics: u64 = engine
        .mixer_counters()
        .iter()
        .map(|c| c.panics.load(Ordering::Relaxed))
        .sum();
    assert_eq!(panics, 0, "a tick panicked and was contained");
    assert!(engine.mixers_alive());
    // The calm conference on the same thread: both hear each other at full level.
    for (e, other) in [(&a, 660.0), (&b, 440.0)] {
        let level = e.level_of(other, 1.0);
        assert!(
            (level + 20.0).abs() <= 1.5,
            "{:?} hears {other} Hz at {level:.2} dBov",
            e.codec
        );
    }
    // Every talker who pauses is heard (on for 25 frames of every 40-55: about -22 to -24
    // dBov on average over two seconds).
    for f in [500.0, 700.0, 900.0] {
        let level = listener.level_of(f, 2.0);
        assert!(
            level > -28.0,
            "the listener hears {f} Hz at {level:.2} dBov"
        );
    }
    let roster = engine.roster("pauses").unwrap();
    assert!(
        roster
            .iter()
            .all(|p| p.state == confab::conference::State::Connected),
        "{roster:?}"
    );
}
