//! The driver sans-I/O: datagrams in by hand, what it sends kept in a list, a str0m client on
//! the other side. No socket, so the bridge's address can be any: a wildcard bind or a private
//! address behind a NAT, with the candidate naming another.

use std::cell::RefCell;

use super::*;
use crate::media::relay::{RelayPort, relay_pair};
use crate::webrtc::handshakes::HandshakeKey;
use crate::webrtc::{HandshakeLimits, HandshakeSlot, NewPeer, offer};
use str0m::Candidate;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};

/// What the driver sent, in order.
#[derive(Default)]
struct Sent(RefCell<Vec<(SocketAddr, Vec<u8>)>>);

impl Wire for Sent {
    fn send(&self, contents: &[u8], to: SocketAddr) {
        self.0.borrow_mut().push((to, contents.to_vec()));
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn driver() -> Driver {
    Driver {
        sessions: Arc::default(),
        consent_timeout: Duration::from_secs(30),
        handshake_timeout: Duration::from_secs(20),
        peers: HashMap::new(),
        routes: HashMap::new(),
        by_ufrag: HashMap::new(),
        metrics: Arc::default(),
    }
}

/// A str0m client at `client` whose offer the driver answers with `candidate`; the client has
/// the answer. Returns the client's `Rtc` and the mixer's end of the peer's relay.
fn join(
    driver: &mut Driver,
    wire: &Sent,
    client: SocketAddr,
    candidate: SocketAddr,
) -> (Rtc, RelayPort) {
    let now = Instant::now();
    let mut rtc = Rtc::builder().build(now);
    rtc.add_local_candidate(Candidate::host(client, "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let cert = offer::DtlsCerts::new(now).unwrap().for_offer(now);
    let accepted = offer::accept(&offer.to_sdp_string(), candidate, now, cert).unwrap();
    let answer = SdpAnswer::from_sdp_string(&accepted.answer).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    let key = HandshakeKey {
        client: client.ip(),
        cid: "1234".into(),
    };
    let table = crate::webrtc::handshakes::SharedHandshakes::default();
    let limits = HandshakeLimits {
        total: 1,
        per_conference: 1,
        per_address: 1,
    };
    table.lock().unwrap().take(&key, limits).unwrap();
    let (port, relay) = relay_pair(Default::default());
    let peer = NewPeer {
        session: "s1".into(),
        accepted,
        relay,
        handshake: HandshakeSlot { key, table },
    };
    driver.add(wire, peer);
    (rtc, port)
}

/// Runs the client and the driver against each other (each datagram the driver sends reaches
/// the client from `candidate`, as the kernel's source for it) until the client is connected
/// or 200 exchanges pass; whether it connected.
fn exchange(driver: &mut Driver, wire: &Sent, rtc: &mut Rtc, client: SocketAddr) -> bool {
    let candidate = driver.peers.values().map(|p| p.candidate).next().unwrap();
    for _ in 0..200 {
        let now = Instant::now();
        let mut out = Vec::new();
        loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    assert_eq!(
                        t.destination, candidate,
                        "the client sends to our candidate"
                    );
                    out.push(t.contents.to_vec());
                }
                Output::Event(Event::Connected) => return true,
                Output::Event(_) => {}
            }
        }
        for datagram in out {
            driver.datagram(wire, client, &datagram);
        }
        for (to, datagram) in wire.0.borrow_mut().drain(..) {
            assert_eq!(to, client);
            let input = Input::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source: candidate,
                    destination: client,
                    contents: datagram.as_slice().try_into().unwrap(),
                },
            );
            rtc.handle_input(input).unwrap();
        }
        rtc.handle_input(Input::Timeout(now + Duration::from_millis(50)))
            .unwrap();
    }
    false
}

/// The socket bound to `0.0.0.0:8443` with the candidate naming the interface that routes to the
/// browser, or bound to a private address behind a NAT whose public address the candidate
/// names: either way the browser's checks are answered and ICE and DTLS come up.
#[test]
fn checks_sent_to_our_candidate_are_answered_whatever_the_socket_is_bound_to() {
    for candidate in [
        "192.0.2.10:8443",
        "203.0.113.10:8443",
        "[2001:db8::10]:8443",
    ] {
        let candidate = addr(candidate);
        let client = if candidate.is_ipv4() {
            addr("198.51.100.20:50000")
        } else {
            addr("[2001:db8::20]:50000")
        };
        let mut driver = driver();
        let wire = Sent::default();
        let (mut rtc, _port) = join(&mut driver, &wire, client, candidate);
        assert!(
            exchange(&mut driver, &wire, &mut rtc, client),
            "{candidate}: the client did not connect"
        );
        assert_eq!(driver.metrics.connected_total.load(Ordering::Relaxed), 1);
        assert_eq!(
            driver
                .metrics
                .unrouted_datagrams_total
                .load(Ordering::Relaxed),
            0
        );
        assert_eq!(
            driver.routes.get(&client),
            Some(driver.peers.keys().next().unwrap())
        );
    }
}

/// A check whose USERNAME names no peer, and junk, are not routed (and counted).
#[test]
fn a_stranger_is_not_routed() {
    let mut driver = driver();
    let wire = Sent::default();
    let client = addr("198.51.100.20:50000");
    let (_rtc, _port) = join(&mut driver, &wire, client, addr("192.0.2.10:8443"));
    let stranger = addr("198.51.100.99:40000");
    driver.datagram(
        &wire,
        stranger,
        b"\x00\x01\x00\x00 not a real binding request",
    );
    driver.datagram(&wire, stranger, &[0x80; 40]);
    assert!(wire.0.borrow().is_empty());
    assert_eq!(
        driver
            .metrics
            .unrouted_datagrams_total
            .load(Ordering::Relaxed),
        2
    );
    assert!(driver.routes.is_empty());
}
