//! The subscriptions core in fake time: SUBSCRIBE, the full then partial NOTIFYs, refresh,
//! the ends of a subscription (RFC 6665), access, and hostile input.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::conference::DisconnectReason;
use crate::sip::conference_event::Status;
use crate::sip::conference_event::tests::{validate, view};
use crate::sip::message::Method;

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

fn peer_at(addr: &str) -> Peer {
    Peer {
        addr: addr.parse().unwrap(),
        connection: None,
    }
}

fn peer() -> Peer {
    peer_at("127.0.0.1:5262")
}

/// A SUBSCRIBE to meeting 1234; `to_tag` for one in a subscription; `headers` end in CRLF.
fn subscribe_msg(call: &str, to_tag: Option<&str>, cseq: u32, headers: &str) -> Message {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let text = format!(
        "SUBSCRIBE sip:1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5262;branch=z9hG4bK{call}{cseq}\r\n\
         From: <sip:watcher@127.0.0.1>;tag=w{call}\r\nTo: <sip:1234@127.0.0.1>{to_tag}\r\nCall-ID: {call}\r\n\
         CSeq: {cseq} SUBSCRIBE\r\nContact: <sip:watcher@127.0.0.1:5262>\r\nMax-Forwards: 70\r\n{headers}Content-Length: 0\r\n\r\n"
    );
    Message::parse(text.as_bytes()).unwrap()
}

fn request(peer: Peer, msg: Message) -> SubscribeRequest {
    SubscribeRequest {
        peer,
        msg,
        local: "127.0.0.1:5060".parse::<SocketAddr>().unwrap(),
        contact: "<sip:confab@127.0.0.1:5060>".into(),
        trusted: true,
        participants: Vec::new(),
    }
}

fn open() -> Access {
    Access {
        exists: true,
        trusted: true,
        admitted: true,
        participant: false,
    }
}

const EVENT: &str = "Event: conference\r\n";

/// Messages sent, and the roster reads asked for.
fn drain(s: &mut Subscriptions) -> (Vec<Message>, Vec<String>) {
    let (mut sent, mut reads) = (Vec::new(), Vec::new());
    while let Some(o) = s.poll() {
        match o {
            Output::Send { bytes, .. } => sent.push(Message::parse(&bytes).unwrap()),
            Output::FetchRoster(m) => reads.push(m),
        }
    }
    (sent, reads)
}

fn body(m: &Message) -> String {
    String::from_utf8(m.body.clone()).unwrap()
}

fn answer(s: &mut Subscriptions, now: Instant, notify: &Message, code: u16) {
    assert!(s.notify_answer(now, &notify.response(code, "OK", None)));
}

/// A subscription to 1234 whose first NOTIFY (listing `users`) was sent and answered.
fn subscribed(s: &mut Subscriptions, now: Instant, users: Vec<UserView>) -> (String, Message) {
    s.subscribe(
        now,
        &request(peer(), subscribe_msg("c1", None, 1, EVENT)),
        open(),
    );
    let (sent, reads) = drain(s);
    assert_eq!(sent[0].status(), Some(200));
    assert_eq!(reads, ["1234"]);
    let tag = sent[0].to_tag().unwrap().to_owned();
    s.roster(now, "1234", Some(users));
    let (sent, _) = drain(s);
    assert_eq!(sent.len(), 1);
    answer(s, now, &sent[0], 200);
    (tag, sent[0].clone())
}

