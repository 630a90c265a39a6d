//! confab-loadtest: simulated participants that send real encoded audio to a conferencing
//! bridge (Confab, or Janus AudioBridge to compare), receive and check what comes back, and
//! measure the bridge: packets received against expected, gaps, bridge-added latency (marker
//! clicks), the bridge process's CPU and memory, and Confab's own late ticks and load.
//!
//! Every run is bounded: a duration and a participant cap. The bridge may be on another host
//! (`net`): its API over http:// or https://, our legs bound where the options say.

pub mod about;
pub mod bridges;
pub mod floor;
pub mod http;
pub mod leg;
pub mod measure;
pub mod net;
mod options;
pub mod postgres;
pub mod quality;
pub mod report;
mod sip_uac;
pub mod soak;
mod worker;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde::Serialize;

use bridges::{Bridge, Confab, Janus, Way};
use floor::Floor;
use worker::{LEGS_PER_SOCKET, Run, Totals};

use leg::{Clicks, Codec, SimLeg, Sockets, Voice};
use measure::{CpuOf, percentile, proc_sample};

pub use options::{Options, Scenario, Signal, Target};

/// One second of the run, for the report's plots.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub participants: usize,
    pub cpu_percent: f64,
    pub load_ratio: Option<f64>,
}

/// A ramp step.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub participants: usize,
    pub bridge_cpu_percent: f64,
    pub rx_ratio: f64,
    pub late_ticks: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub ok: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub samples: usize,
}

/// The figures of a run (what `--json` writes).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub target: Target,
    pub scenario: Scenario,
    pub codec: Codec,
    pub participants: usize,
    pub talkers: usize,
    pub rooms: usize,
    pub duration_s: f64,
    pub bridge_pid: Option<u32>,
    pub bridge_cpu_percent: Option<f64>,
    pub bridge_rss_mb: Option<f64>,
    pub rx_ratio: f64,
    pub gaps: u64,
    pub late_ticks: Option<f64>,
    pub max_load_ratio: Option<f64>,
    pub latency_ms: Latency,
    /// Ramp: participants at the last step the bridge kept up with.
    pub capacity: Option<usize>,
    /// PESQ (MOS-LQO, ITU-T P.862) of the quality room's listener, with `--pesq`.
    pub pesq: Option<f64>,
    pub steps: Vec<Step>,
    pub timeline: Vec<Sample>,
    /// Latencies (ms), sorted, for the CDF.
    pub latencies_ms: Vec<f64>,
    /// The soak's figures and verdict (soak only).
    pub soak: Option<soak::Soak>,
    /// The command, versions, build, machine and date of the run.
    pub about: about::About,
}

/// The legs of one room: `talkers` talking, the first of them clicking.
fn room_legs(
    o: &Options,
    sockets: &mut Sockets,
    room: usize,
    size: usize,
    talkers: usize,
    base: u32,
) -> anyhow::Result<Vec<SimLeg>> {
    let clicks = Arc::new(Clicks::default());
    let mut legs = Vec::with_capacity(size);
    for i in 0..size {
        let voice = if i < talkers {
            match o.signal {
                Signal::Tone => Voice::Tone(300.0 + 110.0 * i as f32),
                Signal::Speech => Voice::Speech((room * 31 + i) as u32),
            }
        } else {
            Voice::Silent
        };
        let decode = i < talkers || o.decode_every <= 1 || i % o.decode_every == 0;
        legs.push(SimLeg::new(
            o.codec,
            voice,
            i == 0 && talkers > 0,
            clicks.clone(),
            decode,
            base + (room * 1000 + i) as u32,
            sockets.take()?,
        )?);
    }
    Ok(legs)
}

/// Samples the bridge once a second while `f` says to go on.
struct Monitor {
    cpu: Option<CpuOf>,
    start: Instant,
    last: Option<(Instant, f64)>,
    timeline: Vec<Sample>,
}

impl Monitor {
    fn sample(&mut self, participants: usize, bridge: &dyn Bridge) -> Option<f64> {
        let now = Instant::now();
        // A look right after the last one (the warm-up's last and the run's first) would be
        // a few ms of 10 ms clock ticks: 0 % or twice the truth. The next look spans both.
        if self
            .last
            .is_some_and(|(t, _)| now.duration_since(t) < Duration::from_millis(500))
        {
            return None;
        }
        let cpu = self.cpu.as_ref().and_then(CpuOf::seconds);
        let percent = match (cpu, self.last) {
            (Some(c), Some((t, c0))) => {
                Some((c - c0) / now.duration_since(t).as_secs_f64().max(1e-3) * 100.0)
            }
            _ => None,
        };
        if let Some(c) = cpu {
            self.last = Some((now, c));
        }
        let load = bridge.metrics().map(|m| m.load_ratio);
        if let Some(p) = percent {
            self.timeline.push(Sample {
                t_s: now.duration_since(self.start).as_secs_f64(),
                participants,
                cpu_percent: p,
                load_ratio: load,
            });
        }
        percent
    }
}

