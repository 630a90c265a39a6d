//! `--report DIR`: one self-contained HTML page (no scripts, no downloads, no font files): a
//! header saying what was run where, a table of the figures, and one SVG chart per question:
//! what a participant costs each target, how late the audio arrives, how loaded the bridge was
//! over time, and, for a ramp, CPU against participants up to the capacity.

mod plots;

use std::fmt::Write as _;

use plotters::prelude::{RGBColor, SeriesLabelPosition};

use crate::{Scenario, Summary, Target};
use plots::{Bar, Line, LineChart};

/// The mixer's tick: what a participant's CPU is counted against.
const TICK_US: f64 = 20_000.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn target_name(t: Target) -> &'static str {
    match t {
        Target::Confab => "confab",
        Target::Janus => "janus",
        Target::Floor => "floor",
    }
}

fn scenario_name(s: Scenario) -> String {
    format!("{s:?}").to_lowercase()
}

/// One colour per target, the same in every chart.
fn colour(t: Target) -> RGBColor {
    match t {
        Target::Confab => RGBColor(0x0b, 0x5c, 0xad),
        Target::Janus => RGBColor(0xcf, 0x22, 0x2e),
        Target::Floor => RGBColor(0x6e, 0x77, 0x81),
    }
}

/// How a run is called in legends: its target, and its scenario when the page has several.
fn series_name(s: &Summary, runs: &[Summary]) -> String {
    if runs.iter().any(|r| r.scenario != s.scenario) {
        format!("{} ({})", target_name(s.target), scenario_name(s.scenario))
    } else {
        target_name(s.target).to_owned()
    }
}

/// Microseconds of the bridge's CPU per participant and 20 ms tick: for a ramp at the last
/// step it kept up with (or its first), otherwise over the measured run. None without
/// participants or a CPU figure.
pub fn cpu_per_participant_us(s: &Summary) -> Option<f64> {
    let (cpu, participants) = match s.steps.iter().rev().find(|st| st.ok).or(s.steps.first()) {
        Some(st) => (Some(st.bridge_cpu_percent), st.participants),
        None => (s.bridge_cpu_percent, s.participants),
    };
    let cpu = cpu?;
    (participants > 0).then(|| cpu / 100.0 * TICK_US / participants as f64)
}

/// A bridge's CPU per participant as a multiple of the floor's in the same scenario and codec
/// (a floor run of the same invocation); none for the floor itself, or without one.
pub fn floor_multiple(s: &Summary, runs: &[Summary]) -> Option<f64> {
    if s.target == Target::Floor {
        return None;
    }
    let floor = runs
        .iter()
        .find(|r| r.target == Target::Floor && r.scenario == s.scenario && r.codec == s.codec)?;
    let (mine, base) = (cpu_per_participant_us(s)?, cpu_per_participant_us(floor)?);
    // A floor too small to register (0 % of a core over the run) is no yardstick.
    (base > 0.0).then(|| mine / base)
}

/// "6.2x the floor" lines, one per bridge that has a floor run to compare with.
pub fn floor_comparison(runs: &[Summary]) -> String {
    runs.iter()
        .filter_map(|s| {
            let m = floor_multiple(s, runs)?;
            Some(format!(
                "{}: CPU per participant {}x the floor's ({} scenario)\n",
                target_name(s.target),
                sig3(m),
                scenario_name(s.scenario)
            ))
        })
        .collect()
}

/// A figure with three significant digits at most ("118", "8.43", "0.914", "34").
fn sig3(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let d = (2 - v.abs().log10().floor() as i32).clamp(0, 3) as usize;
    plots::tick(v, d)
}

fn figure(chart: Result<String, String>, caption: &str) -> String {
    match chart {
        Ok(svg) => format!("<figure>{svg}<figcaption>{caption}</figcaption></figure>"),
        Err(e) => format!(
            "<p class=\"note\">A chart could not be drawn ({}): {caption}</p>",
            escape(&e)
        ),
    }
}

fn note(text: &str) -> String {
    format!("<p class=\"note\">{text}</p>")
}

