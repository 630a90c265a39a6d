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

use crate::bridges::{Bridge, Confab, Joined, Way};
use crate::leg::{Clicks, Codec, SimLeg, Sockets, Voice};
use crate::measure::{self, BridgeMetrics};
use crate::worker::{LEGS_PER_SOCKET, Run};
use crate::{LOOPBACK, Latency, Options, Sample, Signal, Summary, progress_bar, ratio};

mod verdict;

use verdict::{Counts, Setup, judge};
pub use verdict::{MAX_JOIN_FAILURE_PERCENT, MAX_RSS_DRIFT_PERCENT, Soak, SoakSample, Span, rows};

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
            .and_then(|(a, t)| measure::confab_metrics(a, t.as_deref()))
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
        sockets: Sockets::new(LEGS_PER_SOCKET).bound(o.bind.unwrap_or(LOOPBACK)),
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

#[cfg(test)]
#[path = "soak_tests.rs"]
mod tests;
