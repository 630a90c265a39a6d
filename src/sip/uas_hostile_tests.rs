//! The dial-in state machine against hostile input: branches replayed from another source,
//! strangers flooding the answer cache, names and identities a caller chooses.

use super::*;
use crate::config::Network;
use crate::media::codec::Codec;

fn settings() -> UasSettings {
    UasSettings {
        local: "127.0.0.1:5060".parse().unwrap(),
        trusted: vec![Network::loopback_v4()],
        access_user: "conference".into(),
        codecs: vec![Codec::Pcmu],
        outbound_proxy: None,
        dispatcher: None,
        max_calls: 10_000,
        invites_per_second: 10_000,
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
    static N: AtomicU64 = AtomicU64::new(7);
    let mut x = N.fetch_add(0x9E37_79B9, Ordering::Relaxed);
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

fn udp(addr: &str) -> Peer {
    Peer {
        addr: addr.parse().unwrap(),
        connection: None,
    }
}

const SAVP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";

fn invite(call: &str, branch: &str, from: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "INVITE sip:1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5262;branch={branch};rport\r\nFrom: {from};tag=ft{call}\r\nTo: <sip:1234@127.0.0.1>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:x@127.0.0.1:5262>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn drain(uas: &mut Uas) -> (Vec<(Peer, Message)>, Vec<Action>) {
    let mut sent = Vec::new();
    let mut other = Vec::new();
    while let Some(a) = uas.poll() {
        match a {
            Action::Send { to, bytes } => sent.push((to, Message::parse(&bytes).unwrap())),
            a => other.push(a),
        }
    }
    (sent, other)
}

fn join_of(actions: &[Action]) -> JoinRequest {
    match actions.first() {
        Some(Action::Join(j)) => (**j).clone(),
        other => panic!("no join: {other:?}"),
    }
}

#[test]
fn a_branch_replayed_from_another_source_never_gets_the_first_callers_answer_or_key() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let ann = udp("127.0.0.1:5262");
    let from = "\"Ann\" <sip:ann@127.0.0.1>";
    uas.handle(t0, ann, &invite("c1", "z9hG4bKsame", from, "", SAVP));
    let (_, actions) = drain(&mut uas);
    let j = join_of(&actions);
    uas.joined(
        t0,
        j.call,
        JoinResult::Joined {
            participant: ParticipantId(1),
            local: "127.0.0.1:20000".parse().unwrap(),
        },
    );
    let (sent, _) = drain(&mut uas);
    let ok = &sent[0].1;
    assert_eq!(ok.status(), Some(200));
    let key_line = String::from_utf8_lossy(&ok.body)
        .lines()
        .find(|l| l.starts_with("a=crypto"))
        .map(str::to_owned)
        .unwrap();
    // Ann's retransmission still gets her 200.
    uas.handle(t0, ann, &invite("c1", "z9hG4bKsame", from, "", SAVP));
    let (sent, _) = drain(&mut uas);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0, &sent[0].1), (ann, ok));
    // Eve replays the branch (even the whole INVITE) from elsewhere, another host or another
    // port of Ann's host: a new transaction of her own, with its own join and key; Ann's
    // answer and key never go to her.
    for (call, eve) in [
        ("c1", udp("127.0.0.2:5262")),
        ("e1", udp("127.0.0.3:5262")),
        ("c1", udp("127.0.0.1:5999")),
    ] {
        uas.handle(
            t0,
            eve,
            &invite(call, "z9hG4bKsame", "<sip:eve@127.0.0.2>", "", SAVP),
        );
        let (sent, actions) = drain(&mut uas);
        for (to, m) in &sent {
            assert_eq!(*to, eve);
            assert_ne!(m.status(), Some(200), "{m:?}");
            assert!(!String::from_utf8_lossy(&m.body).contains(&key_line));
        }
        let j = join_of(&actions);
        assert_ne!(j.local_key, None);
        assert_ne!(Some(j.call), Some(CallRef(1)));
    }
    // A CANCEL of Ann's branch from yet another source finds no transaction.
    let eve = udp("127.0.0.4:5262");
    let cancel = "CANCEL sip:1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.4:5262;branch=z9hG4bKsame\r\nFrom: <sip:eve@127.0.0.2>;tag=x\r\nTo: <sip:1234@127.0.0.1>\r\nCall-ID: c9\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    uas.handle(t0, eve, cancel.as_bytes());
    let (sent, _) = drain(&mut uas);
    assert_eq!(sent[0].1.status(), Some(481));
}

