//! The dial-in state machine driven with bytes and fake time.

use super::*;
use crate::config::Network;
use crate::media::codec::Codec;
use crate::sip::sdp;
use std::net::SocketAddr;

fn settings() -> UasSettings {
    UasSettings {
        local: "127.0.0.1:5060".parse().unwrap(),
        trusted: vec![Network::loopback_v4()],
        access_user: "conference".into(),
        codecs: vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma],
        outbound_proxy: None,
        dispatcher: None,
        max_calls: 10_000,
        invites_per_second: 100,
        advertise: None,
        media_advertise: None,
        route: crate::addr::route_source,
        tls: None,
        srtp: crate::config::SrtpPolicy::Optional,
        sdes_over_cleartext: true,
        conference_srtp: Default::default(),
        auth: Default::default(),
        credentials: Vec::new(),
        kept_while_draining: Default::default(),
        presence: None,
    }
}

fn counter_random(buf: &mut [u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let mut x = N.fetch_add(0x9E37_79B9, Ordering::Relaxed);
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

fn peer() -> Peer {
    Peer {
        addr: "127.0.0.1:5262".parse().unwrap(),
        connection: None,
    }
}

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

fn invite(call: &str, branch: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "INVITE sip:1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5262;branch={branch};rport\r\nFrom: \"Ann\" <sip:ann@127.0.0.1>;tag=ft{call}\r\nTo: <sip:1234@127.0.0.1>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:ann@127.0.0.1:5262>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn in_dialog(
    method: &str,
    call: &str,
    to_tag: &str,
    cseq: u32,
    branch: &str,
    extra: &str,
    body: &str,
) -> Vec<u8> {
    format!(
        "{method} sip:confab@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5262;branch={branch}\r\nFrom: <sip:ann@127.0.0.1>;tag=ft{call}\r\nTo: <sip:1234@127.0.0.1>;tag={to_tag}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Everything the core wants done, with sent messages parsed.
fn drain(uas: &mut Uas) -> (Vec<Message>, Vec<Action>) {
    let mut sent = Vec::new();
    let mut other = Vec::new();
    while let Some(a) = uas.poll() {
        match a {
            Action::Send { bytes, .. } => sent.push(Message::parse(&bytes).unwrap()),
            a => other.push(a),
        }
    }
    (sent, other)
}

fn statuses(sent: &[Message]) -> Vec<u16> {
    sent.iter().filter_map(Message::status).collect()
}

/// INVITE and a successful join: returns the 200 and the participant.
fn answered(uas: &mut Uas, now: Instant, call: &str, p: u64) -> Message {
    uas.handle(
        now,
        peer(),
        &invite(call, &format!("z9hG4bK{call}"), "", OFFER),
    );
    let (sent, actions) = drain(uas);
    assert_eq!(statuses(&sent), [100]);
    let Some(Action::Join(join)) = actions.first() else {
        panic!("no join: {actions:?}")
    };
    assert_eq!(
        (join.meeting.as_str(), join.display_name.as_str()),
        ("1234", "Ann")
    );
    assert_eq!(join.uri, "sip:ann@127.0.0.1");
    let local = "127.0.0.1:20000".parse().unwrap();
    uas.joined(
        now,
        join.call,
        JoinResult::Joined {
            participant: ParticipantId(p),
            local,
        },
    );
    let (sent, _) = drain(uas);
    assert_eq!(statuses(&sent), [200]);
    sent.into_iter().next().unwrap()
}

#[test]
fn a_call_from_invite_to_bye() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let ok = answered(&mut uas, t0, "c1", 7);
    let tag = ok.to_tag().unwrap().to_owned();
    let answer = sdp::negotiate(&ok.body, &[Codec::Pcmu], sdp::SrtpRule::IF_OFFERED).unwrap();
    assert_eq!(answer.remote, "127.0.0.1:20000".parse().unwrap());
    assert_eq!(ok.header("Contact"), Some("<sip:confab@127.0.0.1:5060>"));
    // The INVITE retransmitted: the same 200.
    uas.handle(t0, peer(), &invite("c1", "z9hG4bKc1", "", OFFER));
    let (sent, _) = drain(&mut uas);
    assert_eq!(sent, vec![ok.clone()]);
    // Without an ACK the 200 is retransmitted at T1, 2 T1, 4 T1, ...
    let mut resent = 0;
    for ms in (0..=4000).step_by(50) {
        uas.tick(t0 + Duration::from_millis(ms));
        resent += drain(&mut uas).0.len();
    }
    assert_eq!(resent, 3, "at 0.5, 1.5 and 3.5 s");
    uas.handle(
        t0,
        peer(),
        &in_dialog("ACK", "c1", &tag, 1, "z9hG4bKack", "", ""),
    );
    uas.tick(t0 + Duration::from_secs(10));
    assert!(drain(&mut uas).0.is_empty(), "retransmitted after the ACK");
    // BYE: 200 and the participant leaves; a retransmitted BYE gets the same 200.
    let bye = in_dialog("BYE", "c1", &tag, 2, "z9hG4bKbye", "", "");
    uas.handle(t0, peer(), &bye);
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200]);
    assert_eq!(
        actions,
        [Action::Leave {
            participant: ParticipantId(7)
        }]
    );
    uas.handle(t0, peer(), &bye);
    assert_eq!(statuses(&drain(&mut uas).0), [200]);
    // A BYE for a dialog that is gone (new branch): 481.
    uas.handle(
        t0,
        peer(),
        &in_dialog("BYE", "c1", &tag, 3, "z9hG4bKbye2", "", ""),
    );
    assert_eq!(statuses(&drain(&mut uas).0), [481]);
    uas.tick(t0 + Duration::from_secs(40));
    assert_eq!(uas.state_size(), 0);
}

#[test]
fn refusals_carry_their_status_until_acked() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    for (i, (result, code)) in [
        (JoinResult::NoConference, 404),
        (JoinResult::Locked, 403),
        (JoinResult::Full, 486),
        (JoinResult::Ended, 404),
        (JoinResult::Unavailable, 503),
    ]
    .into_iter()
    .enumerate()
    {
        let call = format!("r{i}");
        uas.handle(
            t0,
            peer(),
            &invite(&call, &format!("z9hG4bK{call}"), "", OFFER),
        );
        let (_, actions) = drain(&mut uas);
        let Some(Action::Join(j)) = actions.first() else {
            panic!()
        };
        uas.joined(t0, j.call, result);
        let (sent, _) = drain(&mut uas);
        assert_eq!(statuses(&sent), [code]);
        if code == 403 {
            assert!(
                matches!(&sent[0].start, StartLine::Response { reason, .. } if reason.contains("Locked"))
            );
        }
        if code == 503 {
            assert!(sent[0].header("Retry-After").is_some());
        }
        uas.tick(t0 + Duration::from_millis(600));
        assert_eq!(statuses(&drain(&mut uas).0), [code], "retransmitted");
        let tag = sent[0].to_tag().unwrap().to_owned();
        // The ACK of a non-2xx has the INVITE's branch.
        uas.handle(
            t0,
            peer(),
            &in_dialog("ACK", &call, &tag, 1, &format!("z9hG4bK{call}"), "", ""),
        );
        uas.tick(t0 + Duration::from_secs(2));
        assert!(drain(&mut uas).0.is_empty());
    }
    uas.tick(t0 + Duration::from_secs(40));
    assert_eq!(uas.state_size(), 0);
}

