//! What travels beside the audio, over real UDP on 127.0.0.1: RTCP reports both ways (rtcp-mux,
//! a separate RTCP port, SRTCP) with loss, jitter, round-trip time and MOS; RFC 4733 digits;
//! RFC 6465 talker CSRCs and levels and RFC 6464 client levels; re-latching after a NAT
//! rebinding; speaking while muted. Reports are read with rtc-rtcp, packets with rtc-rtp.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use bytes::Bytes;
use confab::conference::{Event, ParticipantId, Policy, Role};
use confab::engine::{Engine, Joiner};
use confab::media::codec::Codec;
use confab::media::leg::{LegSpec, LegTimers, TelephoneEventSpec};
use confab::media::srtp::{SrtpKeys, SrtpSuite};
use confab::mixer::Control;
use confab::mixer::conference::ConferenceEvent;
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
    }
}

/// A and B on PCMU legs of a new conference `conference`: each leg's participant and the
/// bridge's address for it.
fn join_pcmu_pair(
    engine: &Engine,
    conference: &str,
    a: &Endpoint,
    b: &Endpoint,
) -> [(ParticipantId, SocketAddr); 2] {
    engine
        .create_conference(conference, Policy::default())
        .unwrap();
    let join = |name: &str, e: &Endpoint| {
        engine
            .add_rtp_leg(
                conference,
                joiner(name),
                LegSpec::new(Codec::Pcmu, e.addr()),
            )
            .unwrap()
    };
    [join("a", a), join("b", b)]
}

/// An engine whose legs latch a new source once the old one has been silent for 400 ms.
fn engine_relatching(media_timeout: Duration) -> Engine {
    let timers = LegTimers {
        relatch_after: Duration::from_millis(400),
        ..LegTimers::default()
    };
    support::engine_with(media_timeout, timers)
}

/// A PCMU endpoint on another host (127.0.0.2 is a second address of the loopback).
fn on_another_host(tone_hz: f32, ssrc: u32) -> Endpoint {
    let mut e = Endpoint::new(Codec::Pcmu, tone_hz, -20.0, ssrc);
    e.socket = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    e.socket.set_nonblocking(true).unwrap();
    e
}

/// An RR with no report blocks from `ssrc`, on the wire.
fn empty_receiver_report(ssrc: u32) -> bytes::BytesMut {
    let rr = ReceiverReport {
        ssrc,
        reports: vec![],
        profile_extensions: Bytes::new(),
    };
    rtc_rtcp::packet::marshal(&[Box::new(rr) as Box<dyn Packet>]).unwrap()
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
    engine.create_conference("31", Policy::default()).unwrap();

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
        .unwrap();
    let spec_b = LegSpec {
        remote_rtcp: Some(b_rtcp),
        ..LegSpec::new(Codec::G722, b.addr())
    };
    let (b_id, b_addr) = engine.add_rtp_leg("31", joiner("b"), spec_b).unwrap();
    let b_bridge_rtcp = SocketAddr::new(b_addr.ip(), b_addr.port() + 1);
    let spec_c = LegSpec {
        srtp: Some(keys),
        ..LegSpec::new(Codec::Opus, c.addr())
    };
    let (c_id, c_addr) = engine.add_rtp_leg("31", joiner("c"), spec_c).unwrap();

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
        let done = [a_id, b_id, c_id]
            .iter()
            .all(|&id| engine.leg_stats("31", id).is_ok_and(|s| s.rtt_ms.is_some()));
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

    let sa = engine.leg_stats("31", a_id).unwrap();
    let sb = engine.leg_stats("31", b_id).unwrap();
    let sc = engine.leg_stats("31", c_id).unwrap();
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

fn digits_of(events: &Receiver<ConferenceEvent>, who: ParticipantId) -> Vec<(char, u32)> {
    events
        .try_iter()
        .filter_map(|e| match e.event {
            Event::Dtmf {
                participant,
                digit,
                duration_ms,
            } if participant == who => Some((digit, duration_ms)),
            _ => None,
        })
        .collect()
}

#[test]
fn rfc4733_digits_arrive_once_each() {
    let _turn = support::exclusive();
    let engine = support::engine(Duration::from_secs(30));
    let events = engine.take_events().unwrap();
    engine.create_conference("32", Policy::default()).unwrap();
    let mut e = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 21);
    let spec = LegSpec {
        telephone_event: Some(TelephoneEventSpec {
            payload_type: 101,
            clock_rate: 8000,
        }),
        ..LegSpec::new(Codec::Pcmu, e.addr())
    };
    let (id, addr) = engine.add_rtp_leg("32", joiner("dialer"), spec).unwrap();

    // Audio, then "1", "2", "#" as RFC 4733 senders do (a packet per 20 ms growing the
    // duration, three end packets), then "5" whose end packets are all lost, then "9".
    let mut ts = 80_000u32;
    let mut tick = Instant::now();
    let mut pace = |e: &mut Endpoint| {
        e.receive();
        tick += Duration::from_millis(20);
        if let Some(w) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
    };
    for _ in 0..25 {
        e.send_frame(addr);
        pace(&mut e);
    }
    for (event, ends) in [(1u8, 3), (2, 3), (11, 3), (5, 0), (9, 3)] {
        ts = ts.wrapping_add(4000);
        for step in 1..=8u16 {
            let d = (step * 160).to_be_bytes();
            e.send_raw(addr, 101, ts, &[event, 10, d[0], d[1]]);
            pace(&mut e);
        }
        for _ in 0..ends {
            let d = (8u16 * 160).to_be_bytes();
            e.send_raw(addr, 101, ts, &[event, 0x80 | 10, d[0], d[1]]);
        }
        for _ in 0..10 {
            e.send_frame(addr);
            pace(&mut e);
        }
    }
    for _ in 0..25 {
        e.send_frame(addr);
        pace(&mut e);
    }
    let got = digits_of(&events, id);
    let keyed: String = got.iter().map(|(d, _)| *d).collect();
    assert_eq!(keyed, "12#59");
    assert!(got.iter().all(|(_, ms)| *ms == 160), "{got:?}");
    let stats = engine.leg_stats("32", id).unwrap();
    assert_eq!(stats.dtmf_in, 5);
    assert_eq!(stats.dropped_payload_type, 0);
}