#[test]
fn strangers_answers_are_not_cached_and_trusted_ones_are_bounded() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let before = uas.state_size();
    // Ten thousand large requests from an untrusted source: each answered 403, none kept.
    let padding = "X-Pad: ".to_owned() + &"p".repeat(3000) + "\r\n";
    for i in 0..10_000 {
        let msg = format!(
            "OPTIONS sip:1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{i}\r\nFrom: <sip:x@192.0.2.1>;tag=1\r\nTo: <sip:1234@127.0.0.1>\r\nCall-ID: s{i}\r\nCSeq: 1 OPTIONS\r\n{padding}Content-Length: 0\r\n\r\n"
        );
        uas.handle(t0, udp("192.0.2.1:5060"), msg.as_bytes());
        let (sent, _) = drain(&mut uas);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.status(), Some(403));
    }
    assert_eq!(uas.state_size(), before, "a stranger grew the state");
    assert_eq!(uas.stats.untrusted, 10_000);
    // A trusted source's answers are cached (a retransmission gets the same bytes) but never
    // more than MAX_CACHED of them.
    for i in 0..(MAX_CACHED + 100) {
        let msg = format!(
            "OPTIONS sip:1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKt{i}\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:1234@127.0.0.1>\r\nCall-ID: t{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        uas.handle(t0, udp("127.0.0.1:5060"), msg.as_bytes());
        let _ = drain(&mut uas);
    }
    assert_eq!(uas.state_size(), MAX_CACHED);
    // And they go 64*T1 later.
    uas.tick(t0 + TIMEOUT + Duration::from_millis(1));
    assert_eq!(uas.state_size(), 0);
}

#[test]
fn display_names_and_uris_are_cut_and_cleaned() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let long = "é".repeat(300);
    let from = format!("\"{long}\u{7}\u{1b}[31m\" <sip:ann@127.0.0.1>");
    let offer = SAVP.replace("RTP/SAVP", "RTP/AVP");
    uas.handle(
        t0,
        udp("127.0.0.1:5262"),
        &invite("n1", "z9hG4bKn1", &from, "", &offer),
    );
    let (_, actions) = drain(&mut uas);
    let j = join_of(&actions);
    assert!(j.display_name.len() <= crate::conference::MAX_NAME);
    assert!(j.display_name.starts_with("éé"), "{:?}", j.display_name);
    assert!(!j.display_name.chars().any(char::is_control));
    let from = format!("<sip:{}@127.0.0.1>", "u".repeat(2000));
    uas.handle(
        t0,
        udp("127.0.0.1:5262"),
        &invite("n2", "z9hG4bKn2", &from, "", &offer),
    );
    let (_, actions) = drain(&mut uas);
    assert!(join_of(&actions).uri.len() <= MAX_URI);
}

#[test]
fn an_empty_asserted_identity_asserts_nobody() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let offer = SAVP.replace("RTP/SAVP", "RTP/AVP");
    let cases = [
        ("P-Asserted-Identity:\r\n", None),
        ("P-Asserted-Identity: \r\n", None),
        ("P-Asserted-Identity: <>\r\n", None),
        ("P-Asserted-Identity: <sip:@gw>\r\n", None),
        (
            "P-Asserted-Identity: <sip:+4930123@gw>\r\n",
            Some("sip:+4930123@gw"),
        ),
        ("", None),
    ];
    for (i, (header, expected)) in cases.iter().enumerate() {
        uas.handle(
            t0,
            udp("127.0.0.1:5262"),
            &invite(
                &format!("p{i}"),
                &format!("z9hG4bKp{i}"),
                "<sip:ann@127.0.0.1>",
                header,
                &offer,
            ),
        );
        let (sent, actions) = drain(&mut uas);
        let Some(Action::Join(j)) = actions.first() else {
            // A header without a value may be refused as malformed: that admits nobody either.
            assert!(expected.is_none());
            assert!(sent.iter().all(|(_, m)| m.status() != Some(200)));
            continue;
        };
        assert_eq!(j.asserted_identity.as_deref(), *expected, "{header:?}");
        let gate = crate::conference::Gate::Asserted;
        assert_eq!(
            gate.admits(j.asserted_identity.as_deref()),
            expected.is_some()
        );
    }
}
