//! Calls the bridge places or hands elsewhere: dial-out (ringing, answer, busy, cancel, no
//! answer), 302 to the dispatcher for a meeting of another node, and REFER then NOTIFY.

use super::*;

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
    r.push_header("Server", "Bob's phone/1.0");
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
        crate::config::SrtpPolicy::Optional,
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
            answer: Box::new(DialAnswer {
                negotiated: sdp::negotiate(
                    OFFER.as_bytes(),
                    &settings().codecs,
                    sdp::SrtpRule::IF_OFFERED
                )
                .unwrap(),
                local_key: None,
                user_agent: Some("Bob's phone/1.0".into()),
            })
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

#[path = "uas_dialout_srtp_tests.rs"]
mod srtp;