/// What a participant costs each target, side by side.
fn cpu_chart(runs: &[Summary]) -> String {
    let one_scenario = runs.iter().all(|s| s.scenario == runs[0].scenario);
    let bars: Vec<Bar> = runs
        .iter()
        .filter_map(|s| {
            let us = cpu_per_participant_us(s)?;
            Some(Bar {
                label: series_name(s, runs),
                series: target_name(s.target).to_owned(),
                colour: colour(s.target),
                value: us,
                note: match floor_multiple(s, runs) {
                    Some(m) => format!("{} µs, {}× floor", sig3(us), sig3(m)),
                    None => format!("{} µs", sig3(us)),
                },
            })
        })
        .collect();
    if bars.is_empty() {
        return note("CPU per participant: no run had both participants and a CPU figure.");
    }
    figure(
        plots::bar_chart(
            "Bridge CPU per participant",
            &if one_scenario {
                format!("target ({} scenario)", scenario_name(runs[0].scenario))
            } else {
                "target (scenario)".to_owned()
            },
            "µs of CPU per participant and 20 ms tick",
            &bars,
        ),
        "The bridge's CPU time over the measured run divided by its participants and by the \
         number of 20 ms ticks (a ramp: at the last step it kept up with). Lower is better. The \
         floor is a reflector in the generator that only moves the packets: a bridge's multiple \
         of it is what its own work costs on this machine.",
    )
}

/// At most `n` points of a sorted list's CDF.
fn cdf(sorted: &[f64], n: usize) -> Vec<(f64, f64)> {
    let len = sorted.len();
    if len == 0 {
        return Vec::new();
    }
    let picks = len.min(n.max(2));
    (0..picks)
        .map(|k| {
            let i = if picks == 1 {
                0
            } else {
                k * (len - 1) / (picks - 1)
            };
            (sorted[i], (i + 1) as f64 / len as f64)
        })
        .collect()
}

fn latency_chart(runs: &[Summary]) -> String {
    let measured: Vec<&Summary> = runs.iter().filter(|s| !s.latencies_ms.is_empty()).collect();
    if measured.is_empty() {
        return note("Latency: no click was heard, so none was measured.");
    }
    // The tail past 1.5 times the worst p99 would squeeze the rest into a corner.
    let worst_p99 = measured
        .iter()
        .filter_map(|s| s.latency_ms.p99)
        .fold(0.0, f64::max);
    let longest = measured
        .iter()
        .filter_map(|s| s.latencies_ms.last().copied())
        .fold(0.0, f64::max);
    let x_max = plots::round_up(longest.min(worst_p99 * 1.5).max(1.0));
    let lines = measured
        .iter()
        .map(|s| {
            let mut points: Vec<(f64, f64)> = cdf(&s.latencies_ms, 400)
                .into_iter()
                .filter(|p| p.0 <= x_max)
                .collect();
            points.insert(0, (points.first().map_or(0.0, |p| p.0), 0.0));
            Line::new(series_name(s, runs), colour(s.target), points)
        })
        .collect();
    let chart = LineChart {
        title: "Bridge-added latency (CDF)",
        x_label: "latency (ms)",
        y_label: "fraction of clicks",
        lines,
        x_max: Some(x_max),
        y_max: Some(1.0),
        right: None,
        legend: SeriesLabelPosition::LowerRight,
    };
    let cut = if longest > x_max {
        format!(" Clicks later than {} ms are off the chart.", sig3(x_max))
    } else {
        String::new()
    };
    figure(
        plots::line_chart(&chart),
        &format!(
            "How long a click took from the talker's send to its arrival in a listener's \
             decoded audio: the fraction of clicks that arrived within each latency.{cut}"
        ),
    )
}

fn load_chart(runs: &[Summary]) -> String {
    let mut lines = Vec::new();
    for s in runs.iter().filter(|s| !s.timeline.is_empty()) {
        let name = series_name(s, runs);
        lines.push(Line::new(
            format!("{name} CPU (% of a core)"),
            colour(s.target),
            s.timeline.iter().map(|t| (t.t_s, t.cpu_percent)).collect(),
        ));
        let load: Vec<(f64, f64)> = s
            .timeline
            .iter()
            .filter_map(|t| Some((t.t_s, t.load_ratio? * 100.0)))
            .collect();
        if !load.is_empty() {
            let mut l = Line::new(
                format!("{name} load (% of the tick)"),
                colour(s.target),
                load,
            );
            l.dashed = true;
            lines.push(l);
        }
    }
    if lines.is_empty() {
        return note("Load over time: the bridge's CPU could not be sampled.");
    }
    // Participants get an axis of their own when they changed during a run (a ramp).
    let varying = runs.iter().any(|s| {
        s.timeline
            .windows(2)
            .any(|w| w[0].participants != w[1].participants)
    });
    let right = varying.then(|| {
        let lines = runs
            .iter()
            .filter(|s| !s.timeline.is_empty())
            .map(|s| {
                Line::new(
                    format!("{} participants", series_name(s, runs)),
                    colour(s.target),
                    s.timeline
                        .iter()
                        .map(|t| (t.t_s, t.participants as f64))
                        .collect(),
                )
            })
            .collect();
        ("participants", lines)
    });
    // Room above the lines for the legend, which lists up to two lines per run.
    let highest = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let chart = LineChart {
        title: "Load over time",
        x_label: "time since the run started (s)",
        y_label: "percent",
        lines,
        x_max: None,
        y_max: Some(plots::round_up(highest * (1.3 + 0.1 * runs.len() as f64))),
        right,
        legend: SeriesLabelPosition::UpperLeft,
    };
    figure(
        plots::line_chart(&chart),
        "The bridge's CPU each second (100 % is one core) and, dashed, its load: the share of \
         the time Confab's mixer (or the floor's reflector) spent working.",
    )
}

