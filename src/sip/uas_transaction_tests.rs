//! Which requests belong to which INVITE transaction (branch, sent-by and the source's IP, not
//! its port), and the INVITE flood limit per caller behind a trusted gateway.

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
        invites_per_second: 10,
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
    static N: AtomicU64 = AtomicU64::new(11);
    let mut x = N.fetch_add(0x9E37_79B9, Ordering::Relaxed);
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

fn tcp(addr: &str, connection: u64) -> Peer {
    Peer {
        addr: addr.parse().unwrap(),
        connection: Some(connection),
    }
}

fn tls(addr: &str, connection: u64) -> Peer {
    tcp(addr, connection | Peer::TLS)
}

fn udp(addr: &str) -> Peer {
    Peer {
        addr: addr.parse().unwrap(),
        connection: None,
    }
}

const SAVP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";

/// A request outside a dialog with the top Via `transport sent_by;branch=branch`.
fn request(method: &str, via: &str, branch: &str, call: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} sip:1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{via};branch={branch}\r\nFrom: \"Ann\" <sip:ann@127.0.0.1>;tag=ft{call}\r\nTo: <sip:1234@127.0.0.1>\r\nCall-ID: {call}\r\nCSeq: 1 {method}\r\nContact: <sip:ann@127.0.0.1:5070;transport=tcp>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
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

fn statuses(sent: &[(Peer, Message)]) -> Vec<u16> {
    sent.iter().filter_map(|(_, m)| m.status()).collect()
}

fn join_of(actions: &[Action]) -> JoinRequest {
    match actions.first() {
        Some(Action::Join(j)) => (**j).clone(),
        other => panic!("no join: {other:?}"),
    }
}

fn joined(uas: &mut Uas, now: Instant, call: CallRef, p: u64) {
    uas.joined(
        now,
        call,
        JoinResult::Joined {
            participant: ParticipantId(p),
            local: "127.0.0.1:20000".parse().unwrap(),
        },
    );
}

#[test]
fn a_cancel_on_a_new_tcp_connection_from_the_same_host_cancels() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let first = tcp("127.0.0.1:40001", 1);
    let invite = request("INVITE", "TCP 127.0.0.1:5070", "z9hG4bKt1", "t1", "", SAVP);
    uas.handle(t0, first, &invite);
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [100]);
    let j = join_of(&actions);
    // The first connection closed; the CANCEL comes on a new one, from a new port.
    let second = tcp("127.0.0.1:40002", 2);
    let cancel = request("CANCEL", "TCP 127.0.0.1:5070", "z9hG4bKt1", "t1", "", "");
    uas.handle(t0, second, &cancel);
    let (sent, _) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200, 487]);
    // Both answers go where the client is now.
    assert!(sent.iter().all(|(to, _)| *to == second), "{sent:?}");
    assert_eq!(sent[0].1.cseq().map(|c| c.1), Some(Method::Cancel));
    assert_eq!(sent[1].1.cseq().map(|c| c.1), Some(Method::Invite));
    // The engine's late admission is undone; the 487's ACK on yet another connection ends it.
    joined(&mut uas, t0, j.call, 3);
    let (sent, actions) = drain(&mut uas);
    assert!(sent.is_empty());
    assert_eq!(
        actions,
        [Action::Leave {
            participant: ParticipantId(3)
        }]
    );
    let to_tag = uas.calls.values().next().map(|c| c.local_tag.clone());
    let ack = String::from_utf8(request(
        "ACK",
        "TCP 127.0.0.1:5070",
        "z9hG4bKt1",
        "t1",
        "",
        "",
    ))
    .unwrap()
    .replace(
        "To: <sip:1234@127.0.0.1>",
        &format!("To: <sip:1234@127.0.0.1>;tag={}", to_tag.unwrap()),
    );
    uas.handle(t0, tcp("127.0.0.1:40003", 3), ack.as_bytes());
    assert_eq!(uas.calls.len(), 0);
    assert_eq!(uas.by_branch.len(), 0);
}

