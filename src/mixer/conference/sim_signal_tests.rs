//! What travels beside the audio, in fake time: RTCP reports both ways (rtcp-mux, a separate
//! RTCP port, SRTCP) with loss, round-trip time and MOS; RFC 4733 digits; RFC 6465 talker
//! CSRCs and levels and RFC 6464 client levels; a stranger at a quiet leg. Reports are read and
//! written with rtc-rtcp, packets read with rtc-rtp, audio decoded by codecs from outside
//! Confab. The 15 s of RTCP take well under a second of wall time; nothing sleeps.

use std::time::Duration;

use crate::conference::{DisconnectReason, Event, State};
use crate::media::codec::Codec;
use crate::media::leg::{LegSpec, LegTimers, TelephoneEventSpec};
use crate::media::srtp::{SrtpKeys, SrtpSuite};
use crate::testing::net::{Impairments, Link};
use crate::testing::phone::{SimPhone, receiver_report, report_of};
use crate::testing::room::{JoinAs, Room, rtcp_port_of};

/// A: rtcp-mux on a clean path. B: RTCP on a port of its own, 10 % of its packets lost on the
/// way, and it claims 25 % loss of ours. C: SRTP with SRTCP. Each phone answers the bridge's
/// sender reports; the bridge's reports and figures must match what the network did.
#[test]
fn rtcp_reports_both_ways_with_loss_rtt_and_mos() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let keys = SrtpKeys {
        suite: SrtpSuite::AesCm128HmacSha1_80,
        local: std::array::from_fn(|i| i as u8 + 1),
        remote: std::array::from_fn(|i| i as u8 + 50),
    };
    let a = room.join(Codec::Pcmu, Some((440.0, -20.0)));
    let b = room
        .join_as(
            JoinAs::new(Codec::G722, Some((660.0, -20.0))).spec(|s| LegSpec {
                remote_rtcp: Some(rtcp_port_of(s.remote)),
                ..s
            }),
        )
        .unwrap();
    let c = room
        .join_as(
            JoinAs::new(Codec::Opus, Some((880.0, -20.0))).spec(move |s| LegSpec {
                srtp: Some(keys),
                ..s
            }),
        )
        .unwrap();
    room.members[b].up = Link::new(
        23,
        Impairments {
            loss: 0.10,
            base_delay: Duration::from_millis(20),
            ..Impairments::default()
        },
    );
    for (i, claimed) in [(a, 0), (b, 64), (c, 0)] {
        room.members[i].phone.answer_reports = Some(claimed);
    }
    // The first report is due within 1.5 x 2.5 s / 1.218 (RFC 3550's first interval); run
    // until every leg has had an answer, at most 15 s.
    let mut waited = Duration::ZERO;
    while waited < Duration::from_secs(4) || (0..3).any(|i| room.stats(i).unwrap().rtt_ms.is_none())
    {
        assert!(waited < Duration::from_secs(15), "no RTT on every leg");
        room.run(Duration::from_millis(200));
        waited += Duration::from_millis(200);
    }

    // Reports reached each phone the way it asked: A and C on their RTP port from the
    // bridge's, B on its RTCP port from the bridge's odd port. C's came as SRTCP.
    for i in [a, c] {
        let m = &room.members[i];
        assert!(!m.phone.rtcp_in.is_empty());
        assert!(
            m.phone
                .rtcp_in
                .iter()
                .all(|r| r.from == m.bridge && r.to == m.addr)
        );
    }
    let mb = &room.members[b];
    assert!(!mb.phone.rtcp_in.is_empty());
    assert!(
        mb.phone
            .rtcp_in
            .iter()
            .all(|r| r.from == mb.bridge_rtcp && Some(r.to) == mb.rtcp_addr)
    );
    assert_eq!(room.members[c].phone.srtp_failures, 0);

    // The bridge's report about B's stream shows the 10 % the path lost.
    let last = &mb.phone.rtcp_in.last().unwrap().plain;
    let (_, _, blocks) = report_of(last).unwrap();
    let block = blocks.iter().find(|r| r.ssrc == mb.phone.ssrc).unwrap();
    assert!(
        (15..=40).contains(&block.fraction_lost),
        "fraction lost {} / 256",
        block.fraction_lost
    );

    let [sa, sb, sc] = [a, b, c].map(|i| room.stats(i).unwrap());
    for s in [&sa, &sb, &sc] {
        assert!(s.rtcp_in >= 1 && s.rtcp_out >= 1, "{s:?}");
        // 20 ms each way, plus up to a tick before the bridge reads the answer.
        let rtt = s.rtt_ms.unwrap();
        assert!((35.0..=70.0).contains(&rtt), "RTT {rtt} ms: {s:?}");
        assert_eq!(s.dropped_srtp_auth, 0);
        assert_eq!(s.dropped_malformed, 0);
    }
    assert_eq!(sa.packets_lost, 0);
    let path = mb.up.stats;
    let made = path.lost as f64 / path.sent as f64;
    let counted = sb.packets_lost as f64 / sb.packets_expected as f64;
    assert!((0.07..=0.13).contains(&counted), "B loss {counted}");
    assert!((counted - made).abs() < 0.01, "B loss {counted} vs {made}");
    assert_eq!(sb.remote_loss_percent, Some(25.0));
    assert_eq!(sa.remote_loss_percent, Some(0.0));
    assert!(sa.jitter_ms < 20.0, "A jitter {} ms", sa.jitter_ms);
    // A clean path is toll quality; B's loss costs it.
    assert!(sa.mos > 4.2, "A MOS {}", sa.mos);
    assert!(sb.mos < sa.mos - 0.5, "B MOS {} vs A {}", sb.mos, sa.mos);
}