#[test]
fn a_subscriber_gets_200_the_full_roster_then_each_change() {
    let mut s = Subscriptions::new(counter_random);
    let now = Instant::now();
    s.subscribe(
        now,
        &request(peer(), subscribe_msg("c1", None, 1, EVENT)),
        open(),
    );
    let (sent, reads) = drain(&mut s);
    assert_eq!(sent.len(), 1);
    let ok = &sent[0];
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.header("Expires"), Some("3600"));
    assert!(ok.to_tag().is_some());
    assert_eq!(reads, ["1234"]);

    s.roster(now, "1234", Some(vec![view(1, "Ann", Status::Connected)]));
    let (sent, _) = drain(&mut s);
    let n = &sent[0];
    assert_eq!(n.method(), Some(&Method::Notify));
    assert_eq!(n.header("Event"), Some("conference"));
    assert_eq!(n.header("Subscription-State"), Some("active;expires=3600"));
    assert_eq!(
        n.header("Content-Type"),
        Some("application/conference-info+xml")
    );
    assert_eq!(n.header("To"), Some("<sip:watcher@127.0.0.1>;tag=wc1"));
    assert!(
        n.header("From")
            .unwrap()
            .ends_with(&format!(";tag={}", ok.to_tag().unwrap()))
    );
    assert_eq!(n.call_id(), "c1");
    let doc = body(n);
    assert!(doc.contains("state=\"full\" version=\"1\""), "{doc}");
    assert!(doc.contains("<display-text>Ann</display-text>"));
    validate(&doc).unwrap();
    answer(&mut s, now, n, 200);

    // Bob joins: a partial document with Bob alone, one version higher.
    s.changed("1234");
    let (_, reads) = drain(&mut s);
    assert_eq!(reads, ["1234"]);
    let ann = view(1, "Ann", Status::Connected);
    s.roster(
        now,
        "1234",
        Some(vec![ann.clone(), view(2, "Bob", Status::Connected)]),
    );
    let (sent, _) = drain(&mut s);
    let doc = body(&sent[0]);
    assert!(doc.contains("state=\"partial\" version=\"2\""), "{doc}");
    assert!(doc.contains("Bob") && !doc.contains("Ann"), "{doc}");
    assert!(doc.contains("<user-count>2</user-count>"));
    validate(&doc).unwrap();
    answer(&mut s, now, &sent[0], 200);

    // Ann is muted and Bob hangs up: both are told, Bob as disconnected.
    let mut muted = ann;
    muted.muted = true;
    let bob_left = view(2, "Bob", Status::Disconnected(DisconnectReason::Hangup));
    s.roster(now, "1234", Some(vec![muted.clone(), bob_left.clone()]));
    let (sent, _) = drain(&mut s);
    let doc = body(&sent[0]);
    assert!(doc.contains("version=\"3\""));
    assert!(doc.contains("<status>recvonly</status>"));
    assert!(doc.contains("<status>disconnected</status>"));
    assert!(doc.contains("<disconnection-method>departed</disconnection-method>"));
    validate(&doc).unwrap();
    answer(&mut s, now, &sent[0], 200);

    // Nothing changed for this subscriber: no NOTIFY.
    s.roster(now, "1234", Some(vec![muted, bob_left]));
    assert_eq!(drain(&mut s).0.len(), 0);
}

#[test]
fn changes_while_a_notify_is_unanswered_go_into_the_next_one() {
    let mut s = Subscriptions::new(counter_random);
    let now = Instant::now();
    s.subscribe(
        now,
        &request(peer(), subscribe_msg("c1", None, 1, EVENT)),
        open(),
    );
    drain(&mut s);
    s.roster(now, "1234", Some(vec![view(1, "Ann", Status::Connected)]));
    let (first, _) = drain(&mut s);
    let three = vec![
        view(1, "Ann", Status::Connected),
        view(2, "Bob", Status::Pending),
        view(3, "Cy", Status::DialingOut),
    ];
    s.roster(now, "1234", Some(three));
    assert!(drain(&mut s).0.is_empty(), "one NOTIFY in flight at a time");
    answer(&mut s, now, &first[0], 200);
    let (sent, _) = drain(&mut s);
    let doc = body(&sent[0]);
    assert!(doc.contains("version=\"2\"") && doc.contains("Bob") && doc.contains("Cy"));
    assert!(doc.contains("<status>dialing-out</status>"));
}

