//! The load generator on another host than the bridge: the bridge in a "bridge" namespace
//! (198.19.1.10, its API over HTTPS with a token, SIP and media on its address), the generator
//! in a "client" namespace (198.18.1.2) behind a router namespace that either routes
//! (198.18.1.1 | 198.19.1.1) or masquerades the generator as 198.19.1.1. In each, a short
//! bounded run through the API (over HTTPS, the certificate checked against the test CA) and
//! one by SIP dial-in, each of 6 participants for 4 s, must receive about what was sent, with
//! no error, and the bridge's /metrics must be read over HTTPS.
//!
//! Routed, the bridge's answers name an address that does not exist (`--media-advertise
//! 192.0.2.99`) and the generator sends to the real one (`bridge_media`); behind the NAT, the
//! API legs name the NAT's public address (`media_advertise`) and the SIP legs their own (the
//! bridge sees a NAT nobody rewrote and answers to it).
//!
//! Needs root, iproute2 and nftables: otherwise it says so and skips, unless
//! `CONFAB_REQUIRE_NETNS=1`.

use crate::support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use confab_loadtest::leg::Codec;
use confab_loadtest::{Options, Scenario, Summary, Target, http, run};
use support::netns::{self, Namespaces, Plan};
use support::pki::TestPki;

const BRIDGE_IP: &str = "198.19.1.10";
const TOKEN: &str = "netns-load-token";

fn plan(masquerade: bool) -> Plan {
    Plan {
        tag: if masquerade { "ln" } else { "lr" },
        client: "198.18.1.2/24",
        nat_inside: "198.18.1.1/24",
        nat_outside: "198.19.1.1/24",
        bridge: "198.19.1.10/24",
        masquerade,
    }
}

fn options(scenario: Scenario, ca: &std::path::Path, pid: u32) -> Options {
    Options {
        target: Target::Confab,
        scenario,
        api: format!("https://{BRIDGE_IP}:8443"),
        api_ca: Some(ca.to_owned()),
        token: Some(TOKEN.into()),
        sip: format!("{BRIDGE_IP}:5060").parse().unwrap(),
        pid: Some(pid),
        codec: Codec::Pcmu,
        rooms: 2,
        room_size: 3,
        talkers: 1,
        duration: Duration::from_secs(4),
        warmup: Duration::from_secs(2),
        max_participants: 6,
        threads: 1,
        ..Options::default()
    }
}

/// Runs the generator on a thread inside the client namespace.
fn run_in(ns: &str, o: Options) -> Summary {
    let what = format!("{:?} {:?}", o.scenario, o.media_advertise);
    netns::in_namespace(ns, move || run(&o))
        .unwrap_or_else(|e| panic!("{what}: the run failed: {e:#}"))
}

/// What every run across namespaces must show (also the IPv6 test's).
pub(crate) fn check(name: &str, s: &Summary, log: &dyn Fn() -> String) {
    assert_eq!((s.participants, s.rooms), (6, 2), "{name}: {s:?}");
    assert!(
        s.rx_ratio > 0.97 && s.rx_ratio <= 1.01,
        "{name}: received/expected {:.4}\n{}",
        s.rx_ratio,
        log()
    );
    assert!(s.gaps <= 2, "{name}: {} sequence gaps", s.gaps);
    // Each room's clicker heard by its two listeners over 4 s.
    assert!(
        s.latency_ms.samples >= 8,
        "{name}: {} clicks",
        s.latency_ms.samples
    );
    // The bridge's own figures came over HTTPS, and it kept up.
    assert_eq!(s.late_ticks, Some(0.0), "{name}: {s:?}");
    assert!(s.max_load_ratio.is_some(), "{name}: no /metrics");
    assert!(s.bridge_cpu_percent.is_some(), "{name}: no CPU figure");
}

