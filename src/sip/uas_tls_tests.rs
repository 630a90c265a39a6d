//! Calls on SIP over TLS, and the SRTP policy by transport: the Contact and Via name the TLS
//! listener and `transport=tls` (a `sips:` URI for a `sips:` request), in-dialog requests go
//! back on the caller's connection, and SDES keys are taken only where they travel in secret.

use super::*;
use crate::config::SrtpPolicy;

const TLS_PEER: Peer = Peer {
    addr: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40123),
    connection: Some(7 | Peer::TLS),
};
const TCP_PEER: Peer = Peer {
    addr: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40124),
    connection: Some(8),
};

const SAVP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:q9X4vqHDWpozQKDFv1TRGR365nuarNkLDbvXz9Fg\r\n";

/// A bridge as configured by default (SDES only over TLS), with a TLS listener on 5061.
fn tls_settings() -> UasSettings {
    UasSettings {
        tls: Some(TlsListener {
            listen: "127.0.0.1:5061".parse().unwrap(),
            config: test_server_config(),
            client: None,
        }),
        sdes_over_cleartext: false,
        auth: Default::default(),
        credentials: Vec::new(),
        ..settings()
    }
}

/// Any server configuration: the core only reads the listener's address.
fn test_server_config() -> std::sync::Arc<rustls::ServerConfig> {
    let pki = crate::testing::pki::pki(&["127.0.0.1"]);
    crate::tls::server_config(&pki.cert, &pki.key, &[]).unwrap()
}

fn invite_over(transport: &str, uri: &str, call: &str, body: &str) -> Vec<u8> {
    format!(
        "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:40123;branch=z9hG4bK{call};rport\r\nFrom: \"Ann\" <sip:ann@127.0.0.1>;tag=ft{call}\r\nTo: <{uri}>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:ann@127.0.0.1:40123;transport={}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        transport.to_ascii_lowercase(),
        body.len()
    )
    .into_bytes()
}

/// Offers `body` from `peer`; the final answer (after a join that succeeds, if there is one)
/// and where it went.
fn call_from(uas: &mut Uas, peer: Peer, uri: &str, call: &str, body: &str) -> (Message, Peer) {
    let transport = peer.via_transport();
    uas.handle(
        Instant::now(),
        peer,
        &invite_over(transport, uri, call, body),
    );
    let mut join = None;
    let mut last = None;
    while let Some(a) = uas.poll() {
        match a {
            Action::Join(j) => join = Some(j.call),
            Action::Send { to, bytes } => last = Some((Message::parse(&bytes).unwrap(), to)),
            _ => {}
        }
    }
    if let Some(call) = join {
        uas.joined(
            Instant::now(),
            call,
            JoinResult::Joined {
                participant: ParticipantId(1),
                local: "127.0.0.1:20000".parse().unwrap(),
            },
        );
        while let Some(a) = uas.poll() {
            if let Action::Send { to, bytes } = a {
                last = Some((Message::parse(&bytes).unwrap(), to));
            }
        }
    }
    last.unwrap()
}

#[test]
fn a_call_over_tls_takes_sdes_and_names_the_tls_listener() {
    let mut uas = Uas::new(tls_settings(), counter_random);
    let (ok, to) = call_from(&mut uas, TLS_PEER, "sip:1234@127.0.0.1", "t1", SAVP);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(
        to, TLS_PEER,
        "the answer goes back on the caller's connection"
    );
    assert_eq!(
        ok.header("Contact"),
        Some("<sip:confab@127.0.0.1:5061;transport=tls>")
    );
    let body = String::from_utf8(ok.body.clone()).unwrap();
    assert!(body.contains("m=audio 20000 RTP/SAVP 0"), "{body}");
    assert!(
        body.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{body}"
    );

    // Our BYE goes on the same connection, its Via names TLS and the TLS listener.
    uas.hangup(Instant::now(), ParticipantId(1));
    let mut bye = None;
    while let Some(a) = uas.poll() {
        if let Action::Send { to, bytes } = a {
            bye = Some((Message::parse(&bytes).unwrap(), to));
        }
    }
    let (bye, to) = bye.unwrap();
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert_eq!(to, TLS_PEER);
    assert!(
        bye.header("Via")
            .unwrap()
            .starts_with("SIP/2.0/TLS 127.0.0.1:5061;"),
        "{:?}",
        bye.header("Via")
    );
}