/// CPU against participants, for ramps of more than one step.
fn capacity_chart(runs: &[Summary]) -> String {
    let lines: Vec<Line> = runs
        .iter()
        .filter(|s| s.steps.len() > 1)
        .map(|s| {
            let capacity = s.capacity.map_or("none".to_owned(), |c| c.to_string());
            let mut l = Line::new(
                format!("{}: capacity {capacity}", series_name(s, runs)),
                colour(s.target),
                s.steps
                    .iter()
                    .map(|st| (st.participants as f64, st.bridge_cpu_percent))
                    .collect(),
            );
            l.dots = true;
            l.crosses = s
                .steps
                .iter()
                .filter(|st| !st.ok)
                .map(|st| (st.participants as f64, st.bridge_cpu_percent))
                .collect();
            l
        })
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    let chart = LineChart {
        title: "Capacity: CPU against participants",
        x_label: "participants",
        y_label: "bridge CPU (% of one core)",
        lines,
        x_max: None,
        y_max: None,
        right: None,
        legend: SeriesLabelPosition::UpperLeft,
    };
    figure(
        plots::line_chart(&chart),
        "Each ramp step's mean CPU. A cross marks the step the bridge did not keep up with \
         (packets lost, late ticks or a p99 latency above 100 ms); the capacity is the step \
         before it.",
    )
}

fn soak_charts(s: &Summary) -> String {
    let Some(k) = &s.soak else {
        return String::new();
    };
    let over_time = |title: &'static str, y: &'static str, name: &str, points| LineChart {
        title,
        x_label: "time (s)",
        y_label: y,
        lines: vec![Line::new(name, colour(s.target), points)],
        x_max: None,
        y_max: None,
        right: None,
        legend: SeriesLabelPosition::LowerRight,
    };
    let rss = k
        .samples
        .iter()
        .filter_map(|x| Some((x.t_s, x.rss_mb?)))
        .collect();
    let fds = k
        .samples
        .iter()
        .filter_map(|x| Some((x.t_s, x.open_fds?)))
        .collect();
    let mut out = figure(
        plots::line_chart(&over_time(
            "Soak: bridge resident memory",
            "RSS (MB)",
            "rss",
            rss,
        )),
        "A leak is a line that keeps climbing.",
    );
    out.push_str(&figure(
        plots::line_chart(&over_time(
            "Soak: bridge open file descriptors",
            "open fds",
            "fds",
            fds,
        )),
        "Descriptors should stay flat while legs come and go.",
    ));
    out
}

/// What was run, with what, where and when (the first run's; they share one invocation).
fn header(runs: &[Summary]) -> String {
    let mut scenarios: Vec<String> = Vec::new();
    let mut targets: Vec<&str> = Vec::new();
    for s in runs {
        let sc = scenario_name(s.scenario);
        if !scenarios.contains(&sc) {
            scenarios.push(sc);
        }
        if !targets.contains(&target_name(s.target)) {
            targets.push(target_name(s.target));
        }
    }
    let mut out = format!(
        "<h1>confab-loadtest report</h1><p class=\"lede\">{} against {}</p>",
        escape(&scenarios.join(", ")),
        escape(&targets.join(", "))
    );
    if let Some(a) = runs.first().map(|s| &s.about) {
        let _ = write!(
            out,
            "<dl><dt>Command</dt><dd><code>{}</code></dd><dt>Versions</dt><dd>{}</dd>\
             <dt>Build</dt><dd>{}</dd><dt>Machine</dt><dd>{}</dd><dt>Date</dt><dd>{}</dd></dl>",
            escape(&a.command),
            escape(&a.versions()),
            escape(&a.build),
            escape(&a.machine()),
            escape(&a.date)
        );
    }
    out
}

