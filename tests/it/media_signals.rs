//! RTCP end to end through the engine over real UDP on 127.0.0.1: reports both ways on
//! rtcp-mux, on a separate RTCP port (the bridge's odd port, a socket of its own) and as SRTCP,
//! with loss, round-trip time and MOS. Reports are read with rtc-rtcp. Real time: 4 to 15 s.
//!
//! What else travels beside the audio (RFC 4733 digits, RFC 6465 talker levels and RFC 6464
//! client levels, latching and re-latching, strangers, speaking while muted, hold) is tested in
//! fake time beside the code: `src/mixer/conference/sim_signal_tests.rs`,
//! `sim_control_tests.rs` and `src/media/leg/leg_core/latch_tests.rs`.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use confab::conference::{Policy, Role};
use confab::engine::Joiner;
use confab::media::codec::Codec;
use confab::media::leg::LegSpec;
use confab::media::srtp::{SrtpKeys, SrtpSuite};
use rtc_rtcp::packet::Packet;
use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::sender_report::SenderReport;
use support::Endpoint;

fn joiner(name: &str) -> Joiner {
    Joiner {
        display_name: name.into(),
        uri: format!("sip:{name}@test"),
        role: Role::Attendee,
        identity: None,
    }
}

/// The SR or RR of a compound RTCP packet (read by rtc-rtcp), with its report blocks.
fn report_of(bytes: &[u8]) -> Option<(u32, Option<u64>, Vec<ReceptionReport>)> {
    let mut b = Bytes::copy_from_slice(bytes);
    let packets = rtc_rtcp::packet::unmarshal(&mut b).ok()?;
    let first = packets.first()?;
    if let Some(sr) = first.as_any().downcast_ref::<SenderReport>() {
        return Some((sr.ssrc, Some(sr.ntp_time), sr.reports.clone()));
    }
    let rr = first.as_any().downcast_ref::<ReceiverReport>()?;
    Some((rr.ssrc, None, rr.reports.clone()))
}

/// Answers every SR the endpoint got since `seen` with an RR about the bridge's stream,
/// claiming `fraction_lost`, with the time it held the SR as DLSR.
fn answer_reports(e: &mut Endpoint, to: SocketAddr, seen: &mut usize, fraction_lost: u8) {
    while *seen < e.rtcp_in.len() {
        let (_, bytes, arrived) = e.rtcp_in[*seen].clone();
        *seen += 1;
        let Some((bridge_ssrc, Some(ntp), _)) = report_of(&bytes) else {
            continue;
        };
        let rr = ReceiverReport {
            ssrc: e.ssrc(),
            reports: vec![ReceptionReport {
                ssrc: bridge_ssrc,
                fraction_lost,
                total_lost: 3,
                last_sequence_number: 100,
                jitter: 16,
                last_sender_report: (ntp >> 16) as u32,
                delay: (arrived.elapsed().as_micros() * 65536 / 1_000_000) as u32,
            }],
            profile_extensions: Bytes::new(),
        };
        let wire = rtc_rtcp::packet::marshal(&[Box::new(rr) as Box<dyn Packet>]).unwrap();
        e.send_rtcp(to, &wire);
    }
}

