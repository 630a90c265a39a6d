//! The bridge over IPv6: SIP dial-ins and their media on [::1] (SDP `c=IN IP6`, bracketed
//! addresses in Via, Contact and request URIs), plain RTP and SDES-SRTP, driven by the load
//! generator's own SIP client and legs. A bridge that named an IPv4 address or a bare IPv6 one
//! anywhere would get no media back (its sockets are bound to ::1 only), so the received
//! figures prove the addressing.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use confab_loadtest::leg::Codec;
use confab_loadtest::{Options, Scenario, Target, run};
use support::server::{Server, free_port};

#[test]
fn dial_ins_over_ipv6_are_mixed_as_ipv4_ones_are() {
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let sip: SocketAddr = format!("[::1]:{}", free_port()).parse().unwrap();
    // The generator's SIP is cleartext on loopback: its SRTP joins need SDES allowed there.
    let server = Server::start_on(
        data.path(),
        None,
        sip,
        &["--media-bind", "::1", "--media-sdes-over-cleartext", "true"],
    );
    for srtp in [false, true] {
        let o = Options {
            target: Target::Confab,
            scenario: Scenario::Dialin,
            api: format!("http://{}", server.api),
            sip: server.sip,
            bind: Some("::1".parse().unwrap()),
            pid: Some(server.pid()),
            codec: Codec::Pcmu,
            rooms: 1,
            room_size: 10,
            talkers: 3,
            duration: Duration::from_secs(8),
            warmup: Duration::from_secs(2),
            max_participants: 10,
            threads: 1,
            srtp,
            ..Options::default()
        };
        let d = run(&o).unwrap();
        assert_eq!(d.participants, 10, "srtp {srtp}");
        // A packet that failed to authenticate or went to the wrong address would not count.
        assert!(
            d.rx_ratio > 0.97 && d.rx_ratio <= 1.01,
            "srtp {srtp}: {d:?}"
        );
        assert!(
            d.latency_ms.samples > 40,
            "srtp {srtp}: {} clicks",
            d.latency_ms.samples
        );
    }
    server.stop();
}
