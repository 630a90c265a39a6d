//! Prometheus metrics (`GET /metrics`, OpenMetrics text by prometheus-client). Each scrape
//! builds a fresh registry from what the mixer threads, SIP and the API report, so a
//! conference's series disappear with the conference. Counters come from cumulative sources
//! (legs that left are kept in their mixer's totals) and never go down. Names follow
//! Prometheus' conventions: base units (seconds, bytes, hertz), `_total` on counters, `_ratio`
//! only for 0..1, and one series for one fact. Clients that do not ask for OpenMetrics get the
//! Prometheus text format (`text`).

mod system;
pub(crate) mod text;

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::engine::Engine;
use crate::mixer::stats::{
    CODECS, JITTER_BUCKETS_US, LegTotals, MOS_BUCKETS, START_DELAY_BUCKETS_US, TICK_BUCKETS_US,
    UsHistogram,
};
use crate::sip::server::SipMetrics;

type Labels = Vec<(String, String)>;

/// API requests by route and status.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    /// By route template (the router's, or `unmatched`: never the requested path) and status.
    /// Bound: the routes times the statuses the API answers; never pruned (counters).
    pub requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl ApiMetrics {
    pub fn count(&self, route: &str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_owned(), status)).or_default() += 1;
        }
    }
}

/// A histogram whose buckets were counted elsewhere (per bucket, not cumulative; the last is
/// the overflow, exposed as `le="+Inf"`, the bucket OpenMetrics requires).
#[derive(Debug)]
struct Counted {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl Counted {
    fn new(bounds: impl IntoIterator<Item = f64>, counts: &[u64], sum: f64) -> Self {
        let mut buckets: Vec<(f64, u64)> = bounds.into_iter().zip(counts.iter().copied()).collect();
        buckets.push((f64::INFINITY, counts.last().copied().unwrap_or(0)));
        Counted {
            sum,
            count: counts.iter().sum(),
            buckets,
        }
    }
}

impl EncodeMetric for Counted {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// One histogram of seconds over the mixer threads' histograms of microseconds.
fn merged<'a, const N: usize>(
    bounds: [u64; N],
    parts: impl Iterator<Item = &'a UsHistogram<N>>,
) -> Counted {
    let mut counts = vec![0u64; N + 1];
    let mut sum_us = 0u64;
    for h in parts {
        let (c, overflow, sum) = h.read();
        for (t, n) in counts.iter_mut().zip(c.iter().chain([&overflow])) {
            *t += n;
        }
        sum_us += sum;
    }
    Counted::new(
        bounds.iter().map(|us| *us as f64 / 1e6),
        &counts,
        sum_us as f64 / 1e6,
    )
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn counter(value: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(value);
    c
}

/// What the exposition shows beyond the engine's, SIP's and the API's own figures.
#[derive(Debug, Default)]
pub struct Options<'a> {
    /// Show the per-conference series, labelled with the conference ID
    /// (`metrics.conference_labels`). Off (the default), there are none: they grow with the
    /// number of conferences, the endpoint is not authenticated, and IDs are what callers dial.
    pub conference_labels: bool,
    /// Failed credential attempts and lockouts (SIP attendant and WHIP).
    pub auth: Option<&'a crate::conference::limiter::LimitCounters>,
    /// Several nodes on one database: this node's leases.
    pub placement: Option<&'a crate::placement::PlacementCounters>,
}

/// The exposition.
pub async fn render(
    engine: &Engine,
    options: &Options<'_>,
    sip: Option<&SipMetrics>,
    webrtc: Option<&crate::webrtc::WebRtcMetrics>,
    api: &ApiMetrics,
    disconnects: &[(&'static str, u64)],
    draining: bool,
) -> String {
    // Every mixer thread's figures, before anything is built; a thread that does not answer
    // in time is left out (the whole of them, past the engine's wait).
    let snapshots = engine.snapshots().await.unwrap_or_default();
    let mut registry = Registry::default();
    system::build_info(&mut registry);
    let left = Family::<Labels, Counter>::default();
    // The common reasons are always there (at 0), so rates and alerts have a series to read.
    for reason in [
        "hangup",
        "ejected",
        "media-timeout",
        "ice-timeout",
        "dtls-failed",
        "conference-ended",
    ] {
        left.get_or_create(&labels(&[("reason", reason)])).inc_by(0);
    }
    for (reason, n) in disconnects {
        left.get_or_create(&labels(&[("reason", reason)]))
            .inc_by(*n);
    }
    registry.register(
        "confab_participants_disconnected",
        "Participants that left, by reason (media-timeout, hangup, ejected, ...)",
        left,
    );
    registry.register(
        "confab_storage_errors",
        "Failed database operations (conferences, call records)",
        counter(crate::store::STORAGE_ERRORS.load(std::sync::atomic::Ordering::Relaxed)),
    );
    registry.register(
        "confab_recording_dropped_frames",
        "Recording frames (20 ms) dropped because the writer's queue was full",
        counter(crate::recording::dropped_frames()),
    );
    let recording_bytes = Gauge::<i64>::default();
    recording_bytes.set(i64::try_from(crate::recording::bytes_kept()).unwrap_or(i64::MAX));
    registry.register(
        "confab_recording_bytes",
        "Bytes of recordings kept on disk (at the last pruning pass, once a minute)",
        recording_bytes,
    );
    webhooks(&mut registry);
    if let Some(w) = webrtc {
        system::webrtc(&mut registry, w);
    }
    // Always there (at 0 on a node alone), so the alert and the dashboard have a series.
    let alone = crate::placement::PlacementCounters::default();
    system::placement(&mut registry, options.placement.unwrap_or(&alone));
    let counters = engine.mixer_counters();

    let mut legs = LegTotals::default();
    let (mut shared, mut own) = ([0u64; 4], [0u64; 4]);
    let mut by_state = [0i64; 3];
    let conference_participants = Family::<Labels, Gauge>::default();
    let conference_mix_rate = Family::<Labels, Gauge>::default();
    let mut conferences = 0i64;
    for s in &snapshots {
        legs.merge(&s.legs);
        for i in 0..4 {
            shared[i] += s.encodes_shared[i];
            own[i] += s.encodes_own[i];
        }
        for c in &s.conferences {
            conferences += 1;
            for (t, n) in by_state.iter_mut().zip(c.participants) {
                *t += n as i64;
            }
            if options.conference_labels {
                conference_participants
                    .get_or_create(&labels(&[("conference", &c.id)]))
                    .set(c.participants.iter().sum::<usize>() as i64);
                conference_mix_rate
                    .get_or_create(&labels(&[("conference", &c.id)]))
                    .set(i64::from(c.mix_rate_hz));
            }
        }
    }

    let g = Gauge::<i64>::default();
    g.set(conferences);
    registry.register("confab_conferences", "Conferences on this node", g);
    let participants = Family::<Labels, Gauge>::default();
    for (state, n) in ["inviting", "connecting", "connected"].iter().zip(by_state) {
        participants
            .get_or_create(&labels(&[("state", state)]))
            .set(n);
    }
    registry.register("confab_participants", "Participants by state", participants);
    if options.conference_labels {
        registry.register(
            "confab_conference_participants",
            "Participants present in each conference",
            conference_participants,
        );
        registry.register(
            "confab_conference_mix_rate_hertz",
            "The rate each conference mixes at (the highest of its legs' codec rates)",
            conference_mix_rate,
        );
    }

    let packets = Family::<Labels, Counter>::default();
    let bytes = Family::<Labels, Counter>::default();
    for (i, codec) in CODECS.iter().enumerate() {
        for (direction, p, b) in [
            ("in", legs.packets_in[i], legs.bytes_in[i]),
            ("out", legs.packets_out[i], legs.bytes_out[i]),
        ] {
            let l = labels(&[("direction", direction), ("codec", codec.name())]);
            packets.get_or_create(&l).inc_by(p);
            bytes.get_or_create(&l).inc_by(b);
        }
    }
    registry.register(
        "confab_rtp_packets",
        "RTP packets by direction and codec",
        packets,
    );
    registry.register(
        "confab_rtp_bytes",
        "RTP bytes by direction and codec",
        bytes,
    );
    registry.register(
        "confab_rtp_packets_lost",
        "Packets of participants' streams lost on the way to the bridge",
        counter(legs.packets_lost),
    );
    registry.register(
        "confab_rtp_jitter_seconds",
        "Interarrival jitter of participants' streams (RFC 3550), each leg that received \
         packets looked at once a second: leg-seconds by jitter",
        merged(JITTER_BUCKETS_US, counters.iter().map(|c| &*c.jitter)),
    );
    let dropped = Family::<Labels, Counter>::default();
    for (reason, n) in [
        ("foreign-source", legs.dropped_foreign_source),
        ("malformed", legs.dropped_malformed),
        ("payload-type", legs.dropped_payload_type),
        ("rtcp", legs.dropped_rtcp),
        ("srtp-auth", legs.srtp_auth_failures),
    ] {
        dropped
            .get_or_create(&labels(&[("reason", reason)]))
            .inc_by(n);
    }
    registry.register(
        "confab_dropped_packets",
        "Packets dropped by reason (srtp-auth: SRTP/SRTCP packets that failed authentication)",
        dropped,
    );
    registry.register(
        "confab_decodes_skipped",
        "Opus packets of quiet participants, marked voice-inactive by their encoder, taken as \
         silence without decoding",
        counter(legs.decodes_skipped),
    );
    registry.register(
        "confab_mos",
        "Estimated MOS of legs that ended",
        Counted::new(MOS_BUCKETS, &legs.mos_buckets, legs.mos_sum),
    );
    let encodes = Family::<Labels, Counter>::default();
    for (i, codec) in CODECS.iter().enumerate() {
        encodes
            .get_or_create(&labels(&[("codec", codec.name()), ("kind", "shared")]))
            .inc_by(shared[i]);
        encodes
            .get_or_create(&labels(&[("codec", codec.name()), ("kind", "own")]))
            .inc_by(own[i]);
    }
    registry.register(
        "confab_encodes",
        "Encodes by codec: shared by a group, or for one leg",
        encodes,
    );

    // Mixer threads: histograms over all of them, late ticks, lost control events, the worst
    // load, whether all run at real-time priority.
    let (mut late, mut load) = (0u64, 0.0f64);
    let mut control_dropped = 0u64;
    let mut demotions = 0u64;
    let realtime = !counters.is_empty()
        && counters
            .iter()
            .all(|c| c.realtime.load(std::sync::atomic::Ordering::Relaxed));
    for c in &counters {
        late += c.late_ticks.load(std::sync::atomic::Ordering::Relaxed);
        control_dropped += c
            .control_events_dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        // A thread cannot be busy more than all of its time: past 1 it skips ticks (counted
        // in late ticks), so the ratio stays a ratio.
        load = load.max(c.load_ratio().clamp(0.0, 1.0));
        demotions += c.demotions.load(std::sync::atomic::Ordering::Relaxed);
    }
    registry.register(
        "confab_mixer_tick_duration_seconds",
        "Work time of a mixer tick",
        merged(TICK_BUCKETS_US, counters.iter().map(|c| &*c.tick_time)),
    );
    registry.register(
        "confab_mixer_tick_start_delay_seconds",
        "How late mixer ticks start after their 20 ms deadline (the host's scheduling latency \
         plus commands answered between ticks)",
        merged(
            START_DELAY_BUCKETS_US,
            counters.iter().map(|c| &*c.start_delay),
        ),
    );
    let realtime_gauge = Gauge::<i64>::default();
    realtime_gauge.set(i64::from(realtime));
    registry.register(
        "confab_mixer_realtime",
        "1 when every mixer thread and its helper run under real-time scheduling (SCHED_RR), \
         0 when any runs under normal scheduling",
        realtime_gauge,
    );
    registry.register(
        "confab_mixer_realtime_demotions",
        "Times a mixer thread gave real-time scheduling back because it was overloaded \
         (smoothed load above 0.9; taken again after 30 s below 0.6)",
        counter(demotions),
    );
    registry.register(
        "confab_mixer_late_ticks",
        "Ticks skipped because a mixer thread fell behind",
        counter(late),
    );
    registry.register(
        "confab_control_events_dropped",
        "Control events (participant state, DTMF, locked, ended) the mixer threads dropped \
         because their consumer, the SIP shell, took none for a whole backlog; each may be a \
         hang-up never signalled (should stay 0)",
        counter(control_dropped),
    );
    // Contained panics by part: each a bug that ended one conference's calls (mixer), one
    // SIP message (sip) or one WebRTC peer (webrtc), while everything else went on.
    let panics = Family::<Labels, Counter>::default();
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    for (part, n) in [
        ("mixer", engine.mixer_panics()),
        ("sip", sip.map_or(0, |s| s.panics.load(relaxed))),
        ("webrtc", webrtc.map_or(0, |w| w.panics_total.load(relaxed))),
    ] {
        panics.get_or_create(&labels(&[("part", part)])).inc_by(n);
    }
    registry.register(
        "confab_panics",
        "Panics contained, by part (mixer, sip, webrtc); each is a bug",
        panics,
    );
    let ratio = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    ratio.set(load);
    registry.register(
        "confab_mixer_load_ratio",
        "Work time over tick period, the busiest mixer thread, at most 1 (the scaling signal)",
        ratio,
    );

    if let Some(sip) = sip {
        let requests = Family::<Labels, Counter>::default();
        if let Ok(m) = sip.requests.lock() {
            for (method, n) in m.iter() {
                requests
                    .get_or_create(&labels(&[("method", method)]))
                    .inc_by(*n);
            }
        }
        registry.register(
            "confab_sip_requests",
            "SIP requests received by method",
            requests,
        );
        let responses = Family::<Labels, Counter>::default();
        if let Ok(m) = sip.responses.lock() {
            for ((method, code), n) in m.iter() {
                responses
                    .get_or_create(&labels(&[("method", method), ("code", &code.to_string())]))
                    .inc_by(*n);
            }
        }
        registry.register(
            "confab_sip_responses",
            "SIP responses sent by method and code",
            responses,
        );
        let p = &sip.presence;
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        let publishes = Family::<Labels, Counter>::default();
        for (result, n) in [("sent", &p.published), ("failed", &p.failed)] {
            publishes
                .get_or_create(&labels(&[("result", result)]))
                .inc_by(n.load(relaxed));
        }
        registry.register(
            "confab_presence_publishes",
            "Presence PUBLISH requests sent (retransmissions not counted), and those that failed or went unanswered",
            publishes,
        );
        registry.register(
            "confab_presence_refused",
            "Participants' identities not published (not a SIP address, or past the cap)",
            counter(p.refused.load(relaxed)),
        );
        let held = Gauge::<i64>::default();
        held.set(i64::try_from(p.held.load(relaxed)).unwrap_or(i64::MAX));
        registry.register(
            "confab_presence_publications",
            "Presence publications held (published, or being removed)",
            held,
        );
    }
    if let Some(auth) = options.auth {
        use crate::conference::limiter::Transport;
        use std::sync::atomic::Ordering::Relaxed;
        let failures = Family::<Labels, Counter>::default();
        for (t, n) in Transport::ALL.iter().zip(&auth.failures) {
            failures
                .get_or_create(&labels(&[("transport", t.name())]))
                .inc_by(n.load(Relaxed));
        }
        registry.register(
            "confab_auth_failures",
            "Failed credential attempts (meeting ID, passcode, leader PIN, join token) by transport",
            failures,
        );
        registry.register(
            "confab_auth_lockouts",
            "Callers and conferences locked out after too many failed attempts",
            counter(auth.lockouts.load(Relaxed)),
        );
    }
    let api_requests = Family::<Labels, Counter>::default();
    if let Ok(m) = api.requests.lock() {
        for ((route, status), n) in m.iter() {
            api_requests
                .get_or_create(&labels(&[
                    ("route", route),
                    ("status", &status.to_string()),
                ]))
                .inc_by(*n);
        }
    }
    registry.register(
        "confab_api_requests",
        "API requests by route and status",
        api_requests,
    );
    let d = Gauge::<i64>::default();
    d.set(i64::from(draining));
    registry.register("confab_draining", "1 while the node drains", d);
    system::process(&mut registry);

    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;

/// The webhooks' deliveries (always there, at 0 without webhooks).
fn webhooks(registry: &mut Registry) {
    let [
        delivered,
        attempts_failed,
        failed,
        dropped,
        events_dropped,
        queued,
    ] = crate::webhooks::figures();
    for (name, help, value) in [
        (
            "confab_webhook_delivered",
            "Webhook deliveries a receiver answered with 2xx",
            delivered,
        ),
        (
            "confab_webhook_attempts_failed",
            "Webhook attempts that failed (another status, no connection, 10 s without an answer)",
            attempts_failed,
        ),
        (
            "confab_webhook_failed",
            "Webhook deliveries given up after an hour of failed attempts",
            failed,
        ),
        (
            "confab_webhook_dropped",
            "Webhook deliveries dropped, the oldest first, because 10,000 were pending",
            dropped,
        ),
        (
            "confab_webhook_events_dropped",
            "Events dropped before the webhook queue: the webhook task fell behind, or mutes past half the queue",
            events_dropped,
        ),
    ] {
        registry.register(name, help, counter(value));
    }
    let pending = Gauge::<i64>::default();
    pending.set(i64::try_from(queued).unwrap_or(i64::MAX));
    registry.register(
        "confab_webhook_queued",
        "Webhook deliveries pending (waiting for their time or in progress)",
        pending,
    );
}
