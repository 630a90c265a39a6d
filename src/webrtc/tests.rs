//! The driver under its supervisor, on a real loopback socket: handshake caps, and a driver
//! that dies is started again with its peers let go (an offer from the Chromium fixture, and
//! str0m clients that complete ICE and DTLS before and after the restart).

use super::*;
use crate::conference::ParticipantId;
use crate::media::relay::{RelayPort, relay_pair};
use str0m::Candidate;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};

const CHROMIUM_OFFER: &str = include_str!("../../tests/fixtures/chromium-156-offer.sdp");
const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn settings(limits: HandshakeLimits, restart_wait: Duration) -> WebRtcSettings {
    let config = crate::config::WebRtcConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Default::default()
    };
    WebRtcSettings {
        handshake_limits: limits,
        restart_wait,
        ..WebRtcSettings::from_config(&config)
    }
}

const ROOMY: HandshakeLimits = HandshakeLimits {
    total: 16,
    per_conference: 16,
    per_address: 16,
};

/// Waits for `done` (polled every 10 ms) up to 10 s; whether it came.
fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Joins `offer` to meeting `cid` as WHIP does; the mixer's end of its relay.
fn join(webrtc: &WebRtc, session: &str, cid: &str, offer: &str) -> Result<RelayPort, AdmitError> {
    let slot = webrtc.reserve(CLIENT, cid)?;
    let accepted = offer::accept(
        offer,
        webrtc.candidate(CLIENT),
        Instant::now(),
        webrtc.dtls_cert(),
    )
    .unwrap();
    let (port, peer) = relay_pair(webrtc.doorbell());
    let info = Session {
        cid: cid.to_owned(),
        participant: ParticipantId(1),
    };
    let roster = RosterToken::random().unwrap();
    webrtc.add(session.to_owned(), info, roster, accepted, peer, slot)?;
    Ok(port)
}

