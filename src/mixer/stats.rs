//! What a mixer thread tells the metrics: cumulative leg totals (legs still here plus every leg
//! that has left, so counters never go down), the conferences it holds, and histograms of
//! tick time and tick start delay kept in atomics (the tick takes no lock).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::media::codec::Codec;
use crate::media::leg::LegStats;

/// Upper bounds of the tick-duration buckets, in microseconds.
pub const TICK_BUCKETS_US: [u64; 10] =
    [250, 500, 1000, 2000, 4000, 8000, 12000, 16000, 20000, 40000];
/// Upper bounds of the tick start-delay buckets, in microseconds: from the 0.1 ms a thread
/// at real-time priority wakes within, to the 20-100 ms of a host that starved the thread
/// for a tick or more.
pub const START_DELAY_BUCKETS_US: [u64; 10] =
    [100, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];
/// Upper bounds of the interarrival-jitter buckets, in microseconds: from a LAN's fraction of
/// a millisecond to the 200 ms of a link no jitter buffer hides.
pub const JITTER_BUCKETS_US: [u64; 10] = [
    500, 1000, 2000, 5000, 10000, 20000, 30000, 50000, 100000, 200000,
];
/// Ticks between two looks at each leg's jitter (a second).
pub const JITTER_SAMPLE_TICKS: u64 = 50;
/// Upper bounds of the MOS buckets.
pub const MOS_BUCKETS: [f64; 8] = [1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.2, 4.4];

/// Microseconds in buckets, lock-free (the tick takes no lock): `N` upper bounds, then the
/// overflow.
#[derive(Debug)]
pub struct UsHistogram<const N: usize> {
    bounds: [u64; N],
    buckets: [AtomicU64; N],
    overflow: AtomicU64,
    sum_us: AtomicU64,
}

