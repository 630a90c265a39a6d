//! The dial-in state machine driven with bytes and fake time.

use super::*;
use crate::config::Network;
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
    let answer = sdp::negotiate(&ok.body, &[Codec::Pcmu]).unwrap();
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
fn session_timers_end_a_stale_call_and_refreshes_keep_it() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    for (call, refresh) in [("st1", false), ("st2", true)] {
        uas.handle(
            t0,
            peer(),
            &invite(
                call,
                &format!("z9hG4bK{call}"),
                "Supported: timer\r\nSession-Expires: 90\r\n",
                OFFER,
            ),
        );
        let (_, actions) = drain(&mut uas);
        let Some(Action::Join(j)) = actions.first() else {
            panic!()
        };
        let p = if refresh { 2 } else { 1 };
        uas.joined(
            t0,
            j.call,
            JoinResult::Joined {
                participant: ParticipantId(p),
                local: "127.0.0.1:1".parse().unwrap(),
            },
        );
        let (sent, _) = drain(&mut uas);
        assert_eq!(sent[0].header("Session-Expires"), Some("90;refresher=uac"));
        let tag = sent[0].to_tag().unwrap().to_owned();
        uas.handle(
            t0,
            peer(),
            &in_dialog("ACK", call, &tag, 1, "z9hG4bKa", "", ""),
        );
        if refresh {
            let update = in_dialog(
                "UPDATE",
                call,
                &tag,
                2,
                "z9hG4bKup",
                "Session-Expires: 90\r\n",
                "",
            );
            uas.handle(t0 + Duration::from_secs(60), peer(), &update);
            assert_eq!(statuses(&drain(&mut uas).0), [200]);
        }
    }
    uas.tick(t0 + Duration::from_secs(95));
    let (sent, actions) = drain(&mut uas);
    // Only the unrefreshed call ends: the caller is BYEd and the participant leaves.
    assert_eq!(
        actions,
        [Action::Leave {
            participant: ParticipantId(1)
        }]
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method(), Some(&Method::Bye));
    assert_eq!(sent[0].call_id(), "st1");
}

#[test]
fn the_bridge_hangs_up_with_a_bye_retransmitted_until_answered() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let ok = answered(&mut uas, t0, "h1", 9);
    let tag = ok.to_tag().unwrap().to_owned();
    uas.handle(
        t0,
        peer(),
        &in_dialog("ACK", "h1", &tag, 1, "z9hG4bKa", "", ""),
    );
    uas.hangup(t0, ParticipantId(9));
    let (sent, _) = drain(&mut uas);
    let bye = &sent[0];
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert!(
        matches!(&bye.start, StartLine::Request { uri, .. } if uri == "sip:ann@127.0.0.1:5262")
    );
    assert_eq!(bye.from_tag(), Some(tag.as_str()));
    assert_eq!(bye.to_tag(), Some("fth1"));
    assert_eq!(bye.cseq(), Some((2, Method::Bye)));
    uas.tick(t0 + Duration::from_millis(600));
    assert_eq!(drain(&mut uas).0.len(), 1, "BYE retransmitted");
    // Hanging up twice sends nothing more.
    uas.hangup(t0, ParticipantId(9));
    assert!(drain(&mut uas).0.is_empty());
    let mut ok = bye.response(200, "OK", None);
    ok.push_header("Server", "peer");
    uas.handle(t0, peer(), &ok.to_bytes());
    uas.tick(t0 + Duration::from_secs(40));
    assert!(drain(&mut uas).0.is_empty());
    assert_eq!(uas.state_size(), 0);
}