#[test]
fn cancel_before_the_answer() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    uas.handle(t0, peer(), &invite("k1", "z9hG4bKk1", "", OFFER));
    let (_, actions) = drain(&mut uas);
    let Some(Action::Join(j)) = actions.first() else {
        panic!()
    };
    let cancel = "CANCEL sip:1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5262;branch=z9hG4bKk1;rport\r\nFrom: \"Ann\" <sip:ann@127.0.0.1>;tag=ftk1\r\nTo: <sip:1234@127.0.0.1>\r\nCall-ID: k1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    uas.handle(t0, peer(), cancel.as_bytes());
    let (sent, _) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200, 487]);
    // The engine admitted the caller meanwhile: the participant is taken out again.
    uas.joined(
        t0,
        j.call,
        JoinResult::Joined {
            participant: ParticipantId(3),
            local: "127.0.0.1:1".parse().unwrap(),
        },
    );
    let (sent, actions) = drain(&mut uas);
    assert!(sent.is_empty());
    assert_eq!(
        actions,
        [Action::Leave {
            participant: ParticipantId(3)
        }]
    );
    // CANCEL of nothing: 481.
    uas.handle(
        t0,
        peer(),
        cancel.replace("z9hG4bKk1", "z9hG4bKzz").as_bytes(),
    );
    assert_eq!(statuses(&drain(&mut uas).0), [481]);
}

