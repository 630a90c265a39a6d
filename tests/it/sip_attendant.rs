//! The attendant with a real client: baresip dials the access user and keys the meeting ID and
//! passcode by RFC 4733 (its `/sndcode`), hears the prompts, and lands in the meeting; a caller
//! with a wrong passcode three times is told goodbye and hung up; a leader PIN makes a leader.

use crate::support;
use support::wait_for;

use std::time::Duration;

use confab::conference::{Admission, DisconnectReason, Participant, Policy, Role, State};
use confab::sip::server::LOBBY;
use support::clients::{Baresip, BaresipOptions, SipBridge};

const MEETING: &str = "5555";

fn find(bridge: &SipBridge, conference: &str, name: &str) -> Option<Participant> {
    bridge
        .engine
        .roster(conference)
        .ok()?
        .into_iter()
        .find(|p| p.uri.contains(&format!("sip:{name}@")))
}

/// A caller of the access number; returns when the attendant has it in the lobby.
fn call_attendant(bridge: &SipBridge, root: &std::path::Path, name: &str) -> Baresip {
    let mut b = Baresip::dial(
        root,
        BaresipOptions {
            name,
            codec: "pcmu",
            srtp: false,
            tone_hz: 500.0,
            target: format!("sip:conference@{}", bridge.sip_addr()),
            seconds: 40,
            interactive: true,
        },
    );
    let in_lobby = wait_for(Duration::from_secs(10), || {
        find(bridge, LOBBY, name).is_some_and(|p| p.state == State::Connecting && p.media_ready)
    });
    assert!(in_lobby, "{name} never reached the attendant:\n{}", b.log());
    // The welcome prompt starts; keys may come while it plays.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!b.exited());
    b
}

fn keys(b: &mut Baresip, digits: &str) {
    b.type_command(&format!("/sndcode {digits}"));
    // baresip sends a digit about every 100-200 ms.
    std::thread::sleep(Duration::from_millis(250 * digits.len() as u64 + 500));
}

#[test]
fn callers_key_meeting_id_passcode_and_leader_pin() {
    if !support::require(&["baresip", "sox"]) {
        return;
    }
    let _turn = support::exclusive();
    let bridge = SipBridge::start();
    bridge
        .engine
        .create_conference_with(
            MEETING,
            Policy::default(),
            Admission {
                passcode: Some("4242".into()),
                leader_pin: Some("9999".into()),
                ..Admission::default()
            },
        )
        .unwrap();
    let root = tempfile::tempdir().unwrap();

    // Right meeting ID and passcode: an attendee in the meeting.
    let mut ann = call_attendant(&bridge, root.path(), "ann");
    keys(&mut ann, "5555#");
    keys(&mut ann, "4242#");
    let joined = wait_for(Duration::from_secs(10), || {
        find(&bridge, MEETING, "ann").is_some_and(|p| p.state == State::Connected)
    });
    assert!(
        joined,
        "ann did not join: {:?}\n{}",
        bridge.engine.roster(MEETING),
        ann.log()
    );
    assert_eq!(find(&bridge, MEETING, "ann").unwrap().role, Role::Attendee);
    assert_eq!(
        find(&bridge, LOBBY, "ann").unwrap().state,
        State::Disconnected(DisconnectReason::Transferred)
    );

    // The leader PIN after `*`: a leader.
    let mut lee = call_attendant(&bridge, root.path(), "lee");
    keys(&mut lee, "5555#");
    keys(&mut lee, "*");
    keys(&mut lee, "9999#");
    let joined = wait_for(Duration::from_secs(10), || {
        find(&bridge, MEETING, "lee").is_some_and(|p| p.state == State::Connected)
    });
    assert!(joined, "lee did not join:\n{}", lee.log());
    assert_eq!(find(&bridge, MEETING, "lee").unwrap().role, Role::Leader);

    // Three wrong passcodes: goodbye, and the bridge hangs up.
    let mut bob = call_attendant(&bridge, root.path(), "bob");
    keys(&mut bob, "5555#");
    keys(&mut bob, "1111#");
    keys(&mut bob, "2222#");
    keys(&mut bob, "3333#");
    let gone = wait_for(Duration::from_secs(10), || {
        find(&bridge, LOBBY, "bob")
            .is_some_and(|p| p.state == State::Disconnected(DisconnectReason::AttendantFailed))
    });
    assert!(
        gone,
        "bob was not hung up: {:?}",
        find(&bridge, LOBBY, "bob")
    );
    assert!(find(&bridge, MEETING, "bob").is_none());
    // baresip saw the BYE: its call is closed.
    let closed = wait_for(Duration::from_secs(5), || {
        let log = bob.log().to_lowercase();
        log.contains("closed") || log.contains("terminated")
    });
    assert!(closed, "{}", bob.log());

    // Ann heard the attendant before joining: speech in the first seconds of what she decoded.
    ann.type_command("/quit");
    ann.wait(Duration::from_secs(10));
    let (rate, heard) = ann.heard();
    let first = &heard[..(rate as usize * 3).min(heard.len())];
    let power =
        first.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / first.len().max(1) as f64;
    let dbov = 10.0 * (power / (32768.0f64 * 32768.0)).log10();
    assert!(dbov > -40.0, "ann heard no prompt: {dbov:.1} dBov");
}
