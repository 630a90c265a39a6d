use super::*;

fn s(t_s: f64, rss: f64, fds: f64, threads: u64, late: f64) -> SoakSample {
    SoakSample {
        t_s,
        legs: 10,
        rss_mb: Some(rss),
        open_fds: Some(fds),
        threads: Some(threads),
        late_ticks: Some(late),
        cpu_seconds: None,
    }
}

fn counts(joins: u64, failures: u64, leaves: u64) -> Counts {
    Counts {
        joins,
        join_failures: failures,
        leaves,
        leave_failures: 0,
        sip: 0,
        api: 0,
        srtp: 0,
        examples: Vec::new(),
    }
}

fn setup() -> Setup {
    Setup {
        legs: 10,
        conferences: 2,
        per_second: 1,
        fill_s: 1.0,
    }
}

#[test]
fn a_flat_run_passes_and_figures_start_after_the_warmup() {
    // The fill's memory (t = 0) is before the warm-up and does not count.
    let v = vec![
        s(0.0, 50.0, 40.0, 10, 0.0),
        s(60.0, 100.0, 120.0, 12, 1.0),
        s(120.0, 101.0, 121.0, 12, 2.0),
        s(180.0, 102.0, 119.0, 13, 3.0),
    ];
    let k = judge(&v, 60.0, setup(), counts(200, 0, 190));
    assert!(k.pass, "{:?}", k.failed);
    assert_eq!(k.rss_warm_mb, Some(100.0));
    assert_eq!(k.rss_end_mb, Some(102.0));
    assert!((k.rss_drift_percent.unwrap() - 2.0).abs() < 1e-9);
    assert!((k.rss_drift_second_half_percent.unwrap() - 1.0 / 1.01).abs() < 1e-9);
    let fds = k.open_fds.unwrap();
    assert_eq!((fds.first, fds.last, fds.max), (120.0, 119.0, 121.0));
    assert!((k.late_ticks_per_min.unwrap() - 1.0).abs() < 1e-9);
    assert!((k.late_ticks_per_min_first_half.unwrap() - 1.0).abs() < 1e-9);
}

#[test]
fn leaks_and_trends_fail() {
    let v = vec![
        s(0.0, 100.0, 120.0, 12, 0.0),
        s(60.0, 104.0, 130.0, 12, 1.0),
        s(120.0, 110.0, 180.0, 40, 30.0),
    ];
    let k = judge(&v, 0.0, setup(), counts(100, 5, 90));
    assert!(!k.pass);
    let all = k.failed.join("; ");
    for what in [
        "RSS drift",
        "open fds",
        "threads",
        "late ticks",
        "joins failed",
    ] {
        assert!(all.contains(what), "{what}: {all}");
    }
    let k = judge(&v, 0.0, setup(), counts(100, 0, 0));
    assert!(k.failed.iter().any(|f| f.contains("no churn")));
}

#[test]
fn the_leaving_leg_is_drawn_from_those_up() {
    let mut r = Rng::new();
    for n in 1..50 {
        assert!(r.below(n) < n);
    }
    assert_eq!(r.below(0), 0);
}
