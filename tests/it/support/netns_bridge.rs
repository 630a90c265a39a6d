//! `confab serve` in a test's bridge namespace as the netns tests (netns_latch, netns_nat) run
//! and reach it: the arguments they all give it, its HTTP API on the namespace's loopback, the
//! meeting each test calls, the roster they read and the log they print when a check fails.
//! Both files had written these apart; here they cannot drift from each other.

use std::path::Path;

use super::netns;
use super::wire_scan;

/// Where the bridge takes its API, on its namespace's loopback.
pub const API_LISTEN: &str = "127.0.0.1:8080";

/// The arguments of every bridge here: SIP on `sip`, media bound to `media`, the API on
/// `API_LISTEN`, WebRTC on a free loopback port (no test here uses it) and one mixer thread.
pub fn serve_args<'a>(sip: &'a str, media: &'a str) -> Vec<&'a str> {
    vec![
        "--sip-listen",
        sip,
        "--media-bind",
        media,
        "--api-listen",
        API_LISTEN,
        "--webrtc-listen",
        "127.0.0.1:0",
        "--mixer-threads",
        "1",
    ]
}

/// What the bridge in `data` logged (`netns::start_bridge` logs to `data/confab.log`).
pub fn log(data: &Path) -> String {
    std::fs::read_to_string(data.join("confab.log")).unwrap_or_default()
}

/// One row of a meeting's roster.
#[derive(Clone, Debug)]
pub struct Participant {
    pub id: String,
    pub state: String,
    /// Why it was disconnected (`hangup`, `media-timeout`, ...); empty while connected.
    pub reason: String,
    pub on_hold: bool,
    /// Whether its media is SRTP.
    pub srtp: bool,
}

/// The API of the bridge in namespace `ns`, each request made from inside the namespace.
pub struct BridgeApi<'a> {
    ns: &'a str,
    /// Every answer goes through the wire scan (an SDP in it must not name 0.0.0.0 or ::).
    scanned: bool,
}

impl<'a> BridgeApi<'a> {
    pub fn new(ns: &'a str) -> Self {
        BridgeApi { ns, scanned: false }
    }

    /// The same, with every answer checked by the wire scan.
    pub fn scanned(ns: &'a str) -> Self {
        BridgeApi { ns, scanned: true }
    }

    /// A request: its status and body.
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let (status, answer) =
            netns::http(self.ns, API_LISTEN.parse().unwrap(), method, path, body);
        if self.scanned {
            let problems = wire_scan::scan_http_body(&answer);
            assert!(problems.is_empty(), "{problems:?} in:\n{answer}");
        }
        (status, answer)
    }

    /// Creates meeting `id`.
    pub fn create_meeting(&self, id: &str) {
        let (status, body) =
            self.request("POST", "/v1/conferences", &format!("{{\"id\":\"{id}\"}}"));
        assert_eq!(status, 201, "{body}");
    }

    /// The roster of meeting `id`.
    pub fn roster(&self, id: &str) -> Vec<Participant> {
        let (status, body) = self.request("GET", &format!("/v1/conferences/{id}"), "");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let text = |p: &serde_json::Value| p.as_str().unwrap_or_default().to_owned();
        v["participants"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| Participant {
                id: text(&p["id"]),
                state: text(&p["state"]),
                reason: text(&p["disconnect_reason"]),
                on_hold: p["on_hold"].as_bool().unwrap_or(false),
                srtp: p["media"]["srtp"].as_bool().unwrap_or(false),
            })
            .collect()
    }
}
