//! Real hosts and a real NAT, in network namespaces this test makes itself: baresip phones in
//! a "client" namespace (198.51.100.2) call a meeting on a bridge in a "bridge" namespace
//! (203.0.113.10) through a "nat" namespace that masquerades them as 203.0.113.1. The phones
//! name their private address everywhere (Via, Contact, SDP) and nothing rewrites it, as with a
//! home router.
//!
//! - Two phones must hear each other (two-way audio through the NAT, measured on what baresip
//!   decoded); one call ends by the bridge's BYE (eject) and the other by the phone's; for each
//!   way of binding and advertising the bridge's addresses in `COMBINATIONS`.
//! - The same over SIP on TLS with SDES-SRTP (the bridge's certificate from a test CA).
//! - Hold and resume: a phone puts its call on hold (`/hold`, a sendonly re-INVITE through the
//!   NAT) and takes it back (`/resume`); both directions carry the other's audio before and
//!   after, and neither while it is held (what reaches the held phone is read off the wire in
//!   its namespace: baresip stops recording after a re-INVITE).
//!
//! Every SIP message the bridge sends in its namespace goes through the suite's wire scan (no
//! SDP or Contact of ours names 0.0.0.0 or ::, the wildcard binds above included), checked when
//! its guard stops it, and so does every SDP the API answers with.
//!
//! Needs root (namespaces), iproute2, nftables, baresip and sox. Without them it says what is
//! missing and skips, unless `CONFAB_REQUIRE_NETNS=1` (then a skip is a failure).
//!
//! The scenarios are here; the bridge (its SIP scanned, its API, the roster) is in
//! `scanned_bridge`, the phones in `phone`, and how a bridge in a namespace is started and
//! asked (shared with netns_latch) in `support::netns_bridge`.

mod phone;
mod scanned_bridge;

use crate::support;
use phone::{Way, heard, phone, phone_log, type_command};
use scanned_bridge::{api, bridge_with_meeting, participants, wait_for_roster};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::clients::{absent, describe, present, tone_shares};
use support::netns::{self, Namespaces, Plan, Tap};
use support::netns_bridge::{self, Participant};
use support::pki::TestPki;
use support::process::Guarded;

const BRIDGE_IP: &str = "203.0.113.10";
const CLIENT_IP: &str = "198.51.100.2";
const MEETING: &str = "4455";
const TONES: [f32; 2] = [440.0, 880.0];

/// How the bridge binds and what it advertises: (name, sip.listen, media.bind, advertise).
const COMBINATIONS: [(&str, &str, &str, Option<&str>); 3] = [
    (
        "wildcard bind, nothing advertised",
        "0.0.0.0:5060",
        "0.0.0.0",
        None,
    ),
    (
        "bound to its address",
        "203.0.113.10:5060",
        "203.0.113.10",
        None,
    ),
    (
        "wildcard bind, advertised",
        "0.0.0.0:5060",
        "0.0.0.0",
        Some(BRIDGE_IP),
    ),
];

const PLAN: Plan = Plan {
    tag: "cf",
    client: "198.51.100.2/24",
    nat_inside: "198.51.100.1/24",
    nat_outside: "203.0.113.1/24",
    bridge: "203.0.113.10/24",
    masquerade: true,
};

/// Skips (or fails, with `CONFAB_REQUIRE_NETNS`) without root, iproute2, nftables, baresip.
fn skip() -> bool {
    netns::skip(&[("baresip", "baresip-core"), ("sox", "sox")])
}

/// The bridge's log and both phones', for a failed check.
fn bridge_and_phone_logs(data: &Path, dirs: &[PathBuf]) -> String {
    format!(
        "bridge:\n{}\nphones:\n{}\n----\n{}",
        netns_bridge::log(data),
        phone_log(&dirs[0]),
        phone_log(&dirs[1])
    )
}