#[test]
fn options_trust_draining_and_flood() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let options = "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5262;branch=z9hG4bKo1\r\nFrom: <sip:probe@x>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\n\r\n";
    uas.handle(t0, peer(), options.as_bytes());
    let (sent, _) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200]);
    assert!(sent[0].header("Allow").unwrap().contains("INVITE"));
    uas.set_draining(true);
    uas.handle(t0, peer(), options.replace("o1", "o2").as_bytes());
    assert_eq!(statuses(&drain(&mut uas).0), [503]);
    uas.handle(t0, peer(), &invite("d1", "z9hG4bKd1", "", OFFER));
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [503]);
    assert!(sent[0].header("Retry-After").is_some() && actions.is_empty());
    uas.set_draining(false);

    let stranger = Peer {
        addr: "192.0.2.1:5060".parse().unwrap(),
        connection: None,
    };
    uas.handle(t0, stranger, &invite("s1", "z9hG4bKs1", "", OFFER));
    assert_eq!(statuses(&drain(&mut uas).0), [403]);
    assert_eq!(uas.stats.untrusted, 1);

    // 150 new INVITEs in one second from one source: the first 100 are taken.
    let mut refused = 0;
    for i in 0..150 {
        uas.handle(
            t0,
            peer(),
            &invite(&format!("f{i}"), &format!("z9hG4bKf{i}"), "", OFFER),
        );
        refused += statuses(&drain(&mut uas).0)
            .iter()
            .filter(|&&s| s == 503)
            .count();
    }
    // 151 from this source this second: the draining-time INVITE above counted too.
    assert_eq!(refused, 51);
    // A second later the source may call again.
    uas.handle(
        t0 + Duration::from_millis(1100),
        peer(),
        &invite("f-late", "z9hG4bKfl", "", OFFER),
    );
    assert_eq!(statuses(&drain(&mut uas).0), [100]);
}

#[test]
fn a_draining_node_still_takes_callers_of_the_meetings_it_runs() {
    let t0 = Instant::now();
    let mut settings = settings();
    settings.kept_while_draining = KeptMeetings::new(|m| m == "1234");
    let mut uas = Uas::new(settings, counter_random);
    uas.set_draining(true);
    // A latecomer of meeting 1234, held here: admitted (the join goes to the engine).
    uas.handle(t0, peer(), &invite("k1", "z9hG4bKk1", "", OFFER));
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [100]);
    assert!(
        matches!(actions.as_slice(), [Action::Join(_)]),
        "{actions:?}"
    );
    // Any other meeting: refused, as before.
    let other = String::from_utf8(invite("k2", "z9hG4bKk2", "", OFFER))
        .unwrap()
        .replace("1234@", "5678@");
    uas.handle(t0, peer(), other.as_bytes());
    assert_eq!(statuses(&drain(&mut uas).0), [503]);
}

#[test]
fn offers_and_extensions_we_cannot_take() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let g729 = OFFER.replace("0 101", "18").replace(
        "a=rtpmap:101 telephone-event/8000\r\n",
        "a=rtpmap:18 G729/8000\r\n",
    );
    uas.handle(t0, peer(), &invite("n1", "z9hG4bKn1", "", &g729));
    let (sent, _) = drain(&mut uas);
    assert_eq!(statuses(&sent), [488]);
    assert!(sent[0].header("Warning").unwrap().starts_with("305 "));
    uas.handle(
        t0,
        peer(),
        &invite("n3", "z9hG4bKn3", "Require: 100rel\r\n", OFFER),
    );
    let (sent, _) = drain(&mut uas);
    assert_eq!(statuses(&sent), [420]);
    assert_eq!(sent[0].header("Unsupported"), Some("100rel"));
    uas.handle(
        t0,
        peer(),
        &invite("n4", "z9hG4bKn4", "Session-Expires: 30\r\n", OFFER),
    );
    let (sent, _) = drain(&mut uas);
    assert_eq!(statuses(&sent), [422]);
    assert_eq!(sent[0].header("Min-SE"), Some("90"));
    uas.handle(t0, peer(), &invite("n5", "z9hG4bKn5", "", "v=0\r\ngarbage"));
    assert_eq!(statuses(&drain(&mut uas).0), [400]);
}

