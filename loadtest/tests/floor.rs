//! The floor (`--target floor`) against the generator: a short town hall and a meeting, every
//! leg receiving its packet each tick, the reflector's CPU measured, the report comparing.
//! Loopback only, a few seconds each.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use confab_loadtest::{Options, Scenario, Target, report, run};

fn options(scenario: Scenario) -> Options {
    Options {
        target: Target::Floor,
        scenario,
        listeners: 50,
        rooms: 3,
        room_size: 10,
        talkers: 3,
        duration: Duration::from_secs(3),
        warmup: Duration::from_secs(1),
        threads: 1,
        ..Options::default()
    }
}

#[test]
fn a_town_hall_against_the_floor_gets_every_packet() {
    let s = run(&options(Scenario::Townhall)).unwrap();
    assert_eq!((s.participants, s.rooms, s.talkers), (52, 1, 2));
    // One packet per leg and tick, as from a bridge: the floor's ticks and the generator's are
    // not in phase, so a leg may see one tick more or less of the 150 measured.
    assert!((s.rx_ratio - 1.0).abs() <= 0.015, "received {}", s.rx_ratio);
    assert_eq!(s.gaps, 0);
    // The reflector's own threads were measured (not a process of its own).
    let cpu = s.bridge_cpu_percent.expect("the floor's CPU");
    assert!((0.0..50.0).contains(&cpu), "floor CPU {cpu} %");
    assert_eq!(s.bridge_pid, None);
    assert!(s.timeline.len() >= 3, "{:?}", s.timeline);
    assert!(s.timeline.iter().all(|t| t.load_ratio.is_some()));
    // Its own late ticks are counted (a busy shared machine may delay a tick now and then).
    assert!(s.late_ticks.is_some_and(|l| l < 10.0), "{s:?}");
    // The talker's clicks reach the listeners within a tick or so (every second, 50 listeners).
    assert!(
        s.latency_ms.samples >= 100,
        "{} clicks",
        s.latency_ms.samples
    );
    let p99 = s.latency_ms.p99.unwrap();
    assert!(p99 > 0.0 && p99 < 200.0, "p99 {p99} ms");
}

#[test]
fn meetings_against_the_floor_and_the_report_compares() {
    let floor = run(&options(Scenario::Meetings)).unwrap();
    assert_eq!((floor.participants, floor.rooms, floor.talkers), (30, 3, 9));
    assert!(
        (floor.rx_ratio - 1.0).abs() <= 0.015,
        "received {}",
        floor.rx_ratio
    );
    assert!(floor.bridge_cpu_percent.is_some());
    // A bridge of the same scenario that costs twice the floor's CPU per participant.
    let mut bridge = floor.clone();
    bridge.target = Target::Confab;
    bridge.bridge_cpu_percent = Some(2.0);
    let mut floor = floor;
    floor.bridge_cpu_percent = Some(1.0);
    let runs = [bridge, floor];
    assert_eq!(report::floor_multiple(&runs[0], &runs), Some(2.0));
    assert_eq!(report::floor_multiple(&runs[1], &runs), None);
    assert_eq!(
        report::floor_comparison(&runs),
        "confab: CPU per participant 2x the floor's (meetings scenario)\n"
    );
    let html = report::html(&runs);
    assert!(html.contains("<td>CPU per participant against the floor</td><td>2×</td>"));
    assert!(html.contains("2× floor"), "the bar says it too");
}

#[test]
fn the_floor_refuses_what_it_cannot_do() {
    for (scenario, srtp) in [
        (Scenario::Dialin, false),
        (Scenario::Soak, false),
        (Scenario::Meetings, true),
    ] {
        let o = Options {
            srtp,
            ..options(scenario)
        };
        assert!(run(&o).is_err(), "{scenario:?} srtp {srtp}");
    }
}