/// Two phones call through the NAT (over `way`); each must hear the other; phone 0 hangs up
/// by itself and the bridge ejects phone 1 (its BYE must reach the phone through the NAT).
fn two_phones_talk(
    name: &str,
    ns: &Namespaces,
    dir: &Path,
    data: &Path,
    target: &str,
    way: Way<'_>,
) {
    let dirs: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("p{i}"))).collect();
    // Phone 1 stays on until the bridge ejects it; phone 0 hangs up by itself first.
    let mut phones: Vec<Guarded> = vec![
        phone(ns, &dirs[0], 0, target, 8, way),
        phone(ns, &dirs[1], 1, target, 30, way),
    ];
    let logs = || bridge_and_phone_logs(data, &dirs);
    std::thread::sleep(Duration::from_secs(5));
    let roster = participants(ns);
    assert_eq!(
        roster.iter().filter(|p| p.state == "connected").count(),
        2,
        "{name}: {roster:?}\n{}",
        logs()
    );
    if way.tls_ca.is_some() {
        assert!(
            roster.iter().all(|p| p.srtp),
            "{name}: not every leg is SRTP: {roster:?}"
        );
    }
    // Phone 0 quits after 8 s with a BYE from behind the NAT.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !phones[0].exited() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let roster = wait_for_roster(ns, Duration::from_secs(3), |r| {
        r.iter().filter(|p| p.reason == "hangup").count() == 1
    });
    assert_eq!(
        roster.iter().filter(|p| p.reason == "hangup").count(),
        1,
        "{name}: phone 0's BYE: {roster:?}\n{}",
        logs()
    );
    // The bridge ejects phone 1: its BYE must reach the phone through the NAT.
    let Participant { id, .. } = roster
        .iter()
        .find(|p| p.state == "connected")
        .cloned()
        .unwrap_or_else(|| panic!("{name}: {roster:?}"));
    let (status, body) = api(ns).request(
        "DELETE",
        &format!("/v1/conferences/{MEETING}/participants/{id}"),
        "",
    );
    assert!(
        status == 200 || status == 204,
        "{name}: eject: {status} {body}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let closed = loop {
        let log = phone_log(&dirs[1]);
        if log.contains("session closed") || log.contains("terminated") {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        closed,
        "{name}: the bridge's BYE did not reach phone 1\n{}",
        logs()
    );
    drop(phones.drain(..));
    // Two-way audio through the NAT: each heard the other's tone, measured on what baresip
    // decoded, over the seconds both were in the call.
    for (i, d) in dirs.iter().enumerate() {
        let (rate, samples) = heard(d);
        let from = rate as usize;
        let to = (6 * rate as usize).min(samples.len());
        assert!(
            to > from + rate as usize,
            "{name}: phone {i} recorded {} samples",
            samples.len()
        );
        let window = &samples[from..to];
        let other = confab_dsp::signal::tone_level_dbov(window, rate, TONES[1 - i]);
        let own = confab_dsp::signal::tone_level_dbov(window, rate, TONES[i]);
        assert!(
            other > -30.0 && own < other - 20.0,
            "{name}: phone {i} heard the other at {other:.1} dBov and itself at {own:.1}\n{}",
            logs()
        );
    }
}

#[test]
fn phones_behind_a_nat_talk_through_the_bridge_for_every_bind_and_advertise_combination() {
    if skip() {
        return;
    }
    let _turn = support::exclusive();
    for (name, sip, media, advertise) in COMBINATIONS {
        let ns = Namespaces::new(&PLAN);
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let _bridge = bridge_with_meeting(&ns, &data, (sip, media, advertise), &[]);
        let target = format!("sip:{MEETING}@{BRIDGE_IP}:5060");
        two_phones_talk(name, &ns, dir.path(), &data, &target, Way::default());
    }
}

#[test]
fn phones_behind_a_nat_talk_over_sip_on_tls_with_srtp() {
    if skip() {
        return;
    }
    let _turn = support::exclusive();
    let pki = TestPki::new(&[BRIDGE_IP]);
    let ns = Namespaces::new(&PLAN);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let _bridge = bridge_with_meeting(
        &ns,
        &data,
        (COMBINATIONS[0].1, COMBINATIONS[0].2, COMBINATIONS[0].3),
        &["--sip-tls-cert", cert, "--sip-tls-key", key],
    );
    let target = format!("sip:{MEETING}@{BRIDGE_IP}:5061;transport=tls");
    let way = Way {
        interactive: false,
        tls_ca: Some(&pki.ca),
    };
    two_phones_talk("TLS and SRTP", &ns, dir.path(), &data, &target, way);
    let log = netns_bridge::log(&data);
    assert!(!log.contains("panicked"), "{log}");
}

/// The samples of `packets` that arrived between `from` and `to`.
fn arrived(packets: &[(Instant, Vec<i16>)], from: Instant, to: Instant) -> Vec<i16> {
    packets
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .flat_map(|(_, s)| s.iter().copied())
        .collect()
}

