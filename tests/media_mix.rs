//! The media engine over real UDP on 127.0.0.1: three endpoints with different codecs, each
//! hearing the other two and not itself, measured on audio decoded by independent codecs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::time::Duration;

use confab::conference::{Policy, Role};
use confab::engine::{Engine, Joiner};
use confab::media::codec::Codec;
use confab::media::leg::LegSpec;
use confab::media::srtp::{SrtpKeys, SrtpSuite};
use confab::mixer::Control;
use support::Endpoint;

fn join(engine: &Engine, conference: &str, e: &Endpoint, name: &str) -> std::net::SocketAddr {
    join_with(engine, conference, e, name, None).1
}

fn join_with(
    engine: &Engine,
    conference: &str,
    e: &Endpoint,
    name: &str,
    srtp: Option<SrtpKeys>,
) -> (confab::conference::ParticipantId, std::net::SocketAddr) {
    let spec = LegSpec {
        srtp,
        ..LegSpec::new(e.codec, e.addr())
    };
    let joiner = Joiner {
        display_name: name.into(),
        uri: format!("sip:{name}@test"),
        role: Role::Attendee,
    };
    engine.add_rtp_leg(conference, joiner, spec).unwrap()
}

fn keys(seed: u8, suite: SrtpSuite) -> SrtpKeys {
    SrtpKeys {
        suite,
        local: std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8)),
        remote: std::array::from_fn(|i| seed.wrapping_mul(17).wrapping_add(100 + i as u8)),
    }
}

#[test]
fn three_codecs_hear_each_other_and_not_themselves() {
    let _turn = support::exclusive();
    let engine = support::engine(Duration::from_secs(30));
    engine.create_conference("1000", Policy::default()).unwrap();
    let mut pcmu = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 1);
    let mut g722 = Endpoint::new(Codec::G722, 660.0, -20.0, 2);
    let mut opus = Endpoint::new(Codec::Opus, 880.0, -20.0, 3);
    let a = join(&engine, "1000", &pcmu, "pcmu");
    let b = join(&engine, "1000", &g722, "g722");
    let c = join(&engine, "1000", &opus, "opus");
    support::run(
        &mut [(&mut pcmu, a), (&mut g722, b), (&mut opus, c)],
        Duration::from_secs(3),
        |_| {},
    );

    for (e, own, others) in [
        (&pcmu, 440.0, [660.0, 880.0]),
        (&g722, 660.0, [440.0, 880.0]),
        (&opus, 880.0, [440.0, 660.0]),
    ] {
        for f in others {
            let level = e.level_of(f, 1.0);
            assert!(
                (level + 20.0).abs() <= 1.0,
                "{:?} hears {f} Hz at {level:.2} dBov",
                e.codec
            );
        }
        let echo = e.level_of(own, 1.0);
        assert!(echo < -50.0, "{:?} hears itself at {echo:.2} dBov", e.codec);
    }
    let roster = engine.roster("1000").unwrap();
    assert_eq!(roster.len(), 3);
    assert!(
        roster
            .iter()
            .all(|p| p.state == confab::conference::State::Connected),
        "{roster:?}"
    );
}

