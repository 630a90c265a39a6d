//! Digest authentication with real clients: baresip and SIPp (`[authentication]`) call in from
//! outside `sip.trusted` and sign in with an account (a wrong password gets nowhere), and the
//! bridge answers a SIPp trunk's challenge on a dial-out (SIPp's `verifyauth` checks it).
//!
//! What these caught (issue 21): baresip 1.0 (libre 1.x) abandons a 401 in which any
//! challenge names an algorithm other than MD5, so the bridge offers MD5 alone; SIPp signs
//! `sip:REMOTE_IP:REMOTE_PORT` unless told the Request-URI with `-auth_uri`; and a dialled
//! trunk is Connected only once its media arrives, so the SIPp trunk plays audio.

use crate::support;
use support::wait_for;

use std::time::{Duration, Instant};

use confab::conference::{DisconnectReason, ParticipantId, Policy, Role, State};
use confab::config::{SipUser, TrunkCredentials};
use confab::engine::Joiner;
use confab::mixer::Control;
use support::clients::{Baresip, BaresipOptions, SipBridge, free_port};
use support::process::Guarded;

/// A bridge that trusts no loopback address (so every client here is a stranger) and has the
/// account alice / s3cret, and trunk credentials for 127.0.0.1 with `trunk_password`.
fn strict_bridge(trunk_password: &str) -> SipBridge {
    let trunk_password = trunk_password.to_owned();
    SipBridge::configured(20, move |s| {
        s.trusted = vec!["192.0.2.0/24".parse().unwrap()];
        s.auth = confab::sip::uas::AuthSettings {
            realm: "confab.test".to_owned(),
            users: vec![SipUser {
                username: "alice".to_owned(),
                password: "s3cret".to_owned(),
            }],
            max_failures: 5,
        };
        s.credentials = vec![TrunkCredentials {
            host: "127.0.0.1".to_owned(),
            realm: None,
            username: "confab".to_owned(),
            password: trunk_password,
        }];
    })
}

fn caller(name: &str, target: String) -> BaresipOptions<'_> {
    BaresipOptions {
        name,
        codec: "pcmu",
        srtp: false,
        tone_hz: 440.0,
        target,
        seconds: 4,
        interactive: false,
    }
}

#[test]
fn baresip_signs_in_from_outside_the_trusted_networks() {
    if !support::require(&["baresip", "sox"]) {
        return;
    }
    let _turn = support::shared();
    let bridge = strict_bridge("unused");
    bridge
        .engine
        .create_conference("8101", Policy::default())
        .wait()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let target = format!("sip:8101@{}", bridge.sip_addr());
    let mut alice = Baresip::dial_as(
        root.path(),
        caller("alice", target.clone()),
        Some(("alice", "s3cret")),
    );
    let connected = wait_for(Duration::from_secs(8), || {
        bridge
            .engine
            .roster("8101")
            .wait()
            .unwrap()
            .iter()
            .any(|p| p.state == State::Connected)
    });
    assert!(
        connected,
        "{:?}\n{}",
        bridge.engine.roster("8101").wait(),
        alice.log()
    );
    alice.wait(Duration::from_secs(10));
    // She hung up herself (baresip quits with a BYE, sent from the address that signed in).
    let ended = wait_for(Duration::from_secs(5), || {
        bridge
            .engine
            .roster("8101")
            .wait()
            .unwrap()
            .iter()
            .all(|p| p.state == State::Disconnected(DisconnectReason::Hangup))
    });
    assert!(ended, "{:?}", bridge.engine.roster("8101").wait());
    let before = bridge.engine.roster("8101").wait().unwrap().len();

    // The wrong password: challenged again, never in the roster.
    let mut mallory = Baresip::dial_as(
        root.path(),
        caller("mallory", target.clone()),
        Some(("alice", "guess")),
    );
    mallory.wait(Duration::from_secs(10));
    let log = mallory.log();
    assert!(log.contains("401") || log.contains("403"), "{log}");
    assert_eq!(bridge.engine.roster("8101").wait().unwrap().len(), before);

    // No account at all: the 401 is all it gets.
    let mut nobody = Baresip::dial(root.path(), caller("nobody", target));
    nobody.wait(Duration::from_secs(10));
    assert!(nobody.log().contains("401"), "{}", nobody.log());
    assert_eq!(bridge.engine.roster("8101").wait().unwrap().len(), before);
}