#[test]
fn a_refresh_renews_and_resends_everything() {
    let mut s = Subscriptions::new(counter_random);
    let now = Instant::now();
    let (tag, _) = subscribed(&mut s, now, vec![view(1, "Ann", Status::Connected)]);
    let later = now + Duration::from_secs(3000);
    let refresh = subscribe_msg("c1", Some(&tag), 2, "Event: conference\r\nExpires: 600\r\n");
    s.subscribe(later, &request(peer(), refresh), open());
    let (sent, reads) = drain(&mut s);
    assert!(reads.is_empty());
    assert_eq!(sent[0].status(), Some(200));
    assert_eq!(sent[0].header("Expires"), Some("600"));
    assert_eq!(
        sent[1].header("Subscription-State"),
        Some("active;expires=600")
    );
    let doc = body(&sent[1]);
    assert!(
        doc.contains("state=\"full\" version=\"2\"") && doc.contains("Ann"),
        "{doc}"
    );
    answer(&mut s, later, &sent[1], 200);
    // It lives past the first hour now.
    s.tick(now + Duration::from_secs(3599));
    assert!(drain(&mut s).0.is_empty());
    assert_eq!(s.len(), 1);
}

#[test]
fn expires_zero_ends_with_a_terminated_notify() {
    let mut s = Subscriptions::new(counter_random);
    let now = Instant::now();
    let (tag, _) = subscribed(&mut s, now, vec![view(1, "Ann", Status::Connected)]);
    let end = subscribe_msg("c1", Some(&tag), 2, "Event: conference\r\nExpires: 0\r\n");
    s.subscribe(now, &request(peer(), end), open());
    let (sent, _) = drain(&mut s);
    assert_eq!(sent[0].header("Expires"), Some("0"));
    assert_eq!(
        sent[1].header("Subscription-State"),
        Some("terminated;reason=timeout")
    );
    validate(&body(&sent[1])).unwrap();
    answer(&mut s, now, &sent[1], 200);
    assert_eq!(s.state_size(), 0);
}

#[test]
fn a_fetch_gets_the_roster_once() {
    let mut s = Subscriptions::new(counter_random);
    let now = Instant::now();
    let fetch = subscribe_msg("c1", None, 1, "Event: conference\r\nExpires: 0\r\n");
    s.subscribe(now, &request(peer(), fetch), open());
    let (sent, reads) = drain(&mut s);
    assert_eq!(sent[0].header("Expires"), Some("0"));
    assert_eq!(reads, ["1234"]);
    s.roster(now, "1234", Some(vec![view(1, "Ann", Status::Connected)]));
    let (sent, _) = drain(&mut s);
    assert_eq!(
        sent[0].header("Subscription-State"),
        Some("terminated;reason=timeout")
    );
    assert!(body(&sent[0]).contains("Ann"));
    answer(&mut s, now, &sent[0], 200);
    assert_eq!(s.state_size(), 0);
}

#[test]
fn an_expired_subscription_is_terminated_with_timeout() {
    let mut s = Subscriptions::new(counter_random);
    let now = Instant::now();
    subscribed(&mut s, now, vec![view(1, "Ann", Status::Connected)]);
    s.tick(now + Duration::from_secs(3599));
    assert!(drain(&mut s).0.is_empty());
    let at = now + Duration::from_secs(3600);
    s.tick(at);
    let (sent, _) = drain(&mut s);
    assert_eq!(
        sent[0].header("Subscription-State"),
        Some("terminated;reason=timeout")
    );
    assert!(sent[0].body.is_empty());
    answer(&mut s, at, &sent[0], 200);
    assert_eq!(s.state_size(), 0);
}