#[test]
fn info_dtmf_and_hold() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let ok = answered(&mut uas, t0, "i1", 4);
    let tag = ok.to_tag().unwrap().to_owned();
    uas.handle(
        t0,
        peer(),
        &in_dialog("ACK", "i1", &tag, 1, "z9hG4bKa", "", ""),
    );
    let relay = in_dialog(
        "INFO",
        "i1",
        &tag,
        2,
        "z9hG4bKi1",
        "Content-Type: application/dtmf-relay\r\n",
        "Signal=5\r\nDuration=160\r\n",
    );
    uas.handle(t0, peer(), &relay);
    let plain = in_dialog(
        "INFO",
        "i1",
        &tag,
        3,
        "z9hG4bKi2",
        "Content-Type: application/dtmf\r\n",
        "#",
    );
    uas.handle(t0, peer(), &plain);
    let odd = in_dialog(
        "INFO",
        "i1",
        &tag,
        4,
        "z9hG4bKi3",
        "Content-Type: text/plain\r\n",
        "hi",
    );
    uas.handle(t0, peer(), &odd);
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200, 200, 415]);
    assert_eq!(
        actions,
        [
            Action::Dtmf {
                participant: ParticipantId(4),
                digit: '5'
            },
            Action::Dtmf {
                participant: ParticipantId(4),
                digit: '#'
            }
        ]
    );
    let hold = format!("{OFFER}a=sendonly\r\n");
    uas.handle(
        t0,
        peer(),
        &in_dialog(
            "INVITE",
            "i1",
            &tag,
            5,
            "z9hG4bKh",
            "Content-Type: application/sdp\r\n",
            &hold,
        ),
    );
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200]);
    assert!(String::from_utf8_lossy(&sent[0].body).contains("a=recvonly"));
    assert_eq!(
        actions,
        [Action::Hold {
            participant: ParticipantId(4),
            on: true
        }]
    );
    uas.handle(
        t0,
        peer(),
        &in_dialog(
            "INVITE",
            "i1",
            &tag,
            6,
            "z9hG4bKr",
            "Content-Type: application/sdp\r\n",
            OFFER,
        ),
    );
    let (sent, actions) = drain(&mut uas);
    assert!(String::from_utf8_lossy(&sent[0].body).contains("a=sendrecv"));
    assert_eq!(
        actions,
        [Action::Hold {
            participant: ParticipantId(4),
            on: false
        }]
    );
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
            base.replace("INVITE sip:1234", "SUBSCRIBE sip:1234")
                .replace("1 INVITE", "1 SUBSCRIBE"),
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

fn far_end() -> Peer {
    Peer {
        addr: "127.0.0.1:5999".parse().unwrap(),
        connection: None,
    }
}

/// A response of the called party to our INVITE.
fn answer_to(invite: &Message, code: u16, reason: &str, body: &str) -> Vec<u8> {
    let mut r = invite.response(code, reason, Some("bob-tag"));
    r.push_header("Contact", "<sip:bob@127.0.0.1:5999>");
    r.body = body.as_bytes().to_vec();
    r.to_bytes()
}

fn dial(uas: &mut Uas, t0: Instant, p: u64) -> Message {
    uas.dial(
        t0,
        ParticipantId(p),
        "sip:bob@127.0.0.1:5999",
        far_end(),
        sdp::offer("127.0.0.1:20000".parse().unwrap(), &[Codec::Pcmu], 1),
    );
    let (sent, actions) = drain(uas);
    assert!(actions.is_empty());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method(), Some(&Method::Invite));
    sent.into_iter().next().unwrap()
}

