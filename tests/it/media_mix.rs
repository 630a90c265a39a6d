//! The media engine end to end over real UDP on 127.0.0.1: three endpoints with different
//! codecs on SDES-SRTP legs, each hearing the other two and not itself (measured on audio
//! decoded by independent codecs), while forgeries are refused. Real time: about 3 s.
//!
//! What the mix does (codecs hearing each other, the mix rate following the widest leg,
//! prompts, quiet Opus legs left undecoded, SRTP forgeries) is tested in fake time beside the
//! code: `src/mixer/conference/sim_mix_tests.rs`.

use crate::support;

use std::time::Duration;

use confab::conference::{Policy, Role};
use confab::engine::{Engine, Joiner};
use confab::media::codec::Codec;
use confab::media::leg::LegSpec;
use confab::media::srtp::{SrtpKeys, SrtpSuite};
use support::Endpoint;

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
        identity: None,
    };
    engine.add_rtp_leg(conference, joiner, spec).wait().unwrap()
}

fn keys(seed: u8, suite: SrtpSuite) -> SrtpKeys {
    SrtpKeys {
        suite,
        local: std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8)),
        remote: std::array::from_fn(|i| seed.wrapping_mul(17).wrapping_add(100 + i as u8)),
    }
}

#[test]
fn three_codecs_over_sdes_srtp_and_forgeries_are_refused() {
    let _turn = support::exclusive();
    let engine = support::engine(Duration::from_secs(30));
    engine
        .create_conference("2000", Policy::default())
        .wait()
        .unwrap();
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
    let stats = engine.leg_stats("2000", ids[0]).wait().unwrap();
    assert!(stats.dropped_srtp_auth >= 50, "{stats:?}");
}
