//! SDES in our dial-out offers, through the call core: a key only where the signalling may
//! carry it, SRTP taken when the answer takes it, and an answer without SRTP under `required`
//! acknowledged and hung up with a Reason.

use super::*;
use crate::config::SrtpPolicy;

const TLS_FAR_END: Peer = Peer {
    addr: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5999),
    connection: Some(9 | Peer::TLS),
};

const ANSWER_SRTP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:q9X4vqHDWpozQKDFv1TRGR365nuarNkLDbvXz9Fg\r\n";

/// The default: SDES keys only over TLS.
fn bridge() -> Uas {
    Uas::new(
        UasSettings {
            sdes_over_cleartext: false,
            ..settings()
        },
        counter_random,
    )
}

/// Dials participant `p` at `to` under `policy`; what was sent and done.
fn dial_with(uas: &mut Uas, to: Peer, p: u64, policy: SrtpPolicy) -> (Vec<Message>, Vec<Action>) {
    uas.dial(
        Instant::now(),
        ParticipantId(p),
        "sip:bob@127.0.0.1:5999;transport=tls",
        to,
        sdp::offer("127.0.0.1:20000".parse().unwrap(), &[Codec::Pcmu], 1),
        policy,
    );
    drain(uas)
}

fn body(m: &Message) -> String {
    String::from_utf8(m.body.clone()).unwrap()
}

/// Our key as the offer carries it.
fn offered_key(invite: &Message) -> KeyMaterial {
    let b = body(invite);
    let line = b.lines().find(|l| l.starts_with("a=crypto:1 ")).unwrap();
    let inline = line.split("inline:").nth(1).unwrap();
    sdp::base64_decode(inline).unwrap().try_into().unwrap()
}

fn ok_to(invite: &Message, body: &str) -> Vec<u8> {
    let mut r = invite.response(200, "OK", Some("bob-tag"));
    r.push_header("Contact", "<sip:bob@127.0.0.1:5999;transport=tls>");
    r.body = body.as_bytes().to_vec();
    r.to_bytes()
}

#[test]
fn over_tls_optional_offers_best_effort_srtp_and_takes_it_when_answered() {
    let mut uas = bridge();
    let (sent, actions) = dial_with(&mut uas, TLS_FAR_END, 40, SrtpPolicy::Optional);
    assert!(actions.is_empty());
    let invite = &sent[0];
    let offer = body(invite);
    assert!(offer.contains("m=audio 20000 RTP/AVP "), "{offer}");
    assert!(offer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
    let ours = offered_key(invite);
    uas.handle(Instant::now(), TLS_FAR_END, &ok_to(invite, ANSWER_SRTP));
    let (sent, actions) = drain(&mut uas);
    assert_eq!(sent[0].method(), Some(&Method::Ack));
    let [
        Action::Answered {
            participant,
            answer,
        },
    ] = &actions[..]
    else {
        panic!("{actions:?}");
    };
    assert_eq!(*participant, ParticipantId(40));
    let keys = answer.negotiated.leg_spec(answer.local_key).srtp.unwrap();
    assert_eq!(keys.local, ours, "the leg encrypts with the key we offered");
    // The far end's answer without SRTP: plain RTP, the call goes on.
    let (sent, _) = dial_with(&mut uas, TLS_FAR_END, 41, SrtpPolicy::Optional);
    uas.handle(Instant::now(), TLS_FAR_END, &ok_to(&sent[0], OFFER));
    let (_, actions) = drain(&mut uas);
    assert!(
        matches!(&actions[..], [Action::Answered { answer, .. }] if answer.local_key.is_none()),
        "{actions:?}"
    );
}

#[test]
fn no_key_is_offered_over_cleartext_unless_allowed() {
    let mut uas = bridge();
    let (sent, _) = dial_with(&mut uas, far_end(), 42, SrtpPolicy::Optional);
    let offer = body(&sent[0]);
    assert!(!offer.contains("a=crypto"), "{offer}");
    assert!(offer.contains("RTP/AVP"));
    // `off`: plain even over TLS.
    let (sent, _) = dial_with(&mut uas, TLS_FAR_END, 43, SrtpPolicy::Off);
    assert!(!body(&sent[0]).contains("a=crypto"));
    // `required` over cleartext: nothing is sent, the dial-out fails with 488.
    let (sent, actions) = dial_with(&mut uas, far_end(), 44, SrtpPolicy::Required);
    assert!(sent.is_empty());
    assert_eq!(
        actions,
        [Action::Failed {
            participant: ParticipantId(44),
            code: 488
        }]
    );
    // Cleartext allowed by the operator: best effort over UDP too.
    let mut allowed = Uas::new(settings(), counter_random);
    let (sent, _) = dial_with(&mut allowed, far_end(), 45, SrtpPolicy::Optional);
    assert!(body(&sent[0]).contains("a=crypto:1 "));
}

#[test]
fn required_offers_savp_and_hangs_up_on_an_answer_without_srtp() {
    let mut uas = bridge();
    let t0 = Instant::now();
    let (sent, _) = dial_with(&mut uas, TLS_FAR_END, 46, SrtpPolicy::Required);
    let invite = &sent[0];
    assert!(body(invite).contains("m=audio 20000 RTP/SAVP "));
    uas.handle(t0, TLS_FAR_END, &ok_to(invite, OFFER));
    let (sent, actions) = drain(&mut uas);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].method(), Some(&Method::Ack));
    let bye = &sent[1];
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert_eq!(bye.to_tag(), Some("bob-tag"));
    let reason = bye.header("Reason").unwrap();
    assert!(reason.starts_with("SIP ;cause=488 ;text=\""), "{reason}");
    assert!(reason.contains("SRTP is required"), "{reason}");
    assert_eq!(
        actions,
        [Action::Failed {
            participant: ParticipantId(46),
            code: 488
        }]
    );
    // The shell's hang-up of the failed participant finds nothing more to send.
    uas.hangup(t0, ParticipantId(46));
    assert!(drain(&mut uas).0.is_empty());
    // The BYE answered, everything is gone after the timeouts.
    let mut ok = bye.response(200, "OK", None);
    ok.push_header("Content-Length", "0");
    uas.handle(t0, TLS_FAR_END, &ok.to_bytes());
    uas.tick(t0 + Duration::from_secs(40));
    assert_eq!(uas.state_size(), 0);
    // Answered with SRTP, `required` is satisfied.
    let (sent, _) = dial_with(&mut uas, TLS_FAR_END, 47, SrtpPolicy::Required);
    let savp = ANSWER_SRTP.replace("RTP/AVP", "RTP/SAVP");
    uas.handle(t0, TLS_FAR_END, &ok_to(&sent[0], &savp));
    let (_, actions) = drain(&mut uas);
    assert!(
        matches!(&actions[..], [Action::Answered { answer, .. }] if answer.local_key.is_some()),
        "{actions:?}"
    );
}

