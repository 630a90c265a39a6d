//! The media engine under a hostile network, end to end over real UDP on 127.0.0.1: forged and
//! malformed datagrams (empty, oversized for RTP, not RTP) sprayed at a leg's real socket are
//! dropped and counted without disturbing anyone. Real time: about 2.3 s.
//!
//! Loss, jitter and reordering, and the rest of what a hostile network does, are tested in
//! fake time beside the code: `src/mixer/conference/sim_network_tests.rs`.

use crate::support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use confab::conference::{ParticipantId, Policy, Role};
use confab::engine::{Engine, Joiner};
use confab::media::codec::Codec;
use confab::media::leg::LegSpec;
use support::Endpoint;

fn join(
    engine: &Engine,
    conference: &str,
    codec: Codec,
    remote: SocketAddr,
    name: &str,
) -> (ParticipantId, SocketAddr) {
    let spec = LegSpec::new(codec, remote);
    let joiner = Joiner {
        display_name: name.into(),
        uri: format!("sip:{name}@test"),
        role: Role::Attendee,
        identity: None,
    };
    engine.add_rtp_leg(conference, joiner, spec).wait().unwrap()
}

#[test]
fn forged_and_malformed_packets_are_dropped_and_counted() {
    let _turn = support::exclusive();
    let engine = support::engine(Duration::from_secs(30));
    engine
        .create_conference("9", Policy::default())
        .wait()
        .unwrap();
    let mut a = Endpoint::new(Codec::Pcmu, 500.0, -20.0, 1);
    let mut b = Endpoint::new(Codec::Pcmu, 700.0, -20.0, 2);
    let (a_id, a_addr) = join(&engine, "9", Codec::Pcmu, a.addr(), "a");
    let (_, b_addr) = join(&engine, "9", Codec::Pcmu, b.addr(), "b");
    support::run(
        &mut [(&mut a, a_addr), (&mut b, b_addr)],
        Duration::from_millis(800),
        |_| {},
    );

    // From now on an attacker sprays A's port, and A itself sends some garbage.
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut forged = vec![0x80, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 9];
    forged.extend_from_slice(&[0x00; 160]); // loud µ-law: would be heard if it got in
    let junk: Vec<Vec<u8>> = vec![
        vec![0x80; 5],
        vec![0x80; 1600],
        vec![0x40; 40],
        vec![0x8F; 20],
        vec![],
    ];
    let a_socket = a.socket.try_clone().unwrap();
    support::run(
        &mut [(&mut a, a_addr), (&mut b, b_addr)],
        Duration::from_millis(1500),
        |tick| {
            for _ in 0..3 {
                attacker.send_to(&forged, a_addr).unwrap();
            }
            for j in &junk {
                let _ = attacker.send_to(j, a_addr);
                if tick % 5 == 0 {
                    let _ = a_socket.send_to(j, a_addr);
                }
            }
        },
    );
    let stats = engine.leg_stats("9", a_id).wait().unwrap();
    assert!(stats.dropped_foreign_source >= 200, "{stats:?}");
    assert!(stats.dropped_malformed >= 10, "{stats:?}");
    // Nobody heard the forged audio; B still hears A cleanly.
    let level = b.level_of(500.0, 1.0);
    assert!((level + 20.0).abs() < 1.0, "B hears A at {level:.2}");
    let total = confab_dsp::signal::level_dbov(&b.heard[b.heard.len() - 8000..]);
    assert!(
        (total - level).abs() < 0.5,
        "B hears more than A: {total:.2} dBov in all"
    );
}