#[test]
fn a_phone_behind_a_nat_holds_and_resumes() {
    if skip() {
        return;
    }
    let _turn = support::exclusive();
    let ns = Namespaces::new(&PLAN);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (_, sip, media, advertise) = COMBINATIONS[0];
    let _bridge = bridge_with_meeting(&ns, &data, (sip, media, advertise), &[]);
    let target = format!("sip:{MEETING}@{BRIDGE_IP}:5060");
    // What reaches phone 0 (its RTP ports), read off the wire in the client namespace.
    let tap = Tap::start(&ns.client, 30000..30010);
    let dirs: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("p{i}"))).collect();
    let interactive = Way {
        interactive: true,
        tls_ca: None,
    };
    let mut phones = [
        phone(&ns, &dirs[0], 0, &target, 40, interactive),
        phone(&ns, &dirs[1], 1, &target, 40, Way::default()),
    ];
    let logs = || bridge_and_phone_logs(&data, &dirs);
    let connected = |r: &[Participant]| r.iter().filter(|p| p.state == "connected").count() == 2;
    let roster = wait_for_roster(&ns, Duration::from_secs(10), connected);
    assert!(connected(&roster), "{roster:?}\n{}", logs());
    // Phone 1's recording starts about when it is connected.
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    type_command(&mut phones[0], "/hold");
    let held = |r: &[Participant]| r.iter().filter(|p| p.on_hold).count() == 1;
    let roster = wait_for_roster(&ns, Duration::from_secs(5), held);
    assert!(held(&roster), "not on hold: {roster:?}\n{}", logs());
    let hold = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    // The hold's window ends as the phone asks to resume: the bridge may send again before
    // the roster poll below sees it.
    let resuming = Instant::now();
    type_command(&mut phones[0], "/resume");
    let resumed = |r: &[Participant]| connected(r) && r.iter().all(|p| !p.on_hold);
    let roster = wait_for_roster(&ns, Duration::from_secs(5), resumed);
    assert!(resumed(&roster), "not resumed: {roster:?}\n{}", logs());
    let resume = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let end = Instant::now();
    let packets = tap.stop();
    let roster = participants(&ns);
    assert!(connected(&roster), "a call ended: {roster:?}\n{}", logs());
    drop(phones);

    let margin = Duration::from_millis(1200);
    let windows = [
        ("before the hold", start + margin, hold),
        ("on hold", hold + margin, resuming),
        (
            "after the resume",
            resume + margin + Duration::from_millis(500),
            end,
        ),
    ];
    // Phone 1 (never held; baresip records it throughout): phone 0's tone, then none, then
    // the tone again.
    let (rate, samples) = heard(&dirs[1]);
    let at = |t: Instant| ((t - start).as_secs_f64() * f64::from(rate)) as usize;
    for (i, (what, from, to)) in windows.iter().enumerate() {
        let window = &samples[at(*from).min(samples.len())..at(*to).min(samples.len())];
        assert!(
            window.len() >= rate as usize,
            "phone 1 recorded {} samples in all\n{}",
            samples.len(),
            logs()
        );
        let shares = tone_shares(window, rate, TONES[0]);
        eprintln!("phone 1 {what}: phone 0's tone {}", describe(&shares));
        let ok = if i == 1 {
            absent(&shares)
        } else {
            present(&shares)
        };
        assert!(
            ok,
            "phone 1, {what}: phone 0's tone {}\n{}",
            describe(&shares),
            logs()
        );
    }
    // Phone 0 (what reached it through the NAT): phone 1's tone, then none, then the tone
    // again; never its own.
    for (i, (what, from, to)) in windows.iter().enumerate() {
        let window = arrived(&packets, *from, *to);
        let other = tone_shares(&window, 8000, TONES[1]);
        let own = tone_shares(&window, 8000, TONES[0]);
        eprintln!(
            "phone 0 {what}: {} samples, phone 1's tone {}, its own {}",
            window.len(),
            describe(&other),
            describe(&own)
        );
        if i == 1 {
            // Nothing at all: a phone on hold is sent no RTP (less than 0.1 s of audio, for
            // what was in flight as the hold began).
            assert!(
                window.len() < 800,
                "phone 0 on hold was sent {} samples (phone 1's tone {})\n{}",
                window.len(),
                describe(&other),
                logs()
            );
        } else {
            assert!(
                window.len() >= 8000 && present(&other) && absent(&own),
                "phone 0, {what}: {} samples, phone 1's tone {}, its own {}\n{}",
                window.len(),
                describe(&other),
                describe(&own),
                logs()
            );
        }
    }
}