#[test]
fn a_sips_request_gets_a_sips_contact() {
    let mut uas = Uas::new(tls_settings(), counter_random);
    let (ok, _) = call_from(&mut uas, TLS_PEER, "sips:1234@127.0.0.1", "t2", SAVP);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(
        ok.header("Contact"),
        Some("<sips:confab@127.0.0.1:5061;transport=tls>")
    );
}

#[test]
fn sdes_over_cleartext_is_refused_by_default_and_taken_when_allowed() {
    for peer in [peer(), TCP_PEER] {
        let mut uas = Uas::new(tls_settings(), counter_random);
        let (r, _) = call_from(&mut uas, peer, "sip:1234@127.0.0.1", "c1", SAVP);
        assert_eq!(r.status(), Some(488), "{peer:?}");
        let warning = r.header("Warning").unwrap();
        assert!(
            warning.starts_with("399 confab") && warning.contains("TLS"),
            "{warning}"
        );
        // A best-effort offer (AVP with a key) is answered in the clear, without our key.
        let best_effort = SAVP.replace("RTP/SAVP", "RTP/AVP");
        let (ok, _) = call_from(&mut uas, peer, "sip:1234@127.0.0.1", "c2", &best_effort);
        assert_eq!(ok.status(), Some(200), "{peer:?}");
        let body = String::from_utf8(ok.body.clone()).unwrap();
        assert!(!body.contains("a=crypto"), "{body}");
    }
    // Over TCP, the Contact says so.
    let mut uas = Uas::new(tls_settings(), counter_random);
    let (ok, _) = call_from(&mut uas, TCP_PEER, "sip:1234@127.0.0.1", "c3", OFFER);
    assert_eq!(
        ok.header("Contact"),
        Some("<sip:confab@127.0.0.1:5060;transport=tcp>")
    );
    // An operator who allows it gets SRTP over UDP.
    let mut uas = Uas::new(
        UasSettings {
            sdes_over_cleartext: true,
            auth: Default::default(),
            credentials: Vec::new(),
            ..tls_settings()
        },
        counter_random,
    );
    let (ok, _) = call_from(&mut uas, peer(), "sip:1234@127.0.0.1", "c4", SAVP);
    assert_eq!(ok.status(), Some(200));
    assert!(String::from_utf8_lossy(&ok.body).contains("a=crypto:1 "));
}

#[test]
fn srtp_required_refuses_plain_offers_and_srtp_off_refuses_savp() {
    let mut uas = Uas::new(
        UasSettings {
            srtp: SrtpPolicy::Required,
            ..tls_settings()
        },
        counter_random,
    );
    let (r, _) = call_from(&mut uas, TLS_PEER, "sip:1234@127.0.0.1", "r1", OFFER);
    assert_eq!(r.status(), Some(488));
    assert!(r.header("Warning").unwrap().contains("requires SRTP"));
    let (ok, _) = call_from(&mut uas, TLS_PEER, "sip:1234@127.0.0.1", "r2", SAVP);
    assert_eq!(ok.status(), Some(200));

    let mut uas = Uas::new(
        UasSettings {
            srtp: SrtpPolicy::Off,
            ..tls_settings()
        },
        counter_random,
    );
    let (r, _) = call_from(&mut uas, TLS_PEER, "sip:1234@127.0.0.1", "o1", SAVP);
    assert_eq!(r.status(), Some(488));
    assert!(r.header("Warning").unwrap().contains("SRTP is off"));
    let (ok, _) = call_from(&mut uas, TLS_PEER, "sip:1234@127.0.0.1", "o2", OFFER);
    assert_eq!(ok.status(), Some(200));
}