#[test]
fn three_codecs_over_sdes_srtp_and_forgeries_are_refused() {
    let _turn = support::exclusive();
    let engine = support::engine(Duration::from_secs(30));
    engine.create_conference("2000", Policy::default()).unwrap();
    let mut pcmu = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 1);
    let mut g722 = Endpoint::new(Codec::G722, 660.0, -20.0, 2);
    let mut opus = Endpoint::new(Codec::Opus, 880.0, -20.0, 3);
    let suites = [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
        SrtpSuite::AesCm128HmacSha1_80,
    ];
    let mut addrs = Vec::new();
    let mut ids = Vec::new();
    for (i, e) in [&mut pcmu, &mut g722, &mut opus].into_iter().enumerate() {
        let k = keys(i as u8 + 1, suites[i]);
        e.use_srtp(&k);
        let (id, addr) = join_with(&engine, "2000", e, &format!("s{i}"), Some(k));
        ids.push(id);
        addrs.push(addr);
    }
    // A forger on PCMU's own address family sends packets under the wrong key to PCMU's port,
    // from the latched address (the endpoint's socket) — they must fail authentication.
    let forger = pcmu.socket.try_clone().unwrap();
    let mut wrong = Endpoint::new(Codec::Pcmu, 300.0, -3.0, 99);
    wrong.use_srtp(&keys(77, SrtpSuite::AesCm128HmacSha1_80));
    let target = addrs[0];
    support::run(
        &mut [
            (&mut pcmu, addrs[0]),
            (&mut g722, addrs[1]),
            (&mut opus, addrs[2]),
        ],
        Duration::from_secs(3),
        |tick| {
            if tick > 50 {
                // Build a forged packet with the other endpoint's codec and send it from PCMU's socket.
                wrong.send_frame(wrong.addr());
                let mut buf = [0u8; 2048];
                if let Ok(n) = wrong.socket.recv(&mut buf) {
                    let _ = forger.send_to(&buf[..n], target);
                }
            }
        },
    );
    for (e, own, others) in [
        (&pcmu, 440.0, [660.0, 880.0]),
        (&g722, 660.0, [440.0, 880.0]),
        (&opus, 880.0, [440.0, 660.0]),
    ] {
        for f in others {
            let level = e.level_of(f, 1.0);
            assert!(
                (level + 20.0).abs() <= 1.0,
                "{:?} hears {f} Hz at {level:.2} dBov over SRTP",
                e.codec
            );
        }
        assert!(e.level_of(own, 1.0) < -50.0, "{:?} hears itself", e.codec);
        assert!(
            e.level_of(300.0, 1.0) < -50.0,
            "{:?} hears the forged audio",
            e.codec
        );
        assert_eq!(
            e.srtp_failures, 0,
            "{:?}: the bridge's SRTP did not authenticate",
            e.codec
        );
    }
    let stats = engine.leg_stats("2000", ids[0]).unwrap();
    assert!(stats.dropped_srtp_auth >= 50, "{stats:?}");
}

/// The rate conference `id` mixes at, from the mixer threads' figures.
fn mix_rate(engine: &Engine, id: &str) -> u32 {
    engine
        .snapshots()
        .iter()
        .flat_map(|s| &s.conferences)
        .find(|c| c.id == id)
        .map(|c| c.mix_rate_hz)
        .unwrap()
}

/// Conference `id` with `a` and `b` in it, run for `first`; where each sends.
fn two_in(
    engine: &Engine,
    id: &str,
    a: &mut Endpoint,
    b: &mut Endpoint,
    first: Duration,
) -> (std::net::SocketAddr, std::net::SocketAddr) {
    engine.create_conference(id, Policy::default()).unwrap();
    let to_a = join(engine, id, a, "a");
    let to_b = join(engine, id, b, "b");
    support::run(&mut [(a, to_a), (b, to_b)], first, |_| {});
    (to_a, to_b)
}