#[test]
fn talkers_are_named_with_levels_and_client_levels_are_read() {
    let _turn = support::exclusive();
    let engine = support::engine(Duration::from_secs(30));
    engine.create_conference("33", Policy::default()).unwrap();
    // A talks at -20 dBov and says so in RFC 6464 (voice, 33 -dBov: a hint, not trusted);
    // B listens and has negotiated RFC 6465 as extension 3.
    let mut a = Endpoint::new(Codec::Opus, 440.0, -20.0, 31);
    a.audio_level_ext = Some((1, 0x80 | 33));
    let mut b = Endpoint::new(Codec::Pcmu, 660.0, -80.0, 32);
    b.csrc_level_id = Some(3);
    let spec_a = LegSpec {
        audio_level_id: Some(1),
        ..LegSpec::new(Codec::Opus, a.addr())
    };
    let (a_id, a_addr) = engine.add_rtp_leg("33", joiner("a"), spec_a).unwrap();
    let spec_b = LegSpec {
        csrc_audio_level_id: Some(3),
        ..LegSpec::new(Codec::Pcmu, b.addr())
    };
    let (_, b_addr) = engine.add_rtp_leg("33", joiner("b"), spec_b).unwrap();
    support::run(
        &mut [(&mut a, a_addr), (&mut b, b_addr)],
        Duration::from_millis(1500),
        |_| {},
    );
    // A hears the bridge on A's leg SSRC: that is the CSRC others see for A.
    let a_leg_ssrc = a.bridge_ssrc.unwrap();
    assert_eq!(b.last_csrcs, vec![a_leg_ssrc]);
    let levels = b.last_csrc_levels.clone().expect("no RFC 6465 extension");
    assert_eq!(levels.len(), 1);
    assert!(
        (17..=23).contains(&levels[0]),
        "A's level {} -dBov, sent at 20",
        levels[0]
    );
    assert!(b.level_of(440.0, 0.5) > -22.0);
    assert_eq!(engine.leg_stats("33", a_id).unwrap().client_level, Some(33));
    // A did not negotiate RFC 6465: its packets carry the CSRCs of others only (none here,
    // as B is quiet) and no extension.
    assert!(a.last_csrcs.is_empty());
}

#[test]
fn a_rebound_source_is_latched_after_the_old_one_falls_silent() {
    let _turn = support::exclusive();
    let engine = engine_relatching(Duration::from_secs(30));
    let mut a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 41);
    let mut b = Endpoint::new(Codec::Pcmu, 660.0, -20.0, 42);
    let [(a_id, a_addr), (_, b_addr)] = join_pcmu_pair(&engine, "34", &a, &b);
    support::run(
        &mut [(&mut a, a_addr), (&mut b, b_addr)],
        Duration::from_secs(1),
        |_| {},
    );
    assert!(a.level_of(660.0, 0.5) > -22.0);

    // A second source (A behind a new NAT binding) while the first still sends: refused.
    let mut rebound = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 41);
    support::run(
        &mut [(&mut a, a_addr), (&mut b, b_addr), (&mut rebound, a_addr)],
        Duration::from_secs(1),
        |_| {},
    );
    let dropped = engine.leg_stats("34", a_id).unwrap().dropped_foreign_source;
    assert!(dropped >= 40, "foreign packets dropped: {dropped}");
    assert!(
        rebound.heard.is_empty(),
        "the new source was answered while the old one was alive"
    );
    // The old binding falls silent: after 400 ms the new source is latched and hears B.
    support::run(
        &mut [(&mut b, b_addr), (&mut rebound, a_addr)],
        Duration::from_millis(1500),
        |_| {},
    );
    assert!(
        rebound.level_of(660.0, 0.5) > -22.0,
        "rebound source hears B at {}",
        rebound.level_of(660.0, 0.5)
    );
}

