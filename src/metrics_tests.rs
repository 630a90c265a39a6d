use super::*;
use std::sync::atomic::Ordering::Relaxed;

/// An engine of two mixer threads, its legs' ports from `port_min` (11 of them).
fn two_mixer_threads(port_min: u16) -> Engine {
    Engine::start(crate::engine::EngineSettings {
        mixer_threads: 2,
        max_talkers: 3,
        media_bind: std::net::IpAddr::from([127, 0, 0, 1]),
        rtp_port_min: port_min,
        rtp_port_max: port_min + 10,
        media_timeout: std::time::Duration::from_secs(30),
        leg_timers: Default::default(),
        records: None,
    })
    .unwrap()
}

/// `/metrics` of `engine` alone (no SIP, WebRTC or store).
fn render_of(engine: &Engine) -> String {
    render(
        engine,
        &Options::default(),
        None,
        None,
        &ApiMetrics::default(),
        &[],
        false,
    )
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