#[test]
fn hostile_requests_get_an_answer_or_are_dropped_and_a_call_still_works() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let base = String::from_utf8(invite("x", "z9hG4bKx", "", OFFER)).unwrap();
    let hostile: Vec<(String, Option<u16>)> = vec![
        // Without well-formed dialog headers no answer could be matched: dropped.
        (base.replace("Call-ID: x\r\n", ""), None),
        (base.replace("CSeq: 1 INVITE", "CSeq: one INVITE"), None),
        (base.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"), None),
        (base.replace("CSeq: 1 INVITE", "CSeq: 1"), None),
        (
            base.replace("Content-Length: ", "Content-Length: -"),
            Some(400),
        ),
        (
            base.replace("Content-Length: ", "Content-Length: 9"),
            Some(400),
        ),
        (base.replace("From: ", "From:\r\nX: "), None),
        (base.replace("To: <sip:1234@127.0.0.1>\r\n", ""), None),
        (
            base.replace("Contact: ", "Contact : x\r\nBroken Header\r\nContact: "),
            Some(400),
        ),
        (base.replace("Content-Type", "Content Type"), Some(400)),
        (base.replace("Via: ", "Bad Via: "), None),
        (base.replace("SIP/2.0\r\n", "SIP/1.0\r\n"), None),
        (base.replace("INVITE sip:", "INVITE http:"), None),
        ("\u{0}\u{1}\u{2}garbage".into(), None),
        (String::new(), None),
        ("SIP/2.0 200 OK\r\n\r\n".into(), None),
        (
            base.replace("INVITE sip:1234", "FOO sip:1234")
                .replace("1 INVITE", "1 FOO"),
            Some(501),
        ),
        (
            base.replace("INVITE sip:1234", "REGISTER sip:1234")
                .replace("1 INVITE", "1 REGISTER"),
            Some(405),
        ),
        (
            base.replace("INVITE sip:1234", "PUBLISH sip:1234")
                .replace("1 INVITE", "1 PUBLISH"),
            Some(405),
        ),
        (
            base.replace("INVITE sip:1234", "BYE sip:1234")
                .replace("1 INVITE", "1 BYE"),
            Some(481),
        ),
        (
            base.replace("INVITE sip:1234", "INFO sip:1234")
                .replace("1 INVITE", "1 INFO"),
            Some(481),
        ),
        (base.replace("INVITE sip:1234@", "INVITE sip:"), Some(404)),
        (format!("{}{}", base, "x".repeat(20_000)), None),
        (
            base.replace(
                "\r\n\r\n",
                &format!("\r\n{}\r\n\r\n", "X-Pad: y\r\n".repeat(150)),
            ),
            None,
        ),
    ];
    assert!(hostile.len() >= 20);
    for (i, (text, want)) in hostile.iter().enumerate() {
        // Each its own branch, so no answer comes from the response cache.
        let text = text.replace("z9hG4bKx", &format!("z9hG4bKhostile{i}"));
        uas.handle(t0, peer(), text.as_bytes());
        let (sent, actions) = drain(&mut uas);
        assert!(actions.is_empty(), "case {i}: {actions:?}");
        match want {
            Some(code) => assert_eq!(statuses(&sent), [*code], "case {i}"),
            None => assert!(sent.is_empty(), "case {i}: {sent:?}"),
        }
    }
    assert!(uas.stats.malformed >= 10);
    let ok = answered(&mut uas, t0, "after", 1);
    assert_eq!(ok.status(), Some(200));
}