#[test]
fn a_muted_talker_is_reported_speaking_while_muted_and_not_heard() {
    let _turn = support::exclusive();
    let engine = support::engine(Duration::from_secs(30));
    let events = engine.take_events().unwrap();
    // Bursts of tone read as speech: 300 ms on, 200 ms off.
    let mut a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 51);
    a.bursts = Some((15, 10));
    let mut b = Endpoint::new(Codec::Pcmu, 660.0, -80.0, 52);
    let [(a_id, a_addr), (_, b_addr)] = join_pcmu_pair(&engine, "35", &a, &b);
    engine.control("35", Control::Mute(a_id, true)).unwrap();
    support::run(
        &mut [(&mut a, a_addr), (&mut b, b_addr)],
        Duration::from_secs(2),
        |_| {},
    );
    let got: Vec<Event> = events.try_iter().map(|e| e.event).collect();
    assert!(
        got.contains(&Event::SpeakingWhileMuted { participant: a_id }),
        "{got:?}"
    );
    assert!(b.level_of(440.0, 1.5) < -50.0, "muted A heard by B");
    // Unmuted, the same bursts are heard.
    engine.control("35", Control::Mute(a_id, false)).unwrap();
    support::run(
        &mut [(&mut a, a_addr), (&mut b, b_addr)],
        Duration::from_secs(2),
        |_| {},
    );
    assert!(b.level_of(440.0, 1.5) > -30.0, "unmuted A not heard");
}

#[test]
fn a_stranger_can_neither_take_over_a_quiet_leg_nor_keep_it_alive() {
    let _turn = support::exclusive();
    // A short media timeout: a leg that hears nothing from its peer for 2 s is gone.
    let engine = engine_relatching(Duration::from_secs(2));
    let mut a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 61);
    let mut b = Endpoint::new(Codec::Pcmu, 660.0, -20.0, 62);
    let [(a_id, a_addr), (_, b_addr)] = join_pcmu_pair(&engine, "36", &a, &b);
    support::run(
        &mut [(&mut a, a_addr), (&mut b, b_addr)],
        Duration::from_secs(1),
        |_| {},
    );
    assert!(a.level_of(660.0, 0.5) > -22.0);

    // A falls quiet (hold, DTX). A stranger sprays its port with another SSRC, and RTCP from
    // the stranger's address arrives every 100 ms.
    let mut stranger = Endpoint::new(Codec::Pcmu, 300.0, -20.0, 666);
    let rtcp = empty_receiver_report(666);
    let stranger_rtcp = stranger.socket.try_clone().unwrap();
    support::run(
        &mut [(&mut b, b_addr), (&mut stranger, a_addr)],
        Duration::from_secs(3),
        |tick| {
            if tick % 5 == 0 {
                let _ = stranger_rtcp.send_to(&rtcp, a_addr);
            }
        },
    );
    // Never answered, never mixed.
    assert!(
        stranger.heard.is_empty(),
        "the stranger was sent the conference's mix"
    );
    assert!(b.level_of(300.0, 1.0) < -50.0, "B hears the stranger");
    let a_state = engine
        .roster("36")
        .unwrap()
        .into_iter()
        .find(|p| p.id == a_id)
        .unwrap()
        .state;
    // And the stranger's packets did not keep A's silent leg alive past the media timeout.
    assert_eq!(
        a_state,
        confab::conference::State::Disconnected(confab::conference::DisconnectReason::MediaTimeout)
    );
}