#[test]
fn a_udp_cancel_from_another_port_of_the_callers_host_cancels_and_the_invite_port_gets_the_487() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let invite_port = udp("127.0.0.1:5070");
    let via = "UDP 127.0.0.1:5070";
    uas.handle(
        t0,
        invite_port,
        &request("INVITE", via, "z9hG4bKu1", "u1", "", SAVP),
    );
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [100]);
    let j = join_of(&actions);
    // Another host sending the same CANCEL finds nothing, and the call still rings.
    let stranger = udp("127.0.0.9:5070");
    uas.handle(
        t0,
        stranger,
        &request("CANCEL", via, "z9hG4bKu1", "u1", "", ""),
    );
    let (sent, _) = drain(&mut uas);
    let answered: Vec<_> = sent.iter().map(|(to, m)| (*to, m.status())).collect();
    assert_eq!(answered, [(stranger, Some(481))]);
    // The caller's host, another port (an SBC sending from another socket): 200 there, and
    // the 487 to where the INVITE came from.
    let cancel_port = udp("127.0.0.1:5099");
    uas.handle(
        t0,
        cancel_port,
        &request("CANCEL", via, "z9hG4bKu1", "u1", "", ""),
    );
    let (sent, _) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200, 487]);
    assert_eq!(sent[0].0, cancel_port);
    assert_eq!(sent[0].1.cseq().map(|c| c.1), Some(Method::Cancel));
    assert_eq!(
        (sent[1].0, sent[1].1.cseq().map(|c| c.1)),
        (invite_port, Some(Method::Invite))
    );
    // The late admission is undone, and once acknowledged nothing is left.
    joined(&mut uas, t0, j.call, 7);
    let (_, actions) = drain(&mut uas);
    assert_eq!(
        actions,
        [Action::Leave {
            participant: ParticipantId(7)
        }]
    );
    uas.tick(t0 + Duration::from_secs(64));
    drain(&mut uas);
    assert_eq!(
        (
            uas.calls.len(),
            uas.by_branch.len(),
            uas.by_host_branch.len()
        ),
        (0, 0, 0)
    );
}

#[test]
fn a_retransmission_on_a_new_connection_gets_the_same_answer_and_nobody_else_does() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let via = "TLS 127.0.0.1:5071";
    let invite = request("INVITE", via, "z9hG4bKs1", "s1", "", SAVP);
    uas.handle(t0, tls("127.0.0.1:40001", 1), &invite);
    let j = join_of(&drain(&mut uas).1);
    joined(&mut uas, t0, j.call, 1);
    let (sent, _) = drain(&mut uas);
    let ok = sent[0].1.clone();
    assert_eq!(ok.status(), Some(200));
    let key_line = String::from_utf8_lossy(&ok.body)
        .lines()
        .find(|l| l.starts_with("a=crypto"))
        .map(str::to_owned)
        .unwrap();
    // The same client on a new TLS connection: the same 200, there.
    let again = tls("127.0.0.1:40002", 2);
    uas.handle(t0, again, &invite);
    let (sent, actions) = drain(&mut uas);
    assert_eq!(sent, [(again, ok.clone())]);
    assert!(actions.is_empty());
    // The same branch and Via from another host, from the same host in the clear, or with
    // another sent-by: each a transaction of its own, never the first call's 200 or key.
    let others = [
        (tls("127.0.0.2:40001", 3), via.to_owned()),
        (tcp("127.0.0.1:40003", 4), via.replace("TLS", "TCP")),
        (tls("127.0.0.1:40004", 5), "TLS 127.0.0.1:5072".to_owned()),
    ];
    for (i, (peer, via)) in others.iter().enumerate() {
        uas.handle(
            t0,
            *peer,
            &request("INVITE", via, "z9hG4bKs1", "s1", "", SAVP),
        );
        let (sent, actions) = drain(&mut uas);
        for (to, m) in &sent {
            assert_eq!(to, peer);
            assert_ne!(m.status(), Some(200), "{i}: {m:?}");
            assert!(!String::from_utf8_lossy(&m.body).contains(&key_line));
        }
        let other = join_of(&actions);
        assert_ne!(other.call, j.call, "{i}");
        assert_ne!(other.local_key, j.local_key, "{i}");
    }
    // Their CANCELs find their own transactions, not the first call (still answered).
    for (peer, via) in &others {
        uas.handle(
            t0,
            *peer,
            &request("CANCEL", via, "z9hG4bKs1", "s1", "", ""),
        );
        assert_eq!(statuses(&drain(&mut uas).0), [200, 487]);
    }
    let first = uas.calls.get(&j.call.0).map(|c| &c.state);
    assert!(matches!(first, Some(CallState::Answered)), "{first:?}");
    // A CANCEL with another sent-by from the same host: no such transaction.
    uas.handle(
        t0,
        again,
        &request("CANCEL", "TLS 127.0.0.1:5073", "z9hG4bKs1", "s1", "", ""),
    );
    assert_eq!(statuses(&drain(&mut uas).0), [481]);
}

