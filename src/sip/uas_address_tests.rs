//! Which of our addresses a caller is given, and where it was seen: Contact, Via and SDP never
//! carry a wildcard address, the advertised address wins, and requests' Vias are stamped with
//! `received`/`rport` (RFC 3581) so that a caller behind a NAT hears back.

use super::*;

/// Two interfaces: 198.51.100.7 towards 198.51.100.0/24 (the callers' side), 203.0.113.7 for
/// everything else.
fn table(peer: IpAddr) -> Option<IpAddr> {
    match peer {
        IpAddr::V4(v4) if v4.octets()[..3] == [198, 51, 100] => "198.51.100.7".parse().ok(),
        IpAddr::V4(_) => "203.0.113.7".parse().ok(),
        IpAddr::V6(_) => None,
    }
}

fn wildcard() -> UasSettings {
    UasSettings {
        local: "0.0.0.0:5060".parse().unwrap(),
        trusted: vec!["0.0.0.0/0".parse().unwrap()],
        route: table,
        ..settings()
    }
}

/// A caller behind a NAT: it says it is at 10.0.0.5 (Via, Contact, SDP), its packets come
/// from the NAT's 198.51.100.20:40000.
fn natted_invite(call: &str) -> Vec<u8> {
    let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:1234@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK{call};rport\r\nFrom: <sip:ann@10.0.0.5>;tag=f{call}\r\nTo: <sip:1234@198.51.100.7>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:ann@10.0.0.5:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const NAT: &str = "198.51.100.20:40000";

fn call(uas: &mut Uas, call: &str) -> Message {
    let nat = Peer {
        addr: NAT.parse().unwrap(),
        connection: None,
    };
    uas.handle(Instant::now(), nat, &natted_invite(call));
    let (sent, actions) = drain(uas);
    assert_eq!(statuses(&sent), [100]);
    let Some(Action::Join(join)) = actions.first() else {
        panic!("{actions:?}")
    };
    uas.joined(
        Instant::now(),
        join.call,
        JoinResult::Joined {
            participant: ParticipantId(1),
            // The media socket is bound to the wildcard too.
            local: "0.0.0.0:20002".parse().unwrap(),
        },
    );
    let (mut sent, _) = drain(uas);
    assert_eq!(statuses(&sent), [200]);
    sent.remove(0)
}

#[test]
fn a_wildcard_bind_gives_each_caller_the_interface_towards_it() {
    let mut uas = Uas::new(wildcard(), counter_random);
    let ok = call(&mut uas, "w1");
    assert_eq!(ok.header("Contact"), Some("<sip:confab@198.51.100.7:5060>"));
    let body = String::from_utf8(ok.body.clone()).unwrap();
    // Its media will come through the NAT: our media address is the one towards the NAT.
    assert!(body.contains("c=IN IP4 198.51.100.7\r\n"), "{body}");
    assert!(
        body.contains("o=confab 1 1 IN IP4 198.51.100.7\r\n"),
        "{body}"
    );
    assert!(body.contains("m=audio 20002 "), "{body}");
    assert!(!body.contains("0.0.0.0") && !ok.to_bytes().windows(7).any(|w| w == b"0.0.0.0"));
    // The caller learns where it was seen, and the response goes back to the NAT's address.
    assert_eq!(
        ok.header("Via"),
        Some("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKw1;rport=40000;received=198.51.100.20")
    );
}

#[test]
fn advertised_addresses_win_over_the_route() {
    let settings = UasSettings {
        advertise: Some("192.0.2.80".parse().unwrap()),
        media_advertise: Some("192.0.2.81".parse().unwrap()),
        ..wildcard()
    };
    let mut uas = Uas::new(settings, counter_random);
    let ok = call(&mut uas, "a1");
    assert_eq!(ok.header("Contact"), Some("<sip:confab@192.0.2.80:5060>"));
    let body = String::from_utf8(ok.body.clone()).unwrap();
    assert!(body.contains("c=IN IP4 192.0.2.81\r\n"), "{body}");
    // The bridge's BYE names the advertised address in its Via and goes to where the caller
    // was seen (the NAT), not to its private Contact.
    uas.hangup(Instant::now(), ParticipantId(1));
    let mut bye = None;
    while let Some(a) = uas.poll() {
        if let Action::Send { to, bytes } = a {
            bye = Some((to, Message::parse(&bytes).unwrap()));
        }
    }
    let (to, bye) = bye.expect("a BYE");
    assert_eq!(to.addr, NAT.parse().unwrap());
    assert!(
        bye.header("Via")
            .is_some_and(|v| v.starts_with("SIP/2.0/UDP 192.0.2.80:5060;")),
        "{bye:?}"
    );
}

#[test]
fn vias_are_stamped_with_where_the_request_came_from() {
    let from: SocketAddr = "198.51.100.20:40000".parse().unwrap();
    for (via, stamped) in [
        // rport asked: filled in, and received always.
        (
            "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport",
            "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport=40000;received=198.51.100.20",
        ),
        // No rport, another host: received only.
        (
            "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1",
            "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1;received=198.51.100.20",
        ),
        // Seen where it said: nothing to add.
        (
            "SIP/2.0/UDP 198.51.100.20:40000;branch=z9hG4bK1",
            "SIP/2.0/UDP 198.51.100.20:40000;branch=z9hG4bK1",
        ),
        // Its own received and rport values are replaced; the Vias below stay as they are.
        (
            "SIP/2.0/UDP 10.0.0.5;received=6.6.6.6;rport=1;branch=z9hG4bK1, SIP/2.0/UDP 10.9.9.9",
            "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1;rport=40000;received=198.51.100.20, SIP/2.0/UDP 10.9.9.9",
        ),
        // A hostname as sent-by.
        (
            "SIP/2.0/TCP phone.example;branch=z9hG4bK1",
            "SIP/2.0/TCP phone.example;branch=z9hG4bK1;received=198.51.100.20",
        ),
    ] {
        let raw = format!(
            "OPTIONS sip:x@y SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let mut m = Message::parse(raw.as_bytes()).unwrap();
        m.stamp_received(from);
        assert_eq!(m.header("Via"), Some(stamped), "{via}");
        // Stamping again (a retransmission) gives the same.
        m.stamp_received(from);
        assert_eq!(m.header("Via"), Some(stamped), "{via} twice");
    }
}

/// The offer of a caller that names itself `own` (Via sent-by, Contact, SDP), through `proxy`
/// (a second Via) if any.
fn offer_naming(call: &str, own: &str, proxy: Option<&str>) -> Vec<u8> {
    let body = format!(
        "v=0\r\no=- 1 1 IN IP4 {own}\r\ns=-\r\nc=IN IP4 {own}\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtcp:30001\r\n"
    );
    let top = proxy.map_or(String::new(), |p| {
        format!("Via: SIP/2.0/UDP {p};branch=z9hG4bKp{call}\r\n")
    });
    format!(
        "INVITE sip:1234@203.0.113.10 SIP/2.0\r\n{top}Via: SIP/2.0/UDP {own}:5060;branch=z9hG4bK{call};rport\r\nFrom: <sip:ann@{own}>;tag=f{call}\r\nTo: <sip:1234@203.0.113.10>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:ann@{own}:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn joined_spec(uas: &mut Uas, from: &str, bytes: &[u8]) -> crate::media::leg::LegSpec {
    let peer = Peer {
        addr: from.parse().unwrap(),
        connection: None,
    };
    uas.handle(Instant::now(), peer, bytes);
    let (_, actions) = drain(uas);
    let Some(Action::Join(join)) = actions.first() else {
        panic!("{actions:?}")
    };
    join.negotiated.leg_spec(None)
}

#[test]
fn a_caller_behind_an_unrewritten_nat_gets_its_media_sent_to_the_nat() {
    let mut uas = Uas::new(wildcard(), counter_random);
    // It says 198.51.100.50 everywhere and its packets come from the NAT's 203.0.113.1: media
    // goes to (and is taken only from) the NAT's address, at the caller's ports.
    let spec = joined_spec(
        &mut uas,
        "203.0.113.1:40000",
        &offer_naming("n1", "198.51.100.50", None),
    );
    assert_eq!(spec.remote, "203.0.113.1:30000".parse().unwrap());
    assert_eq!(spec.remote_rtcp, Some("203.0.113.1:30001".parse().unwrap()));
    assert!(!spec.latch_any_source);
    // Seen where it said it is: nothing changes.
    let spec = joined_spec(
        &mut uas,
        "198.51.100.50:5060",
        &offer_naming("n2", "198.51.100.50", None),
    );
    assert_eq!(spec.remote, "198.51.100.50:30000".parse().unwrap());
    // Through a proxy (two Vias), the source is the proxy's: nothing is inferred.
    let spec = joined_spec(
        &mut uas,
        "192.0.2.9:5060",
        &offer_naming("n3", "198.51.100.50", Some("192.0.2.9:5060")),
    );
    assert_eq!(spec.remote, "198.51.100.50:30000".parse().unwrap());
}
