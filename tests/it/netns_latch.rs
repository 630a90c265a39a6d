//! Media cannot be hijacked across real hosts: the bridge in a "bridge" namespace
//! (203.0.113.10), a caller in a "client" namespace behind a router namespace, and an attacker
//! in a namespace of its own on the caller's link (the router's inside interface is a switch
//! port), all made by the test. A third participant talks from the bridge host's loopback. The
//! callers are API legs (an SDP offer POSTed to the bridge) driven by RTP endpoints written in
//! the test; what they hear is decoded with a G.711 decoder that is not Confab's, and what
//! reaches the attacker is counted off the wire in its namespace (every UDP datagram from the
//! bridge, on any port).
//!
//! - Routed, the caller's offer names its public address (198.51.100.2): an attacker beside it
//!   (198.51.100.66) sprays RTP at every port of the bridge's range, from before the caller's
//!   first packet and with the caller's own SSRC half of the time. It is never latched.
//! - Behind a masquerading NAT the offer names a private address (192.168.77.2), so the first
//!   source is latched: the caller. The attacker sits behind the same NAT (the same public
//!   address as the caller); while the caller is silent for longer than the re-latch time it
//!   sends with another SSRC and is not taken; the caller resuming is heard again.
//! - Routed, with `media.timeout_secs` 3: RTCP from the attacker to a silent caller's RTCP
//!   port (and its RTP port), with the caller's SSRC, does not keep the leg alive; it ends as
//!   `media-timeout`, while another silent caller whose own host sends RTCP stays.
//!
//! In each, the legitimate parties keep hearing each other (tones measured) and the attacker
//! is sent nothing. Needs root, iproute2 and nftables: otherwise it says so and skips, unless
//! `CONFAB_REQUIRE_NETNS=1`.
//!
//! The scenarios are here; the hosts and the bridge of each (and how they are read) are in
//! `site`, the attacker in `attacker`, and how a bridge in a namespace is started and asked
//! (shared with netns_nat) in `support::netns_bridge`.

mod attacker;
mod site;

use crate::support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use attacker::{Attacker, receiver_report};
use site::{Site, check_heard, endpoint_in};
use support::netns::{self, Plan, UdpCount};
use support::netns_bridge::Participant;

const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const MEETING: &str = "5150";
/// The bridge's RTP port range: 32 even ports and their odd RTCP ports, all sprayed.
const PORT_MIN: u16 = 41000;
const PORT_MAX: u16 = 41063;
const CALLER_TONE: f32 = 440.0;
const OTHER_TONE: f32 = 880.0;
/// Neither a harmonic of the others nor near them.
const ATTACKER_TONE: f32 = 1250.0;
const CALLER_SSRC: u32 = 0x1111_0001;
const ATTACKER_SSRC: u32 = 0xbad0_0bad;
/// The re-latch time (`media.relatch_after_ms`, left at its default).
const RELATCH: Duration = Duration::from_millis(2000);

/// Routed: the caller's network is public and the bridge has a route back to it.
fn routed(tag: &'static str) -> Plan {
    Plan {
        tag,
        client: "198.51.100.2/24",
        nat_inside: "198.51.100.1/24",
        nat_outside: "203.0.113.1/24",
        bridge: "203.0.113.10/24",
        masquerade: false,
    }
}

/// Behind a masquerading NAT: the caller's network is private.
fn natted(tag: &'static str) -> Plan {
    Plan {
        tag,
        client: "192.168.77.2/24",
        nat_inside: "192.168.77.1/24",
        nat_outside: "203.0.113.1/24",
        bridge: "203.0.113.10/24",
        masquerade: true,
    }
}