/// Why the driver let the peer behind `port` go, once it has.
fn closed(port: &RelayPort) -> Option<DisconnectReason> {
    let mut packet = crate::media::relay::RelayPacket::new(0, 0, 0, 0);
    loop {
        match port.receive(&mut packet)? {
            Ok(()) => continue,
            Err(reason) => return Some(reason),
        }
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[test]
fn each_handshake_cap_refuses_and_counts_and_a_dropped_slot_comes_back() {
    let limits = HandshakeLimits {
        total: 4,
        per_conference: 2,
        per_address: 3,
    };
    let webrtc = WebRtc::start(settings(limits, FIRST_WAIT)).unwrap();
    let other = IpAddr::from([10, 0, 0, 2]);
    let a1 = webrtc.reserve(CLIENT, "1111").unwrap();
    let a2 = webrtc.reserve(CLIENT, "1111").unwrap();
    // Per meeting: a third on 1111 is refused, from any address.
    assert_eq!(
        webrtc.reserve(other, "1111").err(),
        Some(AdmitError::TooManyForConference("1111".into()))
    );
    let _a3 = webrtc.reserve(CLIENT, "2222").unwrap();
    // Per address: a fourth from CLIENT is refused.
    assert_eq!(
        webrtc.reserve(CLIENT, "3333").err(),
        Some(AdmitError::TooManyHandshakes(CLIENT))
    );
    let _b1 = webrtc.reserve(other, "3333").unwrap();
    // In all: four held.
    assert_eq!(
        webrtc.reserve(other, "4444").err(),
        Some(AdmitError::TooManyInAll)
    );
    assert_eq!(
        webrtc.metrics.handshakes_refused(),
        [("address", 1), ("conference", 1), ("total", 1)]
    );
    // Dropped slots (a join that failed after reserving) come back.
    drop(a1);
    let _b2 = webrtc.reserve(other, "4444").unwrap();
    drop(a2);
    let _b3 = webrtc.reserve(other, "1111").unwrap();
    assert_eq!(
        webrtc.handshakes.lock().unwrap().held(CLIENT, "1111"),
        (4, 1, 1)
    );
}

#[test]
fn a_slot_handed_to_the_driver_comes_back_when_its_peer_goes() {
    let limits = HandshakeLimits {
        total: 4,
        per_conference: 1,
        per_address: 4,
    };
    let webrtc = WebRtc::start(settings(limits, FIRST_WAIT)).unwrap();
    let port = join(&webrtc, "s1", "1111", CHROMIUM_OFFER).unwrap();
    assert!(wait_for(|| load(&webrtc.metrics.handshakes) == 1));
    assert_eq!(
        join(&webrtc, "s2", "1111", CHROMIUM_OFFER).err(),
        Some(AdmitError::TooManyForConference("1111".into()))
    );
    assert!(webrtc.close("s1"));
    assert!(wait_for(|| closed(&port).is_some()));
    assert_eq!(closed(&port), Some(DisconnectReason::Hangup));
    assert_eq!(load(&webrtc.metrics.handshakes), 0);
    assert_eq!(
        webrtc.handshakes.lock().unwrap().held(CLIENT, "1111"),
        (0, 0, 0)
    );
    let _again = join(&webrtc, "s2", "1111", CHROMIUM_OFFER).unwrap();
}

/// Long enough that a test sees the driver down between its death and its restart.
const FIRST_WAIT: Duration = Duration::from_secs(1);

#[test]
fn a_driver_that_panics_is_restarted_and_its_peers_are_let_go() {
    let webrtc = WebRtc::start(settings(ROOMY, FIRST_WAIT)).unwrap();
    assert!(webrtc.running());
    let old = join(&webrtc, "old", "1234", CHROMIUM_OFFER).unwrap();
    assert!(wait_for(|| load(&webrtc.metrics.peers) == 1));
    assert!(webrtc.session("old").is_some());

    assert!(webrtc.panic_driver_for_test());
    assert!(wait_for(|| load(&webrtc.metrics.driver_restarts_total) == 1));
    // Down (not ready) until the wait is over; a join meanwhile is refused, not lost.
    assert!(!webrtc.running());
    assert_eq!(
        join(&webrtc, "between", "1234", CHROMIUM_OFFER).err(),
        Some(AdmitError::Stopped)
    );
    assert_eq!(webrtc.session("between"), None);
    assert!(wait_for(|| webrtc.running()));

    // The death was counted; the old peer was let go as internal-error, its session and slot
    // with it.
    assert_eq!(load(&webrtc.metrics.panics_total), 1);
    assert_eq!(load(&webrtc.metrics.driver_restarts_total), 1);
    assert_eq!(closed(&old), Some(DisconnectReason::InternalError));
    assert_eq!(webrtc.session("old"), None);
    assert_eq!(load(&webrtc.metrics.peers), 0);
    assert_eq!(load(&webrtc.metrics.handshakes), 0);
    assert_eq!(
        webrtc.handshakes.lock().unwrap().held(CLIENT, "1234"),
        (0, 0, 0)
    );

    // The same handle, the same port: a new join is taken by the new driver.
    let local = webrtc.local_addr();
    let new = join(&webrtc, "new", "1234", CHROMIUM_OFFER).unwrap();
    assert!(wait_for(|| load(&webrtc.metrics.peers) == 1));
    assert!(webrtc.session("new").is_some());
    assert_eq!(webrtc.local_addr(), local);
    assert!(webrtc.close("new"));
    assert!(wait_for(|| closed(&new).is_some()));
    assert_eq!(closed(&new), Some(DisconnectReason::Hangup));
}

#[test]
fn joins_queued_behind_a_driver_that_dies_give_their_slots_back() {
    let webrtc = WebRtc::start(settings(ROOMY, FIRST_WAIT)).unwrap();
    // The driver is held, a panic and then two joins queue behind it: the panic ends the
    // driver with both joins still in its queue, which goes with it.
    let hold = webrtc.hold_driver_for_test().unwrap();
    assert!(webrtc.panic_driver_for_test());
    let queued = [
        join(&webrtc, "a", "1234", CHROMIUM_OFFER).unwrap(),
        join(&webrtc, "b", "5678", CHROMIUM_OFFER).unwrap(),
    ];
    assert_eq!(
        webrtc.handshakes.lock().unwrap().held(CLIENT, "1234"),
        (2, 2, 1)
    );
    drop(hold);
    assert!(wait_for(|| load(&webrtc.metrics.driver_restarts_total) == 1));
    assert!(wait_for(|| webrtc.running()));
    // Neither peer reached a driver; both legs were let go with their queue, and the slots
    // came back: the caps are as if they never came.
    for port in &queued {
        assert!(closed(port).is_some());
    }
    for cid in ["1234", "5678"] {
        assert_eq!(
            webrtc.handshakes.lock().unwrap().held(CLIENT, cid),
            (0, 0, 0)
        );
    }
    assert_eq!(webrtc.session("a"), None);
    assert_eq!(load(&webrtc.metrics.handshakes), 0);
}

/// A WebRTC client (str0m, ICE-controlling) on its own loopback socket.
struct Client {
    rtc: Rtc,
    socket: std::net::UdpSocket,
    local: SocketAddr,
}

impl Client {
    /// A client and its audio offer.
    fn offer() -> (Client, String, SdpPendingOffer) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = socket.local_addr().unwrap();
        let mut rtc = Rtc::builder().build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        (
            Client { rtc, socket, local },
            offer.to_sdp_string(),
            pending,
        )
    }

    /// Drives the client until ICE and DTLS are up (true) or `limit` passes (false).
    fn connect(&mut self, pending: SdpPendingOffer, answer: &str, limit: Duration) -> bool {
        let answer = SdpAnswer::from_sdp_string(answer).unwrap();
        self.rtc.sdp_api().accept_answer(pending, answer).unwrap();
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 2048];
        loop {
            let next = loop {
                match self.rtc.poll_output().unwrap() {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                    Output::Event(Event::Connected) => return true,
                    Output::Event(_) => {}
                }
            };
            let now = Instant::now();
            if now > deadline {
                return false;
            }
            let wait = next
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), Duration::from_millis(50));
            self.socket.set_read_timeout(Some(wait)).unwrap();
            let input = match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source: from,
                        destination: self.local,
                        contents: buf[..n].try_into().unwrap(),
                    },
                ),
                Err(_) => Input::Timeout(Instant::now()),
            };
            self.rtc.handle_input(input).unwrap();
        }
    }
}

