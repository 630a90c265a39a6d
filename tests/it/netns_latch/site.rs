//! The hosts and the bridge of one latch test, and how the test reads them: joining by an SDP
//! offer POSTed to the API, the roster, the bridge's count of foreign packets, and what an
//! endpoint heard in a window of time, checked for tones.

use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use confab::media::codec::Codec;

use super::{MEETING, PORT_MAX, PORT_MIN};
use crate::support::clients::{absent, describe, present, tone_shares};
use crate::support::netns::{self, Namespaces, Neighbour, Plan};
use crate::support::netns_bridge::{self, BridgeApi, Participant};
use crate::support::process::Guarded;
use crate::support::{self, Endpoint};

/// The hosts and the bridge of one test; dropped in this order (the bridge stopped, then the
/// attacker's namespace and the others deleted), pass or fail.
pub(super) struct Site {
    _bridge: Guarded,
    pub(super) attacker: Neighbour,
    pub(super) ns: Namespaces,
    data: tempfile::TempDir,
}

impl Site {
    /// The namespaces, an attacker at `attacker` beside the client, and a bridge (media on
    /// every address, ports `PORT_MIN` to `PORT_MAX`, `extra` arguments) with the meeting created.
    pub(super) fn new(plan: &Plan, attacker: &str, extra: &[&str]) -> Site {
        let ns = Namespaces::new(plan);
        let attacker = ns.neighbour(plan, attacker);
        let data = tempfile::tempdir().unwrap();
        let (min, max) = (PORT_MIN.to_string(), PORT_MAX.to_string());
        let mut args = netns_bridge::serve_args("127.0.0.1:5060", "0.0.0.0");
        args.extend(["--media-rtp-port-min", &min, "--media-rtp-port-max", &max]);
        args.extend_from_slice(extra);
        let bridge = netns::start_bridge(&ns.bridge, data.path(), &args);
        let site = Site {
            _bridge: bridge,
            attacker,
            ns,
            data,
        };
        site.api().create_meeting(MEETING);
        site
    }

    /// The bridge's API (on its loopback).
    fn api(&self) -> BridgeApi<'_> {
        BridgeApi::new(&self.ns.bridge)
    }

    pub(super) fn log(&self) -> String {
        netns_bridge::log(self.data.path())
    }

    /// `e` joins the meeting by an offer naming `named` (plain PCMU; rtcp-mux or RTCP on the
    /// port above): its participant id and the bridge's RTP port for it.
    pub(super) fn join(&self, named: SocketAddr, rtcp_mux: bool, who: &str) -> (String, u16) {
        let ip = named.ip();
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{}",
            named.port(),
            if rtcp_mux { "a=rtcp-mux\r\n" } else { "" }
        );
        let body = serde_json::json!({ "sdp": offer, "display_name": who }).to_string();
        let (status, reply) = self.api().request(
            "POST",
            &format!("/v1/conferences/{MEETING}/participants"),
            &body,
        );
        assert_eq!(status, 201, "{who}: {reply}");
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        let id = v["participant"]["id"].as_str().unwrap().to_owned();
        (id, support::media_of(v["sdp"].as_str().unwrap()).port())
    }

    /// The meeting's roster.
    pub(super) fn roster(&self) -> Vec<Participant> {
        self.api().roster(MEETING)
    }

    /// Packets the legs dropped as from a source they do not take media from (all legs, ended
    /// ones too), from /metrics.
    pub(super) fn dropped_foreign(&self) -> u64 {
        let (status, body) = self.api().request("GET", "/metrics", "");
        assert_eq!(status, 200, "{body}");
        body.lines()
            .find(|l| {
                l.starts_with("confab_dropped_packets") && l.contains("reason=\"foreign-source\"")
            })
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no foreign-source count in /metrics:\n{body}"))
            as u64
    }
}

/// A PCMU endpoint sending `tone` from `at` inside namespace `ns` (with an RTCP socket on the
/// port above when `rtcp`).
pub(super) fn endpoint_in(ns: &str, at: SocketAddr, tone: f32, ssrc: u32, rtcp: bool) -> Endpoint {
    let mut e = Endpoint::new(Codec::Pcmu, tone, -20.0, ssrc);
    let (rtp, rtcp) = netns::in_namespace(ns, move || {
        let rtp = UdpSocket::bind(at).unwrap();
        let rtcp = rtcp.then(|| UdpSocket::bind(SocketAddr::new(at.ip(), at.port() + 1)).unwrap());
        (rtp, rtcp)
    });
    rtp.set_nonblocking(true).unwrap();
    if let Some(s) = &rtcp {
        s.set_nonblocking(true).unwrap();
    }
    e.socket = rtp;
    e.rtcp_socket = rtcp;
    e
}

/// What `e` heard in packets that arrived between `from` and `to`.
fn heard_between(e: &Endpoint, from: Instant, to: Instant) -> Vec<i16> {
    let mut start = 0;
    let mut out = Vec::new();
    for &(at, end) in &e.heard_at {
        if at >= from && at < to {
            out.extend_from_slice(&e.heard[start..end]);
        }
        start = end;
    }
    out
}

/// Checks what `e` heard between `from` and `to`: at least 90 % of the samples that long
/// (when `full`), `expect` present (if any) and every tone of `not` absent.
#[allow(clippy::too_many_arguments)]
pub(super) fn check_heard(
    what: &str,
    e: &Endpoint,
    (from, to): (Instant, Instant),
    full: bool,
    expect: Option<f32>,
    not: &[f32],
    site: &Site,
) {
    let window = heard_between(e, from, to);
    let expected = (to - from).as_secs_f64() * 8000.0;
    let mut said = format!("{what}: {} samples of {expected:.0}", window.len());
    let mut ok = !full || window.len() as f64 >= 0.9 * expected;
    if let Some(f) = expect {
        let shares = tone_shares(&window, 8000, f);
        said += &format!(", {f} Hz {}", describe(&shares));
        ok &= present(&shares);
    }
    for &f in not {
        let shares = tone_shares(&window, 8000, f);
        said += &format!(", {f} Hz {}", describe(&shares));
        ok &= absent(&shares);
    }
    eprintln!("{said}");
    assert!(ok, "{said}\nbridge:\n{}", site.log());
}
