//! IPv6 across hosts: the bridge in a "bridge" namespace with SIP and media on 2001:db8:19::10,
//! the load generator in a "client" namespace on 2001:db8:18::2, a router namespace between
//! them forwarding IPv6 (no NAT). The API is reached over IPv4 on the same links. A short
//! bounded run by SIP dial-in and one through the API, each of 6 participants for 4 s, must
//! receive about what was sent: the bridge's SDP (`c=IN IP6`), its Via and Contact handling and
//! its media sockets all work with a global IPv6 address on another host, not only on ::1, bound
//! to that address or to the IPv6 wildcard.
//!
//! Needs root, iproute2 and nftables: otherwise it says so and skips, unless
//! `CONFAB_REQUIRE_NETNS=1`.

use crate::support;

use std::time::Duration;

use confab_loadtest::leg::Codec;
use confab_loadtest::{Options, Scenario, Target, run};

use crate::loadtest_netns::check;
use support::netns::{self, Namespaces, Plan, Plan6};

const BRIDGE_V4: &str = "198.19.1.10";
const BRIDGE_V6: &str = "2001:db8:19::10";
const CLIENT_V6: &str = "2001:db8:18::2";
const TOKEN: &str = "netns-ipv6-token";

fn options(scenario: Scenario, pid: u32) -> Options {
    Options {
        target: Target::Confab,
        scenario,
        api: format!("http://{BRIDGE_V4}:8080"),
        token: Some(TOKEN.into()),
        sip: format!("[{BRIDGE_V6}]:5060").parse().unwrap(),
        bind: Some(CLIENT_V6.parse().unwrap()),
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

#[test]
fn the_load_generator_reaches_a_bridge_on_another_host_over_ipv6() {
    if netns::skip(&[]) {
        return;
    }
    let _turn = support::exclusive();
    let ns = Namespaces::new(&Plan {
        tag: "l6",
        client: "198.18.1.2/24",
        nat_inside: "198.18.1.1/24",
        nat_outside: "198.19.1.1/24",
        bridge: "198.19.1.10/24",
        masquerade: false,
    });
    ns.add_ipv6(&Plan6 {
        client: "2001:db8:18::2/64",
        client_network: "2001:db8:18::/64",
        nat_inside: "2001:db8:18::1/64",
        nat_outside: "2001:db8:19::1/64",
        bridge: "2001:db8:19::10/64",
    });
    // Bound to its address, then to the IPv6 wildcard: unset, the address it names in Via,
    // Contact and SDP is the one that routes to each peer, never `::` (media sent there would
    // go nowhere and the run would receive nothing).
    for (sip_listen, media_bind) in [("[2001:db8:19::10]:5060", BRIDGE_V6), ("[::]:5060", "::")] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_owned();
        let bridge = netns::start_bridge(
            &ns.bridge,
            &data,
            &[
                "--sip-listen",
                sip_listen,
                "--media-bind",
                media_bind,
                "--sip-trusted",
                "2001:db8:18::/64",
                "--api-listen",
                "198.19.1.10:8080",
                "--api-token",
                TOKEN,
                "--webrtc-listen",
                "127.0.0.1:0",
                "--mixer-threads",
                "1",
            ],
        );
        let pid = bridge.0.id();
        let log = || std::fs::read_to_string(data.join("confab.log")).unwrap_or_default();
        for (way, scenario) in [("SIP", Scenario::Dialin), ("API", Scenario::Meetings)] {
            let name = format!("{way}, bound to {sip_listen}");
            let o = options(scenario, pid);
            let s = netns::in_namespace(&ns.client, move || run(&o))
                .unwrap_or_else(|e| panic!("{name}: the run failed: {e:#}\n{}", log()));
            check(&name, &s, &log);
            eprintln!(
                "IPv6 {name}: rx {:.4}, p50 {:?} ms",
                s.rx_ratio, s.latency_ms.p50
            );
        }
        drop(bridge);
    }
}