#[test]
fn an_unanswered_notify_is_retransmitted_then_the_subscription_dropped() {
    let mut s = Subscriptions::new(counter_random);
    let now = Instant::now();
    s.subscribe(
        now,
        &request(peer(), subscribe_msg("c1", None, 1, EVENT)),
        open(),
    );
    drain(&mut s);
    s.roster(now, "1234", Some(vec![view(1, "Ann", Status::Connected)]));
    let (first, _) = drain(&mut s);
    let mut at = now;
    let mut copies = 0;
    while at < now + Duration::from_secs(31) {
        at += Duration::from_millis(100);
        s.tick(at);
        let (sent, _) = drain(&mut s);
        for m in &sent {
            assert_eq!(m.to_bytes(), first[0].to_bytes());
        }
        copies += sent.len();
    }
    // T1, 2*T1, 4*T1, then every T2 up to 64*T1.
    assert!((8..=12).contains(&copies), "{copies}");
    s.tick(now + Duration::from_secs(33));
    assert_eq!(s.state_size(), 0);
}

#[test]
fn a_481_or_an_error_to_a_notify_drops_the_subscription() {
    for code in [481, 500, 404] {
        let mut s = Subscriptions::new(counter_random);
        let now = Instant::now();
        s.subscribe(
            now,
            &request(peer(), subscribe_msg("c1", None, 1, EVENT)),
            open(),
        );
        drain(&mut s);
        s.roster(now, "1234", Some(vec![view(1, "Ann", Status::Connected)]));
        let (sent, _) = drain(&mut s);
        answer(&mut s, now, &sent[0], code);
        assert_eq!(s.state_size(), 0, "{code}");
        assert!(drain(&mut s).0.is_empty());
    }
}

#[test]
fn the_conference_ending_terminates_with_noresource() {
    let mut s = Subscriptions::new(counter_random);
    let now = Instant::now();
    subscribed(&mut s, now, vec![view(1, "Ann", Status::Connected)]);
    s.ended(now, "1234");
    let (sent, _) = drain(&mut s);
    assert_eq!(
        sent[0].header("Subscription-State"),
        Some("terminated;reason=noresource")
    );
    answer(&mut s, now, &sent[0], 200);
    assert_eq!(s.state_size(), 0);
    // A conference gone before its roster could be read: the same.
    s.subscribe(
        now,
        &request(peer(), subscribe_msg("c2", None, 1, EVENT)),
        open(),
    );
    drain(&mut s);
    s.roster(now, "1234", None);
    let (sent, _) = drain(&mut s);
    assert_eq!(
        sent[0].header("Subscription-State"),
        Some("terminated;reason=noresource")
    );
}

fn status_of(s: &mut Subscriptions, req: SubscribeRequest, access: Access) -> Message {
    s.subscribe(Instant::now(), &req, access);
    let (sent, _) = drain(s);
    assert_eq!(sent.len(), 1);
    sent[0].clone()
}

