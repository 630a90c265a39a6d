//! The two text formats `/metrics` speaks. prometheus-client writes OpenMetrics, whose
//! counter families are named without `_total` (`# TYPE x counter`, sample `x_total`); the
//! Prometheus text format 0.0.4, what `promtool check metrics`, curl users and older scrapers
//! read, names the family as its samples (`# TYPE x_total counter`) and has no `# EOF`. The
//! samples are the same in both, so the older format is the newer one with the counters'
//! descriptors renamed.

/// OpenMetrics text, as Prometheus servers ask for it.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format, for any other client.
pub(crate) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (Prometheus sends it first, weighted
/// highest; a client that does not name it gets the older format, as client_golang does).
pub(crate) fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let named = parts
                .next()
                .is_some_and(|m| m.eq_ignore_ascii_case("application/openmetrics-text"));
            // `q=0` is a refusal.
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            named && !refused
        })
    })
}

/// The exposition in the Prometheus text format 0.0.4, from OpenMetrics text.
pub(crate) fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 8 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_as_their_samples_and_the_rest_is_kept() {
        let om = "# HELP a_things Things.\n# TYPE a_things counter\na_things_total{x=\"1\"} 3\n\
                  # HELP b_level Level.\n# TYPE b_level gauge\nb_level 0.5\n\
                  # HELP c_seconds Time.\n# TYPE c_seconds histogram\n\
                  c_seconds_bucket{le=\"+Inf\"} 1\nc_seconds_sum 0.1\nc_seconds_count 1\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP a_things_total Things.\n# TYPE a_things_total counter\n\
             a_things_total{x=\"1\"} 3\n\
             # HELP b_level Level.\n# TYPE b_level gauge\nb_level 0.5\n\
             # HELP c_seconds Time.\n# TYPE c_seconds histogram\n\
             c_seconds_bucket{le=\"+Inf\"} 1\nc_seconds_sum 0.1\nc_seconds_count 1\n"
        );
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(wants_openmetrics(Some("Application/OpenMetrics-Text")));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text;q=0, text/plain"
        )));
    }
}
