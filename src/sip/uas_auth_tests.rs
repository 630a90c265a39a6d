//! Digest authentication in the call core: untrusted softclients challenged and signed in,
//! dial-outs answering a trunk's challenge, all in fake time.

use super::*;
use crate::config::{SipUser, TrunkCredentials};
use crate::sip::digest::{Challenge, Credentials};

const REALM: &str = "confab.test";

fn with_users() -> UasSettings {
    UasSettings {
        auth: AuthSettings {
            realm: REALM.to_owned(),
            users: vec![SipUser {
                username: "alice".to_owned(),
                password: "s3cret".to_owned(),
            }],
            max_failures: 3,
        },
        ..settings()
    }
}

/// A softclient outside `sip.trusted`.
fn stranger(last: u8) -> Peer {
    Peer {
        addr: SocketAddr::from(([198, 51, 100, last], 5062)),
        connection: None,
    }
}

fn invite_from(peer: Peer, call: &str, cseq: u32, extra: &str) -> Vec<u8> {
    let via = peer.addr;
    format!(
        "INVITE sip:1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK{call}{cseq};rport\r\nFrom: \"Ann\" <sip:ann@{via}>;tag=ft{call}\r\nTo: <sip:1234@127.0.0.1>\r\nCall-ID: {call}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:ann@{via}>\r\nP-Asserted-Identity: <sip:ceo@example.com>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
        OFFER.len()
    )
    .into_bytes()
}

/// The 401's challenges, checked for shape.
fn challenges(sent: &[Message]) -> Vec<String> {
    assert_eq!(statuses(sent), [401], "{sent:?}");
    let values: Vec<String> = sent[0]
        .headers
        .iter()
        .filter(|(n, _)| n == "WWW-Authenticate")
        .map(|(_, v)| v.clone())
        .collect();
    // One MD5 challenge: libre 1.x (baresip 1.0) abandons a 401 naming any other algorithm.
    assert_eq!(values.len(), 1, "{values:?}");
    values
}

fn authorization(challenge: &str, password: &str, nc: u32) -> String {
    let ch = Challenge::parse(challenge).expect("our challenge parses");
    let value = ch.answer(
        "INVITE",
        "sip:1234@127.0.0.1",
        "alice",
        password,
        "0a4f113b",
        nc,
    );
    format!("Authorization: {value}\r\n")
}

#[test]
fn an_untrusted_softclient_is_challenged_signs_in_and_hangs_up() {
    let t0 = Instant::now();
    let mut uas = Uas::new(with_users(), counter_random);
    let me = stranger(7);
    uas.handle(t0, me, &invite_from(me, "a1", 1, ""));
    let (sent, actions) = drain(&mut uas);
    let values = challenges(&sent);
    assert!(values[0].contains("algorithm=MD5") && values[0].contains("qop=\"auth\""));
    assert!(actions.is_empty(), "nothing joins before signing in");
    assert_eq!(uas.state_size(), 0, "a challenge keeps no state");
    // The ACK of the 401 is a stranger's ACK: dropped quietly.
    uas.handle(
        t0,
        me,
        &in_dialog("ACK", "a1", "confab", 1, "z9hG4bKa11", "", ""),
    );
    assert!(drain(&mut uas).0.is_empty());

    let auth = authorization(&values[0], "s3cret", 1);
    uas.handle(t0, me, &invite_from(me, "a1", 2, &auth));
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [100]);
    let Some(Action::Join(join)) = actions.first() else {
        panic!("no join: {actions:?}")
    };
    // The account, not what the client asserts, is who calls.
    assert_eq!(
        join.asserted_identity.as_deref(),
        Some("sip:alice@confab.test")
    );
    uas.joined(
        t0,
        join.call,
        JoinResult::Joined {
            participant: ParticipantId(5),
            local: "127.0.0.1:20000".parse().unwrap(),
        },
    );
    let (sent, _) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200]);
    let tag = sent[0].to_tag().unwrap().to_owned();
    // The INVITE retransmitted: the 200 again, no second challenge or join.
    uas.handle(t0, me, &invite_from(me, "a1", 2, &auth));
    let (sent, actions) = drain(&mut uas);
    assert_eq!((statuses(&sent), actions.len()), (vec![200], 0));
    // baresip puts credentials on the ACK and the BYE too: accepted, not checked.
    let via_me = |method: &str, cseq: u32, branch: &str| {
        String::from_utf8(in_dialog(method, "a1", &tag, cseq, branch, &auth, ""))
            .unwrap()
            .replace("127.0.0.1:5262", &me.addr.to_string())
            .into_bytes()
    };
    uas.handle(t0, me, &via_me("ACK", 2, "z9hG4bKack"));
    assert!(drain(&mut uas).0.is_empty());
    // The same dialog from another untrusted address is not theirs.
    uas.handle(t0, stranger(8), &via_me("BYE", 3, "z9hG4bKbye8"));
    assert_eq!(statuses(&drain(&mut uas).0), [403]);
    uas.handle(t0, me, &via_me("BYE", 3, "z9hG4bKbye"));
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200]);
    assert_eq!(
        actions,
        [Action::Leave {
            participant: ParticipantId(5)
        }]
    );
}