#[test]
fn a_dial_out_rings_is_answered_and_hung_up_by_the_far_end() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let invite = dial(&mut uas, t0, 20);
    assert!(
        matches!(&invite.start, StartLine::Request { uri, .. } if uri == "sip:bob@127.0.0.1:5999")
    );
    // No answer yet: retransmitted at T1.
    uas.tick(t0 + Duration::from_millis(600));
    assert_eq!(drain(&mut uas).0.len(), 1);
    uas.handle(t0, far_end(), &answer_to(&invite, 180, "Ringing", ""));
    let (_, actions) = drain(&mut uas);
    assert_eq!(
        actions,
        [Action::Progress {
            participant: ParticipantId(20),
            code: 180
        }]
    );
    // Ringing: no more retransmissions.
    uas.tick(t0 + Duration::from_secs(3));
    assert!(drain(&mut uas).0.is_empty());
    let ok = answer_to(&invite, 200, "OK", OFFER);
    uas.handle(t0, far_end(), &ok);
    let (sent, actions) = drain(&mut uas);
    let ack = &sent[0];
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert!(
        matches!(&ack.start, StartLine::Request { uri, .. } if uri == "sip:bob@127.0.0.1:5999")
    );
    assert_ne!(
        ack.branch(),
        invite.branch(),
        "a 2xx ACK is a transaction of its own"
    );
    assert_eq!(ack.to_tag(), Some("bob-tag"));
    assert_eq!(
        actions,
        [Action::Answered {
            participant: ParticipantId(20),
            answer: OFFER.as_bytes().to_vec()
        }]
    );
    // The 200 retransmitted: the ACK again.
    uas.handle(t0, far_end(), &ok);
    assert_eq!(drain(&mut uas).0[0].method(), Some(&Method::Ack));
    // The far end hangs up: BYE in our dialog.
    let our_tag = invite.from_tag().unwrap();
    let bye = format!(
        "BYE sip:confab@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKbb\r\nFrom: <sip:bob@127.0.0.1:5999>;tag=bob-tag\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n",
        invite.header("From").unwrap(),
        invite.call_id()
    );
    assert!(bye.contains(our_tag));
    uas.handle(t0, far_end(), bye.as_bytes());
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200]);
    assert_eq!(
        actions,
        [Action::Leave {
            participant: ParticipantId(20)
        }]
    );
    uas.tick(t0 + Duration::from_secs(40));
    assert_eq!(uas.state_size(), 0);
}

#[test]
fn the_bridge_hangs_up_an_answered_dial_out() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let invite = dial(&mut uas, t0, 21);
    uas.handle(t0, far_end(), &answer_to(&invite, 200, "OK", OFFER));
    drain(&mut uas);
    uas.hangup(t0, ParticipantId(21));
    let (sent, _) = drain(&mut uas);
    let bye = &sent[0];
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert_eq!(bye.to_tag(), Some("bob-tag"));
    assert_eq!(bye.from_tag(), invite.from_tag());
    assert!(
        matches!(&bye.start, StartLine::Request { uri, .. } if uri == "sip:bob@127.0.0.1:5999")
    );
    assert_eq!(bye.cseq(), Some((2, Method::Bye)));
}

#[test]
fn a_dial_out_that_is_busy_cancelled_or_unanswered_fails_with_its_status() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    // Busy: the error is acknowledged on the INVITE's branch.
    let invite = dial(&mut uas, t0, 1);
    uas.handle(t0, far_end(), &answer_to(&invite, 486, "Busy Here", ""));
    let (sent, actions) = drain(&mut uas);
    assert_eq!(sent[0].method(), Some(&Method::Ack));
    assert_eq!(sent[0].branch(), invite.branch());
    assert_eq!(
        actions,
        [Action::Failed {
            participant: ParticipantId(1),
            code: 486
        }]
    );

    // Ejected while ringing: CANCEL, then the 487 ends it.
    let invite = dial(&mut uas, t0, 2);
    uas.handle(t0, far_end(), &answer_to(&invite, 180, "Ringing", ""));
    drain(&mut uas);
    uas.hangup(t0, ParticipantId(2));
    let (sent, _) = drain(&mut uas);
    assert_eq!(sent[0].method(), Some(&Method::Cancel));
    assert_eq!(sent[0].branch(), invite.branch());
    assert_eq!(sent[0].cseq(), Some((1, Method::Cancel)));
    uas.handle(
        t0,
        far_end(),
        &answer_to(&invite, 487, "Request Terminated", ""),
    );
    let (_, actions) = drain(&mut uas);
    assert_eq!(
        actions,
        [Action::Failed {
            participant: ParticipantId(2),
            code: 487
        }]
    );

    // Rings for longer than RING_TIMEOUT: cancelled, and reported as not answered (408).
    let invite = dial(&mut uas, t0, 3);
    uas.handle(t0, far_end(), &answer_to(&invite, 180, "Ringing", ""));
    drain(&mut uas);
    uas.tick(t0 + RING_TIMEOUT + Duration::from_secs(1));
    let (sent, _) = drain(&mut uas);
    assert_eq!(sent[0].method(), Some(&Method::Cancel));
    uas.handle(
        t0,
        far_end(),
        &answer_to(&invite, 487, "Request Terminated", ""),
    );
    let (_, actions) = drain(&mut uas);
    assert_eq!(
        actions,
        [Action::Failed {
            participant: ParticipantId(3),
            code: 408
        }]
    );

    // Nobody there at all: 408 after 64*T1.
    let t1 = t0 + Duration::from_secs(100);
    dial(&mut uas, t1, 4);
    let mut retransmits = 0;
    let mut failed = Vec::new();
    for s in 1..=40 {
        uas.tick(t1 + Duration::from_secs(s));
        let (sent, actions) = drain(&mut uas);
        retransmits += sent.len();
        failed.extend(actions);
    }
    assert!(retransmits >= 5, "{retransmits}");
    assert_eq!(
        failed,
        [Action::Failed {
            participant: ParticipantId(4),
            code: 408
        }]
    );
    uas.tick(t1 + Duration::from_secs(200));
    assert_eq!(uas.state_size(), 0);
}