#[test]
fn refusals() {
    let mut s = Subscriptions::new(counter_random);
    let r = |h: &str| request(peer(), subscribe_msg("c9", None, 1, h));
    let bad = status_of(&mut s, r("Event: presence\r\n"), open());
    assert_eq!(bad.status(), Some(489));
    assert_eq!(bad.header("Allow-Events"), Some("conference"));
    assert_eq!(status_of(&mut s, r(""), open()).status(), Some(489));
    assert_eq!(
        status_of(&mut s, r("o: conference\r\nExpires: 10\r\n"), open()).status(),
        Some(423)
    );
    let brief = status_of(&mut s, r("Event: conference\r\nExpires: 59\r\n"), open());
    assert_eq!(brief.header("Min-Expires"), Some("60"));
    assert_eq!(
        status_of(&mut s, r("Event: conference\r\nExpires: soon\r\n"), open()).status(),
        Some(400)
    );
    assert_eq!(
        status_of(&mut s, r("Event: conference\r\nExpires: -1\r\n"), open()).status(),
        Some(400)
    );
    assert_eq!(
        status_of(
            &mut s,
            r("Event: conference\r\nAccept: application/pidf+xml\r\n"),
            open()
        )
        .status(),
        Some(406)
    );
    let gone = Access {
        exists: false,
        ..open()
    };
    assert_eq!(status_of(&mut s, r(EVENT), gone).status(), Some(404));
    // A stranger learns nothing, not even whether the meeting exists.
    let stranger = Access {
        trusted: false,
        ..open()
    };
    assert_eq!(status_of(&mut s, r(EVENT), stranger).status(), Some(403));
    let stranger_gone = Access {
        exists: false,
        trusted: false,
        ..open()
    };
    assert_eq!(
        status_of(&mut s, r(EVENT), stranger_gone).status(),
        Some(403)
    );
    // A trusted source asserting someone the conference's gate turns away.
    let not_admitted = Access {
        admitted: false,
        ..open()
    };
    assert_eq!(
        status_of(&mut s, r(EVENT), not_admitted).status(),
        Some(403)
    );
    // In a subscription that does not exist.
    let stale = request(peer(), subscribe_msg("c9", Some("nope"), 2, EVENT));
    assert_eq!(status_of(&mut s, stale, open()).status(), Some(481));
    assert_eq!(s.state_size(), 0);
    // A participant's own phone outside the trusted networks may watch its conference.
    let mut own = r(EVENT);
    own.trusted = false;
    let participant = Access {
        trusted: false,
        admitted: false,
        participant: true,
        ..open()
    };
    assert_eq!(status_of(&mut s, own, participant).status(), Some(200));
}

#[test]
fn hostile_headers() {
    let mut s = Subscriptions::new(counter_random);
    // A huge Expires is shortened, never overflows.
    for huge in [
        "99999999999999999999999999999999",
        "4294967296",
        "18446744073709551616",
    ] {
        let r = request(
            peer(),
            subscribe_msg(
                huge,
                None,
                1,
                &format!("Event: conference\r\nExpires: {huge}\r\n"),
            ),
        );
        let ok = status_of(&mut s, r, open());
        assert_eq!(ok.header("Expires"), Some("3600"), "{huge}");
    }
    // No Contact, no usable Contact, no From tag.
    let mut text = String::from_utf8(subscribe_msg("x1", None, 1, EVENT).to_bytes()).unwrap();
    text = text.replace("Contact: <sip:watcher@127.0.0.1:5262>\r\n", "");
    let r = request(peer(), Message::parse(text.as_bytes()).unwrap());
    assert_eq!(status_of(&mut s, r, open()).status(), Some(400));
    let text = String::from_utf8(subscribe_msg("x2", None, 1, EVENT).to_bytes()).unwrap();
    let text = text.replace("<sip:watcher@127.0.0.1:5262>", "<http://evil/>");
    let r = request(peer(), Message::parse(text.as_bytes()).unwrap());
    assert_eq!(status_of(&mut s, r, open()).status(), Some(400));
    let text = String::from_utf8(subscribe_msg("x3", None, 1, EVENT).to_bytes()).unwrap();
    let text = text.replace(";tag=wx3", "");
    let r = request(peer(), Message::parse(text.as_bytes()).unwrap());
    assert_eq!(status_of(&mut s, r, open()).status(), Some(400));
}

#[test]
fn a_retransmitted_subscribe_gets_the_same_answer() {
    let mut s = Subscriptions::new(counter_random);
    let now = Instant::now();
    let req = request(peer(), subscribe_msg("c1", None, 1, EVENT));
    s.subscribe(now, &req, open());
    let (first, _) = drain(&mut s);
    s.subscribe(now, &req, open());
    let (again, reads) = drain(&mut s);
    assert_eq!(first[0].to_bytes(), again[0].to_bytes());
    assert!(reads.is_empty());
    assert_eq!(s.len(), 1);
}

