//! `--report DIR`: one self-contained HTML page with SVG plots (no scripts, no downloads).

use std::fmt::Write as _;

use crate::Summary;

/// A table row: its label and how to show a run's figure.
type Row = (&'static str, fn(&Summary) -> String);

/// An SVG line plot of `points` (x, y) with axis labels.
fn plot(title: &str, x_label: &str, y_label: &str, series: &[(&str, Vec<(f64, f64)>)]) -> String {
    let (w, h, m) = (560.0, 300.0, 50.0);
    let all: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let mut svg = format!(
        "<figure><figcaption>{title}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{title}\">"
    );
    if all.is_empty() {
        svg.push_str("<text x=\"20\" y=\"40\">no data</text></svg></figure>");
        return svg;
    }
    let x_max = all.iter().map(|p| p.0).fold(f64::MIN, f64::max).max(1e-9);
    let y_max = all.iter().map(|p| p.1).fold(f64::MIN, f64::max).max(1e-9) * 1.1;
    let sx = |x: f64| m + x / x_max * (w - 2.0 * m);
    let sy = |y: f64| h - m - y / y_max * (h - 2.0 * m);
    let _ = write!(
        svg,
        "<line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/><line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"#333\"/>",
        h - m,
        w - m,
        h - m,
        h - m
    );
    for i in 0..=4 {
        let (xv, yv) = (x_max * i as f64 / 4.0, y_max * i as f64 / 4.0);
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{xv:.3}</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{yv:.3}</text>",
            sx(xv),
            h - m + 16.0,
            m - 4.0,
            sy(yv) + 4.0
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{x_label}</text><text x=\"14\" y=\"{}\" font-size=\"12\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">{y_label}</text>",
        w / 2.0,
        h - 8.0,
        h / 2.0,
        h / 2.0
    );
    let colours = ["#0b5cad", "#cf222e", "#1a7f37", "#9a6700"];
    for (i, (name, points)) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{c}\">{name}</text>",
            path.join(" "),
            w - m - 120.0,
            m + 14.0 * (i as f64 + 1.0)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The page for one or more runs (e.g. Confab and Janus in the same scenario).
pub fn html(runs: &[Summary]) -> String {
    let mut body = String::new();
    let name = |s: &Summary| format!("{:?}", s.target).to_lowercase();
    // CPU against participants: ramp steps, or each run's mean as one point.
    let cpu: Vec<(&str, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|s| {
            let points = if s.steps.is_empty() {
                s.timeline
                    .iter()
                    .map(|t| (t.participants as f64, t.cpu_percent))
                    .collect()
            } else {
                s.steps
                    .iter()
                    .map(|st| (st.participants as f64, st.bridge_cpu_percent))
                    .collect()
            };
            (
                if s.target == crate::Target::Confab {
                    "confab"
                } else {
                    "janus"
                },
                points,
            )
        })
        .collect();
    body.push_str(&plot(
        "Bridge CPU against participants",
        "participants",
        "CPU (% of one core)",
        &cpu,
    ));
    let cdf: Vec<(&str, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|s| {
            let n = s.latencies_ms.len().max(1) as f64;
            (
                if s.target == crate::Target::Confab {
                    "confab"
                } else {
                    "janus"
                },
                s.latencies_ms
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (*v, (i + 1) as f64 / n))
                    .collect(),
            )
        })
        .collect();
    body.push_str(&plot(
        "Bridge-added latency (CDF)",
        "latency (ms)",
        "fraction of clicks",
        &cdf,
    ));
    let load: Vec<(&str, Vec<(f64, f64)>)> = runs
        .iter()
        .filter(|s| s.timeline.iter().any(|t| t.load_ratio.is_some()))
        .map(|s| {
            (
                "confab",
                s.timeline
                    .iter()
                    .filter_map(|t| t.load_ratio.map(|l| (t.t_s, l)))
                    .collect(),
            )
        })
        .collect();
    body.push_str(&plot(
        "Mixer load ratio over time",
        "time (s)",
        "load ratio",
        &load,
    ));
    // The soak: memory and descriptors over the run (a leak is a line that climbs).
    for s in runs {
        let Some(k) = &s.soak else { continue };
        let rss: Vec<(f64, f64)> = k
            .samples
            .iter()
            .filter_map(|x| Some((x.t_s, x.rss_mb?)))
            .collect();
        let fds: Vec<(f64, f64)> = k
            .samples
            .iter()
            .filter_map(|x| Some((x.t_s, x.open_fds?)))
            .collect();
        body.push_str(&plot(
            "Soak: bridge resident memory",
            "time (s)",
            "RSS (MB)",
            &[("rss", rss)],
        ));
        body.push_str(&plot(
            "Soak: bridge open file descriptors",
            "time (s)",
            "open fds",
            &[("fds", fds)],
        ));
    }
    let mut table = String::from("<table><tr><th>figure</th>");
    for s in runs {
        let _ = write!(table, "<th>{}</th>", name(s));
    }
    table.push_str("</tr>");
    let rows: [Row; 9] = [
        ("scenario", |s| format!("{:?}", s.scenario).to_lowercase()),
        ("participants", |s| s.participants.to_string()),
        ("bridge CPU (% of a core)", |s| {
            s.bridge_cpu_percent
                .map_or("-".into(), |v| format!("{v:.1}"))
        }),
        ("bridge RSS (MB)", |s| {
            s.bridge_rss_mb.map_or("-".into(), |v| format!("{v:.1}"))
        }),
        ("received / expected", |s| format!("{:.4}", s.rx_ratio)),
        ("late ticks", |s| {
            s.late_ticks.map_or("-".into(), |v| format!("{v:.0}"))
        }),
        ("latency p50 (ms)", |s| {
            s.latency_ms.p50.map_or("-".into(), |v| format!("{v:.1}"))
        }),
        ("latency p99 (ms)", |s| {
            s.latency_ms.p99.map_or("-".into(), |v| format!("{v:.1}"))
        }),
        ("capacity", |s| {
            s.capacity.map_or("-".into(), |v| v.to_string())
        }),
    ];
    for (label, f) in rows {
        let _ = write!(table, "<tr><td>{label}</td>");
        for s in runs {
            let _ = write!(table, "<td>{}</td>", escape(&f(s)));
        }
        table.push_str("</tr>");
    }
    table.push_str("</table>");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>confab-loadtest report</title><style>body{{font:15px system-ui,sans-serif;max-width:62rem;margin:1rem auto;padding:0 1rem}}table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ccc;padding:.3rem .6rem;text-align:left}}figure{{margin:1.5rem 0}}figcaption{{font-weight:600}}</style></head><body><h1>confab-loadtest report</h1>{table}{body}</body></html>"
    )
}