#[test]
fn meetings_of_other_nodes_go_to_the_dispatcher() {
    let t0 = Instant::now();
    let dispatcher: SocketAddr = "127.0.0.9:5060".parse().unwrap();
    let mut uas = Uas::new(
        UasSettings {
            dispatcher: Some(dispatcher),
            trusted: vec![Network::loopback_v4()],
            ..settings()
        },
        counter_random,
    );
    uas.handle(t0, peer(), &invite("x1", "z9hG4bKx1", "", OFFER));
    let (_, actions) = drain(&mut uas);
    let Some(Action::Join(j)) = actions.first() else {
        panic!()
    };
    uas.joined(t0, j.call, JoinResult::NoConference);
    let (sent, _) = drain(&mut uas);
    assert_eq!(statuses(&sent), [302]);
    assert_eq!(sent[0].header("Contact"), Some("<sip:1234@127.0.0.9:5060>"));
    // Coming from the dispatcher itself: it chose this node, so no loop — 404.
    let from_dispatcher = Peer {
        addr: "127.0.0.9:5060".parse().unwrap(),
        connection: None,
    };
    uas.handle(t0, from_dispatcher, &invite("x2", "z9hG4bKx2", "", OFFER));
    let (_, actions) = drain(&mut uas);
    let Some(Action::Join(j)) = actions.first() else {
        panic!()
    };
    uas.joined(t0, j.call, JoinResult::NoConference);
    assert_eq!(statuses(&drain(&mut uas).0), [404]);
}

#[test]
fn refer_then_notify_ends_the_bridge_side_of_the_call() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let ok = answered(&mut uas, t0, "rf1", 30);
    let tag = ok.to_tag().unwrap().to_owned();
    uas.handle(
        t0,
        peer(),
        &in_dialog("ACK", "rf1", &tag, 1, "z9hG4bKa", "", ""),
    );
    uas.refer(t0, ParticipantId(30), "sip:8888@127.0.0.9:5060");
    let (sent, _) = drain(&mut uas);
    let refer = &sent[0];
    assert_eq!(refer.method(), Some(&Method::Refer));
    assert_eq!(refer.header("Refer-To"), Some("<sip:8888@127.0.0.9:5060>"));
    let mut accepted = refer.response(202, "Accepted", None);
    accepted.push_header("Contact", "<sip:ann@127.0.0.1:5262>");
    uas.handle(t0, peer(), &accepted.to_bytes());
    assert!(drain(&mut uas).1.is_empty());
    // Trying first: nothing happens yet; the final 200 ends the call here.
    for (i, frag) in ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"].iter().enumerate() {
        let notify = in_dialog(
            "NOTIFY",
            "rf1",
            &tag,
            10 + i as u32,
            &format!("z9hG4bKn{i}"),
            "Event: refer\r\nContent-Type: message/sipfrag\r\n",
            frag,
        );
        uas.handle(t0, peer(), &notify);
    }
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200, 200]);
    assert_eq!(sent[2].method(), Some(&Method::Bye));
    assert_eq!(
        actions,
        [Action::Leave {
            participant: ParticipantId(30)
        }]
    );
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
    let offer = sdp::negotiate(&ok.body, &[Codec::G722])
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

