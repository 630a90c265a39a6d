use super::*;
use crate::about::About;
use crate::leg::Codec;
use crate::{Latency, Sample, Step};

/// A run as `run` would report it: `participants` for 20 s at `cpu` % of a core, clicks
/// arriving after 20-45 ms, a timeline of 23 one-second samples.
fn summary(target: Target, cpu: f64, participants: usize) -> Summary {
    let latencies_ms: Vec<f64> = (0..500)
        .map(|i| 20.0 + 25.0 * f64::from(i) / 499.0)
        .collect();
    Summary {
        target,
        scenario: Scenario::Meetings,
        codec: Codec::Opus,
        participants,
        talkers: 30,
        rooms: 10,
        duration_s: 20.0,
        bridge_pid: Some(1234),
        bridge_cpu_percent: Some(cpu),
        bridge_rss_mb: Some(41.749),
        rx_ratio: 1.0,
        gaps: 0,
        late_ticks: Some(0.0),
        max_load_ratio: Some(0.437),
        latency_ms: Latency {
            p50: Some(32.5),
            p99: Some(44.75),
            samples: latencies_ms.len(),
        },
        capacity: None,
        pesq: Some(3.61),
        steps: Vec::new(),
        timeline: (1..24)
            .map(|t| Sample {
                t_s: f64::from(t) * 1.0137,
                participants,
                cpu_percent: cpu + f64::from(t % 3) * 1.37,
                load_ratio: (target == Target::Confab).then_some(0.437),
            })
            .collect(),
        latencies_ms,
        soak: None,
        about: About {
            command: "confab-loadtest --target confab,janus --codec opus <x>".into(),
            version: "0.1.0".into(),
            commit: Some("abc1234".into()),
            build: "release, x86_64".into(),
            cpu: Some("AMD EPYC 7B13".into()),
            cores: 2,
            kernel: Some("6.1.0-test".into()),
            date: "2026-12-05 14:03:22 UTC".into(),
        },
    }
}

fn ramp(target: Target) -> Summary {
    let mut s = summary(target, 68.0, 2000);
    s.scenario = Scenario::Ramp;
    s.capacity = Some(1800);
    s.steps = (1..=10)
        .map(|k| Step {
            participants: 200 * k,
            bridge_cpu_percent: 3.4 * 10.0 * k as f64 + 0.123,
            rx_ratio: 1.0,
            late_ticks: Some(0.0),
            latency_p99_ms: Some(34.0),
            ok: k < 10,
        })
        .collect();
    s
}

/// The SVG charts of a page.
fn charts(html: &str) -> Vec<&str> {
    html.split("<svg")
        .skip(1)
        .map(|c| c.split("</svg>").next().unwrap_or(""))
        .collect()
}

/// The text of every `<text>` element of `svg`.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let inner = t.split_once('>')?.1;
            Some(inner.split("</text>").next()?.trim().to_owned())
        })
        .collect()
}

#[test]
fn two_targets_get_a_header_a_table_and_one_chart_per_question() {
    let runs = [
        summary(Target::Confab, 57.9, 100),
        summary(Target::Janus, 149.7, 100),
    ];
    let html = html(&runs);
    assert!(html.starts_with("<!doctype html>"));
    // Self-contained: no scripts, nothing fetched.
    for banned in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(banned), "{banned}");
    }
    // The header.
    for want in [
        "confab-loadtest --target confab,janus --codec opus &lt;x&gt;",
        "confab-loadtest 0.1.0, commit abc1234",
        "release, x86_64",
        "AMD EPYC 7B13, 2 cores, Linux 6.1.0-test",
        "2026-12-05 14:03:22 UTC",
        "meetings against confab, janus",
    ] {
        assert!(html.contains(want), "{want} missing");
    }
    // The table: PESQ, the command, build and machine, and CPU per participant
    // (57.9 % of a core / 100 participants = 115.8 µs of each 20 ms tick).
    for want in [
        "<td>PESQ (quality room, MOS-LQO)</td><td>3.61</td><td>3.61</td>",
        "<td>command</td>",
        "<td>build</td><td>confab-loadtest 0.1.0, commit abc1234; release, x86_64</td>",
        "<td>machine</td>",
        "<td>CPU per participant (µs per tick)</td><td>116</td><td>299</td>",
    ] {
        assert!(html.contains(want), "{want} missing");
    }
    // CPU per participant, latency and load over time; no capacity chart (one point each).
    let charts = charts(&html);
    assert_eq!(charts.len(), 3, "{html}");
    assert!(!html.contains("Capacity"));
    let all: Vec<Vec<String>> = charts.iter().map(|c| texts(c)).collect();
    for (chart, labels) in [
        (
            0,
            &[
                "Bridge CPU per participant",
                "µs of CPU per participant and 20 ms tick",
                "target (meetings scenario)",
                "116 µs",
                "299 µs",
            ][..],
        ),
        (
            1,
            &[
                "Bridge-added latency (CDF)",
                "latency (ms)",
                "fraction of clicks",
                "0.2",
                "0.4",
                "1",
            ][..],
        ),
        (
            2,
            &[
                "Load over time",
                "time since the run started (s)",
                "percent",
                "confab load (% of the tick)",
            ][..],
        ),
    ] {
        for l in labels {
            assert!(
                all[chart].iter().any(|t| t == l),
                "chart {chart}: {l} missing in {:?}",
                all[chart]
            );
        }
    }
    // A legend entry per target in every chart.
    for (i, t) in all.iter().enumerate() {
        for target in ["confab", "janus"] {
            assert!(
                t.iter().any(|x| x.starts_with(target)),
                "chart {i}: no legend for {target}: {t:?}"
            );
        }
    }
    assert_round_ticks(&all);
}

