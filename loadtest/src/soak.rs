//! The soak (`--scenario soak`): about 500 legs over several conferences for half an hour, with
//! churn (every second a share of the legs leaves and as many new ones join), mixing SIP
//! dial-in and API (SDP offer) legs, plain RTP and SDES-SRTP. Every few seconds it samples the
//! bridge: resident memory and open descriptors from its /metrics (so any bridge on loopback
//! can be measured), threads from /proc when its process is known, and its late ticks. A leak
//! per call shows as memory or descriptors that grow with the joins; a slowing mixer as late
//! ticks that come faster in the second half than in the first.
//!
//! Bounded: the duration, the legs (a cap), joins per second, each join's and leave's own
//! timeout, and a deadline for the first fill.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde::Serialize;

use crate::bridges::{Bridge, Confab, Joined, Way};
use crate::leg::{Clicks, Codec, SimLeg, Sockets, Voice};
use crate::measure::{self, BridgeMetrics};
use crate::worker::{LEGS_PER_SOCKET, Run};
use crate::{Latency, Options, Sample, Signal, Summary, progress_bar, ratio};

/// RSS drift (end against after the warm-up) the soak accepts, in %.
pub const MAX_RSS_DRIFT_PERCENT: f64 = 5.0;
/// Join failures accepted: this share of the joins tried, in %.
pub const MAX_JOIN_FAILURE_PERCENT: f64 = 1.0;

/// One look at the bridge.
#[derive(Clone, Debug, Serialize)]
pub struct SoakSample {
    /// Seconds since the legs were all up (the soak's start).
    pub t_s: f64,
    pub legs: usize,
    pub rss_mb: Option<f64>,
    pub open_fds: Option<f64>,
    pub threads: Option<u64>,
    pub late_ticks: Option<f64>,
    pub cpu_seconds: Option<f64>,
}

/// First (after the warm-up), last and highest value of a figure.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Span {
    pub first: f64,
    pub last: f64,
    pub max: f64,
}

/// What the soak found, and whether it passes.
#[derive(Clone, Debug, Serialize)]
pub struct Soak {
    pub legs: usize,
    pub conferences: usize,
    /// Legs replaced every second.
    pub churn_per_second: usize,
    /// When the warm-up ended (s after the start): 10 % of the run or 60 s, the shorter.
    pub warmup_s: f64,
    /// Seconds the first fill took (before the start).
    pub fill_s: f64,
    pub rss_warm_mb: Option<f64>,
    pub rss_end_mb: Option<f64>,
    pub rss_drift_percent: Option<f64>,
    /// The same from the middle of the run (warm-up to end) to the end: a bridge whose bounded
    /// caches and histories fill slowly drifts in the first half and not in the second, a leak
    /// in both. Shown, not judged.
    pub rss_drift_second_half_percent: Option<f64>,
    pub rss_mb: Option<Span>,
    pub open_fds: Option<Span>,
    pub threads: Option<Span>,
    /// Late ticks per minute from the warm-up to the end, and in each half of that.
    pub late_ticks_per_min: Option<f64>,
    pub late_ticks_per_min_first_half: Option<f64>,
    pub late_ticks_per_min_second_half: Option<f64>,
    pub joins: u64,
    pub join_failures: u64,
    pub leaves: u64,
    pub leave_failures: u64,
    /// Joins by way and transport: SIP, API, and of them all those with SDES-SRTP.
    pub sip_joins: u64,
    pub api_joins: u64,
    pub srtp_joins: u64,
    /// The first few failures, as the bridge or the generator said them.
    pub failure_examples: Vec<String>,
    pub pass: bool,
    /// Why not, target by target (empty when it passes).
    pub failed: Vec<String>,
    pub samples: Vec<SoakSample>,
}

/// A leg the soak keeps up.
struct Active {
    ssrc: u32,
    worker: usize,
    room: usize,
    talks: bool,
    joined: Joined,
}

/// A small xorshift generator for which legs leave (no need for more).
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng((t ^ u64::from(std::process::id()).rotate_left(32)) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

struct Counts {
    joins: u64,
    join_failures: u64,
    leaves: u64,
    leave_failures: u64,
    sip: u64,
    api: u64,
    srtp: u64,
    examples: Vec<String>,
}

impl Counts {
    fn failed(&mut self, what: String) {
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }
}

/// Everything the churn needs between steps.
struct Legs<'a> {
    o: &'a Options,
    bridge: &'a mut Confab,
    run: Run,
    sockets: Sockets,
    rooms: Vec<String>,
    active: Vec<Active>,
    next: u32,
    counts: Counts,
}