#[test]
fn ten_thousand_calls_leave_nothing_behind() {
    let t0 = Instant::now();
    let mut uas = Uas::new(
        UasSettings {
            invites_per_second: u32::MAX,
            ..settings()
        },
        counter_random,
    );
    for i in 0..10_000u64 {
        let call = format!("m{i}");
        let now = t0 + Duration::from_millis(i);
        uas.handle(
            now,
            peer(),
            &invite(&call, &format!("z9hG4bK{call}"), "", OFFER),
        );
        let (_, actions) = drain(&mut uas);
        let Some(Action::Join(j)) = actions.first() else {
            panic!()
        };
        uas.joined(
            now,
            j.call,
            JoinResult::Joined {
                participant: ParticipantId(i),
                local: "127.0.0.1:1".parse().unwrap(),
            },
        );
        let (sent, _) = drain(&mut uas);
        let tag = sent[0].to_tag().unwrap().to_owned();
        uas.handle(
            now,
            peer(),
            &in_dialog("ACK", &call, &tag, 1, "z9hG4bKa", "", ""),
        );
        uas.handle(
            now,
            peer(),
            &in_dialog("BYE", &call, &tag, 2, &format!("z9hG4bKb{i}"), "", ""),
        );
        drain(&mut uas);
        if i % 100 == 0 {
            uas.tick(now);
        }
    }
    uas.tick(t0 + Duration::from_secs(60));
    assert_eq!(uas.state_size(), 0);
}

#[test]
fn an_offerless_invite_gets_our_offer_and_answers_in_the_ack() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    uas.handle(t0, peer(), &invite("o1", "z9hG4bKo1", "", ""));
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [100]);
    let Some(Action::Join(j)) = actions.first() else {
        panic!("{actions:?}")
    };
    // No address to send to until the answer.
    assert!(j.negotiated.leg_spec(None).remote.ip().is_unspecified());
    uas.joined(
        t0,
        j.call,
        JoinResult::Joined {
            participant: ParticipantId(8),
            local: "127.0.0.1:20000".parse().unwrap(),
        },
    );
    let (sent, _) = drain(&mut uas);
    let ok = &sent[0];
    let offer = sdp::negotiate(&ok.body, &[Codec::G722], sdp::SrtpRule::IF_OFFERED)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&ok.body)));
    assert_eq!(offer.codec, Codec::G722, "our offer carries every codec");
    let tag = ok.to_tag().unwrap().to_owned();
    let answer = OFFER.replace("30000 RTP/AVP 0 101", "30002 RTP/AVP 9 101");
    uas.handle(
        t0,
        peer(),
        &in_dialog(
            "ACK",
            "o1",
            &tag,
            1,
            "z9hG4bKa",
            "Content-Type: application/sdp\r\n",
            &answer,
        ),
    );
    let (_, actions) = drain(&mut uas);
    let [Action::Renegotiated { participant, spec }] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(*participant, ParticipantId(8));
    assert_eq!((spec.codec, spec.remote.port()), (Codec::G722, 30002));
    // An ACK without the answer that was due ends the call.
    uas.handle(t0, peer(), &invite("o2", "z9hG4bKo2", "", ""));
    let (_, actions) = drain(&mut uas);
    let Some(Action::Join(j)) = actions.first() else {
        panic!()
    };
    uas.joined(
        t0,
        j.call,
        JoinResult::Joined {
            participant: ParticipantId(9),
            local: "127.0.0.1:20002".parse().unwrap(),
        },
    );
    let (sent, _) = drain(&mut uas);
    let tag = sent[0].to_tag().unwrap().to_owned();
    uas.handle(
        t0,
        peer(),
        &in_dialog("ACK", "o2", &tag, 1, "z9hG4bKa2", "", ""),
    );
    let (sent, actions) = drain(&mut uas);
    assert_eq!(
        actions,
        [Action::Leave {
            participant: ParticipantId(9)
        }]
    );
    assert_eq!(sent[0].method(), Some(&Method::Bye));
}

// Two themes apart, on the helpers above: requests inside a dialog, and calls the bridge
// places or hands elsewhere.
#[path = "uas_address_tests.rs"]
mod address;
#[path = "uas_auth_tests.rs"]
mod auth;
#[path = "uas_dialog_tests.rs"]
mod dialog;
#[path = "uas_dialout_tests.rs"]
mod dialout;
#[path = "uas_tls_tests.rs"]
mod tls;
