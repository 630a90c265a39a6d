//! The soak's figures and verdict: what it counted and sampled, judged against its targets,
//! and its rows of the end-of-run table.

use serde::Serialize;

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

/// What the churn counted.
pub(super) struct Counts {
    pub(super) joins: u64,
    pub(super) join_failures: u64,
    pub(super) leaves: u64,
    pub(super) leave_failures: u64,
    pub(super) sip: u64,
    pub(super) api: u64,
    pub(super) srtp: u64,
    pub(super) examples: Vec<String>,
}

impl Counts {
    pub(super) fn failed(&mut self, what: String) {
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }
}

/// How the soak was set up (for its figures).
pub(super) struct Setup {
    pub(super) legs: usize,
    pub(super) conferences: usize,
    pub(super) per_second: usize,
    pub(super) fill_s: f64,
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
pub(super) fn judge(samples: &[SoakSample], warmup_s: f64, setup: Setup, counts: Counts) -> Soak {
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