/// Calls `tick` every 20 ms (absolute deadlines) for `duration`, at most `duration / 20 ms`
/// times.
fn every_20ms(duration: Duration, mut tick: impl FnMut(u32)) {
    let rounds = (duration.as_millis() / 20) as u32;
    let start = Instant::now();
    for round in 0..rounds {
        tick(round);
        let next = start + Duration::from_millis(20) * (round + 1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// Skips (or fails, with `CONFAB_REQUIRE_NETNS`) without root, iproute2, nftables.
fn skip() -> bool {
    netns::skip(&[])
}

#[test]
fn an_attacker_beside_a_caller_with_a_public_address_is_never_latched() {
    if skip() {
        return;
    }
    let _turn = support::exclusive();
    let plan = routed("la");
    let site = Site::new(&plan, "198.51.100.66/24", &[]);
    let caller_at: SocketAddr = "198.51.100.2:30000".parse().unwrap();
    let other_at: SocketAddr = "127.0.0.1:30020".parse().unwrap();
    // The attacker sprays, and what reaches it is counted, from before anyone joins.
    let reached = UdpCount::start(&site.attacker.ns, BRIDGE_IP);
    let mut attacker = Attacker::new(&site.attacker.ns);
    every_20ms(Duration::from_millis(400), |_| {
        attacker.spray_rtp(ATTACKER_SSRC)
    });
    let mut caller = endpoint_in(&site.ns.client, caller_at, CALLER_TONE, CALLER_SSRC, false);
    let mut other = endpoint_in(&site.ns.bridge, other_at, OTHER_TONE, 0x2222_0002, false);
    let (_, caller_port) = site.join(caller_at, true, "caller");
    let (_, other_port) = site.join(other_at, true, "other");
    let caller_to = SocketAddr::from((BRIDGE_IP, caller_port));
    let other_to = SocketAddr::from(([127, 0, 0, 1], other_port));
    // The attacker keeps spraying before the caller's first packet (it has the port range
    // to itself for 0.4 s more), then beside it, half the time with the caller's SSRC.
    let start = Instant::now();
    every_20ms(Duration::from_secs(6), |round| {
        attacker.spray_rtp(if round % 2 == 0 {
            ATTACKER_SSRC
        } else {
            CALLER_SSRC
        });
        if round >= 20 {
            caller.send_frame(caller_to);
        }
        other.send_frame(other_to);
        caller.receive();
        other.receive();
    });
    let end = Instant::now();
    // What arrives late is still counted.
    std::thread::sleep(Duration::from_millis(300));
    let (datagrams, bytes) = reached.stop();
    let dropped = site.dropped_foreign();
    eprintln!(
        "the attacker sent {} datagrams; the bridge sent it {datagrams} ({bytes} bytes); \
         the legs dropped {dropped} as foreign",
        attacker.sent
    );
    let window = (start + Duration::from_millis(1500), end);
    check_heard(
        "the caller",
        &caller,
        window,
        true,
        Some(OTHER_TONE),
        &[ATTACKER_TONE],
        &site,
    );
    check_heard(
        "the other participant",
        &other,
        window,
        true,
        Some(CALLER_TONE),
        &[ATTACKER_TONE],
        &site,
    );
    assert_eq!(
        (datagrams, bytes),
        (0, 0),
        "the bridge sent the attacker media\n{}",
        site.log()
    );
    // The spray reached the two legs' ports (about 6.4 s x 50 packets each): the refusal is
    // the latch's, not the network's.
    assert!(dropped >= 450, "the legs dropped only {dropped} as foreign");
}

#[test]
fn behind_a_nat_a_quiet_callers_leg_is_not_taken_by_another_ssrc() {
    if skip() {
        return;
    }
    let _turn = support::exclusive();
    let plan = natted("lb");
    // Beside the caller behind the same NAT: its packets come from the caller's public address.
    let site = Site::new(&plan, "192.168.77.66/24", &[]);
    let caller_at: SocketAddr = "192.168.77.2:30000".parse().unwrap();
    let other_at: SocketAddr = "127.0.0.1:30020".parse().unwrap();
    let reached = UdpCount::start(&site.attacker.ns, BRIDGE_IP);
    let mut attacker = Attacker::new(&site.attacker.ns);
    let mut caller = endpoint_in(&site.ns.client, caller_at, CALLER_TONE, CALLER_SSRC, false);
    let mut other = endpoint_in(&site.ns.bridge, other_at, OTHER_TONE, 0x2222_0002, false);
    let (_, caller_port) = site.join(caller_at, true, "caller");
    let (_, other_port) = site.join(other_at, true, "other");
    let caller_to = SocketAddr::from((BRIDGE_IP, caller_port));
    let other_to = SocketAddr::from(([127, 0, 0, 1], other_port));
    // 0-3 s: both talk (the caller is latched through the NAT). 3-7.5 s: the caller is silent,
    // longer than the re-latch time, and the attacker sends to every port with its own SSRC
    // from then on. 7.5-11 s: the caller talks again.
    let (quiet, back) = (150u32, 375u32);
    assert!(Duration::from_millis(20) * (back - quiet) > RELATCH + Duration::from_secs(2));
    let start = Instant::now();
    every_20ms(Duration::from_secs(11), |round| {
        caller.sending = !(quiet..back).contains(&round);
        if round >= quiet {
            attacker.spray_rtp(ATTACKER_SSRC);
        }
        caller.send_frame(caller_to);
        other.send_frame(other_to);
        caller.receive();
        other.receive();
    });
    let end = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let (datagrams, bytes) = reached.stop();
    let dropped = site.dropped_foreign();
    eprintln!(
        "the attacker sent {} datagrams; the bridge sent it {datagrams} ({bytes} bytes); \
         the legs dropped {dropped} as foreign",
        attacker.sent
    );
    let at = |round: u32| start + Duration::from_millis(20) * round;
    let margin = Duration::from_millis(700);
    check_heard(
        "the other, before the silence",
        &other,
        (start + Duration::from_millis(1000), at(quiet)),
        true,
        Some(CALLER_TONE),
        &[],
        &site,
    );
    check_heard(
        "the other, while the caller is silent",
        &other,
        (at(quiet) + margin, at(back)),
        false,
        None,
        &[ATTACKER_TONE],
        &site,
    );
    check_heard(
        "the other, after the caller is back",
        &other,
        (at(back) + margin, end),
        true,
        Some(CALLER_TONE),
        &[ATTACKER_TONE],
        &site,
    );
    // The caller hears the other throughout: the bridge kept sending to it, not to the
    // attacker (the same public address, another port).
    for (what, from, to) in [
        (
            "the caller, before its silence",
            start + Duration::from_millis(1000),
            at(quiet),
        ),
        ("the caller, while silent", at(quiet), at(back)),
        ("the caller, back", at(back), end),
    ] {
        check_heard(
            what,
            &caller,
            (from, to),
            true,
            Some(OTHER_TONE),
            &[ATTACKER_TONE],
            &site,
        );
    }
    assert_eq!(
        (datagrams, bytes),
        (0, 0),
        "the bridge sent the attacker media\n{}",
        site.log()
    );
    // The caller's leg refused the attacker's packets from the re-latch time on (and before,
    // as not from the latched address): about 8 s x 50 to each of the two legs.
    assert!(dropped >= 500, "the legs dropped only {dropped} as foreign");
}

#[test]
fn rtcp_from_an_attacker_does_not_keep_a_silent_callers_leg_alive() {
    if skip() {
        return;
    }
    let _turn = support::exclusive();
    const TIMEOUT: Duration = Duration::from_secs(3);
    let plan = routed("lc");
    let site = Site::new(&plan, "198.51.100.66/24", &["--media-timeout-secs", "3"]);
    // The victim and a control caller on the client host, each with RTCP on the port above
    // its RTP port (no rtcp-mux); the other participant talks throughout.
    let victim_at: SocketAddr = "198.51.100.2:30000".parse().unwrap();
    let control_at: SocketAddr = "198.51.100.2:30010".parse().unwrap();
    let other_at: SocketAddr = "127.0.0.1:30020".parse().unwrap();
    let reached = UdpCount::start(&site.attacker.ns, BRIDGE_IP);
    let mut attacker = Attacker::new(&site.attacker.ns);
    let mut victim = endpoint_in(&site.ns.client, victim_at, CALLER_TONE, CALLER_SSRC, true);
    let mut control = endpoint_in(&site.ns.client, control_at, 660.0, 0x3333_0003, true);
    let mut other = endpoint_in(&site.ns.bridge, other_at, OTHER_TONE, 0x2222_0002, false);
    let (victim_id, victim_port) = site.join(victim_at, false, "victim");
    let (control_id, control_port) = site.join(control_at, false, "control");
    let (other_id, other_port) = site.join(other_at, true, "other");
    let victim_to = SocketAddr::from((BRIDGE_IP, victim_port));
    let control_to = SocketAddr::from((BRIDGE_IP, control_port));
    let control_rtcp_to = SocketAddr::from((BRIDGE_IP, control_port + 1));
    let other_to = SocketAddr::from(([127, 0, 0, 1], other_port));
    let report = receiver_report(control.ssrc());
    // 1.5 s of RTP from all three; then the victim and the control caller stop sending RTP.
    // From then on the attacker sends a report as the victim every 100 ms to its RTCP port
    // and its RTP port; the control caller sends its own every 500 ms from its RTCP port.
    let talk = 75u32;
    let limit = Duration::from_millis(20 * u64::from(talk)) + TIMEOUT + Duration::from_secs(3);
    let start = Instant::now();
    let mut gone: Option<(Instant, Vec<Participant>)> = None;
    every_20ms(limit, |round| {
        victim.sending = round < talk;
        control.sending = round < talk;
        victim.send_frame(victim_to);
        control.send_frame(control_to);
        other.send_frame(other_to);
        victim.receive();
        control.receive();
        other.receive();
        if round >= talk && round % 5 == 0 {
            attacker.rtcp(CALLER_SSRC, victim_port + 1);
            attacker.rtcp(CALLER_SSRC, victim_port);
        }
        if round >= talk && round % 25 == 0 {
            control.send_rtcp(control_rtcp_to, &report);
        }
        if round >= talk && round % 10 == 0 && gone.is_none() {
            let roster = site.roster();
            if roster
                .iter()
                .any(|p| p.id == victim_id && p.state == "disconnected")
            {
                gone = Some((Instant::now(), roster));
            }
        }
    });
    let end = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let (datagrams, bytes) = reached.stop();
    let dropped = site.dropped_foreign();
    let quiet_since = start + Duration::from_millis(20 * u64::from(talk));
    let roster = site.roster();
    eprintln!(
        "the attacker sent {} reports; the bridge sent it {datagrams} datagrams; \
         the legs dropped {dropped} as foreign; roster at the end {roster:?}",
        attacker.sent
    );
    let (when, at_the_time) = gone.unwrap_or_else(|| {
        panic!(
            "the victim's leg was kept alive {:.1} s after its last RTP: {roster:?}\n{}",
            (end - quiet_since).as_secs_f64(),
            site.log()
        )
    });
    let after = when - quiet_since;
    eprintln!(
        "the victim's leg ended {:.2} s after its last RTP",
        after.as_secs_f64()
    );
    let victim = at_the_time.iter().find(|p| p.id == victim_id).unwrap();
    assert_eq!(victim.reason, "media-timeout", "{at_the_time:?}");
    // The roster is read every 200 ms; the mixer checks every 20 ms.
    assert!(
        after >= TIMEOUT - Duration::from_millis(100) && after <= TIMEOUT + Duration::from_secs(1),
        "ended {after:?} after the last RTP, the timeout is {TIMEOUT:?}"
    );
    // The control caller's own RTCP kept its leg alive past the timeout, and the other one
    // talked throughout: both still connected, and the silent control caller kept hearing it.
    for id in [&control_id, &other_id] {
        let p = roster.iter().find(|p| &p.id == id).unwrap();
        assert_eq!(p.state, "connected", "{id}: {roster:?}\n{}", site.log());
    }
    check_heard(
        "the control caller, silent, after the victim's end",
        &control,
        (when, end),
        true,
        Some(OTHER_TONE),
        &[],
        &site,
    );
    assert_eq!(
        (datagrams, bytes),
        (0, 0),
        "the bridge sent the attacker something\n{}",
        site.log()
    );
    // The victim's leg dropped the attacker's reports until it ended (10 a second to each of
    // two ports for about the timeout).
    assert!(dropped >= 40, "the legs dropped only {dropped} as foreign");
}