impl Legs<'_> {
    /// One new leg into room `room`: by SIP or the API in turn, every other pair with SRTP
    /// (all of them with `--srtp`).
    fn join(&mut self, room: usize, talks: bool) {
        let k = self.next;
        self.next = self.next.wrapping_add(1);
        let way = if k.is_multiple_of(2) {
            Way::Sip
        } else {
            Way::Api
        };
        let srtp = self.o.srtp || (k / 2) % 2 == 1;
        // Dial-in is G.711 (as the dialin scenario); API legs speak the run's codec.
        let codec = if way == Way::Sip {
            Codec::Pcmu
        } else {
            self.o.codec
        };
        let voice = if talks {
            match self.o.signal {
                Signal::Tone => Voice::Tone(300.0 + 110.0 * (k % 5) as f32),
                Signal::Speech => Voice::Speech(k),
            }
        } else {
            Voice::Silent
        };
        let decode =
            talks || self.o.decode_every <= 1 || (k as usize).is_multiple_of(self.o.decode_every);
        let ssrc = 0x2000_0000u32.wrapping_add(k);
        let Some(id) = self.rooms.get(room).cloned() else {
            return;
        };
        self.counts.joins += 1;
        let leg = self.sockets.take().and_then(|socket| {
            SimLeg::new(
                codec,
                voice,
                false,
                Arc::new(Clicks::default()),
                decode,
                ssrc,
                socket,
            )
        });
        let joined = leg.and_then(|mut leg| {
            let j = self
                .bridge
                .join_leg(&id, &mut leg, &format!("soak-{k}"), way, srtp)?;
            Ok((leg, j))
        });
        match joined {
            Ok((leg, joined)) => {
                let worker = self.run.add(leg);
                match way {
                    Way::Sip => self.counts.sip += 1,
                    Way::Api => self.counts.api += 1,
                }
                if srtp {
                    self.counts.srtp += 1;
                }
                self.active.push(Active {
                    ssrc,
                    worker,
                    room,
                    talks,
                    joined,
                });
            }
            Err(e) => {
                self.counts.join_failures += 1;
                self.counts
                    .failed(format!("join {way:?} srtp={srtp} room {room}: {e:#}"));
            }
        }
    }

    /// Leg `i` of the active ones leaves: its media stops, then it hangs up.
    fn leave(&mut self, i: usize) -> Option<(usize, bool)> {
        if i >= self.active.len() {
            return None;
        }
        let a = self.active.swap_remove(i);
        self.run.remove(a.worker, a.ssrc);
        self.counts.leaves += 1;
        if let Err(e) = self.bridge.leave(&a.joined) {
            self.counts.leave_failures += 1;
            self.counts.failed(format!("leave {:?}: {e:#}", a.joined));
        }
        Some((a.room, a.talks))
    }
}