#[test]
fn a_reinvite_changes_the_codec() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let ok = answered(&mut uas, t0, "cc1", 12);
    let tag = ok.to_tag().unwrap().to_owned();
    uas.handle(
        t0,
        peer(),
        &in_dialog("ACK", "cc1", &tag, 1, "z9hG4bKa", "", ""),
    );
    let g722 = OFFER.replace("RTP/AVP 0 101", "RTP/AVP 9 101");
    uas.handle(
        t0,
        peer(),
        &in_dialog(
            "INVITE",
            "cc1",
            &tag,
            2,
            "z9hG4bKre",
            "Content-Type: application/sdp\r\n",
            &g722,
        ),
    );
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200]);
    assert!(String::from_utf8_lossy(&sent[0].body).contains("a=rtpmap:9 G722/8000"));
    let [Action::Renegotiated { spec, .. }] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(spec.codec, Codec::G722);
    // The same offer again (a session refresh): nothing changes.
    uas.handle(
        t0,
        peer(),
        &in_dialog(
            "INVITE",
            "cc1",
            &tag,
            3,
            "z9hG4bKre2",
            "Content-Type: application/sdp\r\n",
            &g722,
        ),
    );
    let (_, actions) = drain(&mut uas);
    assert!(actions.is_empty(), "{actions:?}");
}

#[test]
fn a_session_interval_of_any_size_is_capped_and_kills_nothing() {
    // u64::MAX seconds once overflowed `Instant + Duration` and ended the SIP task.
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    uas.handle(
        t0,
        peer(),
        &invite(
            "huge",
            "z9hG4bKhuge",
            "Supported: timer\r\nSession-Expires: 4294967295\r\n",
            OFFER,
        ),
    );
    let (_, actions) = drain(&mut uas);
    let Some(Action::Join(j)) = actions.first() else {
        panic!("no join: {actions:?}")
    };
    uas.joined(
        t0,
        j.call,
        JoinResult::Joined {
            participant: ParticipantId(1),
            local: "127.0.0.1:1".parse().unwrap(),
        },
    );
    let (sent, _) = drain(&mut uas);
    assert_eq!(
        sent[0].header("Session-Expires"),
        Some(format!("{MAX_SE};refresher=uac").as_str())
    );
    let tag = sent[0].to_tag().unwrap().to_owned();
    uas.handle(
        t0,
        peer(),
        &in_dialog("ACK", "huge", &tag, 1, "z9hG4bKa", "", ""),
    );
    for (cseq, method) in [(2, "UPDATE"), (3, "INVITE")] {
        let request = in_dialog(
            method,
            "huge",
            &tag,
            cseq,
            &format!("z9hG4bKhuge{cseq}"),
            "Session-Expires: 18446744073709551615\r\n",
            "",
        );
        uas.handle(t0 + Duration::from_secs(60), peer(), &request);
        let (sent, _) = drain(&mut uas);
        assert_eq!(statuses(&sent), [200], "{method}");
        assert_eq!(
            sent[0].header("Session-Expires"),
            Some(format!("{MAX_SE};refresher=uac").as_str()),
            "{method}"
        );
    }
    // The capped interval still runs out: the call is ended, not kept forever.
    uas.tick(t0 + Duration::from_secs(60 + u64::from(MAX_SE) + 1));
    let (sent, actions) = drain(&mut uas);
    assert_eq!(
        actions,
        [Action::Leave {
            participant: ParticipantId(1)
        }]
    );
    assert_eq!(sent[0].method(), Some(&Method::Bye));
}