fn one_decimal(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn table(runs: &[Summary]) -> String {
    let each = |f: &dyn Fn(&Summary) -> String| runs.iter().map(f).collect::<Vec<String>>();
    let mut rows: Vec<(&str, Vec<String>)> = vec![
        ("scenario", each(&|s| scenario_name(s.scenario))),
        ("codec", each(&|s| format!("{:?}", s.codec).to_lowercase())),
        ("participants", each(&|s| s.participants.to_string())),
        (
            "rooms / talkers",
            each(&|s| format!("{} / {}", s.rooms, s.talkers)),
        ),
        ("measured (s)", each(&|s| format!("{:.0}", s.duration_s))),
        (
            "bridge CPU (% of a core)",
            each(&|s| one_decimal(s.bridge_cpu_percent)),
        ),
        (
            "CPU per participant (µs per tick)",
            each(&|s| cpu_per_participant_us(s).map_or("-".into(), sig3)),
        ),
    ];
    if runs.iter().any(|s| s.target == Target::Floor)
        && runs.iter().any(|s| s.target != Target::Floor)
    {
        rows.push((
            "CPU per participant against the floor",
            each(&|s| match (s.target, floor_multiple(s, runs)) {
                (Target::Floor, _) => "1× (the floor)".to_owned(),
                (_, Some(m)) => format!("{}×", sig3(m)),
                (_, None) => "-".to_owned(),
            }),
        ));
    }
    rows.extend([
        ("bridge RSS (MB)", each(&|s| one_decimal(s.bridge_rss_mb))),
        (
            "received / expected",
            each(&|s| format!("{:.4}", s.rx_ratio)),
        ),
        ("sequence gaps", each(&|s| s.gaps.to_string())),
        (
            "late ticks",
            each(&|s| s.late_ticks.map_or("-".into(), |v| format!("{v:.0}"))),
        ),
        (
            "max load ratio",
            each(&|s| s.max_load_ratio.map_or("-".into(), |v| format!("{v:.2}"))),
        ),
        ("latency p50 (ms)", each(&|s| one_decimal(s.latency_ms.p50))),
        ("latency p99 (ms)", each(&|s| one_decimal(s.latency_ms.p99))),
        (
            "clicks measured",
            each(&|s| s.latency_ms.samples.to_string()),
        ),
    ]);
    if runs
        .iter()
        .any(|s| s.capacity.is_some() || !s.steps.is_empty())
    {
        rows.push((
            "capacity",
            each(&|s| s.capacity.map_or("-".into(), |v| v.to_string())),
        ));
    }
    if runs.iter().any(|s| s.pesq.is_some()) {
        rows.push((
            "PESQ (quality room, MOS-LQO)",
            each(&|s| s.pesq.map_or("-".into(), |v| format!("{v:.2}"))),
        ));
    }
    rows.extend([
        ("command", each(&|s| s.about.command.clone())),
        (
            "build",
            each(&|s| format!("{}; {}", s.about.versions(), s.about.build)),
        ),
        ("machine", each(&|s| s.about.machine())),
        ("date", each(&|s| s.about.date.clone())),
    ]);
    let mut table = String::from("<table><tr><th>figure</th>");
    for s in runs {
        let _ = write!(table, "<th>{}</th>", escape(&series_name(s, runs)));
    }
    table.push_str("</tr>");
    for (label, cells) in rows {
        let _ = write!(table, "<tr><td>{label}</td>");
        for c in cells {
            let _ = write!(table, "<td>{}</td>", escape(&c));
        }
        table.push_str("</tr>");
    }
    table.push_str("</table>");
    table
}

const STYLE: &str = "body{font:15px system-ui,sans-serif;max-width:64rem;margin:1rem auto;\
padding:0 1rem;color:#1f2328}h1{margin-bottom:.2rem}.lede{margin-top:0;color:#57606a}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}\
dd{margin:0}code{font-size:13px;word-break:break-all}table{border-collapse:collapse}\
td,th{border-bottom:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}\
td:first-child{white-space:nowrap}figure{margin:1.5rem 0}figure svg{max-width:100%;height:auto}\
figcaption{color:#57606a;max-width:45rem}.note{color:#57606a}";

/// The page for one or more runs (e.g. Confab and Janus in the same scenario).
pub fn html(runs: &[Summary]) -> String {
    let mut body = header(runs);
    body.push_str(&table(runs));
    body.push_str(&cpu_chart(runs));
    body.push_str(&latency_chart(runs));
    body.push_str(&load_chart(runs));
    body.push_str(&capacity_chart(runs));
    for s in runs {
        body.push_str(&soak_charts(s));
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>confab-loadtest \
         report</title><style>{STYLE}</style></head><body>{body}</body></html>"
    )
}

#[cfg(test)]
mod tests;