fn progress_bar(o: &Options, total: Duration, what: &str) -> indicatif::ProgressBar {
    if !o.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total.as_secs());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} s")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// Waits `d` in one-second steps, sampling the bridge; returns the CPU samples.
fn measure_for(
    d: Duration,
    run: &Run,
    monitor: &mut Monitor,
    bridge: &dyn Bridge,
    bar: &indicatif::ProgressBar,
) -> Vec<f64> {
    let end = Instant::now() + d;
    let mut cpu = Vec::new();
    monitor.sample(run.participants, bridge);
    while Instant::now() < end {
        std::thread::sleep(
            Duration::from_secs(1).min(end.saturating_duration_since(Instant::now())),
        );
        if let Some(p) = monitor.sample(run.participants, bridge) {
            cpu.push(p);
        }
        bar.inc(1);
    }
    cpu
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn window(totals: &Totals) -> (u64, u64, Vec<u64>) {
    let lat = totals
        .latencies
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    (
        totals.received.load(Ordering::Relaxed),
        totals.expected.load(Ordering::Relaxed),
        lat,
    )
}

/// Runs a scenario against the bridge and measures it.
pub fn run(o: &Options) -> anyhow::Result<Summary> {
    let confab_api = || http::endpoint(&o.api, o.api_ca.as_deref());
    // Where our legs live: towards the bridge's API host (the floor is in this process).
    let towards = match o.target {
        Target::Confab => confab_api()?.0.addr.ip(),
        Target::Janus => http::parse_base(&o.janus)?.0.addr.ip(),
        Target::Floor => IpAddr::from([127, 0, 0, 1]),
    };
    let local = net::Local::resolve(towards, o.bind, o.media_advertise, o.bridge_media)?;
    let confab = |way: Way| -> anyhow::Result<Confab> {
        Confab::new(confab_api()?.0, o.token.clone(), o.sip, way, local)
    };
    let mut bridge: Box<dyn Bridge> = match (o.target, o.scenario) {
        (Target::Janus, Scenario::Dialin) => {
            return Err(anyhow!(
                "dial-in is a Confab scenario (Janus has no SIP here)"
            ));
        }
        (Target::Janus, _) if o.srtp => {
            return Err(anyhow!(
                "--srtp is for Confab (its API and SIP ways); Janus' participants here are plain RTP"
            ));
        }
        (Target::Janus, Scenario::Soak) => {
            return Err(anyhow!(
                "the soak is a Confab scenario (its churn mixes SIP and API legs)"
            ));
        }
        (Target::Janus, _) => {
            let (api, path) = http::parse_base(&o.janus)?;
            Box::new(Janus::new(api, path, local)?)
        }
        (Target::Confab, Scenario::Soak) => {
            let mut confab = confab(Way::Api)?;
            let pid = o.pid.or_else(|| confab_pid(&confab));
            let mut o = o.clone();
            o.bind = Some(local.bind);
            let result = soak::run(&o, &mut confab, pid);
            confab.teardown();
            return result;
        }
        (Target::Confab, Scenario::Dialin) => Box::new(confab(Way::Sip)?.with_srtp(o.srtp)),
        (Target::Confab, _) => Box::new(confab(Way::Api)?.with_srtp(o.srtp)),
        (Target::Floor, Scenario::Dialin | Scenario::Soak) => {
            return Err(anyhow!(
                "the floor relays RTP only (no SIP, no API): run meetings, townhall, idle or ramp"
            ));
        }
        (Target::Floor, _) if o.srtp => {
            return Err(anyhow!("the floor relays plain RTP: --srtp is for Confab"));
        }
        (Target::Floor, _) => Box::new(Floor::start(floor::lifetime(o))?),
    };
    let mut o = o.clone();
    o.bind = Some(local.bind);
    if o.scenario == Scenario::Dialin {
        o.codec = Codec::Pcmu;
    }
    let pid = o.pid.or_else(|| match o.target {
        Target::Confab => bridge
            .confab_api()
            .and_then(|(api, _)| local_bridge_pid(&api)),
        // Janus on another host is measured by its process only with --pid.
        Target::Janus if !towards.is_loopback() => None,
        Target::Janus => measure::find_process(&["janus"]),
        // In this process: its threads are measured (`Bridge::threads`).
        Target::Floor => None,
    });
    let result = run_with(&o, bridge.as_mut(), pid);
    bridge.teardown();
    result
}

/// The process that listens on Confab's API address (exact, whatever else runs), or else the
/// first `confab serve` found.
fn confab_pid(confab: &Confab) -> Option<u32> {
    confab
        .confab_api()
        .and_then(|(api, _)| local_bridge_pid(&api))
}

/// A bridge on loopback is this host's: the process listening on its API port, or else the
/// first `confab serve`. One on another host is measured only when `--pid` names it.
fn local_bridge_pid(api: &http::Endpoint) -> Option<u32> {
    if !api.addr.ip().is_loopback() {
        return None;
    }
    measure::pid_listening_on(api.addr).or_else(|| measure::find_process(&["confab", "serve"]))
}

fn run_with(o: &Options, bridge: &mut dyn Bridge, pid: Option<u32>) -> anyhow::Result<Summary> {
    let about = about::About::here();
    let mut run = Run::new(o.threads);
    let mut monitor = Monitor {
        cpu: bridge
            .threads()
            .map(CpuOf::Threads)
            .or(pid.map(CpuOf::Process)),
        start: Instant::now(),
        last: None,
        timeline: Vec::new(),
    };
    let metrics_before = bridge.metrics();
    let mut rooms = 0usize;
    let mut talkers = 0usize;
    let mut sockets = Sockets::new(LEGS_PER_SOCKET).bound(o.bind.unwrap_or(LOOPBACK));
    // The quality room comes first, so that it is heard through the whole run.
    let quality = if o.pesq && o.scenario != Scenario::Idle {
        let id = bridge.create_room(rooms)?;
        let mut room = quality::Room::new(o.codec, &mut sockets)?;
        let [mut talker, mut listener] = room.legs()?;
        bridge.join(&id, &mut talker, &format!("quality-{rooms}-talker"))?;
        bridge.join(&id, &mut listener, &format!("quality-{rooms}-listener"))?;
        run.add(talker);
        run.add(listener);
        rooms += 1;
        talkers += 1;
        Some(room)
    } else {
        None
    };
    let mut add_room =
        |run: &mut Run, bridge: &mut dyn Bridge, size: usize, k: usize| -> anyhow::Result<()> {
            let id = bridge.create_room(rooms)?;
            for (i, mut l) in room_legs(o, &mut sockets, rooms, size, k, 0x1000_0000)?
                .into_iter()
                .enumerate()
            {
                bridge.join(&id, &mut l, &format!("load-{rooms}-{i}"))?;
                run.add(l);
            }
            rooms += 1;
            talkers += k.min(size);
            Ok(())
        };
    let cap = o.max_participants;
    let mut steps = Vec::new();
    let mut capacity = None;
    let mut cpu_all = Vec::new();
    let mut latencies_all: Vec<u64> = Vec::new();
    let (received, expected);
    match o.scenario {
        Scenario::Meetings | Scenario::Dialin => {
            let n = o.rooms.min(cap / o.room_size.max(1));
            for _ in 0..n {
                add_room(&mut run, bridge, o.room_size, o.talkers)?;
            }
        }
        Scenario::Townhall => add_room(&mut run, bridge, (o.listeners + 2).min(cap), 2)?,
        Scenario::Idle => {
            for _ in 0..o.conferences.min(100_000) {
                add_room(&mut run, bridge, 0, 0)?;
            }
        }
        // The soak runs apart (`soak::run`), never here.
        Scenario::Ramp | Scenario::Soak => {}
    }
    if o.scenario == Scenario::Ramp {
        let bar = progress_bar(o, o.step_time * 100, "ramp");
        let mut last_late = bridge.metrics().map(|m| m.late_ticks);
        loop {
            if run.participants + o.step_rooms * o.room_size > cap {
                break;
            }
            for _ in 0..o.step_rooms {
                add_room(&mut run, bridge, o.room_size, o.talkers)?;
            }
            bar.set_message(format!("ramp: {} participants", run.participants));
            // Settle, then measure the step.
            run.measuring.store(false, Ordering::Relaxed);
            std::thread::sleep(o.warmup.min(Duration::from_secs(2)));
            let (r0, e0, _) = window(&run.totals);
            run.measuring.store(true, Ordering::Relaxed);
            let cpu = measure_for(o.step_time, &run, &mut monitor, bridge, &bar);
            run.measuring.store(false, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(100));
            let (r1, e1, lat) = window(&run.totals);
            let rx = ratio(r1 - r0, e1 - e0);
            let late_now = bridge.metrics().map(|m| m.late_ticks);
            let late = match (late_now, last_late) {
                (Some(a), Some(b)) => Some(a - b),
                _ => None,
            };
            last_late = late_now;
            let mut sorted: Vec<f64> = lat.iter().map(|n| *n as f64 / 1e6).collect();
            sorted.sort_by(f64::total_cmp);
            let p99 = percentile(&sorted, 99.0);
            let ok = rx >= 0.99 && late.is_none_or(|l| l <= 0.0) && p99.is_none_or(|p| p <= 100.0);
            cpu_all.extend(&cpu);
            latencies_all.extend(lat);
            steps.push(Step {
                participants: run.participants,
                bridge_cpu_percent: mean(&cpu).unwrap_or(0.0),
                rx_ratio: rx,
                late_ticks: late,
                latency_p99_ms: p99,
                ok,
            });
            if !ok {
                break;
            }
            capacity = Some(run.participants);
        }
        bar.finish_and_clear();
        let (r, e, _) = window(&run.totals);
        received = r;
        expected = e;
    } else {
        let bar = progress_bar(o, o.warmup + o.duration, "running");
        measure_for(o.warmup, &run, &mut monitor, bridge, &bar);
        run.measuring.store(true, Ordering::Relaxed);
        cpu_all = measure_for(o.duration, &run, &mut monitor, bridge, &bar);
        run.measuring.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
        bar.finish_and_clear();
        let (r, e, lat) = window(&run.totals);
        received = r;
        expected = e;
        latencies_all = lat;
    }
    let participants = run.participants;
    let gaps = run.totals.gaps.load(Ordering::Relaxed);
    let rss = pid.and_then(proc_sample).map(|s| s.rss_mb);
    run.finish();
    let pesq = quality.and_then(|q| q.score());
    let metrics_after = bridge.metrics();
    let mut latencies_ms: Vec<f64> = latencies_all.iter().map(|n| *n as f64 / 1e6).collect();
    latencies_ms.sort_by(f64::total_cmp);
    let max_load = monitor
        .timeline
        .iter()
        .filter_map(|s| s.load_ratio)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    Ok(Summary {
        target: o.target,
        scenario: o.scenario,
        codec: o.codec,
        participants,
        talkers,
        rooms,
        duration_s: match o.scenario {
            Scenario::Ramp => (o.step_time.as_secs_f64()) * steps.len() as f64,
            _ => o.duration.as_secs_f64(),
        },
        bridge_pid: pid,
        bridge_cpu_percent: mean(&cpu_all),
        bridge_rss_mb: rss,
        rx_ratio: if o.scenario == Scenario::Idle {
            1.0
        } else {
            ratio(received, expected)
        },
        gaps,
        late_ticks: match (metrics_after, metrics_before) {
            (Some(a), Some(b)) => Some(a.late_ticks - b.late_ticks),
            _ => None,
        },
        max_load_ratio: max_load,
        pesq,
        latency_ms: Latency {
            p50: percentile(&latencies_ms, 50.0),
            p99: percentile(&latencies_ms, 99.0),
            samples: latencies_ms.len(),
        },
        capacity,
        steps,
        timeline: monitor.timeline,
        latencies_ms,
        soak: None,
        about,
    })
}

/// Where legs are bound when nothing else is said.
const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn ratio(received: u64, expected: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        received as f64 / expected as f64
    }
}

