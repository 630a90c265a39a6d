//! Faults a node meets in the field, on a real `confab serve`: killed with SIGKILL mid-call,
//! and stalled (SIGSTOP) for half a second while calls run.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use confab::media::codec::Codec;
use support::Endpoint;
use support::server::Server;

fn join(server: &Server, cid: &str, e: &Endpoint, who: &str) -> (String, SocketAddr) {
    server.join_endpoint(cid, e, (0, "PCMU/8000"), who)
}

fn metric(server: &Server, name: &str) -> f64 {
    let (_, _, text) = support::server::http_raw(server.api, "GET", "/metrics", None, None, &[]);
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_node_killed_mid_call_closes_its_records_as_abandoned_at_the_next_start() {
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    let (s, v) = server.call("POST", "/v1/conferences", Some(r#"{"id":"5150"}"#));
    assert_eq!(s, 201, "{v}");
    let mut a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 1);
    let mut b = Endpoint::new(Codec::Pcmu, 660.0, -20.0, 2);
    let (_, to_a) = join(&server, "5150", &a, "Ann");
    let (_, to_b) = join(&server, "5150", &b, "Bob");
    support::run(
        &mut [(&mut a, to_a), (&mut b, to_b)],
        Duration::from_secs(1),
        |_| {},
    );
    assert!(b.level_of(440.0, 0.5) > -22.0);
    // SIGKILL in the middle of the call (the guard's drop kills with -9 and reaps).
    drop(server);

    let server = Server::start(data.path(), None, &[]);
    // The data directory is intact: the conference is still there.
    assert_eq!(server.call("GET", "/v1/conferences/5150", None).0, 200);
    let (s, v) = server.call("GET", "/v1/records?conference=5150", None);
    assert_eq!(s, 200, "{v}");
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{v}");
    for r in records {
        assert_eq!(r["disconnect_reason"], "abandoned", "{r}");
        assert!(r["left_at"].is_i64() || r["left_at"].is_string(), "{r}");
    }
    drop(server);
}

#[test]
fn a_stalled_node_counts_its_late_ticks_and_loses_nobody() {
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    let (s, v) = server.call("POST", "/v1/conferences", Some(r#"{"id":"5151"}"#));
    assert_eq!(s, 201, "{v}");
    // Ann talks in bursts (400 ms on, 400 ms off), Bob listens.
    let mut a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 1);
    a.bursts = Some((20, 20));
    let mut b = Endpoint::new(Codec::Pcmu, 660.0, -90.0, 2);
    let (_, to_a) = join(&server, "5151", &a, "Ann");
    let (_, to_b) = join(&server, "5151", &b, "Bob");
    let start = std::time::Instant::now();
    support::run(
        &mut [(&mut a, to_a), (&mut b, to_b)],
        Duration::from_secs(3),
        |_| {},
    );
    let before = b.onset_delays(&a, start + Duration::from_secs(1));
    let late_before = metric(&server, "confab_mixer_late_ticks");
    // The whole node stops for 500 ms (a paused VM, a starved CPU) while both keep sending.
    let pid = server.pid().to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stop.success());
    let mut resumed = false;
    let stalled = std::time::Instant::now();
    support::run(
        &mut [(&mut a, to_a), (&mut b, to_b)],
        Duration::from_secs(8),
        |tick| {
            if tick == 25 && !resumed {
                let _ = std::process::Command::new("kill")
                    .args(["-CONT", &pid])
                    .status();
                resumed = true;
            }
        },
    );
    assert!(resumed);
    // The stall is counted, and nobody was lost.
    let late = metric(&server, "confab_mixer_late_ticks") - late_before;
    assert!(late >= 20.0, "late ticks counted: {late}");
    let (_, v) = server.call("GET", "/v1/conferences/5151/participants", None);
    let roster = v["participants"].as_array().unwrap();
    assert!(
        roster.iter().all(|p| p["state"] == "connected"),
        "{roster:?}"
    );
    // The delay through the bridge is back where it was within 5 s of the stall's end.
    let after = b.onset_delays(&a, stalled + Duration::from_millis(500 + 5000));
    let worst = |d: &[Duration]| d.iter().max().copied().unwrap_or(Duration::MAX);
    assert!(
        !before.is_empty() && !after.is_empty(),
        "{before:?} {after:?}"
    );
    assert!(
        worst(&after) <= worst(&before) + Duration::from_millis(30),
        "delay before the stall {before:?}, 5 s after it {after:?}"
    );
    drop(server);
}