#[test]
fn a_stranger_on_another_host_is_never_latched_even_before_the_peer_speaks() {
    let _turn = support::exclusive();
    let engine: Engine = support::engine(Duration::from_secs(30));
    let mut a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 71);
    let mut b = Endpoint::new(Codec::Pcmu, 660.0, -20.0, 72);
    // A's offer names 127.0.0.1, a routable host: only that host's packets are A's.
    let [(a_id, a_addr), (_, b_addr)] = join_pcmu_pair(&engine, "37", &a, &b);
    // Another host sprays A's port first.
    let mut stranger = on_another_host(300.0, 71);
    support::run(
        &mut [(&mut b, b_addr), (&mut stranger, a_addr)],
        Duration::from_secs(1),
        |_| {},
    );
    // Then A speaks: A is the one latched and heard.
    support::run(
        &mut [(&mut a, a_addr), (&mut b, b_addr), (&mut stranger, a_addr)],
        Duration::from_secs(2),
        |_| {},
    );
    assert!(
        stranger.heard.is_empty(),
        "the stranger was sent the conference's mix"
    );
    assert!(b.level_of(300.0, 1.0) < -50.0, "B hears the stranger");
    assert!(b.level_of(440.0, 1.0) > -22.0, "B does not hear A");
    assert!(a.level_of(660.0, 1.0) > -22.0, "A does not hear B");
    let dropped = engine.leg_stats("37", a_id).unwrap().dropped_foreign_source;
    assert!(dropped >= 100, "foreign packets dropped: {dropped}");
}

#[test]
fn with_media_latch_any_source_the_first_source_is_latched() {
    let _turn = support::exclusive();
    let timers = LegTimers {
        latch_any_source: true,
        ..LegTimers::default()
    };
    let engine: Engine = support::engine_with(Duration::from_secs(30), timers);
    let a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 81);
    let mut b = Endpoint::new(Codec::Pcmu, 660.0, -20.0, 82);
    let [(_, a_addr), (_, b_addr)] = join_pcmu_pair(&engine, "38", &a, &b);
    // A gateway whose media comes from another host than its SDP names.
    let mut elsewhere = on_another_host(300.0, 81);
    support::run(
        &mut [(&mut b, b_addr), (&mut elsewhere, a_addr)],
        Duration::from_secs(1),
        |_| {},
    );
    assert!(b.level_of(300.0, 0.5) > -22.0, "B does not hear A's media");
    assert!(
        elsewhere.level_of(660.0, 0.5) > -22.0,
        "A's media gets nothing"
    );
}

#[test]
fn a_strangers_rtcp_takes_neither_the_rtcp_latch_nor_the_reports() {
    let _turn = support::exclusive();
    let engine: Engine = support::engine(Duration::from_secs(30));
    engine.create_conference("39", Policy::default()).unwrap();
    let mut a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 91);
    let a_rtcp = a.separate_rtcp();
    let spec = LegSpec {
        remote_rtcp: Some(a_rtcp),
        ..LegSpec::new(Codec::Pcmu, a.addr())
    };
    let (a_id, a_addr) = engine.add_rtp_leg("39", joiner("a"), spec).unwrap();
    let bridge_rtcp = SocketAddr::new(a_addr.ip(), a_addr.port() + 1);
    // A stranger on another host reports to A's RTCP port before A's first report.
    let stranger = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    let report = empty_receiver_report(666);
    for _ in 0..20 {
        stranger.send_to(&report, bridge_rtcp).unwrap();
    }
    // Then A talks and reports from its own RTCP port.
    support::run(&mut [(&mut a, a_addr)], Duration::from_millis(500), |_| {});
    a.send_rtcp(bridge_rtcp, &report);
    std::thread::sleep(Duration::from_millis(100));
    let stats = engine.leg_stats("39", a_id).unwrap();
    assert_eq!(stats.rtcp_in, 1, "{stats:?}");
    assert!(stats.dropped_foreign_source >= 20, "{stats:?}");
}

#[test]
fn a_phone_back_from_hold_may_come_with_a_new_stream() {
    let _turn = support::exclusive();
    let engine = engine_relatching(Duration::from_secs(30));
    let mut a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 101);
    let mut b = Endpoint::new(Codec::Pcmu, 660.0, -20.0, 102);
    let [(a_id, a_addr), (_, b_addr)] = join_pcmu_pair(&engine, "40", &a, &b);
    support::run(
        &mut [(&mut a, a_addr), (&mut b, b_addr)],
        Duration::from_secs(1),
        |_| {},
    );
    // Hold, quiet, resume: the phone comes back from a new port with a new SSRC.
    engine.control("40", Control::Hold(a_id, true)).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    engine.control("40", Control::Hold(a_id, false)).unwrap();
    let mut resumed = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 777);
    support::run(
        &mut [(&mut b, b_addr), (&mut resumed, a_addr)],
        Duration::from_millis(1500),
        |_| {},
    );
    assert!(b.level_of(440.0, 0.5) > -22.0, "B does not hear A back");
    assert!(
        resumed.level_of(660.0, 0.5) > -22.0,
        "A back does not hear B"
    );
}