/// Runs the soak against Confab; `pid` (when known) gives the bridge's threads.
pub(crate) fn run(o: &Options, bridge: &mut Confab, pid: Option<u32>) -> anyhow::Result<Summary> {
    let about = crate::about::About::here();
    let api = bridge.confab_api();
    let metrics = || {
        api.as_ref()
            .and_then(|(a, t)| measure::confab_metrics(*a, t.as_deref()))
    };
    if metrics().is_none() {
        return Err(anyhow!(
            "the soak samples the bridge's /metrics, which did not answer"
        ));
    }
    let target = o.legs.clamp(1, o.max_participants.max(1));
    let conferences = o.rooms.clamp(1, target);
    let per_second = ((target as f64 * o.churn_percent / 100.0).round() as usize)
        .clamp(usize::from(o.churn_percent > 0.0), target);
    let mut rooms = Vec::with_capacity(conferences);
    for r in 0..conferences {
        rooms.push(bridge.create_room(r)?);
    }
    let mut legs = Legs {
        o,
        bridge,
        run: Run::new(o.threads),
        sockets: Sockets::new(LEGS_PER_SOCKET),
        rooms,
        active: Vec::with_capacity(target),
        next: 0,
        counts: Counts {
            joins: 0,
            join_failures: 0,
            leaves: 0,
            leave_failures: 0,
            sip: 0,
            api: 0,
            srtp: 0,
            examples: Vec::new(),
        },
    };
    // The first fill: round-robin over the rooms, the first `talkers` of each talking.
    let fill_start = Instant::now();
    let fill_deadline =
        fill_start + Duration::from_secs(60) + Duration::from_millis(200) * target as u32;
    for i in 0..target {
        if Instant::now() > fill_deadline {
            break;
        }
        legs.join(i % conferences, i / conferences < o.talkers);
    }
    let fill_s = fill_start.elapsed().as_secs_f64();
    if legs.active.is_empty() {
        legs.run.finish();
        return Err(anyhow!(
            "no leg could join: {}",
            legs.counts.examples.join("; ")
        ));
    }

    let start = Instant::now();
    let end = start + o.duration;
    let warmup = (o.duration / 10).min(Duration::from_secs(60));
    let every = o.sample_every.max(Duration::from_millis(500));
    let bar = progress_bar(o, o.duration, "soak");
    let mut samples: Vec<SoakSample> = Vec::new();
    let mut timeline: Vec<Sample> = Vec::new();
    let mut measuring = false;
    let mut rng = Rng::new();
    let mut next_sample = start;
    let mut next_churn = start + Duration::from_secs(1);
    let mut last_cpu: Option<(f64, f64)> = None;
    let mut sample = |legs: &Legs, samples: &mut Vec<SoakSample>, timeline: &mut Vec<Sample>| {
        let m: Option<BridgeMetrics> = metrics();
        let t_s = start.elapsed().as_secs_f64();
        let s = SoakSample {
            t_s,
            legs: legs.active.len(),
            rss_mb: m
                .and_then(|m| m.rss_bytes.map(|b| b / 1_048_576.0))
                .or_else(|| pid.and_then(measure::proc_sample).map(|p| p.rss_mb)),
            open_fds: m
                .and_then(|m| m.open_fds)
                .or_else(|| pid.and_then(measure::open_fds).map(|n| n as f64)),
            threads: pid.and_then(measure::threads),
            late_ticks: m.map(|m| m.late_ticks),
            cpu_seconds: m
                .and_then(|m| m.cpu_seconds)
                .or_else(|| pid.and_then(measure::proc_sample).map(|p| p.cpu_seconds)),
        };
        if let Some(c) = s.cpu_seconds {
            if let Some((t0, c0)) = last_cpu
                && t_s > t0
            {
                timeline.push(Sample {
                    t_s,
                    participants: s.legs,
                    cpu_percent: (c - c0) / (t_s - t0) * 100.0,
                    load_ratio: m.map(|m| m.load_ratio),
                });
            }
            last_cpu = Some((t_s, c));
        }
        samples.push(s);
    };
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if !measuring && now >= start + warmup {
            legs.run.measuring.store(true, Ordering::Relaxed);
            measuring = true;
        }
        if now >= next_sample {
            sample(&legs, &mut samples, &mut timeline);
            if let Some(s) = samples.last() {
                bar.set_message(format!(
                    "soak: {} legs, RSS {} MB, {} fds",
                    s.legs,
                    s.rss_mb.map_or("-".into(), |v| format!("{v:.1}")),
                    s.open_fds.map_or("-".into(), |v| format!("{v:.0}")),
                ));
            }
            next_sample += every;
            if next_sample <= Instant::now() {
                next_sample = Instant::now() + every;
            }
        }
        if now >= next_churn {
            // Leave, then join as many (more when earlier joins failed, at most twice as
            // many), each new leg into the room and role of one that left.
            let mut freed = Vec::with_capacity(per_second);
            for _ in 0..per_second.min(legs.active.len()) {
                let i = rng.below(legs.active.len());
                if let Some(slot) = legs.leave(i) {
                    freed.push(slot);
                }
            }
            let deficit = target.saturating_sub(legs.active.len() + freed.len());
            for _ in 0..deficit.min(per_second) {
                freed.push((rng.below(conferences), false));
            }
            for (room, talks) in freed {
                if Instant::now() >= end {
                    break;
                }
                legs.join(room, talks);
            }
            bar.inc(1);
            next_churn += Duration::from_secs(1);
            if next_churn <= Instant::now() {
                next_churn = Instant::now() + Duration::from_secs(1);
            }
        }
        let wake = next_sample.min(next_churn).min(end);
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
    // The last look, at the end, with every leg still up.
    sample(&legs, &mut samples, &mut timeline);
    legs.run.measuring.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(100));
    bar.finish_and_clear();
    let received = legs.run.totals.received.load(Ordering::Relaxed);
    let expected = legs.run.totals.expected.load(Ordering::Relaxed);
    let gaps = legs.run.totals.gaps.load(Ordering::Relaxed);
    let Legs {
        run: workers,
        counts,
        active,
        ..
    } = legs;
    let up = active.len();
    workers.finish();
    // Every leg still up is hung up by the teardown (SIP) or goes with its conference (API).

    let soak = judge(
        &samples,
        warmup.as_secs_f64(),
        Setup {
            legs: target,
            conferences,
            per_second,
            fill_s,
        },
        counts,
    );
    let cpu = match (
        samples
            .iter()
            .find(|s| s.t_s >= soak.warmup_s)
            .and_then(|s| Some((s.t_s, s.cpu_seconds?))),
        samples.last().and_then(|s| Some((s.t_s, s.cpu_seconds?))),
    ) {
        (Some((t0, c0)), Some((t1, c1))) if t1 > t0 => Some((c1 - c0) / (t1 - t0) * 100.0),
        _ => None,
    };
    let late_total = match (
        samples.first().and_then(|s| s.late_ticks),
        samples.last().and_then(|s| s.late_ticks),
    ) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let max_load = timeline
        .iter()
        .filter_map(|s| s.load_ratio)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    Ok(Summary {
        target: o.target,
        scenario: o.scenario,
        codec: o.codec,
        participants: up,
        talkers: conferences * o.talkers.min(target / conferences),
        rooms: conferences,
        duration_s: samples.last().map_or(0.0, |s| s.t_s),
        bridge_pid: pid,
        bridge_cpu_percent: cpu,
        bridge_rss_mb: soak.rss_end_mb,
        rx_ratio: ratio(received, expected),
        gaps,
        late_ticks: late_total,
        max_load_ratio: max_load,
        latency_ms: Latency {
            p50: None,
            p99: None,
            samples: 0,
        },
        capacity: None,
        pesq: None,
        steps: Vec::new(),
        timeline,
        latencies_ms: Vec::new(),
        soak: Some(soak),
        about,
    })
}

