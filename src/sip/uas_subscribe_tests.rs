//! A SUBSCRIBE reaches the subscriptions core from trusted and untrusted sources alike, with
//! the calls of its address; answers to our NOTIFYs follow it; nothing is answered here.

use std::time::Instant;

use super::super::{Action, JoinResult, Peer, Uas, UasSettings};
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
        max_calls: 100,
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

fn random(buf: &mut [u8]) {
    buf.fill(7);
}

fn subscribe(from: &str) -> Vec<u8> {
    format!(
        "SUBSCRIBE sip:1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKs1\r\n\
         From: <sip:w@{from}>;tag=a\r\nTo: <sip:1234@127.0.0.1>\r\nCall-ID: s1\r\nCSeq: 1 SUBSCRIBE\r\n\
         Event: conference\r\nContact: <sip:w@{from}>\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn actions(uas: &mut Uas) -> Vec<Action> {
    std::iter::from_fn(|| uas.poll()).collect()
}

#[test]
fn subscribes_and_notify_answers_go_to_the_subscriptions_core() {
    let mut uas = Uas::new(settings(), random);
    let now = Instant::now();
    let trusted = Peer {
        addr: "127.0.0.1:5262".parse().unwrap(),
        connection: None,
    };
    uas.handle(now, trusted, &subscribe("127.0.0.1:5262"));
    let got = actions(&mut uas);
    let [Action::Subscribe(req)] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert!(req.trusted);
    assert!(req.participants.is_empty());
    assert_eq!(req.contact, "<sip:confab@127.0.0.1:5060>");

    // From outside `sip.trusted`: passed on (not 403 here), marked untrusted.
    let stranger = Peer {
        addr: "192.0.2.9:5060".parse().unwrap(),
        connection: None,
    };
    uas.handle(now, stranger, &subscribe("192.0.2.9:5060"));
    let got = actions(&mut uas);
    let [Action::Subscribe(req)] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert!(!req.trusted);

    // A NOTIFY's answer is the core's; not counted as dropped.
    let answer = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKn1\r\n\
        From: <sip:1234@127.0.0.1>;tag=b\r\nTo: <sip:w@127.0.0.1>;tag=a\r\nCall-ID: s1\r\n\
        CSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n";
    uas.handle(now, trusted, answer);
    let got = actions(&mut uas);
    assert!(
        matches!(got.as_slice(), [Action::NotifyAnswered(_)]),
        "{got:?}"
    );
    assert_eq!(uas.stats.dropped, 0);
}

#[test]
fn a_subscriber_with_a_call_is_named_with_its_participant() {
    let mut uas = Uas::new(settings(), random);
    let now = Instant::now();
    let phone = Peer {
        addr: "127.0.0.1:5270".parse().unwrap(),
        connection: None,
    };
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5270;branch=z9hG4bKi1\r\n\
         From: <sip:ann@127.0.0.1>;tag=i\r\nTo: <sip:1234@127.0.0.1>\r\nCall-ID: i1\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:ann@127.0.0.1:5270>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
        offer.len()
    );
    uas.handle(now, phone, invite.as_bytes());
    let call = actions(&mut uas)
        .into_iter()
        .find_map(|a| match a {
            Action::Join(j) => Some(j.call),
            _ => None,
        })
        .unwrap();
    let participant = crate::conference::ParticipantId(42);
    uas.joined(
        now,
        call,
        JoinResult::Joined {
            participant,
            local: "127.0.0.1:40000".parse().unwrap(),
        },
    );
    actions(&mut uas);
    uas.handle(now, phone, &subscribe("127.0.0.1:5270"));
    let got = actions(&mut uas);
    let [Action::Subscribe(req)] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert_eq!(req.participants, [participant]);
}
