use super::*;
use std::sync::atomic::Ordering::Relaxed;

/// An engine of two mixer threads, its legs' ports from `port_min` (11 of them).
fn two_mixer_threads(port_min: u16) -> Engine {
    Engine::start(crate::engine::EngineSettings::loopback(2, port_min)).unwrap()
}

/// `/metrics` of `engine` alone (no SIP, WebRTC or store).
fn render_of(engine: &Engine) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(render(
        engine,
        &Options::default(),
        None,
        None,
        &ApiMetrics::default(),
        &[],
        false,
    ))
}

#[test]
fn control_events_dropped_is_summed_over_the_mixer_threads() {
    let engine = two_mixer_threads(45_100);
    let render = || render_of(&engine);
    let text = render();
    // There at zero, so alerts have a series to read.
    assert!(
        text.contains("# TYPE confab_control_events_dropped counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP confab_control_events_dropped Control events"),
        "{text}"
    );
    assert!(
        text.contains("\nconfab_control_events_dropped_total 0\n"),
        "{text}"
    );
    let counters = engine.mixer_counters();
    assert_eq!(counters.len(), 2);
    counters[0].control_events_dropped.fetch_add(3, Relaxed);
    counters[1].control_events_dropped.fetch_add(4, Relaxed);
    let text = render();
    assert!(
        text.contains("\nconfab_control_events_dropped_total 7\n"),
        "{text}"
    );
}

#[test]
fn tick_start_delay_and_realtime_are_over_all_mixer_threads() {
    let engine = two_mixer_threads(45_120);
    let render = || render_of(&engine);
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    let counters = engine.mixer_counters();
    // The threads ran normally scheduled (tests never set the policy).
    let text = render();
    assert!(
        text.contains("# TYPE confab_mixer_tick_start_delay_seconds histogram\n"),
        "{text}"
    );
    assert_eq!(value(&text, "confab_mixer_realtime"), 0.0);
    counters[0].realtime.store(true, Relaxed);
    assert_eq!(value(&render(), "confab_mixer_realtime"), 0.0);
    counters[1].realtime.store(true, Relaxed);
    assert_eq!(value(&render(), "confab_mixer_realtime"), 1.0);

    // A start 150 ms late on one thread, 1.5 ms on the other: one past the last bound, one
    // at 2 ms and above (the threads' own ticks only add to these).
    let text = render();
    let bucket = |text: &str, le: &str| {
        value(
            text,
            &format!("confab_mixer_tick_start_delay_seconds_bucket{{le=\"{le}\"}}"),
        )
    };
    let (over, two_ms, sum) = (
        bucket(&text, "+Inf") - bucket(&text, "0.1"),
        bucket(&text, "0.002") - bucket(&text, "0.001"),
        value(&text, "confab_mixer_tick_start_delay_seconds_sum"),
    );
    counters[0].start_delay.observe(150_000);
    counters[1].start_delay.observe(1_500);
    let text = render();
    assert!(
        bucket(&text, "+Inf") - bucket(&text, "0.1") >= over + 1.0,
        "{text}"
    );
    assert!(
        bucket(&text, "0.002") - bucket(&text, "0.001") >= two_ms + 1.0,
        "{text}"
    );
    assert!(value(&text, "confab_mixer_tick_start_delay_seconds_sum") >= sum + 0.1515);
}

#[test]
fn names_follow_prometheus_conventions_and_each_fact_has_one_series() {
    let engine = two_mixer_threads(45_140);
    let om = render_of(&engine);
    assert!(
        om.contains(&format!(
            "\nconfab_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{om}"
    );
    // SRTP authentication failures are a reason of the dropped packets, not a second counter.
    assert!(!om.contains("srtp_auth_failures"), "{om}");
    assert!(
        om.contains("confab_dropped_packets_total{reason=\"srtp-auth\"} 0\n"),
        "{om}"
    );
    // WebRTC's ICE timeouts and DTLS failures are disconnect reasons, there at 0.
    for reason in ["ice-timeout", "dtls-failed"] {
        assert!(
            om.contains(&format!(
                "confab_participants_disconnected_total{{reason=\"{reason}\"}} 0\n"
            )),
            "{om}"
        );
    }
    let text = text::prometheus_text(&om);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            // Base units, spelled out.
            for abbreviated in ["_ms", "_us", "_hz", "_kb", "_mb", "_percent"] {
                assert!(!name.contains(abbreviated), "{line}");
            }
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        }
    }
    assert!(!text.contains("# EOF"), "{text}");
}

#[test]
fn jitter_is_a_histogram_in_seconds_over_the_mixer_threads() {
    let engine = two_mixer_threads(45_160);
    let counters = engine.mixer_counters();
    // Idle threads look at no leg: nothing observed.
    let text = render_of(&engine);
    assert!(
        text.contains("# TYPE confab_rtp_jitter_seconds histogram\n"),
        "{text}"
    );
    assert!(
        text.contains("\nconfab_rtp_jitter_seconds_count 0\n"),
        "{text}"
    );
    // 15 ms on one thread, 0.3 s (past the last bound) on the other.
    counters[0].jitter.observe(15_000);
    counters[1].jitter.observe(300_000);
    let text = render_of(&engine);
    for series in [
        "confab_rtp_jitter_seconds_bucket{le=\"0.01\"} 0",
        "confab_rtp_jitter_seconds_bucket{le=\"0.02\"} 1",
        "confab_rtp_jitter_seconds_bucket{le=\"0.2\"} 1",
        "confab_rtp_jitter_seconds_bucket{le=\"+Inf\"} 2",
        "confab_rtp_jitter_seconds_count 2",
        "confab_rtp_jitter_seconds_sum 0.315",
    ] {
        assert!(
            text.contains(&format!("\n{series}\n")),
            "{series} in\n{text}"
        );
    }
}
