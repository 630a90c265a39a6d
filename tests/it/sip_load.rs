//! SIPp against Confab's SIP server on 127.0.0.1: 200 calls, at most 50 at once, 20 per second,
//! spread over 10 conferences, each streaming µ-law audio for 2.5 s. All must succeed; SIPp's
//! response times are printed; every caller's audio reached the bridge (the roster says its
//! media was up) and every caller left by hanging up.

use crate::support;

use std::process::Command;
use std::time::{Duration, Instant};

use confab::conference::{DisconnectReason, Policy, State};
use support::clients::{SipBridge, free_port};

const CONFERENCES: usize = 10;
const CALLS: usize = 200;

#[test]
fn sipp_200_calls_over_10_conferences() {
    if !support::require(&["sipp", "sox"]) {
        return;
    }
    let _turn = support::exclusive();
    let bridge = SipBridge::with_room(150);
    let meetings: Vec<String> = (0..CONFERENCES).map(|i| format!("{}", 2000 + i)).collect();
    for m in &meetings {
        bridge
            .engine
            .create_conference(m, Policy::default())
            .wait()
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("tone.ulaw");
    let ok = Command::new("sox")
        .args([
            "-D", "-n", "-r", "8000", "-c", "1", "-e", "u-law", "-t", "raw",
        ])
        .arg(&audio)
        .args(["synth", "3", "sine", "440", "vol", "0.3"])
        .status()
        .expect("sox (Debian package sox) is needed")
        .success();
    assert!(ok);
    let mut injection = String::from("SEQUENTIAL\n");
    for i in 0..CALLS {
        injection.push_str(&format!("{};\n", meetings[i % CONFERENCES]));
    }
    let users = dir.path().join("users.csv");
    std::fs::write(&users, injection).unwrap();
    let stats = dir.path().join("stats.csv");
    // SIPp takes no injected field in rtp_stream: the audio file's path goes in here.
    let template = include_str!("../sipp/uac_conference.xml");
    let scenario = dir.path().join("uac_conference.xml");
    std::fs::write(
        &scenario,
        template.replace("@AUDIO@", &audio.display().to_string()),
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new("sipp")
        .arg(bridge.sip_addr().to_string())
        .arg("-sf")
        .arg(&scenario)
        .arg("-inf")
        .arg(&users)
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &free_port().to_string()])
        .args(["-mp", &free_port().to_string()])
        .args(["-m", &CALLS.to_string(), "-l", "50", "-r", "20"])
        .args(["-nostdin", "-timeout", "90s", "-timeout_error"])
        .args(["-trace_stat", "-fd", "1", "-stf"])
        .arg(&stats)
        .output()
        .expect("sipp (Debian package sip-tester) is needed for this test");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let table = std::fs::read_to_string(&stats).unwrap_or_default();
    let (header, last) = {
        let mut lines = table.lines();
        (
            lines.next().unwrap_or_default(),
            lines.last().unwrap_or_default(),
        )
    };
    let field = |name: &str| {
        header
            .split(';')
            .position(|h| h == name)
            .and_then(|i| last.split(';').nth(i))
            .unwrap_or("?")
            .to_owned()
    };
    println!(
        "sipp: {CALLS} calls in {:.1} s; successful {}, failed {}; INVITE->200 mean {} \
         (sd {}); answered within 10 ms: {}, 10-20 ms: {}, 20-50 ms: {}, 50-100 ms: {}",
        elapsed.as_secs_f64(),
        field("SuccessfulCall(C)"),
        field("FailedCall(C)"),
        field("ResponseTime1(C)"),
        field("ResponseTime1StDev(C)"),
        field("ResponseTimeRepartition1_<10"),
        field("ResponseTimeRepartition1_<20"),
        field("ResponseTimeRepartition1_<50"),
        field("ResponseTimeRepartition1_<100"),
    );
    assert!(
        out.status.success(),
        "sipp exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert_eq!(field("SuccessfulCall(C)"), CALLS.to_string());
    assert_eq!(field("FailedCall(C)"), "0");

    // Everyone's audio arrived, and everyone hung up.
    std::thread::sleep(Duration::from_millis(500));
    let mut total = 0;
    for m in &meetings {
        let roster = bridge.engine.roster(m).wait().unwrap();
        assert_eq!(roster.len(), CALLS / CONFERENCES, "{m}");
        for p in roster {
            assert!(p.media_ready, "{m}: {} sent no audio", p.display_name);
            assert_eq!(
                p.state,
                State::Disconnected(DisconnectReason::Hangup),
                "{m}: {}",
                p.display_name
            );
            total += 1;
        }
    }
    assert_eq!(total, CALLS);
}