/// How the soak was set up (for its figures).
struct Setup {
    legs: usize,
    conferences: usize,
    per_second: usize,
    fill_s: f64,
}

/// First, last and highest of `f` over the samples from the warm-up on.
fn span(after: &[SoakSample], f: impl Fn(&SoakSample) -> Option<f64>) -> Option<Span> {
    let v: Vec<f64> = after.iter().filter_map(f).collect();
    Some(Span {
        first: *v.first()?,
        last: *v.last()?,
        max: v.iter().copied().fold(f64::MIN, f64::max),
    })
}

/// Descriptors may rise this much over the run and still count as flat: legs that left a
/// moment ago and are still closing, a log file rotated.
fn fd_slack(first: f64) -> f64 {
    (first * 0.02).max(16.0)
}

/// Threads may rise this much (a runtime's blocking pool grows and shrinks with demand).
fn thread_slack(first: f64) -> f64 {
    (first * 0.25).max(8.0)
}

/// Late ticks per minute between two samples.
fn late_rate(a: &SoakSample, b: &SoakSample) -> Option<f64> {
    let minutes = (b.t_s - a.t_s) / 60.0;
    (minutes > 0.0).then_some((b.late_ticks? - a.late_ticks?).max(0.0) / minutes)
}

/// The figures and the verdict from the samples.
fn judge(samples: &[SoakSample], warmup_s: f64, setup: Setup, counts: Counts) -> Soak {
    let from = samples
        .iter()
        .position(|s| s.t_s >= warmup_s)
        .unwrap_or(samples.len().saturating_sub(1));
    let after = samples.get(from..).unwrap_or_default();
    let warm = after.first();
    let last = after.last();
    let rss_warm_mb = warm.and_then(|s| s.rss_mb);
    let rss_end_mb = last.and_then(|s| s.rss_mb);
    let rss_drift_percent = match (rss_warm_mb, rss_end_mb) {
        (Some(a), Some(b)) if a > 0.0 => Some((b - a) / a * 100.0),
        _ => None,
    };
    let (mut rate, mut first_half, mut second_half) = (None, None, None);
    let mut rss_drift_second_half_percent = None;
    if let (Some(w), Some(l)) = (warm, last) {
        rate = late_rate(w, l);
        let mid_t = (w.t_s + l.t_s) / 2.0;
        if let Some(mid) = after
            .iter()
            .min_by(|a, b| (a.t_s - mid_t).abs().total_cmp(&(b.t_s - mid_t).abs()))
        {
            first_half = late_rate(w, mid);
            second_half = late_rate(mid, l);
            if let (Some(a), Some(b)) = (mid.rss_mb, l.rss_mb)
                && a > 0.0
            {
                rss_drift_second_half_percent = Some((b - a) / a * 100.0);
            }
        }
    }
    let open_fds = span(after, |s| s.open_fds);
    let threads = span(after, |s| s.threads.map(|t| t as f64));
    let mut failed = Vec::new();
    match rss_drift_percent {
        Some(d) if d >= MAX_RSS_DRIFT_PERCENT => failed.push(format!(
            "RSS drift {d:.1} % (target < {MAX_RSS_DRIFT_PERCENT} %)"
        )),
        Some(_) => {}
        None => failed.push("RSS not measured".to_owned()),
    }
    match open_fds {
        Some(f) if f.last > f.first + fd_slack(f.first) => failed.push(format!(
            "open fds {:.0} -> {:.0} (flat: at most +{:.0})",
            f.first,
            f.last,
            fd_slack(f.first)
        )),
        Some(_) => {}
        None => failed.push("open fds not measured".to_owned()),
    }
    if let Some(t) = threads
        && t.last > t.first + thread_slack(t.first)
    {
        failed.push(format!(
            "threads {:.0} -> {:.0} (flat: at most +{:.0})",
            t.first,
            t.last,
            thread_slack(t.first)
        ));
    }
    // No upward trend: the second half's rate within half again the first's, plus 2 a
    // minute (this shared VM makes a few late ticks a minute under load, in bursts).
    if let (Some(a), Some(b)) = (first_half, second_half)
        && b > a * 1.5 + 2.0
    {
        failed.push(format!(
            "late ticks {a:.1}/min in the first half, {b:.1}/min in the second"
        ));
    }
    if counts.join_failures as f64 > counts.joins as f64 * MAX_JOIN_FAILURE_PERCENT / 100.0 {
        failed.push(format!(
            "{} of {} joins failed (at most {MAX_JOIN_FAILURE_PERCENT} %)",
            counts.join_failures, counts.joins
        ));
    }
    if counts.leaves == 0 {
        failed.push("no churn: no leg left".to_owned());
    }
    Soak {
        legs: setup.legs,
        conferences: setup.conferences,
        churn_per_second: setup.per_second,
        warmup_s: warm.map_or(warmup_s, |s| s.t_s),
        fill_s: setup.fill_s,
        rss_warm_mb,
        rss_end_mb,
        rss_drift_percent,
        rss_drift_second_half_percent,
        rss_mb: span(after, |s| s.rss_mb),
        open_fds,
        threads,
        late_ticks_per_min: rate,
        late_ticks_per_min_first_half: first_half,
        late_ticks_per_min_second_half: second_half,
        joins: counts.joins,
        join_failures: counts.join_failures,
        leaves: counts.leaves,
        leave_failures: counts.leave_failures,
        sip_joins: counts.sip,
        api_joins: counts.api,
        srtp_joins: counts.srtp,
        failure_examples: counts.examples,
        pass: failed.is_empty(),
        failed,
        samples: samples.to_vec(),
    }
}