/// SIPp's softclient scenario against the bridge with `password`; whether the call went
/// through, and SIPp's message trace.
fn sipp_softclient(bridge: &SipBridge, password: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp/uac_digest.xml");
    let mut sipp = Guarded::spawn(
        std::process::Command::new("sipp")
            .args(["-sf", scenario, "-t", "u1", "-i", "127.0.0.1"])
            .args(["-p", &free_port().to_string()])
            .args(["-mp", &free_port().to_string()])
            .args(["-cp", &free_port().to_string()])
            .args(["-s", "8102", "-au", "alice", "-ap", password])
            // SIPp's digest-uri is `sip:REMOTE_IP:REMOTE_PORT` by default; RFC 3261 22.4
            // makes it the Request-URI, which the bridge checks (an answer for another
            // target is refused).
            .args(["-auth_uri", &format!("8102@{}", bridge.sip_addr())])
            .args(["-m", "1", "-nostdin", "-timeout", "15s", "-timeout_error"])
            .args(["-trace_msg", "-trace_err"])
            .arg(bridge.sip_addr().to_string())
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        if let Ok(Some(status)) = sipp.0.try_wait() {
            let mut trace = String::new();
            for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
                trace.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
            return (status.success(), trace);
        }
        assert!(Instant::now() < deadline, "sipp did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sipp_answers_the_md5_challenge_and_a_wrong_password_is_refused() {
    if !support::require(&["sipp"]) {
        return;
    }
    let _turn = support::shared();
    let bridge = strict_bridge("unused");
    bridge
        .engine
        .create_conference("8102", Policy::default())
        .wait()
        .unwrap();
    let (ok, trace) = sipp_softclient(&bridge, "s3cret");
    assert!(ok, "{trace}");
    assert!(trace.contains("WWW-Authenticate: Digest"), "{trace}");
    assert!(trace.contains("Authorization: Digest"), "{trace}");
    let roster = bridge.engine.roster("8102").wait().unwrap();
    assert_eq!(roster.len(), 1, "{roster:?}");
    assert_eq!(
        roster[0].state,
        State::Disconnected(DisconnectReason::Hangup),
        "{roster:?}"
    );
    let (ok, trace) = sipp_softclient(&bridge, "wrong");
    assert!(!ok, "{trace}");
    assert_eq!(bridge.engine.roster("8102").wait().unwrap().len(), 1);
}

/// Dials SIPp's challenging trunk from `bridge`; the participant and SIPp's guard.
fn dial_the_trunk(bridge: &SipBridge) -> (ParticipantId, Guarded) {
    let port = free_port();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp/uas_digest.xml");
    let sipp = Guarded::spawn(
        std::process::Command::new("sipp")
            .args(["-sf", scenario, "-t", "u1", "-i", "127.0.0.1"])
            .args(["-p", &port.to_string()])
            .args(["-mp", &free_port().to_string()])
            .args(["-cp", &free_port().to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "20s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    // SIPp answers OPTIONS-less: give it a moment to bind its UDP port.
    let bound = wait_for(Duration::from_secs(5), || {
        std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
    });
    assert!(bound, "sipp did not bind {port}");
    let joiner = Joiner {
        display_name: "Trunk".into(),
        uri: "sip:trunk@127.0.0.1".into(),
        role: Role::Attendee,
        identity: None,
    };
    let sip = bridge.sip.as_ref().unwrap();
    let p = bridge
        .runtime
        .block_on(sip.dial("8103", &format!("sip:4455@127.0.0.1:{port}"), joiner))
        .unwrap();
    (p, sipp)
}

fn participant(bridge: &SipBridge, p: ParticipantId) -> confab::conference::Participant {
    bridge
        .engine
        .roster("8103")
        .wait()
        .unwrap()
        .into_iter()
        .find(|x| x.id == p)
        .unwrap()
}

#[test]
fn dial_out_answers_the_trunks_challenge() {
    if !support::require(&["sipp"]) {
        return;
    }
    let _turn = support::shared();
    let bridge = strict_bridge("trunk-s3cret");
    bridge
        .engine
        .create_conference("8103", Policy::default())
        .wait()
        .unwrap();
    let (p, mut sipp) = dial_the_trunk(&bridge);
    let connected = wait_for(Duration::from_secs(8), || {
        participant(&bridge, p).state == State::Connected
    });
    assert!(connected, "{:?}", participant(&bridge, p));
    // The bridge hangs up: SIPp gets its BYE and finishes its scenario successfully.
    bridge
        .engine
        .control("8103", Control::Eject(p))
        .wait()
        .unwrap();
    let mut status = None;
    wait_for(Duration::from_secs(10), || {
        status = sipp.0.try_wait().ok().flatten();
        status.is_some()
    });
    assert!(
        status.is_some_and(|s| s.success()),
        "sipp's trunk did not take our answer and BYE: {status:?}"
    );
    drop(sipp);

    // With the wrong trunk password the trunk refuses (403) and the call fails.
    let wrong = strict_bridge("not-the-password");
    wrong
        .engine
        .create_conference("8103", Policy::default())
        .wait()
        .unwrap();
    let (p, _sipp) = dial_the_trunk(&wrong);
    let failed = wait_for(Duration::from_secs(8), || {
        matches!(participant(&wrong, p).state, State::Disconnected(_))
    });
    let last = participant(&wrong, p);
    assert!(failed, "{last:?}");
    assert_eq!(last.sip_status, Some(403), "{last:?}");
    assert_eq!(
        last.state,
        State::Disconnected(DisconnectReason::Rejected),
        "{last:?}"
    );
}