#[test]
fn a_reinvite_in_a_dial_out_keeps_the_policy_it_was_dialled_under() {
    // The bridge's own policy (`settings()`) is not `required`; this call was dialled under it.
    let mut uas = bridge();
    assert_ne!(uas.settings.srtp, SrtpPolicy::Required);
    let t0 = Instant::now();
    let (sent, _) = dial_with(&mut uas, TLS_FAR_END, 48, SrtpPolicy::Required);
    let invite = sent[0].clone();
    let savp = ANSWER_SRTP.replace("RTP/AVP", "RTP/SAVP");
    uas.handle(t0, TLS_FAR_END, &ok_to(&invite, &savp));
    let (_, actions) = drain(&mut uas);
    assert!(
        matches!(&actions[..], [Action::Answered { .. }]),
        "{actions:?}"
    );
    let our_tag = crate::sip::message::param(invite.header("From").unwrap(), "tag")
        .unwrap()
        .to_owned();
    let reinvite = |branch: &str, cseq: u32, body: &str| {
        format!(
            "INVITE sip:confab@127.0.0.1:5061;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch={branch}\r\nFrom: <sip:bob@127.0.0.1>;tag=bob-tag\r\nTo: <sip:confab@127.0.0.1>;tag={our_tag}\r\nCall-ID: {}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:bob@127.0.0.1:5999;transport=tls>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            invite.call_id(),
            body.len()
        )
    };
    // The far end cannot take the call to plain RTP by a re-INVITE (its Request-URI names no
    // meeting, so this used to fall back to the bridge's policy and accept it).
    uas.handle(t0, TLS_FAR_END, reinvite("z9hG4bKre1", 1, OFFER).as_bytes());
    let (sent, _) = drain(&mut uas);
    assert_eq!(statuses(&sent), [488], "{sent:?}");
    // A re-INVITE that keeps SRTP is answered.
    uas.handle(t0, TLS_FAR_END, reinvite("z9hG4bKre2", 2, &savp).as_bytes());
    let (sent, _) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200], "{sent:?}");
}
