//! Digits for the attendant that do not come by RFC 4733: tones in a G.711 caller's audio (as a
//! gateway sends them) and SIP INFO. A caller written in the test dials the access user, keys
//! the meeting ID and passcode, and lands in the meeting.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use confab::conference::{Admission, Policy, State};
use confab::media::codec::Codec;
use support::Endpoint;
use support::clients::{RawUa, SipBridge, answer_port};

const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLUMNS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

fn tones_of(digit: char) -> (f32, f32) {
    let keys = ["123A", "456B", "789C", "*0#D"];
    for (r, row) in keys.iter().enumerate() {
        if let Some(c) = row.find(digit) {
            return (ROWS[r], COLUMNS[c]);
        }
    }
    panic!("no key {digit}")
}

fn bridge_with_meeting() -> SipBridge {
    let bridge = SipBridge::start();
    bridge
        .engine
        .create_conference_with(
            "5000",
            Policy::default(),
            Admission {
                passcode: Some("1234".into()),
                leader_pin: None,
                ..Admission::default()
            },
        )
        .wait()
        .unwrap();
    bridge
}

fn offer(e: &Endpoint) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        e.addr().port()
    )
}

fn in_meeting(bridge: &SipBridge) -> bool {
    bridge
        .engine
        .roster("5000")
        .wait()
        .unwrap()
        .iter()
        .any(|p| p.uri.contains("sip:raw@") && p.state == State::Connected)
}

/// Sends 20 ms frames for `ms`.
fn play(e: &mut Endpoint, to: SocketAddr, ms: u64) {
    let frames = ms / 20;
    let mut next = Instant::now();
    for _ in 0..frames {
        e.send_frame(to);
        e.receive();
        next += Duration::from_millis(20);
        if let Some(w) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
    }
}

#[test]
fn in_band_tones_reach_the_attendant() {
    let _turn = support::exclusive();
    let bridge = bridge_with_meeting();
    let mut caller = Endpoint::new(Codec::Pcmu, 440.0, -12.0, 9);
    let mut ua = RawUa::new(bridge.sip_addr(), "inband1");
    let (code, answer) = ua.invite("conference", &offer(&caller));
    assert_eq!(code, 200);
    let media: SocketAddr = format!("127.0.0.1:{}", answer_port(&answer))
        .parse()
        .unwrap();
    // Silence first (the welcome prompt), then each digit as 100 ms of its two tones and 100 ms
    // of silence.
    caller.tone_dbov = -120.0;
    play(&mut caller, media, 1000);
    for digit in "5000#1234#".chars() {
        let (low, high) = tones_of(digit);
        caller.tone_hz = low;
        caller.second_tone_hz = Some(high);
        caller.tone_dbov = -12.0;
        play(&mut caller, media, 100);
        caller.tone_dbov = -120.0;
        play(&mut caller, media, 120);
        if digit == '#' {
            play(&mut caller, media, 600);
        }
    }
    let start = Instant::now();
    while !in_meeting(&bridge) && start.elapsed() < Duration::from_secs(5) {
        play(&mut caller, media, 200);
    }
    assert!(
        in_meeting(&bridge),
        "lobby: {:?}\nmeeting: {:?}",
        bridge.engine.roster(confab::sip::server::LOBBY).wait(),
        bridge.engine.roster("5000").wait()
    );
    assert_eq!(ua.request("BYE", None, ""), 200);
}

#[test]
fn sip_info_digits_reach_the_attendant() {
    let _turn = support::exclusive();
    let bridge = bridge_with_meeting();
    let mut caller = Endpoint::new(Codec::Pcmu, 440.0, -120.0, 10);
    let mut ua = RawUa::new(bridge.sip_addr(), "info1");
    let (code, answer) = ua.invite("conference", &offer(&caller));
    assert_eq!(code, 200);
    let media: SocketAddr = format!("127.0.0.1:{}", answer_port(&answer))
        .parse()
        .unwrap();
    play(&mut caller, media, 600);
    for (i, digit) in "5000#1234#".chars().enumerate() {
        // Both INFO flavours: dtmf-relay and plain dtmf.
        let status = if i % 2 == 0 {
            ua.request(
                "INFO",
                Some("application/dtmf-relay"),
                &format!("Signal={digit}\r\nDuration=160\r\n"),
            )
        } else {
            ua.request("INFO", Some("application/dtmf"), &digit.to_string())
        };
        assert_eq!(status, 200, "INFO {digit}");
        play(&mut caller, media, 100);
    }
    let start = Instant::now();
    while !in_meeting(&bridge) && start.elapsed() < Duration::from_secs(5) {
        play(&mut caller, media, 200);
    }
    assert!(
        in_meeting(&bridge),
        "{:?}",
        bridge.engine.roster("5000").wait()
    );
    assert_eq!(ua.request("BYE", None, ""), 200);
}