#[test]
fn the_load_generator_runs_against_a_bridge_on_another_host_routed_and_through_a_nat() {
    if netns::skip(&[]) {
        return;
    }
    let _turn = support::exclusive();
    let pki = TestPki::new(&[BRIDGE_IP]);
    for masquerade in [false, true] {
        let name = if masquerade { "NAT" } else { "routed" };
        let started = Instant::now();
        let ns = Namespaces::new(&plan(masquerade));
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_owned();
        let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
        let mut args = vec![
            "--sip-listen",
            "198.19.1.10:5060",
            "--media-bind",
            BRIDGE_IP,
            "--sip-trusted",
            "198.18.0.0/15",
            "--api-listen",
            "198.19.1.10:8443",
            "--api-tls-cert",
            cert,
            "--api-tls-key",
            key,
            "--api-token",
            TOKEN,
            "--webrtc-listen",
            "127.0.0.1:0",
            "--mixer-threads",
            "1",
        ];
        if !masquerade {
            args.extend(["--media-advertise", "192.0.2.99"]);
        }
        let bridge = netns::start_bridge(&ns.bridge, &data, &args);
        let pid = bridge.0.id();
        let log = || std::fs::read_to_string(data.join("confab.log")).unwrap_or_default();
        let tune = |mut o: Options| {
            if masquerade {
                o.media_advertise = Some("198.19.1.1".parse::<IpAddr>().unwrap());
            } else {
                o.bridge_media = Some(BRIDGE_IP.parse().unwrap());
            }
            o
        };
        let api = run_in(&ns.client, tune(options(Scenario::Meetings, &pki.ca, pid)));
        check(&format!("{name}, API over HTTPS"), &api, &log);
        // SIP dial-in: behind the NAT the legs name their own address and the bridge finds
        // the NAT from the Via.
        let mut o = options(Scenario::Dialin, &pki.ca, pid);
        if !masquerade {
            o.bridge_media = Some(BRIDGE_IP.parse().unwrap());
        }
        let sip = run_in(&ns.client, o);
        check(&format!("{name}, SIP"), &sip, &log);
        // Everything the runs made is gone (read over HTTPS from the client namespace).
        let ca = pki.ca.clone();
        let (status, body) = netns::in_namespace(&ns.client, move || {
            let (api, _) = http::endpoint(&format!("https://{BRIDGE_IP}:8443"), Some(&ca)).unwrap();
            http::request(&api, "GET", "/v1/conferences", None, Some(TOKEN)).unwrap()
        });
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["conferences"].as_array().map(Vec::len),
            Some(0),
            "{name}: {v}"
        );
        eprintln!(
            "{name}: API rx {:.4} (p50 {:?} ms), SIP rx {:.4}, {:.1} s",
            api.rx_ratio,
            api.latency_ms.p50,
            sip.rx_ratio,
            started.elapsed().as_secs_f64()
        );
        drop(bridge);
    }
}

#[test]
fn an_api_certificate_from_another_ca_is_refused() {
    if netns::skip(&[]) {
        return;
    }
    let _turn = support::exclusive();
    let pki = TestPki::new(&[BRIDGE_IP]);
    let other = TestPki::new(&[BRIDGE_IP]);
    let ns = Namespaces::new(&plan(false));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let _bridge = netns::start_bridge(
        &ns.bridge,
        dir.path(),
        &[
            "--sip-listen",
            "198.19.1.10:5060",
            "--media-bind",
            BRIDGE_IP,
            "--api-listen",
            "198.19.1.10:8443",
            "--api-tls-cert",
            cert,
            "--api-tls-key",
            key,
            "--api-token",
            TOKEN,
            "--webrtc-listen",
            "127.0.0.1:0",
        ],
    );
    let ca = other.ca.clone();
    let err = netns::in_namespace(&ns.client, move || {
        let mut o = options(Scenario::Meetings, &ca, 0);
        o.pid = None;
        run(&o).map(|_| ()).unwrap_err()
    });
    let text = format!("{err:#}");
    assert!(
        text.contains("certificate") || text.contains("UnknownIssuer"),
        "{text}"
    );
}