/// "1", "2", "#" as RFC 4733 senders send them (a packet per 20 ms growing the duration,
/// three end packets), "5" whose end packets are all lost, then "9": each is reported once, in
/// order, with its duration.
#[test]
fn rfc4733_digits_arrive_once_each() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let e = room
        .join_as(
            JoinAs::new(Codec::Pcmu, Some((440.0, -20.0))).spec(|s| LegSpec {
                telephone_event: Some(TelephoneEventSpec {
                    payload_type: 101,
                    clock_rate: 8000,
                }),
                ..s
            }),
        )
        .unwrap();
    room.members[e].phone.telephone_event = Some(101);
    room.run(Duration::from_millis(500));
    for (event, ends) in [(1u8, true), (2, true), (11, true), (5, false), (9, true)] {
        room.members[e].phone.press(event, 8, !ends);
        // The digit's packets, its end packets, then 200 ms of audio.
        room.run(Duration::from_millis(20 * (8 + 3 + 10)));
    }
    room.run(Duration::from_millis(500));
    let id = room.members[e].id;
    let got: Vec<(char, u32)> = room
        .events
        .iter()
        .filter_map(|e| match e.event {
            Event::Dtmf {
                participant,
                digit,
                duration_ms,
            } if participant == id => Some((digit, duration_ms)),
            _ => None,
        })
        .collect();
    let keyed: String = got.iter().map(|(d, _)| *d).collect();
    assert_eq!(keyed, "12#59");
    assert!(got.iter().all(|(_, ms)| *ms == 160), "{got:?}");
    let s = room.stats(e).unwrap();
    assert_eq!(s.dtmf_in, 5);
    assert_eq!(s.dropped_payload_type, 0);
}

/// A talks and says its level in RFC 6464 (a hint, not trusted); B listens with RFC 6465
/// negotiated: B's packets name A's stream with A's measured level, and A's hint is read.
#[test]
fn talkers_are_named_with_levels_and_client_levels_are_read() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let a = room
        .join_as(
            JoinAs::new(Codec::Opus, Some((440.0, -20.0))).spec(|s| LegSpec {
                audio_level_id: Some(1),
                ..s
            }),
        )
        .unwrap();
    room.members[a].phone.audio_level_ext = Some((1, 0x80 | 33));
    let b = room
        .join_as(
            JoinAs::new(Codec::Pcmu, Some((660.0, -80.0))).spec(|s| LegSpec {
                csrc_audio_level_id: Some(3),
                ..s
            }),
        )
        .unwrap();
    room.members[b].phone.csrc_level_id = Some(3);
    room.run(Duration::from_millis(1500));

    // A hears the bridge on A's leg SSRC: that is the CSRC the others see for A.
    let a_leg_ssrc = room.members[a].phone.bridge_ssrc.unwrap();
    let pb = &room.members[b].phone;
    assert_eq!(pb.last_csrcs, vec![a_leg_ssrc]);
    let levels = pb.last_csrc_levels.clone().expect("no RFC 6465 extension");
    assert_eq!(levels.len(), 1);
    assert!(
        (17..=23).contains(&levels[0]),
        "A's level {} -dBov, sent at 20",
        levels[0]
    );
    assert!(room.heard(b, 440.0, 0.5) > -22.0);
    assert_eq!(room.stats(a).unwrap().client_level, Some(33));
    // A did not negotiate RFC 6465, and B is quiet: A's packets name nobody.
    assert!(room.members[a].phone.last_csrcs.is_empty());
    assert_eq!(room.members[a].phone.last_csrc_levels, None);
}

/// A falls quiet; a stranger on A's host sprays A's port with another stream and sends RTCP
/// from its own address every 100 ms. The stranger is never answered nor mixed, and its packets
/// do not keep A's silent leg alive past the media timeout.
#[test]
fn a_stranger_can_neither_take_over_a_quiet_leg_nor_keep_it_alive() {
    let mut room = Room::new(3, Duration::from_secs(2));
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
    assert!(room.heard(a, 660.0, 0.5) > -22.0);

    room.members[a].phone.sending = false;
    let own = room.members[a].addr;
    let stranger_at = std::net::SocketAddr::new(own.ip(), own.port() + 2);
    let mut stranger = SimPhone::new(Codec::Pcmu, 300.0, -20.0, 666, room.now);
    let rr = receiver_report(666, vec![]);
    for step in 0..600 {
        if let Some(p) = stranger.poll_send(room.now) {
            room.inject(a, stranger_at, false, p);
        }
        if step % 20 == 0 {
            room.inject(a, stranger_at, false, rr.clone());
        }
        room.step();
    }
    // Never answered, never mixed.
    let sent_to = &room.members[a].sent_to;
    assert!(!sent_to.contains(&stranger_at), "{sent_to:?}");
    assert!(room.heard(b, 300.0, 1.0) < -50.0, "B hears the stranger");
    let a_id = room.members[a].id;
    assert_eq!(
        room.conference.roster.participant(a_id).unwrap().state,
        State::Disconnected(DisconnectReason::MediaTimeout)
    );
}