/// The end-of-run table.
pub fn table(s: &Summary) -> String {
    let f = |v: Option<f64>, unit: &str| v.map_or("-".to_owned(), |v| format!("{v:.1}{unit}"));
    let mut rows = vec![
        ("target", format!("{:?}", s.target).to_lowercase()),
        ("scenario", format!("{:?}", s.scenario).to_lowercase()),
        ("codec", format!("{:?}", s.codec).to_lowercase()),
        ("participants", s.participants.to_string()),
        ("rooms / talkers", format!("{} / {}", s.rooms, s.talkers)),
        ("measured", format!("{:.0} s", s.duration_s)),
        ("bridge CPU", f(s.bridge_cpu_percent, " % of a core")),
        ("bridge RSS", f(s.bridge_rss_mb, " MB")),
        ("received / expected", format!("{:.4}", s.rx_ratio)),
        ("sequence gaps", s.gaps.to_string()),
        ("late ticks", f(s.late_ticks, "")),
        (
            "max load ratio",
            s.max_load_ratio.map_or("-".into(), |v| format!("{v:.3}")),
        ),
        (
            "latency p50 / p99",
            format!(
                "{} / {} ({} clicks)",
                f(s.latency_ms.p50, " ms"),
                f(s.latency_ms.p99, " ms"),
                s.latency_ms.samples
            ),
        ),
    ];
    if let Some(c) = s.capacity {
        rows.push(("capacity", format!("{c} participants")));
    }
    if let Some(p) = s.pesq {
        rows.push(("PESQ (quality room)", format!("{p:.2}")));
    }
    if let Some(k) = &s.soak {
        rows.extend(soak::rows(k));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}