#[test]
fn wrong_passwords_lock_the_source_out_and_replays_do_not_get_in() {
    let t0 = Instant::now();
    let mut uas = Uas::new(with_users(), counter_random);
    let me = stranger(9);
    uas.handle(t0, me, &invite_from(me, "w1", 1, ""));
    let values = challenges(&drain(&mut uas).0);
    for (n, expected) in [(1, 401), (2, 401), (3, 403)] {
        let wrong = authorization(&values[0], "guess", n);
        uas.handle(t0, me, &invite_from(me, "w1", 1 + n, &wrong));
        let (sent, actions) = drain(&mut uas);
        assert_eq!(statuses(&sent), [expected], "attempt {n}");
        assert!(actions.is_empty());
    }
    assert_eq!(uas.stats.auth_failures, 3);
    // Now even the right password is refused from there.
    let right = authorization(&values[0], "s3cret", 9);
    uas.handle(t0, me, &invite_from(me, "w1", 9, &right));
    assert_eq!(statuses(&drain(&mut uas).0), [403]);

    // Someone who captured a right answer and sends it again from the same address.
    let other = stranger(10);
    uas.handle(t0, other, &invite_from(other, "r1", 1, ""));
    let values = challenges(&drain(&mut uas).0);
    let right = authorization(&values[0], "s3cret", 1);
    uas.handle(t0, other, &invite_from(other, "r1", 2, &right));
    assert_eq!(statuses(&drain(&mut uas).0), [100]);
    uas.handle(t0, other, &invite_from(other, "r2", 2, &right));
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [401], "a replayed count is not accepted");
    assert!(actions.is_empty());
}

#[test]
fn a_retransmitted_wrong_answer_is_one_attempt() {
    let t0 = Instant::now();
    let mut uas = Uas::new(with_users(), counter_random);
    let me = stranger(12);
    uas.handle(t0, me, &invite_from(me, "x1", 1, ""));
    let values = challenges(&drain(&mut uas).0);
    // SIPp and baresip retransmit the INVITE (timer A) until a final answer gets through:
    // the same wrong credentials five times is one failure, each copy challenged again.
    let wrong = authorization(&values[0], "guess", 1);
    for _ in 0..5 {
        uas.handle(t0, me, &invite_from(me, "x1", 2, &wrong));
        assert_eq!(statuses(&drain(&mut uas).0), [401]);
    }
    assert_eq!(uas.stats.auth_failures, 1);
    let right = authorization(&values[0], "s3cret", 2);
    uas.handle(t0, me, &invite_from(me, "x1", 3, &right));
    assert_eq!(statuses(&drain(&mut uas).0), [100], "not locked out");
}

#[test]
fn without_users_strangers_get_403_as_before() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let me = stranger(11);
    uas.handle(t0, me, &invite_from(me, "n1", 1, ""));
    assert_eq!(statuses(&drain(&mut uas).0), [403]);
    assert_eq!(uas.stats.untrusted, 1);
}

fn far_end() -> Peer {
    Peer {
        addr: "127.0.0.1:5999".parse().unwrap(),
        connection: None,
    }
}

fn trunk(host: &str, realm: Option<&str>) -> UasSettings {
    UasSettings {
        credentials: vec![TrunkCredentials {
            host: host.to_owned(),
            realm: realm.map(str::to_owned),
            username: "bridge".to_owned(),
            password: "trunk-pw".to_owned(),
        }],
        ..settings()
    }
}

fn dial(uas: &mut Uas, t0: Instant) -> Message {
    uas.dial(
        t0,
        ParticipantId(30),
        "sip:bob@127.0.0.1:5999",
        far_end(),
        sdp::offer("127.0.0.1:20000".parse().unwrap(), &[Codec::Pcmu], 1),
        crate::config::SrtpPolicy::Optional,
    );
    drain(uas).0.remove(0)
}

fn challenge_to(invite: &Message, code: u16, header: &str, extra: &str) -> Vec<u8> {
    let mut r = invite.response(code, "Auth", Some("gw-tag"));
    r.push_header(
        header,
        format!("Digest realm=\"trunk\", nonce=\"n{code}\", algorithm=MD5, qop=\"auth\"{extra}"),
    );
    r.push_header(
        header,
        format!(
            "Digest realm=\"trunk\", nonce=\"s{code}\", algorithm=SHA-256, qop=\"auth\"{extra}"
        ),
    );
    r.to_bytes()
}