/// Joins a str0m client and completes its handshake; the mixer's end of its relay.
fn connect_client(webrtc: &WebRtc, session: &str) -> (Client, RelayPort) {
    let (mut client, offer, pending) = Client::offer();
    let slot = webrtc.reserve(CLIENT, "1234").unwrap();
    let accepted = offer::accept(
        &offer,
        webrtc.candidate(CLIENT),
        Instant::now(),
        webrtc.dtls_cert(),
    )
    .unwrap();
    let answer = accepted.answer.clone();
    let (port, peer) = relay_pair(webrtc.doorbell());
    let info = Session {
        cid: "1234".into(),
        participant: ParticipantId(1),
    };
    let roster = RosterToken::random().unwrap();
    webrtc
        .add(session.into(), info, roster, accepted, peer, slot)
        .unwrap();
    assert!(
        client.connect(pending, &answer, Duration::from_secs(10)),
        "{session} did not connect"
    );
    (client, port)
}

#[test]
fn str0m_clients_connect_on_the_same_port_before_and_after_a_restart() {
    let webrtc = WebRtc::start(settings(ROOMY, Duration::from_millis(100))).unwrap();
    let (_first, first_port) = connect_client(&webrtc, "first");
    assert!(wait_for(|| load(&webrtc.metrics.connected_total) == 1));
    assert_eq!(load(&webrtc.metrics.handshakes), 0);

    assert!(webrtc.panic_driver_for_test());
    assert!(wait_for(|| load(&webrtc.metrics.driver_restarts_total) == 1));
    assert!(wait_for(|| webrtc.running()));
    assert_eq!(closed(&first_port), Some(DisconnectReason::InternalError));
    assert_eq!(webrtc.session("first"), None);

    let (_second, second_port) = connect_client(&webrtc, "second");
    assert!(wait_for(|| load(&webrtc.metrics.connected_total) == 2));
    assert_eq!(load(&webrtc.metrics.peers), 1);
    assert_eq!(closed(&second_port), None);
    assert_eq!(load(&webrtc.metrics.panics_total), 1);
}

/// A client that misses a tenth of the bridge's packets says so in its receiver reports; the
/// driver's str0m reads them and the loss reaches the mixer's end of the relay (for the Opus
/// toward the client). Real sockets and clocks, as the tests above: about 10 s, the time str0m
/// takes to average two of the client's reports.
#[test]
fn a_clients_reported_loss_reaches_the_leg() {
    let webrtc = WebRtc::start(settings(ROOMY, Duration::from_millis(100))).unwrap();
    let (mut client, port) = connect_client(&webrtc, "lossy");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut next_packet = Instant::now();
    let mut sequence = 0u16;
    let mut buf = vec![0u8; 2048];
    while port.reported_loss().is_none_or(|l| l == 0.0) && Instant::now() < deadline {
        let now = Instant::now();
        if now >= next_packet {
            // Every tenth sequence number never sent: lost on the way, as the client sees it.
            sequence = sequence.wrapping_add(if sequence % 10 == 8 { 2 } else { 1 });
            let mut p = RelayPacket::new(111, sequence, u32::from(sequence) * 960, 0x5151);
            assert!(p.set_payload(&[0xF8, 0xFF, 0xFE]));
            port.send(p);
            port.ring();
            next_packet += Duration::from_millis(20);
        }
        let next = loop {
            match client.rtc.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = client.socket.send_to(&t.contents, t.destination);
                }
                Output::Event(_) => {}
            }
        };
        let wait = next
            .min(next_packet)
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        client.socket.set_read_timeout(Some(wait)).unwrap();
        let input = match client.socket.recv_from(&mut buf) {
            Ok((n, from)) => Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source: from,
                    destination: client.local,
                    contents: buf[..n].try_into().unwrap(),
                },
            ),
            Err(_) => Input::Timeout(Instant::now()),
        };
        client.rtc.handle_input(input).unwrap();
    }
    let loss = port.reported_loss();
    eprintln!("loss the client reported: {loss:?} %");
    assert!(loss.is_some_and(|l| (5.0..=15.0).contains(&l)), "{loss:?}");
}
