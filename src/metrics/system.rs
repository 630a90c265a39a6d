//! Series beyond the mixers' and signalling's: the build, the WebRTC driver and the process.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Labels, counter, labels};

/// `confab_build_info{version}` at 1, to join on or to see a fleet's versions.
pub(super) fn build_info(registry: &mut Registry) {
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&labels(&[("version", env!("CARGO_PKG_VERSION"))]))
        .set(1);
    registry.register(
        "confab_build_info",
        "The running build, as labels (version); always 1",
        info,
    );
}

/// The WebRTC driver's peers and what its own layer dropped or refused. Peers let go for ICE
/// timeouts or DTLS failures are participants that left, counted by reason in
/// `confab_participants_disconnected_total`.
pub(super) fn webrtc(registry: &mut Registry, w: &crate::webrtc::WebRtcMetrics) {
    use std::sync::atomic::Ordering::Relaxed;
    let gauge = |v: u64| {
        let g = Gauge::<i64>::default();
        g.set(v as i64);
        g
    };
    registry.register(
        "confab_webrtc_peers",
        "WebRTC peers the driver holds",
        gauge(w.peers.load(Relaxed)),
    );
    registry.register(
        "confab_webrtc_handshakes",
        "WebRTC peers whose ICE and DTLS are not up yet",
        gauge(w.handshakes.load(Relaxed)),
    );
    for (name, help, value) in [
        (
            "confab_webrtc_connected",
            "WebRTC peers whose ICE and DTLS came up",
            &w.connected_total,
        ),
        (
            "confab_webrtc_unrouted_datagrams",
            "Datagrams on the WebRTC port that no peer accepted",
            &w.unrouted_datagrams_total,
        ),
        (
            "confab_webrtc_relay_drops",
            "Packets dropped between the WebRTC driver and the mixer (queue full)",
            &w.relay_drops_total,
        ),
        (
            "confab_webrtc_driver_restarts",
            "Times the WebRTC driver died (its peers let go as internal-error) and was started \
             again; each is a bug",
            &w.driver_restarts_total,
        ),
    ] {
        registry.register(name, help, counter(value.load(Relaxed)));
    }
    let refused = Family::<Labels, Counter>::default();
    for (reason, n) in w.handshakes_refused() {
        refused
            .get_or_create(&labels(&[("reason", reason)]))
            .inc_by(n);
    }
    registry.register(
        "confab_webrtc_handshakes_refused",
        "WHIP joins refused (429) for too many handshakes in progress, by the cap met: \
         address, conference or total",
        refused,
    );
}

/// The process: CPU seconds, resident memory, open file descriptors (from /proc).
pub(super) fn process(registry: &mut Registry) {
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces): utime is 14th, stime 15th.
        let after = stat.rsplit(')').next().unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        // /proc reports USER_HZ, which Linux fixes at 100.
        let cpu = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        cpu.inc_by(ticks as f64 / 100.0);
        registry.register("process_cpu_seconds", "CPU time of the process", cpu);
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let kb: i64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let rss = Gauge::<i64>::default();
        rss.set(kb * 1024);
        registry.register("process_resident_memory_bytes", "Resident memory", rss);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let open = Gauge::<i64>::default();
        open.set(fds.count() as i64);
        registry.register("process_open_fds", "Open file descriptors", open);
    }
}

/// Several nodes on one database: the meetings this node holds and how its leases fare. A
/// `lost` or `renew_failures` that keeps rising is leases flapping (a database too slow for
/// the lease, or two nodes with one name).
pub(super) fn placement(registry: &mut Registry, p: &crate::placement::PlacementCounters) {
    use std::sync::atomic::Ordering::Relaxed;
    let owned = Gauge::<i64>::default();
    owned.set(i64::try_from(p.owned.load(Relaxed)).unwrap_or(i64::MAX));
    registry.register(
        "confab_placement_owned_meetings",
        "Meetings whose lease this node holds",
        owned,
    );
    registry.register(
        "confab_placement_redirects",
        "Callers and joins sent to the node running their meeting (SIP 302, REFER, HTTP 307)",
        counter(p.redirects.load(Relaxed)),
    );
    registry.register(
        "confab_placement_renew_failures",
        "Lease renewals the database did not answer or refused",
        counter(p.renew_failures.load(Relaxed)),
    );
    registry.register(
        "confab_placement_lost",
        "Meetings whose lease this node found lost at a renewal (their calls here were ended)",
        counter(p.lost.load(Relaxed)),
    );
}