/// The soak's rows of the end-of-run table.
pub fn rows(k: &Soak) -> Vec<(&'static str, String)> {
    let f = |v: Option<f64>, unit: &str| v.map_or("-".to_owned(), |v| format!("{v:.1}{unit}"));
    let span = |s: Option<Span>| {
        s.map_or("-".to_owned(), |s| {
            format!("{:.0} / {:.0} / {:.0}", s.first, s.last, s.max)
        })
    };
    vec![
        (
            "soak legs / rooms",
            format!(
                "{} in {} conferences, {} replaced a second",
                k.legs, k.conferences, k.churn_per_second
            ),
        ),
        (
            "joins / leaves",
            format!(
                "{} / {} (SIP {}, API {}, SRTP {})",
                k.joins, k.leaves, k.sip_joins, k.api_joins, k.srtp_joins
            ),
        ),
        (
            "failures join / leave",
            format!("{} / {}", k.join_failures, k.leave_failures),
        ),
        (
            "RSS warm / end",
            format!(
                "{} / {} (after {:.0} s; max {})",
                f(k.rss_warm_mb, " MB"),
                f(k.rss_end_mb, " MB"),
                k.warmup_s,
                f(k.rss_mb.map(|s| s.max), " MB")
            ),
        ),
        (
            "RSS drift",
            format!(
                "{} (second half {})",
                f(k.rss_drift_percent, " %"),
                f(k.rss_drift_second_half_percent, " %")
            ),
        ),
        ("open fds first/last/max", span(k.open_fds)),
        ("threads first/last/max", span(k.threads)),
        (
            "late ticks / min",
            format!(
                "{} (first half {}, second half {})",
                f(k.late_ticks_per_min, ""),
                f(k.late_ticks_per_min_first_half, ""),
                f(k.late_ticks_per_min_second_half, "")
            ),
        ),
        (
            "verdict",
            if k.pass {
                "PASS".to_owned()
            } else {
                format!("FAIL: {}", k.failed.join("; "))
            },
        ),
    ]
}

#[cfg(test)]
#[path = "soak_tests.rs"]
mod tests;