#[test]
fn a_conference_policy_applies_to_invites_naming_it_not_to_the_attendant() {
    let settings = tls_settings();
    settings
        .conference_srtp
        .set("1234", Some(SrtpPolicy::Required));
    settings.conference_srtp.set("5678", Some(SrtpPolicy::Off));
    let mut uas = Uas::new(settings, counter_random);
    // The bridge is `optional`: a plain offer to the conference that requires SRTP is refused,
    // to the attendant's number (the conference not known yet) it is taken.
    let (r, _) = call_from(&mut uas, TLS_PEER, "sip:1234@127.0.0.1", "k1", OFFER);
    assert_eq!(r.status(), Some(488));
    assert!(r.header("Warning").unwrap().contains("requires SRTP"));
    let (ok, _) = call_from(&mut uas, TLS_PEER, "sip:conference@127.0.0.1", "k2", OFFER);
    assert_eq!(ok.status(), Some(200));
    let (r, _) = call_from(&mut uas, TLS_PEER, "sip:5678@127.0.0.1", "k3", SAVP);
    assert_eq!(r.status(), Some(488));
    assert!(r.header("Warning").unwrap().contains("SRTP is off"));
    // In a call to the conference that requires SRTP, a re-INVITE cannot drop it.
    let (ok, _) = call_from(&mut uas, TLS_PEER, "sip:1234@127.0.0.1", "k4", SAVP);
    assert_eq!(ok.status(), Some(200));
    let to_tag = ok.to_tag().unwrap().to_owned();
    let reinvite = String::from_utf8(in_dialog(
        "INVITE",
        "k4",
        &to_tag,
        2,
        "z9hG4bKk4re",
        "Content-Type: application/sdp\r\n",
        OFFER,
    ))
    .unwrap();
    uas.handle(Instant::now(), TLS_PEER, reinvite.as_bytes());
    let (sent, _) = drain(&mut uas);
    assert_eq!(statuses(&sent), [488], "{sent:?}");
}

#[test]
fn keys_travel_only_where_every_hop_was_tls() {
    // A proxy reaches us over TLS with a caller it took over UDP (its Via below the proxy's):
    // our key would go back to the caller in the clear, so it is not given.
    let mut uas = Uas::new(tls_settings(), counter_random);
    let through_proxy = |call: &str, lower: &str, body: &str| {
        let invite =
            String::from_utf8(invite_over("TLS", "sip:1234@127.0.0.1", call, body)).unwrap();
        invite
            .replacen(
                "\r\nFrom:",
                &format!(
                    "\r\nVia: SIP/2.0/{lower} 192.0.2.7:5060;branch=z9hG4bKcaller{call}\r\nFrom:"
                ),
                1,
            )
            .into_bytes()
    };
    let answer = |uas: &mut Uas, bytes: &[u8]| {
        uas.handle(Instant::now(), TLS_PEER, bytes);
        let mut last = None;
        while let Some(a) = uas.poll() {
            match a {
                Action::Send { bytes, .. } => last = Some(Message::parse(&bytes).unwrap()),
                Action::Join(j) => uas.joined(
                    Instant::now(),
                    j.call,
                    JoinResult::Joined {
                        participant: ParticipantId(1),
                        local: "127.0.0.1:20000".parse().unwrap(),
                    },
                ),
                _ => {}
            }
        }
        last.unwrap()
    };
    let savp = answer(&mut uas, &through_proxy("v1", "UDP", SAVP));
    assert_eq!(savp.status(), Some(488), "{savp:?}");
    let best_effort = format!(
        "{OFFER}a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:q9X4vqHDWpozQKDFv1TRGR365nuarNkLDbvXz9Fg\r\n"
    );
    let ok = answer(&mut uas, &through_proxy("v2", "UDP", &best_effort));
    assert_eq!(ok.status(), Some(200));
    assert!(
        !String::from_utf8_lossy(&ok.body).contains("a=crypto"),
        "{ok:?}"
    );
    // Every hop over TLS: the key is given.
    let ok = answer(&mut uas, &through_proxy("v3", "TLS", SAVP));
    assert_eq!(ok.status(), Some(200), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.body).contains("a=crypto:1 "));
}