#[test]
fn a_dial_out_answers_the_trunks_challenges_and_its_dialog_counts_on() {
    let t0 = Instant::now();
    let mut uas = Uas::new(trunk("127.0.0.1", Some("trunk")), counter_random);
    let first = dial(&mut uas, t0);
    assert!(first.header("Proxy-Authorization").is_none());
    uas.handle(
        t0,
        far_end(),
        &challenge_to(&first, 407, "Proxy-Authenticate", ""),
    );
    let (sent, actions) = drain(&mut uas);
    assert!(actions.is_empty(), "{actions:?}");
    let [ack, second] = &sent[..] else {
        panic!("ACK and a new INVITE: {sent:?}")
    };
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(
        (ack.branch(), ack.cseq()),
        (first.branch(), Some((1, Method::Ack)))
    );
    assert_eq!(second.cseq(), Some((2, Method::Invite)));
    assert_ne!(second.branch(), first.branch());
    assert_eq!(
        (second.call_id(), second.from_tag()),
        (first.call_id(), first.from_tag())
    );
    let creds = Credentials::parse(second.header("Proxy-Authorization").unwrap()).unwrap();
    assert_eq!(
        (creds.username.as_str(), creds.nonce.as_str()),
        ("bridge", "s407"),
        "SHA-256 is preferred"
    );
    assert!(creds.verify("INVITE", "trunk-pw"));
    assert_eq!(creds.uri, "sip:bob@127.0.0.1:5999");
    // Then the callee wants its own: both credentials go on the third INVITE.
    uas.handle(
        t0,
        far_end(),
        &challenge_to(second, 401, "WWW-Authenticate", ""),
    );
    let (sent, _) = drain(&mut uas);
    let third = &sent[1];
    assert_eq!(third.cseq(), Some((3, Method::Invite)));
    assert!(third.header("Proxy-Authorization").is_some());
    assert!(third.header("Authorization").is_some());
    let mut ok = third.response(200, "OK", Some("bob-tag"));
    ok.push_header("Contact", "<sip:bob@127.0.0.1:5999>");
    ok.body = OFFER.as_bytes().to_vec();
    uas.handle(t0, far_end(), &ok.to_bytes());
    let (sent, actions) = drain(&mut uas);
    assert_eq!(sent[0].cseq(), Some((3, Method::Ack)));
    assert!(matches!(actions[..], [Action::Answered { .. }]));
    uas.hangup(t0, ParticipantId(30));
    let (sent, _) = drain(&mut uas);
    assert_eq!(sent[0].cseq(), Some((4, Method::Bye)));
}

#[test]
fn refused_credentials_fail_the_dial_out_and_a_stale_nonce_is_retried_once() {
    let t0 = Instant::now();
    let mut uas = Uas::new(trunk("127.0.0.1", None), counter_random);
    let first = dial(&mut uas, t0);
    uas.handle(
        t0,
        far_end(),
        &challenge_to(&first, 401, "WWW-Authenticate", ""),
    );
    let second = drain(&mut uas).0.remove(1);
    uas.handle(
        t0,
        far_end(),
        &challenge_to(&second, 401, "WWW-Authenticate", ", stale=true"),
    );
    let sent = drain(&mut uas).0;
    let third = &sent[1];
    assert_eq!(third.cseq(), Some((3, Method::Invite)), "stale: once more");
    uas.handle(
        t0,
        far_end(),
        &challenge_to(third, 401, "WWW-Authenticate", ""),
    );
    let (sent, actions) = drain(&mut uas);
    assert_eq!(sent.len(), 1, "only the ACK");
    assert_eq!(
        actions,
        [Action::Failed {
            participant: ParticipantId(30),
            code: 401
        }]
    );
}

#[test]
fn credentials_go_only_to_their_host_and_realm() {
    let t0 = Instant::now();
    for settings in [
        trunk("gw.example.net", None),
        trunk("127.0.0.1", Some("other")),
    ] {
        let mut uas = Uas::new(settings, counter_random);
        let first = dial(&mut uas, t0);
        uas.handle(
            t0,
            far_end(),
            &challenge_to(&first, 401, "WWW-Authenticate", ""),
        );
        let (sent, actions) = drain(&mut uas);
        assert_eq!(sent.len(), 1, "only the ACK: {sent:?}");
        assert!(sent.iter().all(|m| m.header("Authorization").is_none()));
        assert_eq!(
            actions,
            [Action::Failed {
                participant: ParticipantId(30),
                code: 401
            }]
        );
    }
}