#[test]
fn a_retransmitted_bye_on_a_new_connection_gets_the_cached_answer() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let via = "TCP 127.0.0.1:5070";
    uas.handle(
        t0,
        tcp("127.0.0.1:40001", 1),
        &request("INVITE", via, "z9hG4bKb1", "b1", "", SAVP),
    );
    let j = join_of(&drain(&mut uas).1);
    joined(&mut uas, t0, j.call, 9);
    let (sent, _) = drain(&mut uas);
    let tag = sent[0].1.to_tag().unwrap().to_owned();
    let bye = String::from_utf8(request("BYE", via, "z9hG4bKb2", "b1", "", ""))
        .unwrap()
        .replace(
            "To: <sip:1234@127.0.0.1>",
            &format!("To: <sip:1234@127.0.0.1>;tag={tag}"),
        )
        .replace("CSeq: 1 BYE", "CSeq: 2 BYE");
    uas.handle(t0, tcp("127.0.0.1:40001", 1), bye.as_bytes());
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200]);
    assert_eq!(
        actions,
        [Action::Leave {
            participant: ParticipantId(9)
        }]
    );
    // Retransmitted on a new connection: the same 200 (the dialog is gone, so only the cache
    // can say it); the same branch from another host is not that transaction.
    uas.handle(t0, tcp("127.0.0.1:40002", 2), bye.as_bytes());
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200]);
    assert!(actions.is_empty());
    uas.handle(t0, tcp("127.0.0.2:40002", 3), bye.as_bytes());
    assert_eq!(statuses(&drain(&mut uas).0), [481]);
}

/// A new INVITE from `peer` with this asserted identity; its final status, or 100 if it was
/// taken (a join asked).
fn call_as(uas: &mut Uas, now: Instant, peer: Peer, identity: &str, n: usize) -> u16 {
    let pai = format!("P-Asserted-Identity: <{identity}>\r\n");
    let branch = format!("z9hG4bKf{n}");
    uas.handle(
        now,
        peer,
        &request("INVITE", "UDP 127.0.0.1:5070", &branch, &branch, &pai, ""),
    );
    let (sent, actions) = drain(uas);
    match actions.first() {
        Some(Action::Join(_)) => 100,
        _ => statuses(&sent).last().copied().unwrap_or(0),
    }
}

#[test]
fn one_noisy_caller_behind_a_gateway_does_not_get_the_others_refused() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let gateway = udp("127.0.0.1:5070");
    // 50 INVITEs in one second from one caller: 10 taken, the rest 503.
    let noisy: Vec<u16> = (0..50)
        .map(|i| {
            let t = t0 + Duration::from_millis(i * 20);
            call_as(&mut uas, t, gateway, "sip:+4930111@gw", i as usize)
        })
        .collect();
    assert_eq!(noisy.iter().filter(|&&s| s == 100).count(), 10);
    assert_eq!(noisy.iter().filter(|&&s| s == 503).count(), 40);
    assert!(noisy[..10].iter().all(|&s| s == 100));
    assert_eq!(uas.stats.flood, 40);
    // Another caller through the same gateway in that second is taken.
    let t = t0 + Duration::from_millis(990);
    assert_eq!(call_as(&mut uas, t, gateway, "sip:+4930222@gw", 100), 100);
    // The gateway as a whole: 10 times a caller's rate (10 callers at full rate fit).
    let taken = (0..200)
        .filter(|i| {
            let id = format!("sip:+49302{i:02}@gw");
            call_as(&mut uas, t, gateway, &id, 200 + i) == 100
        })
        .count();
    assert_eq!(taken, 100 - 11);
    // A second later the noisy caller may call again.
    let later = t0 + Duration::from_millis(1100);
    assert_eq!(
        call_as(&mut uas, later, gateway, "sip:+4930111@gw", 500),
        100
    );
}

#[test]
fn a_source_outside_the_trusted_networks_keeps_the_limit_per_address() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    // A signed-in caller's INVITE (from outside `sip.trusted`) is counted by its address
    // alone (`invite` gives no caller key for it): 10 a second, and not ten times that.
    let addr: IpAddr = "192.0.2.7".parse().unwrap();
    let refused = (0..30).filter(|_| uas.flooding(t0, addr, None)).count();
    assert_eq!(refused, 20);
    // An IPv6 source is its /64: new addresses in it share one count.
    let refused = (0..30u16)
        .filter(|&i| {
            let v6 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, i, 0, 0, 1);
            uas.flooding(t0, IpAddr::V6(v6), None)
        })
        .count();
    assert_eq!(refused, 20);
    // A trusted source's callers: a caller key each, the source ten times the rate.
    let gateway: IpAddr = "127.0.0.9".parse().unwrap();
    let refused = (0..30)
        .filter(|i| uas.flooding(t0, gateway, Some(format!("127.0.0.9 sip:{i}@gw"))))
        .count();
    assert_eq!(refused, 0);
}

