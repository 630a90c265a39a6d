//! What a caller hears on entering a meeting, and when the bridge goes away under it, measured
//! on what a raw SIP caller decoded (PCMU): the built-in prompt, brought to 8 kHz, slid along
//! the recording (normalized cross-correlation, `support::audio`).
//!
//! - The first caller of an empty meeting hears "you are the first participant"; the second
//!   does not.
//! - A caller of a meeting that waits for its leader hears "the leader has not yet arrived" and
//!   then the music on hold.
//! - A bridge whose drain runs out tells those still in a call that it restarts before it
//!   hangs up.

use crate::support;
use support::audio::{found, talk};

use std::time::Duration;

use confab::conference::{Admission, Policy};
use confab::media::codec::Codec;
use confab::sip::prompts::Prompt;
use support::clients::{RawUa, SipBridge, answer_port};

fn offer(e: &support::Endpoint) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        e.addr().port()
    )
}

fn media_of(answer: &str) -> std::net::SocketAddr {
    format!("127.0.0.1:{}", answer_port(answer))
        .parse()
        .unwrap()
}

/// A silent caller of `meeting`, answered: its UA, its media and where the bridge takes it.
fn call(
    bridge: &SipBridge,
    meeting: &str,
    name: &str,
    ssrc: u32,
) -> (RawUa, support::Endpoint, std::net::SocketAddr) {
    let caller = support::Endpoint::new(Codec::Pcmu, 440.0, -120.0, ssrc);
    let mut ua = RawUa::new(bridge.sip_addr(), name);
    let (code, answer) = ua.invite(meeting, &offer(&caller));
    assert_eq!(code, 200, "{name} calling {meeting}");
    (ua, caller, media_of(&answer))
}

/// Seconds `prompt` takes (English).
fn seconds(prompt: Prompt) -> f64 {
    let p = confab::sip::prompts::Prompts::embedded_language("en").unwrap();
    p.audio(prompt).len() as f64 / f64::from(confab::media::codec::MIX_RATE)
}

#[test]
fn the_first_caller_is_told_it_is_alone_and_the_second_is_not() {
    let _turn = support::exclusive();
    let bridge = SipBridge::with_attendant(|_| {});
    bridge
        .engine
        .create_conference_with("6101", Policy::default(), Admission::default())
        .wait()
        .unwrap();
    let listen = Duration::from_secs_f64(seconds(Prompt::FirstParticipant) + 2.0);
    let (mut first_ua, mut first, first_media) = call(&bridge, "6101", "first", 41);
    talk(&mut first, first_media, listen);
    let alone = found(&first.heard, 0, "en", Prompt::FirstParticipant);
    let (mut second_ua, mut second, second_media) = call(&bridge, "6101", "second", 42);
    talk(&mut second, second_media, listen);
    let not_alone = found(&second.heard, 0, "en", Prompt::FirstParticipant);
    eprintln!("first participant: first caller r = {alone:.2}, second caller r = {not_alone:.2}");
    assert!(alone > 0.6, "the first caller was not told: r = {alone:.2}");
    assert!(
        not_alone < 0.4,
        "the second caller was told: r = {not_alone:.2}"
    );
    assert_eq!(first_ua.request("BYE", None, ""), 200);
    assert_eq!(second_ua.request("BYE", None, ""), 200);
}

#[test]
fn a_caller_waiting_for_the_leader_is_told_so_and_hears_music() {
    let _turn = support::exclusive();
    let bridge = SipBridge::with_attendant(|_| {});
    let policy = Policy {
        wait_for_leader: true,
        hold_music: true,
        ..Policy::default()
    };
    bridge
        .engine
        .create_conference_with("6102", policy, Admission::default())
        .wait()
        .unwrap();
    let said = seconds(Prompt::WaitingForLeader);
    let (mut ua, mut caller, media) = call(&bridge, "6102", "waiter", 43);
    talk(&mut caller, media, Duration::from_secs_f64(said + 4.0));
    let waiting = found(&caller.heard, 0, "en", Prompt::WaitingForLeader);
    let alone = found(&caller.heard, 0, "en", Prompt::FirstParticipant);
    // The music after the prompt: the last 2 s (8 kHz) are not silent.
    let tail = &caller.heard[caller.heard.len().saturating_sub(16_000)..];
    let music = confab_dsp::signal::level_dbov(tail);
    eprintln!(
        "waiting: prompt r = {waiting:.2}, first-participant r = {alone:.2}, then {music:.1} dBov"
    );
    assert!(
        waiting > 0.6,
        "not told the leader is away: r = {waiting:.2}"
    );
    assert!(alone < 0.4, "told it is alone instead: r = {alone:.2}");
    assert!(music > -35.0, "no music after the prompt: {music:.1} dBov");
    assert_eq!(ua.request("BYE", None, ""), 200);
}

#[test]
fn callers_left_when_the_drain_runs_out_hear_the_bridge_restart() {
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let server =
        support::server::Server::start(data.path(), None, &["--api-drain-timeout-secs", "1"]);
    let (status, _) = server.call("POST", "/v1/conferences", Some(r#"{"id":"6103"}"#));
    assert_eq!(status, 201);
    let mut caller = support::Endpoint::new(Codec::Pcmu, 440.0, -120.0, 44);
    let mut ua = RawUa::new(server.sip, "stayer");
    let (code, answer) = ua.invite("6103", &offer(&caller));
    assert_eq!(code, 200);
    let media = media_of(&answer);
    talk(&mut caller, media, Duration::from_secs(1));
    let before = caller.heard.len();
    let sent = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(server.pid().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    // One second of drain, the prompt, and the margin after it.
    talk(
        &mut caller,
        media,
        Duration::from_secs_f64(1.5 + seconds(Prompt::Restarting) + 1.5),
    );
    let told = found(&caller.heard, before, "en", Prompt::Restarting);
    eprintln!("drain ran out: restarting r = {told:.2}");
    assert!(told > 0.6, "not told the bridge restarts: r = {told:.2}");
    server.wait_for("telling the callers left");
}
