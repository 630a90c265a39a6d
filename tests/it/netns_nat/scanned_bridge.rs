//! The bridge of the NAT tests, in its namespace: started with a trace of every SIP message it
//! sends, scanned when it stops (no SDP or Contact of ours may name 0.0.0.0 or ::), the meeting
//! the phones call, and its API, whose every answer goes through the same scan.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::MEETING;
use crate::support::netns::{self, Namespaces};
use crate::support::netns_bridge::{self, BridgeApi, Participant};
use crate::support::process::Guarded;
use crate::support::wire_scan::{self, WireLog};

/// The API of the bridge in `ns`; an SDP in an answer goes through the wire scan.
pub(super) fn api(ns: &Namespaces) -> BridgeApi<'_> {
    BridgeApi::scanned(&ns.bridge)
}

/// The bridge in its namespace, logging every SIP message it sends; stopped on drop, then what
/// it sent is scanned (a test fails there if any of it named an unspecified address).
pub(super) struct ScannedBridge {
    bridge: Option<Guarded>,
    log: PathBuf,
}

impl ScannedBridge {
    /// The scan of what it sent so far: how many messages, or what was wrong.
    fn scan(&self) -> WireLog {
        let wire = WireLog::default();
        for line in std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
        {
            wire.feed_line(line);
        }
        wire
    }
}

impl Drop for ScannedBridge {
    fn drop(&mut self) {
        drop(self.bridge.take());
        let wire = self.scan();
        // Every test here places calls: nothing scanned means the wire trace was off.
        if wire.verdict() == Ok(0) && !std::thread::panicking() {
            panic!("the bridge in its namespace logged no SIP message to scan");
        }
        wire.check("the bridge in its namespace");
    }
}

/// The bridge in its namespace: SIP on `sip`, media on `media`, advertising `advertise`, with
/// `extra` arguments.
fn start_bridge(
    ns: &Namespaces,
    data: &Path,
    sip: &str,
    media: &str,
    advertise: Option<&str>,
    extra: &[&str],
) -> ScannedBridge {
    let mut args = vec!["--log-level", wire_scan::TRACE_FILTER];
    args.extend(netns_bridge::serve_args(sip, media));
    args.extend(["--sip-trusted", "203.0.113.0/24"]);
    if let Some(ip) = advertise {
        args.extend(["--sip-advertise", ip, "--media-advertise", ip]);
    }
    args.extend_from_slice(extra);
    ScannedBridge {
        bridge: Some(netns::start_bridge(&ns.bridge, data, &args)),
        log: data.join("confab.log"),
    }
}

/// The meeting's roster.
pub(super) fn participants(ns: &Namespaces) -> Vec<Participant> {
    api(ns).roster(MEETING)
}

/// Waits (at most `limit`) until the roster satisfies `ok`; the last roster seen.
pub(super) fn wait_for_roster(
    ns: &Namespaces,
    limit: Duration,
    ok: impl Fn(&[Participant]) -> bool,
) -> Vec<Participant> {
    let deadline = Instant::now() + limit;
    loop {
        let roster = participants(ns);
        if ok(&roster) || Instant::now() > deadline {
            return roster;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A meeting on a fresh bridge behind `ns`'s NAT: the bridge's guard.
pub(super) fn bridge_with_meeting(
    ns: &Namespaces,
    data: &Path,
    (sip, media, advertise): (&str, &str, Option<&str>),
    extra: &[&str],
) -> ScannedBridge {
    let bridge = start_bridge(ns, data, sip, media, advertise, extra);
    api(ns).create_meeting(MEETING);
    bridge
}