#[test]
fn rtcp_reports_both_ways_with_loss_rtt_and_mos() {
    let _turn = support::exclusive();
    let engine = support::engine(Duration::from_secs(30));
    engine
        .create_conference("31", Policy::default())
        .wait()
        .unwrap();

    // A: rtcp-mux, clean. B: RTCP on its own port, 10 % of its packets lost at the source.
    // C: SRTP with SRTCP on the RTP port.
    let mut a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 11);
    let mut b = Endpoint::new(Codec::G722, 660.0, -20.0, 12);
    b.drop_every = Some(10);
    let b_rtcp = b.separate_rtcp();
    let mut c = Endpoint::new(Codec::Opus, 880.0, -20.0, 13);
    let keys = SrtpKeys {
        suite: SrtpSuite::AesCm128HmacSha1_80,
        local: std::array::from_fn(|i| i as u8 + 1),
        remote: std::array::from_fn(|i| i as u8 + 50),
    };
    c.use_srtp(&keys);

    let (a_id, a_addr) = engine
        .add_rtp_leg("31", joiner("a"), LegSpec::new(Codec::Pcmu, a.addr()))
        .wait()
        .unwrap();
    let spec_b = LegSpec {
        remote_rtcp: Some(b_rtcp),
        ..LegSpec::new(Codec::G722, b.addr())
    };
    let (b_id, b_addr) = engine
        .add_rtp_leg("31", joiner("b"), spec_b)
        .wait()
        .unwrap();
    let b_bridge_rtcp = SocketAddr::new(b_addr.ip(), b_addr.port() + 1);
    let spec_c = LegSpec {
        srtp: Some(keys),
        ..LegSpec::new(Codec::Opus, c.addr())
    };
    let (c_id, c_addr) = engine
        .add_rtp_leg("31", joiner("c"), spec_c)
        .wait()
        .unwrap();

    let (mut seen_a, mut seen_b, mut seen_c) = (0, 0, 0);
    let started = Instant::now();
    // The first report is due within 1.5 x 2.5 s / 1.218; run until each endpoint has had an SR
    // answered and the bridge has taken the answer, at most 15 s.
    loop {
        support::run(
            &mut [(&mut a, a_addr), (&mut b, b_addr), (&mut c, c_addr)],
            Duration::from_millis(200),
            |_| {},
        );
        answer_reports(&mut a, a_addr, &mut seen_a, 0);
        answer_reports(&mut b, b_bridge_rtcp, &mut seen_b, 64);
        answer_reports(&mut c, c_addr, &mut seen_c, 0);
        let done = [a_id, b_id, c_id].iter().all(|&id| {
            engine
                .leg_stats("31", id)
                .wait()
                .is_ok_and(|s| s.rtt_ms.is_some())
        });
        if done && started.elapsed() > Duration::from_secs(4) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no RTT on every leg"
        );
    }

    // Reports reached each endpoint the way it asked: A and C on the RTP port, B on its RTCP
    // port from the bridge's odd port. C's came as SRTCP (it decrypted them).
    assert!(a.rtcp_in.iter().all(|(from, ..)| *from == a_addr));
    assert!(!b.rtcp_in.is_empty());
    assert!(b.rtcp_in.iter().all(|(from, ..)| *from == b_bridge_rtcp));
    assert!(!c.rtcp_in.is_empty());
    assert_eq!(c.srtp_failures, 0);

    // The bridge's report about B's stream shows the 10 % B never sent.
    let (_, _, blocks) = report_of(&b.rtcp_in.last().unwrap().1).unwrap();
    let block = blocks.iter().find(|r| r.ssrc == b.ssrc()).unwrap();
    assert!(
        (15..=40).contains(&block.fraction_lost),
        "fraction lost {} / 256",
        block.fraction_lost
    );

    let sa = engine.leg_stats("31", a_id).wait().unwrap();
    let sb = engine.leg_stats("31", b_id).wait().unwrap();
    let sc = engine.leg_stats("31", c_id).wait().unwrap();
    for s in [&sa, &sb, &sc] {
        assert!(s.rtcp_in >= 1 && s.rtcp_out >= 1, "{s:?}");
        assert!(s.rtt_ms.unwrap() < 100.0, "loopback rtt {:?}", s.rtt_ms);
        assert_eq!(s.dropped_srtp_auth, 0);
        assert_eq!(s.dropped_malformed, 0);
    }
    assert_eq!(sa.packets_lost, 0);
    let b_loss = sb.packets_lost as f64 / sb.packets_expected as f64;
    assert!((0.08..=0.12).contains(&b_loss), "B loss {b_loss}");
    assert_eq!(sb.remote_loss_percent, Some(25.0));
    assert!(sa.jitter_ms < 20.0, "A jitter {} ms", sa.jitter_ms);
    // Clean loopback is toll quality; B's loss costs it.
    assert!(sa.mos > 4.2, "A MOS {}", sa.mos);
    assert!(sb.mos < sa.mos - 0.5, "B MOS {} vs A {}", sb.mos, sa.mos);
}