#[test]
fn thousands_of_subscriptions_from_one_source_are_capped_and_pruned() {
    let mut s = Subscriptions::new(counter_random);
    let now = Instant::now();
    let mut ok = 0;
    for i in 0..3000 {
        let mut r = request(peer(), subscribe_msg(&format!("s{i}"), None, 1, EVENT));
        r.trusted = false;
        let access = Access {
            trusted: false,
            participant: true,
            ..open()
        };
        s.subscribe(now, &r, access);
        let (sent, _) = drain(&mut s);
        match sent[0].status() {
            Some(200) => ok += 1,
            Some(503) => assert!(sent[0].header("Retry-After").is_some()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ok, MAX_PER_SOURCE);
    // A trusted gateway carries more, and all sources together no more than the cap.
    for i in 0..3000 {
        let from = peer_at(&format!("10.0.{}.{}:5060", i / 200, i % 200 + 1));
        s.subscribe(
            now,
            &request(from, subscribe_msg(&format!("g{i}"), None, 1, EVENT)),
            open(),
        );
        drain(&mut s);
    }
    assert_eq!(s.len(), MAX_SUBSCRIPTIONS);
    // Never answered, never refreshed: all gone after their NOTIFY's timeout and expiry.
    s.roster(now, "1234", Some(vec![view(1, "Ann", Status::Connected)]));
    drain(&mut s);
    s.tick(now + Duration::from_secs(40));
    drain(&mut s);
    assert_eq!(s.state_size(), 0);
}

#[test]
fn a_big_roster_goes_out_over_several_notifys() {
    let mut s = Subscriptions::new(counter_random);
    let now = Instant::now();
    let users: Vec<UserView> = (1..=100)
        .map(|i| view(i, &format!("U{i}"), Status::Connected))
        .collect();
    s.subscribe(
        now,
        &request(peer(), subscribe_msg("c1", None, 1, EVENT)),
        open(),
    );
    drain(&mut s);
    s.roster(now, "1234", Some(users));
    let mut listed = 0;
    let mut version = 0;
    loop {
        let (sent, _) = drain(&mut s);
        if sent.is_empty() {
            break;
        }
        version += 1;
        assert_eq!(sent.len(), 1, "version {version}");
        assert!(sent[0].to_bytes().len() < crate::sip::message::MAX_MESSAGE);
        let doc = body(&sent[0]);
        let state = if version == 1 { "full" } else { "partial" };
        assert!(doc.contains(&format!("state=\"{state}\" version=\"{version}\"")));
        assert!(doc.contains("<user-count>100</user-count>"));
        listed += doc.matches("<user entity=").count();
        validate(&doc).unwrap();
        answer(&mut s, now, &sent[0], 200);
    }
    assert_eq!(listed, 100);
    assert!((4..=10).contains(&version), "{version} NOTIFYs");
}

#[test]
fn a_hostile_display_name_reaches_the_subscriber_escaped() {
    let mut s = Subscriptions::new(counter_random);
    let now = Instant::now();
    let evil = view(1, "<user entity=\"x\">&\"'\u{0}\u{1}]]>", Status::Connected);
    let (_, notify) = subscribed(&mut s, now, vec![evil]);
    let doc = body(&notify);
    assert!(
        doc.contains("&lt;user entity=&quot;x&quot;&gt;&amp;&quot;&apos;]]&gt;"),
        "{doc}"
    );
    validate(&doc).unwrap();
}

#[test]
fn a_meeting_on_another_node_is_redirected_there_and_nothing_is_kept() {
    let mut core = Subscriptions::new(counter_random);
    let req = request(
        peer(),
        subscribe_msg("moved", None, 1, "Event: conference\r\n"),
    );
    core.redirect(&req, "10.0.0.2:5070");
    let Some(Output::Send { to, bytes }) = core.poll() else {
        panic!("no answer");
    };
    assert_eq!(to, peer());
    let r = Message::parse(&bytes).unwrap();
    assert_eq!(r.status(), Some(302));
    assert_eq!(r.header("Contact"), Some("<sip:1234@10.0.0.2:5070>"));
    assert!(r.to_tag().is_some());
    assert_eq!(core.state_size(), 0);
    assert!(core.poll().is_none());
}