/// Every number drawn is round: at most 3 decimals (the old report printed 41.749 and 0.437).
fn assert_round_ticks(all: &[Vec<String>]) {
    let mut numbers = 0;
    for t in all.iter().flatten() {
        let plain = t.trim_end_matches(" µs");
        if plain.parse::<f64>().is_ok() {
            numbers += 1;
            let decimals = plain.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(decimals <= 3, "tick {t} has {decimals} decimals");
            assert!(!plain.ends_with('0') || !plain.contains('.'), "tick {t}");
        }
    }
    assert!(numbers > 20, "{numbers} numeric labels");
}

#[test]
fn a_ramp_draws_capacity_and_participants_over_time() {
    let mut confab = ramp(Target::Confab);
    // Participants grow over the ramp's timeline.
    for (i, t) in confab.timeline.iter_mut().enumerate() {
        t.participants = 200 * (i / 2 + 1);
    }
    let runs = [confab, ramp(Target::Janus)];
    let html = html(&runs);
    let charts = charts(&html);
    assert_eq!(charts.len(), 4, "CPU, latency, load and capacity");
    let capacity = texts(charts[3]);
    for want in [
        "Capacity: CPU against participants",
        "participants",
        "bridge CPU (% of one core)",
        "confab: capacity 1800",
        "janus: capacity 1800",
    ] {
        assert!(
            capacity.iter().any(|t| t == want),
            "{want} missing: {capacity:?}"
        );
    }
    // The load chart has a participants axis of its own.
    assert!(texts(charts[2]).iter().any(|t| t == "participants"));
    assert!(html.contains("<td>capacity</td><td>1800</td>"));
    // A ramp's CPU per participant is its last good step's: 306.123 % of 20 ms / 1800 = 34.01.
    assert!(html.contains("<td>CPU per participant (µs per tick)</td><td>34</td>"));
    let all: Vec<Vec<String>> = charts.iter().map(|c| texts(c)).collect();
    assert_round_ticks(&all);
}

#[test]
fn a_single_point_run_draws_no_capacity_and_missing_figures_say_so() {
    let mut s = summary(Target::Confab, 0.0, 0);
    s.scenario = Scenario::Idle;
    s.latencies_ms.clear();
    s.pesq = None;
    let html = html(std::slice::from_ref(&s));
    assert!(!html.contains("PESQ"));
    assert!(!html.contains("Capacity"));
    assert!(html.contains("no click was heard"));
    assert!(html.contains("CPU per participant: no run"));
    assert_eq!(charts(&html).len(), 1, "load over time only");
}

/// Writes the test pages where `CONFAB_REPORT_SAMPLES` says, to look at them in a browser.
#[test]
fn sample_pages_can_be_written() {
    let Some(dir) = std::env::var_os("CONFAB_REPORT_SAMPLES") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let two = [
        summary(Target::Confab, 57.9, 100),
        summary(Target::Janus, 149.7, 100),
    ];
    std::fs::write(dir.join("meetings.html"), html(&two)).unwrap();
    let ramps = [ramp(Target::Confab), ramp(Target::Janus)];
    std::fs::write(dir.join("ramp.html"), html(&ramps)).unwrap();
}

#[test]
fn cdfs_are_thinned_but_keep_their_ends() {
    let v: Vec<f64> = (0..10_000).map(f64::from).collect();
    let c = cdf(&v, 400);
    assert_eq!(c.len(), 400);
    assert_eq!(c.first(), Some(&(0.0, 1e-4)));
    assert_eq!(c.last(), Some(&(9999.0, 1.0)));
    assert!(cdf(&[], 400).is_empty());
    assert_eq!(cdf(&[5.0], 400), vec![(5.0, 1.0)]);
}
