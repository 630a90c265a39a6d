//! The presence publisher in fake time: publish, refresh, remove (RFC 3903), one publication
//! per identity, the server's failures, retransmission, and hostile input.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;

fn counter_random(buf: &mut [u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let mut x = N.fetch_add(0x9E37_79B9, Ordering::Relaxed) | 1;
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

const SERVER: &str = "127.0.0.1:15080";

fn server() -> SocketAddr {
    SERVER.parse().unwrap()
}

fn presence() -> Presence {
    let settings = PresenceSettings {
        server: server(),
        local: "127.0.0.1:5060".parse().unwrap(),
        expires: 600,
    };
    Presence::new(settings, counter_random)
}

fn sent(p: &mut Presence) -> Vec<Message> {
    std::iter::from_fn(|| p.poll())
        .map(|b| Message::parse(&b).unwrap())
        .collect()
}

fn one(p: &mut Presence) -> Message {
    let mut got = sent(p);
    assert_eq!(got.len(), 1, "{got:?}");
    got.remove(0)
}

/// The server's answer to `req` with `headers` (each ending in CRLF).
fn answer(req: &Message, code: u16, headers: &str) -> Message {
    let mut text = String::from_utf8(req.response(code, "X", None).to_bytes()).unwrap();
    let end = text.len() - "Content-Length: 0\r\n\r\n".len();
    text.insert_str(end, headers);
    Message::parse(text.as_bytes()).unwrap()
}

fn join(p: &mut Presence, now: Instant, id: u64, identity: &str) {
    p.connected(ParticipantId(id));
    p.identified(now, ParticipantId(id), Some(identity));
}

fn is_publish(m: &Message, uri: &str) -> bool {
    matches!(&m.start, StartLine::Request { method: Method::Publish, uri: u } if u == uri)
}

/// Whether `doc` is well-formed XML (xmllint, as the conference event tests use).
fn well_formed(doc: &[u8]) -> bool {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("xmllint")
        .args(["--noout", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("xmllint (apt-get install libxml2-utils)");
    child.stdin.take().unwrap().write_all(doc).unwrap();
    child.wait().unwrap().success()
}

#[test]
fn a_participant_is_published_refreshed_and_removed() {
    let t0 = Instant::now();
    let mut p = presence();
    join(
        &mut p,
        t0,
        1,
        "\"Alice\" <sip:Alice@Example.COM;user=phone>",
    );
    let publish = one(&mut p);
    assert!(is_publish(&publish, "sip:Alice@example.com"), "{publish:?}");
    assert_eq!(publish.header("Event"), Some("presence"));
    assert_eq!(publish.header("Expires"), Some("600"));
    assert_eq!(publish.header("SIP-If-Match"), None);
    assert_eq!(publish.header("Content-Type"), Some(CONTENT_TYPE));
    let body = String::from_utf8(publish.body.clone()).unwrap();
    assert!(body.contains("entity=\"sip:Alice@example.com\""), "{body}");
    assert!(body.contains("<basic>open</basic>") && body.contains("<rpid:meeting/>"));
    assert!(well_formed(&publish.body), "{body}");
    assert_eq!(p.published().collect::<Vec<_>>(), ["sip:Alice@example.com"]);

    // The server keeps it for 120 s: refreshed 30 s before, with its tag and no body.
    let ok = answer(&publish, 200, "SIP-ETag: e1\r\nExpires: 120\r\n");
    p.response(t0, server(), &ok);
    p.tick(t0 + Duration::from_secs(89));
    assert!(sent(&mut p).is_empty());
    p.tick(t0 + Duration::from_secs(90));
    let refresh = one(&mut p);
    assert!(is_publish(&refresh, "sip:Alice@example.com"));
    assert_eq!(refresh.header("SIP-If-Match"), Some("e1"));
    assert!(refresh.body.is_empty());
    assert_eq!(refresh.call_id(), publish.call_id());
    assert_eq!(refresh.cseq().map(|c| c.0), Some(2));
    let t1 = t0 + Duration::from_secs(90);
    p.response(t1, server(), &answer(&refresh, 200, "SIP-ETag: e2\r\n"));

    // The caller hangs up: the publication is removed with the newest tag.
    p.left(t1, ParticipantId(1));
    let remove = one(&mut p);
    assert_eq!(remove.header("Expires"), Some("0"));
    assert_eq!(remove.header("SIP-If-Match"), Some("e2"));
    p.response(t1, server(), &answer(&remove, 200, ""));
    assert_eq!(p.state_size(), 0);
    p.tick(t1 + Duration::from_secs(3600));
    assert!(sent(&mut p).is_empty());
    assert_eq!(p.stats().published, 3);
}

#[test]
fn one_identity_on_two_calls_is_one_publication() {
    let t0 = Instant::now();
    let mut p = presence();
    join(&mut p, t0, 1, "sip:bob@example.com");
    let publish = one(&mut p);
    join(&mut p, t0, 2, "<sip:bob@EXAMPLE.com>");
    assert!(sent(&mut p).is_empty());
    p.response(t0, server(), &answer(&publish, 200, "SIP-ETag: b\r\n"));
    p.left(t0, ParticipantId(1));
    assert!(sent(&mut p).is_empty(), "bob is still in a call");
    p.left(t0, ParticipantId(2));
    assert_eq!(one(&mut p).header("Expires"), Some("0"));
}

#[test]
fn changes_while_a_publish_is_in_flight_follow_its_answer() {
    let t0 = Instant::now();
    let mut p = presence();
    join(&mut p, t0, 1, "sip:carol@example.com");
    let publish = one(&mut p);
    // Gone before the server answered: the removal follows the 200.
    p.left(t0, ParticipantId(1));
    assert!(sent(&mut p).is_empty());
    p.response(t0, server(), &answer(&publish, 200, "SIP-ETag: c1\r\n"));
    let remove = one(&mut p);
    assert_eq!(remove.header("SIP-If-Match"), Some("c1"));
    // Back before the removal was answered: published afresh after it.
    join(&mut p, t0, 2, "sip:carol@example.com");
    assert!(sent(&mut p).is_empty());
    p.response(t0, server(), &answer(&remove, 200, ""));
    let again = one(&mut p);
    assert_eq!(again.header("SIP-If-Match"), None);
    assert!(!again.body.is_empty());
    assert_eq!(p.published().count(), 1);
}

#[test]
fn a_forgotten_tag_publishes_the_document_again() {
    let t0 = Instant::now();
    let mut p = presence();
    join(&mut p, t0, 1, "sip:dave@example.com");
    let publish = one(&mut p);
    p.response(
        t0,
        server(),
        &answer(&publish, 200, "SIP-ETag: d1\r\nExpires: 60\r\n"),
    );
    let t1 = t0 + Duration::from_secs(45);
    p.tick(t1);
    let refresh = one(&mut p);
    assert_eq!(refresh.header("SIP-If-Match"), Some("d1"));
    p.response(t1, server(), &answer(&refresh, 412, ""));
    let fresh = one(&mut p);
    assert_eq!(fresh.header("SIP-If-Match"), None);
    assert_eq!(fresh.header("Content-Type"), Some(CONTENT_TYPE));
}

#[test]
fn too_brief_takes_the_servers_minimum_within_limits() {
    let t0 = Instant::now();
    let mut p = presence();
    join(&mut p, t0, 1, "sip:erin@example.com");
    let publish = one(&mut p);
    p.response(
        t0,
        server(),
        &answer(&publish, 423, "Min-Expires: 1200\r\n"),
    );
    let again = one(&mut p);
    assert_eq!(again.header("Expires"), Some("1200"));
    // A minimum past a day is not followed: a failure, retried after a back-off.
    p.response(
        t0,
        server(),
        &answer(&again, 423, "Min-Expires: 4294967295\r\n"),
    );
    assert!(sent(&mut p).is_empty());
    assert_eq!(p.stats().failed, 1);
    p.tick(t0 + Duration::from_millis(4_999));
    assert!(sent(&mut p).is_empty());
    p.tick(t0 + Duration::from_secs(5));
    assert_eq!(one(&mut p).header("Expires"), Some("1200"));
}

#[test]
fn an_unanswered_publish_is_retransmitted_then_retried_with_back_off() {
    let t0 = Instant::now();
    let mut p = presence();
    join(&mut p, t0, 1, "sip:frank@example.com");
    let first = p.poll().unwrap();
    // Retransmitted at 0.5, 1.5, 3.5, 7.5, 11.5, ... s (T1 doubling to T2), the same bytes.
    let mut at = Vec::new();
    for ms in (0..32_000).step_by(100) {
        p.tick(t0 + Duration::from_millis(ms));
        while let Some(b) = p.poll() {
            assert_eq!(b, first);
            at.push(ms);
        }
    }
    assert_eq!(&at[..5], [500, 1500, 3500, 7500, 11_500]);
    assert_eq!(at.len(), 10, "{at:?}");
    // Given up at 32 s; tried again 5 s later, then 10 s after that failure.
    p.tick(t0 + Duration::from_secs(32));
    assert_eq!(p.stats().failed, 1);
    assert!(sent(&mut p).is_empty());
    p.tick(t0 + Duration::from_secs(37));
    let second = one(&mut p);
    assert_ne!(second.branch(), Message::parse(&first).unwrap().branch());
    p.tick(t0 + Duration::from_secs(69));
    assert_eq!(p.stats().failed, 2);
    p.tick(t0 + Duration::from_secs(78));
    assert!(sent(&mut p).iter().all(|m| m.branch() == second.branch()));
    p.tick(t0 + Duration::from_secs(79));
    assert_eq!(sent(&mut p).len(), 1);
    // Leaving ends it: nothing was published, so nothing is removed.
    p.left(t0 + Duration::from_secs(80), ParticipantId(1));
    p.response(
        t0 + Duration::from_secs(80),
        server(),
        &answer(&second, 500, ""),
    );
    p.tick(t0 + Duration::from_secs(3600));
    assert!(p.poll().is_none());
}

#[test]
fn answers_from_anyone_but_the_server_or_to_other_branches_change_nothing() {
    let t0 = Instant::now();
    let mut p = presence();
    join(&mut p, t0, 1, "sip:gina@example.com");
    let publish = one(&mut p);
    let ok = answer(&publish, 200, "SIP-ETag: g\r\n");
    p.response(t0, "127.0.0.1:15081".parse().unwrap(), &ok);
    p.response(t0, "10.0.0.1:15080".parse().unwrap(), &ok);
    let text = String::from_utf8(ok.to_bytes()).unwrap();
    let other = text.replace(publish.branch().unwrap(), "z9hG4bKforged");
    p.response(t0, server(), &Message::parse(other.as_bytes()).unwrap());
    // Still in flight: retransmitted, and the real answer is taken.
    p.tick(t0 + Duration::from_millis(500));
    assert_eq!(sent(&mut p).len(), 1);
    p.response(t0, server(), &ok);
    p.left(t0, ParticipantId(1));
    assert_eq!(one(&mut p).header("SIP-If-Match"), Some("g"));
}

#[test]
fn only_usable_sip_identities_are_published() {
    for bad in [
        "tel:+15551234",
        "sip:example.com",
        "sip:@example.com",
        "sip:alice@",
        "sip:al ice@example.com",
        "sip:alice@exa\r\nVia: x",
        "sip:alice\"@example.com",
        "sip:alice<@example.com",
        "http://alice@example.com/",
        "",
    ] {
        assert_eq!(presentity(bad), None, "{bad:?}");
    }
    let long = format!("sip:{}@example.com", "a".repeat(300));
    assert_eq!(presentity(&long), None);
    assert_eq!(
        presentity("SIPS:o'neil&co@Host.Example:5061;transport=tls?x=y").as_deref(),
        Some("sips:o'neil&co@host.example:5061")
    );
    // Escaped in the document, which stays well-formed.
    let doc = document("sips:o'neil&co@host.example:5061");
    assert!(doc.contains("o&apos;neil&amp;co"), "{doc}");
    assert!(well_formed(doc.as_bytes()));

    let t0 = Instant::now();
    let mut p = presence();
    join(&mut p, t0, 1, "tel:+15551234");
    p.connected(ParticipantId(2));
    p.identified(t0, ParticipantId(2), None);
    assert!(p.poll().is_none());
    assert_eq!(p.stats().refused, 1);
    assert_eq!(p.state_size(), 0);
}

#[test]
fn a_late_identity_for_a_participant_that_left_is_not_published() {
    let t0 = Instant::now();
    let mut p = presence();
    p.connected(ParticipantId(1));
    p.left(t0, ParticipantId(1));
    p.identified(t0, ParticipantId(1), Some("sip:hal@example.com"));
    // Never connected at all.
    p.identified(t0, ParticipantId(2), Some("sip:hal@example.com"));
    assert!(p.poll().is_none());
    assert_eq!(p.state_size(), 0);
}

#[test]
fn hostile_answers_are_bounded() {
    let t0 = Instant::now();
    let mut p = presence();
    join(&mut p, t0, 1, "sip:ivy@example.com");
    let publish = one(&mut p);
    // A tag we could not send back, and an Expires of one second: the next refresh starts
    // afresh, not sooner than the minimum allows.
    let long_tag = format!("SIP-ETag: {}\r\nExpires: 1\r\n", "t".repeat(200));
    p.response(t0, server(), &answer(&publish, 200, &long_tag));
    p.tick(t0 + Duration::from_secs(44));
    assert!(sent(&mut p).is_empty());
    p.tick(t0 + Duration::from_secs(45));
    let next = one(&mut p);
    assert_eq!(next.header("SIP-If-Match"), None);
    assert!(!next.body.is_empty());
    // An Expires longer than asked for is not believed: refreshed as if 600 s were granted.
    let t1 = t0 + Duration::from_secs(45);
    p.response(
        t1,
        server(),
        &answer(&next, 200, "SIP-ETag: ok\r\nExpires: 4294967295\r\n"),
    );
    p.tick(t1 + Duration::from_secs(539));
    assert!(sent(&mut p).is_empty());
    p.tick(t1 + Duration::from_secs(540));
    assert_eq!(one(&mut p).header("SIP-If-Match"), Some("ok"));
}

#[test]
fn publications_are_capped_and_pruned() {
    let t0 = Instant::now();
    let mut p = presence();
    let n = MAX_PUBLICATIONS as u64 + 500;
    for id in 0..n {
        join(&mut p, t0, id, &format!("sip:user{id}@example.com"));
    }
    assert_eq!(p.published().count(), MAX_PUBLICATIONS);
    assert_eq!(p.stats().refused, 500);
    let publishes = sent(&mut p);
    assert_eq!(publishes.len(), MAX_PUBLICATIONS);
    for m in &publishes {
        p.response(t0, server(), &answer(m, 200, "SIP-ETag: x\r\n"));
    }
    for id in 0..n {
        p.left(t0, ParticipantId(id));
    }
    let removals = sent(&mut p);
    assert_eq!(removals.len(), MAX_PUBLICATIONS);
    // Half are answered, half never: all are gone after the transaction timeout.
    for m in removals.iter().step_by(2) {
        p.response(t0, server(), &answer(m, 200, ""));
    }
    p.tick(t0 + Duration::from_secs(33));
    p.tick(t0 + Duration::from_secs(3600));
    while p.poll().is_some() {}
    assert_eq!(p.state_size(), 0);
}

#[test]
fn an_ipv4_server_answering_a_dual_stack_socket_is_heard() {
    let t0 = Instant::now();
    let mut p = presence();
    join(&mut p, t0, 1, "sip:kim@example.com");
    let publish = one(&mut p);
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:15080".parse().unwrap();
    p.response(t0, mapped, &answer(&publish, 200, "SIP-ETag: k\r\n"));
    p.left(t0, ParticipantId(1));
    assert_eq!(one(&mut p).header("SIP-If-Match"), Some("k"));
}

#[test]
fn stopping_removes_what_the_server_holds() {
    let t0 = Instant::now();
    let mut p = presence();
    join(&mut p, t0, 1, "sip:lee@example.com");
    join(&mut p, t0, 2, "sip:max@example.com");
    join(&mut p, t0, 3, "sip:ned@example.com");
    let mut publishes = sent(&mut p);
    assert_eq!(publishes.len(), 3);
    // Lee and Max are published; Ned's PUBLISH is still unanswered.
    for m in publishes.drain(..2) {
        p.response(t0, server(), &answer(&m, 200, "SIP-ETag: s\r\n"));
    }
    p.shutdown(t0);
    let removals = sent(&mut p);
    assert_eq!(removals.len(), 2, "{removals:?}");
    assert!(removals.iter().all(|m| m.header("Expires") == Some("0")));
    // Nothing more after that, whatever comes.
    p.identified(t0, ParticipantId(1), Some("sip:lee@example.com"));
    p.tick(t0 + Duration::from_secs(3600));
    assert!(sent(&mut p).is_empty());
}