impl<const N: usize> UsHistogram<N> {
    pub fn new(bounds: [u64; N]) -> Self {
        UsHistogram {
            bounds,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            overflow: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, us: u64) {
        match self.bounds.iter().position(|b| us <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Per-bucket counts (not cumulative), the overflow, and the sum in microseconds.
    pub fn read(&self) -> ([u64; N], u64, u64) {
        (
            std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            self.overflow.load(Ordering::Relaxed),
            self.sum_us.load(Ordering::Relaxed),
        )
    }
}

/// Tick durations (work time), in [`TICK_BUCKETS_US`].
#[derive(Debug)]
pub struct TickHistogram(UsHistogram<{ TICK_BUCKETS_US.len() }>);

impl Default for TickHistogram {
    fn default() -> Self {
        TickHistogram(UsHistogram::new(TICK_BUCKETS_US))
    }
}

impl std::ops::Deref for TickHistogram {
    type Target = UsHistogram<{ TICK_BUCKETS_US.len() }>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// How late ticks start after their deadline, in [`START_DELAY_BUCKETS_US`].
#[derive(Debug)]
pub struct StartDelayHistogram(UsHistogram<{ START_DELAY_BUCKETS_US.len() }>);

impl Default for StartDelayHistogram {
    fn default() -> Self {
        StartDelayHistogram(UsHistogram::new(START_DELAY_BUCKETS_US))
    }
}

impl std::ops::Deref for StartDelayHistogram {
    type Target = UsHistogram<{ START_DELAY_BUCKETS_US.len() }>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Legs' interarrival jitter, looked at once a second ([`JITTER_SAMPLE_TICKS`]), in
/// [`JITTER_BUCKETS_US`]: leg-seconds by jitter, a histogram whose counts only grow (a look at
/// the legs present at each scrape would go down as legs leave, and depend on how often
/// Prometheus scrapes).
#[derive(Debug)]
pub struct JitterHistogram(UsHistogram<{ JITTER_BUCKETS_US.len() }>);

impl Default for JitterHistogram {
    fn default() -> Self {
        JitterHistogram(UsHistogram::new(JITTER_BUCKETS_US))
    }
}

impl std::ops::Deref for JitterHistogram {
    type Target = UsHistogram<{ JITTER_BUCKETS_US.len() }>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Sums over legs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LegTotals {
    /// By codec (see [`codec_index`]).
    pub packets_in: [u64; 4],
    pub packets_out: [u64; 4],
    pub bytes_in: [u64; 4],
    pub bytes_out: [u64; 4],
    pub dropped_foreign_source: u64,
    pub dropped_malformed: u64,
    pub dropped_payload_type: u64,
    pub dropped_rtcp: u64,
    pub srtp_auth_failures: u64,
    pub packets_lost: u64,
    pub decodes_skipped: u64,
    /// MOS of legs that ended, per bucket (and overflow), with their sum.
    pub mos_buckets: [u64; MOS_BUCKETS.len() + 1],
    pub mos_sum: f64,
}

/// The index of a codec in the per-codec arrays.
pub fn codec_index(c: Codec) -> usize {
    match c {
        Codec::Pcmu => 0,
        Codec::Pcma => 1,
        Codec::G722 => 2,
        Codec::Opus => 3,
    }
}

/// The codecs in index order.
pub const CODECS: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

impl LegTotals {
    /// Adds a leg's counters.
    pub fn add_leg(&mut self, s: &LegStats) {
        let i = s.codec.map_or(0, codec_index);
        self.packets_in[i] += s.packets_in;
        self.packets_out[i] += s.packets_out;
        self.bytes_in[i] += s.bytes_in;
        self.bytes_out[i] += s.bytes_out;
        self.dropped_foreign_source += s.dropped_foreign_source;
        self.dropped_malformed += s.dropped_malformed;
        self.dropped_payload_type += s.dropped_payload_type;
        self.dropped_rtcp += s.dropped_rtcp;
        self.srtp_auth_failures += s.dropped_srtp_auth;
        self.packets_lost += s.packets_lost.max(0) as u64;
        self.decodes_skipped += s.decodes_skipped;
    }

    /// A leg that ended: its counters, and its MOS when it carried audio.
    pub fn add_ended(&mut self, s: &LegStats) {
        self.add_leg(s);
        if s.packets_in > 0 {
            let i = MOS_BUCKETS
                .iter()
                .position(|b| s.mos <= *b)
                .unwrap_or(MOS_BUCKETS.len());
            self.mos_buckets[i] += 1;
            self.mos_sum += s.mos;
        }
    }

    pub fn merge(&mut self, o: &LegTotals) {
        for i in 0..4 {
            self.packets_in[i] += o.packets_in[i];
            self.packets_out[i] += o.packets_out[i];
            self.bytes_in[i] += o.bytes_in[i];
            self.bytes_out[i] += o.bytes_out[i];
        }
        self.dropped_foreign_source += o.dropped_foreign_source;
        self.dropped_malformed += o.dropped_malformed;
        self.dropped_payload_type += o.dropped_payload_type;
        self.dropped_rtcp += o.dropped_rtcp;
        self.srtp_auth_failures += o.srtp_auth_failures;
        self.packets_lost += o.packets_lost;
        self.decodes_skipped += o.decodes_skipped;
        for (a, b) in self.mos_buckets.iter_mut().zip(&o.mos_buckets) {
            *a += b;
        }
        self.mos_sum += o.mos_sum;
    }
}

/// One conference as the metrics see it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConferenceSnapshot {
    pub id: String,
    /// Inviting, connecting, connected.
    pub participants: [usize; 3],
    /// The rate the conference mixes at.
    pub mix_rate_hz: u32,
}

/// One mixer thread's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MixerSnapshot {
    pub conferences: Vec<ConferenceSnapshot>,
    pub legs: LegTotals,
    /// Encodes by codec: shared (one per group) and own (one per leg).
    pub encodes_shared: [u64; 4],
    pub encodes_own: [u64; 4],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_delays_land_in_their_buckets() {
        let h = StartDelayHistogram::default();
        // On a bound counts in that bucket; just above goes to the next; past 100 ms is the
        // overflow.
        for us in [
            0, 100, 101, 999, 1000, 1001, 19_999, 100_000, 100_001, 3_000_000,
        ] {
            h.observe(us);
        }
        let (counts, overflow, sum) = h.read();
        assert_eq!(counts, [2, 1, 0, 2, 1, 0, 0, 1, 0, 1]);
        assert_eq!(overflow, 2);
        assert_eq!(
            sum,
            100 + 101 + 999 + 1000 + 1001 + 19_999 + 100_000 + 100_001 + 3_000_000
        );
    }

    #[test]
    fn tick_times_keep_their_buckets() {
        let h = TickHistogram::default();
        for us in [250, 251, 40_000, 40_001] {
            h.observe(us);
        }
        let (counts, overflow, sum) = h.read();
        assert_eq!(counts, [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(overflow, 1);
        assert_eq!(sum, 250 + 251 + 40_000 + 40_001);
    }
}