#[test]
fn a_hundred_thousand_identities_cannot_grow_the_flood_counts() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    // A thousand gateways in the trusted network, a hundred callers each, in one second.
    for i in 0..100_000usize {
        let gateway = udp(&format!(
            "127.0.{}.{}:5070",
            i / 100 / 250,
            i / 100 % 250 + 1
        ));
        let identity = format!("sip:{i}@gw");
        call_as(&mut uas, t0, gateway, &identity, i);
        assert!(uas.flood_callers.len() <= MAX_FLOOD_CALLERS);
        assert!(uas.flood_sources.len() <= MAX_FLOOD_SOURCES);
    }
    assert_eq!(uas.flood_callers.len(), MAX_FLOOD_CALLERS);
    // A new caller is still limited by its gateway's count; a second later all is pruned.
    uas.tick(t0 + Duration::from_secs(1));
    assert_eq!((uas.flood_callers.len(), uas.flood_sources.len()), (0, 0));
}

/// An INVITE from `peer` with the From `uri` and no asserted identity; the join it asked for,
/// or its final status.
fn call_from(
    uas: &mut Uas,
    now: Instant,
    peer: Peer,
    uri: &str,
    n: usize,
) -> Result<JoinRequest, u16> {
    let branch = format!("z9hG4bKr{n}");
    let invite = String::from_utf8(request(
        "INVITE",
        "UDP 127.0.0.1:5070",
        &branch,
        &branch,
        "",
        "",
    ))
    .unwrap()
    .replace("\"Ann\" <sip:ann@127.0.0.1>", &format!("<{uri}>"));
    uas.handle(now, peer, invite.as_bytes());
    let (sent, actions) = drain(uas);
    match actions.first() {
        Some(Action::Join(j)) => Ok((**j).clone()),
        _ => Err(statuses(&sent).last().copied().unwrap_or(0)),
    }
}

#[test]
fn a_flood_under_new_from_headers_behind_a_gateway_does_not_shut_out_callers_who_were_in_meetings()
{
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let gateway = udp("127.0.0.1:5070");
    // Ann was let into a meeting an hour less a minute ago (the shell tells the core so).
    let ann = call_from(&mut uas, t0, gateway, "sip:ann@gw", 0).unwrap();
    uas.admitted_to_meeting(t0, &ann.caller_key());
    let now = t0 + super::known_callers::KNOWN_FOR - Duration::from_secs(60);
    // A flood behind the gateway, every INVITE under a new From: the gateway's 100 a second
    // are taken, the rest refused.
    let flood: Vec<bool> = (0..300)
        .map(|i| call_from(&mut uas, now, gateway, &format!("sip:x{i}@gw"), 1 + i).is_ok())
        .collect();
    assert_eq!(flood.iter().filter(|&&taken| taken).count(), 100);
    // A stranger behind the gateway is refused with them; Ann is not.
    assert_eq!(
        call_from(&mut uas, now, gateway, "sip:bob@gw", 400).err(),
        Some(503)
    );
    assert!(call_from(&mut uas, now, gateway, "sip:ann@gw", 401).is_ok());
    // Ann still has a caller's own limit: 10 a second.
    let taken = (0..20)
        .filter(|i| call_from(&mut uas, now, gateway, "sip:ann@gw", 402 + i).is_ok())
        .count();
    assert_eq!(taken, 9);
    // Callers made known cannot take more than a second gateway budget: 150 known callers
    // calling in one second get 100 through.
    let later = now + Duration::from_secs(2);
    for i in 0..150 {
        let j = call_from(&mut uas, later, gateway, &format!("sip:k{i}@gw"), 500 + i);
        if let Ok(j) = j {
            uas.admitted_to_meeting(later, &j.caller_key());
        }
    }
    let known: Vec<String> = (0..100).map(|i| format!("sip:k{i}@gw")).collect();
    let again = later + Duration::from_secs(2);
    let taken = known
        .iter()
        .chain(known.iter())
        .enumerate()
        .filter(|(n, uri)| call_from(&mut uas, again, gateway, uri, 700 + n).is_ok())
        .count();
    assert_eq!(taken, 100);
    // An hour after her last meeting Ann is a stranger again.
    let hour = t0 + super::known_callers::KNOWN_FOR + Duration::from_secs(1);
    for i in 0..100 {
        let _ = call_from(&mut uas, hour, gateway, &format!("sip:y{i}@gw"), 900 + i);
    }
    assert_eq!(
        call_from(&mut uas, hour, gateway, "sip:ann@gw", 1000).err(),
        Some(503)
    );
}
