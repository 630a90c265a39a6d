//! The media engine over real UDP on 127.0.0.1: three endpoints with different codecs, each
//! hearing the other two and not itself, measured on audio decoded by independent codecs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::net::IpAddr;
use std::time::Duration;

use confab::conference::{Policy, Role};
use confab::engine::{Engine, EngineSettings, Joiner};
use confab::media::codec::Codec;
use confab::media::leg::LegSpec;
use support::Endpoint;

fn engine() -> Engine {
    let (min, max) = support::free_port_range();
    Engine::start(EngineSettings {
        mixer_threads: 1,
        max_talkers: 3,
        media_bind: IpAddr::from([127, 0, 0, 1]),
        rtp_port_min: min,
        rtp_port_max: max,
        media_timeout: Duration::from_secs(30),
    })
    .unwrap()
}

fn join(engine: &Engine, conference: &str, e: &Endpoint, name: &str) -> std::net::SocketAddr {
    let spec = LegSpec {
        codec: e.codec,
        payload_type: match e.codec {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::G722 => 9,
            Codec::Opus => 111,
        },
        ptime_ms: 20,
        remote: e.addr(),
        telephone_event: None,
    };
    let joiner = Joiner {
        display_name: name.into(),
        uri: format!("sip:{name}@test"),
        role: Role::Attendee,
    };
    engine.add_rtp_leg(conference, joiner, spec).unwrap().1
}

#[test]
fn three_codecs_hear_each_other_and_not_themselves() {
    let engine = engine();
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