#[test]
fn a_phone_meeting_mixes_at_8k_until_a_wideband_leg_joins() {
    let _turn = support::exclusive();
    let engine = support::engine(Duration::from_secs(30));
    let mut a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 11);
    let mut b = Endpoint::new(Codec::Pcmu, 660.0, -20.0, 12);
    let (to_a, to_b) = two_in(&engine, "1001", &mut a, &mut b, Duration::from_secs(2));
    assert_eq!(mix_rate(&engine, "1001"), 8000);
    for (e, other) in [(&a, 660.0), (&b, 440.0)] {
        let level = e.level_of(other, 1.0);
        assert!(
            (level + 20.0).abs() <= 1.0,
            "{:?} at 8 kHz: {level:.2}",
            e.codec
        );
    }

    // An Opus leg widens the mix; everyone goes on hearing everyone else.
    let mut c = Endpoint::new(Codec::Opus, 3000.0, -20.0, 13);
    let (c_id, to_c) = join_with(&engine, "1001", &c, "c", None);
    support::run(
        &mut [(&mut a, to_a), (&mut b, to_b), (&mut c, to_c)],
        Duration::from_secs(2),
        |_| {},
    );
    assert_eq!(mix_rate(&engine, "1001"), 48000);
    for (e, f) in [
        (&a, 660.0),
        (&a, 3000.0),
        (&b, 440.0),
        (&c, 440.0),
        (&c, 660.0),
    ] {
        let level = e.level_of(f, 1.0);
        assert!(
            (level + 20.0).abs() <= 1.0,
            "{:?} hears {f} Hz at 48 kHz: {level:.2}",
            e.codec
        );
    }

    // It leaves: back to 8 kHz, and the phones still hear each other.
    engine.control("1001", Control::Hangup(c_id)).unwrap();
    support::run(
        &mut [(&mut a, to_a), (&mut b, to_b)],
        Duration::from_secs(2),
        |_| {},
    );
    assert_eq!(mix_rate(&engine, "1001"), 8000);
    let level = a.level_of(660.0, 1.0);
    assert!(
        (level + 20.0).abs() <= 1.0,
        "after the Opus leg left: {level:.2}"
    );
    let gone = a.level_of(3000.0, 1.0);
    assert!(gone < -50.0, "the Opus leg is still heard: {gone:.2}");
}

#[test]
fn a_prompt_plays_at_its_level_in_a_narrow_mix() {
    let _turn = support::exclusive();
    let engine = support::engine(Duration::from_secs(30));
    engine.create_conference("1002", Policy::default()).unwrap();
    let mut a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 21);
    let (a_id, to_a) = join_with(&engine, "1002", &a, "a", None);
    support::run(&mut [(&mut a, to_a)], Duration::from_millis(400), |_| {});
    assert_eq!(mix_rate(&engine, "1002"), 8000);
    // Prompts are kept at 48 kHz: 3 s of a -15 dBov 1 kHz tone.
    let prompt: std::sync::Arc<[i16]> =
        confab_dsp::signal::sine(48_000, 1000.0, -15.0, 48_000 * 3).into();
    engine.play("1002", a_id, Some(prompt)).unwrap();
    support::run(&mut [(&mut a, to_a)], Duration::from_secs(2), |_| {});
    let level = a.level_of(1000.0, 1.0);
    assert!(
        (level + 15.0).abs() <= 1.0,
        "the prompt at 8 kHz: {level:.2}"
    );
}

/// Opus packets taken as silence without decoding, over the engine's legs.
fn decodes_skipped(engine: &Engine) -> u64 {
    engine
        .snapshots()
        .iter()
        .map(|s| s.legs.decodes_skipped)
        .sum()
}

#[test]
fn a_silent_opus_participant_is_not_decoded_and_is_heard_once_it_speaks() {
    let _turn = support::exclusive();
    let engine = support::engine(Duration::from_secs(30));
    let mut a = Endpoint::new(Codec::Opus, 880.0, -20.0, 31);
    // Digital silence, as a muted browser sends it.
    let mut b = Endpoint::new(Codec::Opus, 440.0, -300.0, 32);
    let (to_a, to_b) = two_in(&engine, "1003", &mut a, &mut b, Duration::from_secs(3));
    // 150 packets from b: the first half second is decoded, then all but the probes are not.
    let skipped = decodes_skipped(&engine);
    assert!(
        (90..=130).contains(&skipped),
        "{skipped} packets not decoded"
    );
    assert!(b.level_of(880.0, 1.0) > -21.0, "b hears a");

    b.tone_dbov = -20.0;
    support::run(
        &mut [(&mut a, to_a), (&mut b, to_b)],
        Duration::from_secs(2),
        |_| {},
    );
    let level = a.level_of(440.0, 1.5);
    assert!((level + 20.0).abs() <= 1.0, "a hears b at {level:.2} dBov");
    let more = decodes_skipped(&engine) - skipped;
    assert!(more <= 2, "{more} packets with voice were not decoded");
}
