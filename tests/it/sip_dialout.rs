//! Dial-out: the bridge calls a baresip that answers by itself — the roster goes inviting ->
//! connecting -> connected, events in that order, and baresip hears the conference; ejecting
//! it sends a BYE. A called party that answers 486 (SIPp) ends as `busy` with the status kept.

use crate::support;
use support::wait_for;

use std::process::Command;
use std::time::{Duration, Instant};

use confab::conference::{DisconnectReason, Event, ParticipantId, Policy, Role, State};
use confab::engine::Joiner;
use confab::media::codec::Codec;
use confab::media::leg::LegSpec;
use confab::mixer::Control;
use support::Endpoint;
use support::clients::{self, Baresip, SipBridge, free_port};

fn state(bridge: &SipBridge, meeting: &str, p: ParticipantId) -> Option<State> {
    bridge
        .engine
        .roster(meeting)
        .wait()
        .ok()?
        .into_iter()
        .find(|x| x.id == p)
        .map(|x| x.state)
}

fn joiner(name: &str) -> Joiner {
    Joiner {
        display_name: name.into(),
        uri: format!("sip:{name}@127.0.0.1"),
        role: Role::Attendee,
        identity: None,
    }
}

#[test]
fn dial_out_to_a_phone_that_answers() {
    if !support::require(&["baresip", "sox"]) {
        return;
    }
    let _turn = support::exclusive();
    let bridge = SipBridge::start();
    let mut events = bridge.events.subscribe();
    bridge
        .engine
        .create_conference("6000", Policy::default())
        .wait()
        .unwrap();
    // Someone in the conference plays 440 Hz for the called party to hear.
    let mut talker = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 77);
    let (_, talker_addr) = bridge
        .engine
        .add_rtp_leg(
            "6000",
            joiner("talker"),
            LegSpec::new(Codec::Pcmu, talker.addr()),
        )
        .wait()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let bob = Baresip::dial(
        root.path(),
        clients::BaresipOptions {
            name: "bob",
            codec: "pcmu",
            srtp: false,
            tone_hz: 660.0,
            target: String::new(),
            seconds: 30,
            interactive: false,
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let target = format!("sip:bob@127.0.0.1:{}", bob.sip_port);
    let sip = bridge.sip.as_ref().unwrap();
    let p = bridge
        .runtime
        .block_on(sip.dial("6000", &target, joiner("bob")))
        .unwrap();
    // Keep the talker talking while the call comes up and for three seconds after.
    let mut connected_at = None;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        support::run(
            &mut [(&mut talker, talker_addr)],
            Duration::from_millis(200),
            |_| {},
        );
        if connected_at.is_none() && state(&bridge, "6000", p) == Some(State::Connected) {
            connected_at = Some(Instant::now());
        }
        if connected_at.is_some_and(|t| t.elapsed() > Duration::from_secs(3)) {
            break;
        }
    }
    assert!(
        connected_at.is_some(),
        "bob never connected:\n{}",
        bob.log()
    );
    let roster = bridge.engine.roster("6000").wait().unwrap();
    let entry = roster.iter().find(|x| x.id == p).unwrap();
    assert_eq!(entry.sip_status, Some(200));
    let mut states = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::State { participant, state } = e.event
            && participant == p
        {
            states.push(state);
        }
    }
    assert_eq!(
        states,
        [State::Inviting, State::Connecting, State::Connected]
    );

    // Ejected: the bridge sends BYE and baresip's call ends.
    bridge
        .engine
        .control("6000", Control::Eject(p))
        .wait()
        .unwrap();
    let closed = wait_for(Duration::from_secs(5), || {
        let log = bob.log().to_lowercase();
        log.contains("closed") || log.contains("terminated")
    });
    assert!(closed, "{}", bob.log());
    // What bob decoded (its recording, closed with the call) holds the talker's tone.
    let (rate, samples) = bob.heard();
    assert!(
        samples.len() > rate as usize * 2,
        "bob recorded {} samples",
        samples.len()
    );
    let shares = clients::tone_shares(&samples[rate as usize..], rate, 440.0);
    assert!(
        clients::present(&shares),
        "bob: {}",
        clients::describe(&shares)
    );
}

#[test]
fn dial_out_to_a_busy_phone() {
    if !support::require(&["sipp"]) {
        return;
    }
    let _turn = support::exclusive();
    let bridge = SipBridge::start();
    bridge
        .engine
        .create_conference("6001", Policy::default())
        .wait()
        .unwrap();
    let port = free_port();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp/uas_busy.xml");
    let mut callee = Command::new("sipp")
        .args(["-sf", scenario, "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "30s", "-bg"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp (Debian package sip-tester) is needed for this test");
    std::thread::sleep(Duration::from_millis(500));
    let sip = bridge.sip.as_ref().unwrap();
    let p = bridge
        .runtime
        .block_on(sip.dial(
            "6001",
            &format!("sip:busy@127.0.0.1:{port}"),
            joiner("busy"),
        ))
        .unwrap();
    assert_eq!(state(&bridge, "6001", p), Some(State::Inviting));
    let busy = wait_for(Duration::from_secs(10), || {
        state(&bridge, "6001", p) == Some(State::Disconnected(DisconnectReason::Busy))
    });
    let roster = bridge.engine.roster("6001").wait().unwrap();
    assert!(busy, "{roster:?}");
    assert_eq!(
        roster.iter().find(|x| x.id == p).unwrap().sip_status,
        Some(486)
    );
    let _ = callee.wait();

    // A target that is not a SIP URI is refused at once.
    let bad = bridge
        .runtime
        .block_on(sip.dial("6001", "mailto:nobody", joiner("x")));
    assert!(bad.is_err());
}

#[test]
fn ejecting_a_ringing_dial_out_cancels_it() {
    if !support::require(&["baresip", "sox"]) {
        return;
    }
    let _turn = support::exclusive();
    let bridge = SipBridge::start();
    bridge
        .engine
        .create_conference("6002", Policy::default())
        .wait()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    // An interactive baresip answers manually: it rings until told otherwise.
    let carol = Baresip::dial(
        root.path(),
        clients::BaresipOptions {
            name: "carol",
            codec: "pcmu",
            srtp: false,
            tone_hz: 660.0,
            target: String::new(),
            seconds: 30,
            interactive: true,
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let target = format!("sip:carol@127.0.0.1:{}", carol.sip_port);
    let sip = bridge.sip.as_ref().unwrap();
    let p = bridge
        .runtime
        .block_on(sip.dial("6002", &target, joiner("carol")))
        .unwrap();
    let ringing = wait_for(Duration::from_secs(5), || {
        bridge
            .engine
            .roster("6002")
            .wait()
            .unwrap()
            .iter()
            .any(|x| x.id == p && x.state == State::Inviting && x.sip_status == Some(180))
    });
    assert!(
        ringing,
        "{:?}\n{}",
        bridge.engine.roster("6002").wait(),
        carol.log()
    );
    bridge
        .engine
        .control("6002", Control::Eject(p))
        .wait()
        .unwrap();
    assert_eq!(
        state(&bridge, "6002", p),
        Some(State::Disconnected(DisconnectReason::Ejected))
    );
    // The CANCEL reached the phone: its incoming call ended (487 to its INVITE).
    let stopped = wait_for(Duration::from_secs(5), || {
        let log = carol.log().to_lowercase();
        log.contains("cancel") || log.contains("closed") || log.contains("terminated")
    });
    assert!(stopped, "{}", carol.log());
}
