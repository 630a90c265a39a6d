//! The attendant with a real client: baresip dials the access user and keys the meeting ID and
//! passcode by RFC 4733 (its `/sndcode`), hears the prompts, and lands in the meeting; a caller
//! with a wrong passcode three times is told goodbye and hung up; a leader PIN makes a leader.

use crate::support;
use support::audio::{found, talk};
use support::wait_for;

use std::time::Duration;

use confab::conference::{Admission, DisconnectReason, Policy, Role, State};
use confab::sip::server::LOBBY;
use support::clients::{Baresip, BaresipOptions, RawUa, SipBridge, answer_port};

const MEETING: &str = "5555";

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
        bridge
            .participant(LOBBY, name)
            .is_some_and(|p| p.state == State::Connecting && p.media_ready)
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
        .wait()
        .unwrap();
    let root = tempfile::tempdir().unwrap();

    // Right meeting ID and passcode: an attendee in the meeting.
    let mut ann = call_attendant(&bridge, root.path(), "ann");
    keys(&mut ann, "5555#");
    keys(&mut ann, "4242#");
    let joined = wait_for(Duration::from_secs(10), || {
        bridge
            .participant(MEETING, "ann")
            .is_some_and(|p| p.state == State::Connected)
    });
    assert!(
        joined,
        "ann did not join: {:?}\n{}",
        bridge.engine.roster(MEETING).wait(),
        ann.log()
    );
    assert_eq!(
        bridge.participant(MEETING, "ann").unwrap().role,
        Role::Attendee
    );
    assert_eq!(
        bridge.participant(LOBBY, "ann").unwrap().state,
        State::Disconnected(DisconnectReason::Transferred)
    );

    // The leader PIN after `*`: a leader.
    let mut lee = call_attendant(&bridge, root.path(), "lee");
    keys(&mut lee, "5555#");
    keys(&mut lee, "*");
    keys(&mut lee, "9999#");
    let joined = wait_for(Duration::from_secs(10), || {
        bridge
            .participant(MEETING, "lee")
            .is_some_and(|p| p.state == State::Connected)
    });
    assert!(joined, "lee did not join:\n{}", lee.log());
    assert_eq!(
        bridge.participant(MEETING, "lee").unwrap().role,
        Role::Leader
    );

    // Three wrong passcodes: goodbye, and the bridge hangs up.
    let mut bob = call_attendant(&bridge, root.path(), "bob");
    keys(&mut bob, "5555#");
    keys(&mut bob, "1111#");
    keys(&mut bob, "2222#");
    keys(&mut bob, "3333#");
    let gone = wait_for(Duration::from_secs(10), || {
        bridge
            .participant(LOBBY, "bob")
            .is_some_and(|p| p.state == State::Disconnected(DisconnectReason::AttendantFailed))
    });
    assert!(
        gone,
        "bob was not hung up: {:?}",
        bridge.participant(LOBBY, "bob")
    );
    assert!(bridge.participant(MEETING, "bob").is_none());
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

/// Calls `meeting` directly with a caller written in the test (PCMU, sending silence), and
/// returns once the bridge hangs up (or `limit` passes): whether a BYE came, what the caller
/// heard and after how long the BYE came.
fn call_until_bye(bridge: &SipBridge, meeting: &str, call_id: &str, limit: Duration) -> Refused {
    use confab::media::codec::Codec;
    let mut caller = support::Endpoint::new(Codec::Pcmu, 440.0, -120.0, 21);
    let mut ua = RawUa::new(bridge.sip_addr(), call_id);
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        caller.addr().port()
    );
    let (code, answer) = ua.invite(meeting, &offer);
    let media: std::net::SocketAddr = format!("127.0.0.1:{}", answer_port(&answer))
        .parse()
        .unwrap();
    let start = std::time::Instant::now();
    let mut bye = None;
    while code == 200 && bye.is_none() && start.elapsed() < limit {
        caller.send_frame(media);
        caller.receive();
        if ua
            .poll(Duration::from_millis(20))
            .is_some_and(|m| m.starts_with("BYE "))
        {
            bye = Some(start.elapsed());
        }
    }
    caller.receive();
    Refused {
        code,
        bye,
        heard: std::mem::take(&mut caller.heard),
    }
}

struct Refused {
    code: u16,
    bye: Option<Duration>,
    /// Decoded at 8 kHz.
    heard: Vec<i16>,
}

/// Seconds of 20 ms frames of `heard` (8 kHz) above -45 dBov: speech, not silence.
fn spoken_seconds(heard: &[i16]) -> f64 {
    let loud = heard
        .chunks(160)
        .filter(|f| {
            let power = f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / f.len() as f64;
            10.0 * (power / (32768.0f64 * 32768.0)).log10() > -45.0
        })
        .count();
    loud as f64 * 0.02
}

fn prompt_seconds(p: confab::sip::prompts::Prompt) -> f64 {
    let prompts = confab::sip::prompts::Prompts::embedded().unwrap();
    prompts.audio(p).len() as f64 / f64::from(confab::media::codec::MIX_RATE)
}

/// A direct caller of a locked meeting, and one of a full meeting, is answered, hears why (as
/// much speech as the prompt holds) and gets the bridge's BYE once it has been said; the meeting
/// never has it, and the lobby's roster says why it left.
#[test]
fn a_refused_caller_is_told_why_before_the_bye() {
    use confab::mixer::Control;
    use confab::sip::prompts::Prompt;
    let _turn = support::exclusive();
    let bridge = SipBridge::start();
    bridge
        .engine
        .create_conference_with("6001", Policy::default(), Admission::default())
        .wait()
        .unwrap();
    bridge
        .engine
        .control("6001", Control::Lock(true))
        .wait()
        .unwrap();
    let full = Policy {
        max_participants: 1,
        ..Policy::default()
    };
    bridge
        .engine
        .create_conference_with("6002", full, Admission::default())
        .wait()
        .unwrap();
    // The one who fills 6002.
    let _first = call_until_bye(&bridge, "6002", "fills1", Duration::from_millis(1500));
    assert!(wait_for(Duration::from_secs(5), || bridge
        .engine
        .roster("6002")
        .wait()
        .unwrap()
        .iter()
        .any(|p| p.state == State::Connected)));

    for (meeting, call_id, prompt, reason) in [
        (
            "6001",
            "locked1",
            Prompt::ConferenceLocked,
            DisconnectReason::Locked,
        ),
        (
            "6002",
            "full1",
            Prompt::ConferenceFull,
            DisconnectReason::Full,
        ),
    ] {
        let said = prompt_seconds(prompt);
        let r = call_until_bye(&bridge, meeting, call_id, Duration::from_secs(15));
        assert_eq!(r.code, 200, "{meeting}: not answered");
        let bye = r
            .bye
            .unwrap_or_else(|| panic!("{meeting}: no BYE within 15 s"));
        let spoken = spoken_seconds(&r.heard);
        eprintln!(
            "{meeting}: {spoken:.2} s of speech heard, prompt {said:.2} s, BYE after {bye:?}"
        );
        assert!(
            spoken > said * 0.6 && spoken < said + 1.0,
            "{meeting}: heard {spoken:.2} s of speech, the prompt is {said:.2} s"
        );
        assert!(
            bye.as_secs_f64() >= said && bye.as_secs_f64() < said + 4.0,
            "{meeting}: BYE after {bye:?}, the prompt is {said:.2} s"
        );
        // Only 6002's first caller is in a meeting.
        let roster = bridge.engine.roster(meeting).wait().unwrap();
        let connected = roster
            .iter()
            .filter(|p| p.state == State::Connected)
            .count();
        assert_eq!(connected, usize::from(meeting == "6002"), "{roster:?}");
        let lobby = bridge.engine.roster(LOBBY).wait().unwrap();
        assert!(
            lobby
                .iter()
                .any(|p| p.uri.contains("sip:raw@") && p.state == State::Disconnected(reason)),
            "{meeting}: lobby has {lobby:?}"
        );
    }
}

/// Sends `digits` by SIP INFO (dtmf-relay) while keeping the caller's media going.
fn info_keys(
    ua: &mut RawUa,
    caller: &mut support::Endpoint,
    media: std::net::SocketAddr,
    digits: &str,
) {
    for digit in digits.chars() {
        let body = format!("Signal={digit}\r\nDuration=160\r\n");
        assert_eq!(
            ua.request("INFO", Some("application/dtmf-relay"), &body),
            200
        );
        talk(caller, media, Duration::from_millis(200));
    }
}

/// With a menu of English, German and French, a caller of the access number hears each offer
/// in its own language, keys 3, and hears the attendant in French (the French welcome is in
/// what it decoded, the English and German ones are not), keys the meeting ID and lands in the
/// meeting, where the keypad answers in French too, and where a recording that starts is
/// announced to it in French. A caller of the Spanish access user hears no menu and the Spanish
/// welcome.
#[test]
fn a_caller_picks_french_at_the_menu_and_hears_french() {
    use confab::media::codec::Codec;
    use confab::sip::prompts::{Prompt, PromptBook};
    let _turn = support::exclusive();
    let languages = ["en", "de", "fr"].map(String::from);
    let bridge = SipBridge::with_attendant(|a| {
        let mut all = languages.to_vec();
        all.push("es".into());
        a.prompts = std::sync::Arc::new(PromptBook::embedded(&all).unwrap());
        a.menu_languages = languages.to_vec();
        a.access_users = vec![("conferencia".into(), "es".into())];
    });
    bridge
        .engine
        .create_conference_with(MEETING, Policy::default(), Admission::default())
        .wait()
        .unwrap();
    let offer = |e: &support::Endpoint| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            e.addr().port()
        )
    };
    let media_of = |answer: &str| -> std::net::SocketAddr {
        format!("127.0.0.1:{}", answer_port(answer))
            .parse()
            .unwrap()
    };

    let mut caller = support::Endpoint::new(Codec::Pcmu, 440.0, -120.0, 31);
    let mut ua = RawUa::new(bridge.sip_addr(), "menu1");
    let (code, answer) = ua.invite("conference", &offer(&caller));
    assert_eq!(code, 200);
    let media = media_of(&answer);
    // The whole menu: each offer in its own language.
    let prompts = PromptBook::embedded(&languages).unwrap();
    let menu_seconds: f64 = languages
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let p = prompts.get(l);
            (p.audio(Prompt::LanguageSelect).len() + p.audio(Prompt::number(i + 1).unwrap()).len())
                as f64
        })
        .sum::<f64>()
        / f64::from(confab::media::codec::MIX_RATE);
    talk(
        &mut caller,
        media,
        Duration::from_secs_f64(menu_seconds + 1.0),
    );
    for language in &languages {
        let peak = found(&caller.heard, 0, language, Prompt::LanguageSelect);
        eprintln!("menu: the {language} offer found at r = {peak:.2}");
        assert!(
            peak > 0.6,
            "the {language} offer is not in the menu: r = {peak:.2}"
        );
    }
    let keyed_at = caller.heard.len();
    info_keys(&mut ua, &mut caller, media, "3");
    // The longest welcome (German, about 5 s) must fit in what is heard to be looked for.
    talk(&mut caller, media, Duration::from_secs(7));
    let (fr, en, de) = (
        found(&caller.heard, keyed_at, "fr", Prompt::Welcome),
        found(&caller.heard, keyed_at, "en", Prompt::Welcome),
        found(&caller.heard, keyed_at, "de", Prompt::Welcome),
    );
    eprintln!("after 3: welcome fr r = {fr:.2}, en r = {en:.2}, de r = {de:.2}");
    assert!(
        fr > 0.6 && en < 0.4 && de < 0.4,
        "fr {fr:.2} en {en:.2} de {de:.2}"
    );
    info_keys(&mut ua, &mut caller, media, &format!("{MEETING}#"));
    let joined = wait_for(Duration::from_secs(10), || {
        bridge
            .engine
            .roster(MEETING)
            .wait()
            .unwrap()
            .iter()
            .any(|p| p.state == State::Connected)
    });
    assert!(joined, "{:?}", bridge.engine.roster(LOBBY).wait());
    // In the meeting, `*6` is answered in French.
    let muted_at = caller.heard.len();
    info_keys(&mut ua, &mut caller, media, "*6");
    talk(&mut caller, media, Duration::from_secs(3));
    let (fr, en) = (
        found(&caller.heard, muted_at, "fr", Prompt::Muted),
        found(&caller.heard, muted_at, "en", Prompt::Muted),
    );
    eprintln!("after *6: muted fr r = {fr:.2}, en r = {en:.2}");
    assert!(fr > 0.6 && en < 0.4, "fr {fr:.2} en {en:.2}");
    // A recording starts: the leg took the language chosen at the menu into the meeting, so the
    // caller is told in French, not in the default English.
    let dir = tempfile::tempdir().unwrap();
    let recorder = confab::recording::Recorder::start(confab::recording::RecordingSettings {
        dir: dir.path().join("recordings"),
        retention_days: 0,
        max_bytes: 0,
    })
    .unwrap();
    let told_at = caller.heard.len();
    recorder.start_recording(&bridge.engine, MEETING).unwrap();
    talk(&mut caller, media, Duration::from_secs(4));
    let (fr, en) = (
        found(&caller.heard, told_at, "fr", Prompt::BeingRecorded),
        found(&caller.heard, told_at, "en", Prompt::BeingRecorded),
    );
    eprintln!("recording: being recorded fr r = {fr:.2}, en r = {en:.2}");
    assert!(fr > 0.6 && en < 0.4, "fr {fr:.2} en {en:.2}");
    recorder.stop_recording(&bridge.engine, MEETING).unwrap();
    assert_eq!(ua.request("BYE", None, ""), 200);

    // The Spanish access user: no menu, the Spanish welcome.
    let mut caller = support::Endpoint::new(Codec::Pcmu, 440.0, -120.0, 32);
    let mut ua = RawUa::new(bridge.sip_addr(), "menu2");
    let (code, answer) = ua.invite("conferencia", &offer(&caller));
    assert_eq!(code, 200);
    talk(&mut caller, media_of(&answer), Duration::from_secs(7));
    let (es, en, select) = (
        found(&caller.heard, 0, "es", Prompt::Welcome),
        found(&caller.heard, 0, "en", Prompt::Welcome),
        found(&caller.heard, 0, "es", Prompt::LanguageSelect),
    );
    eprintln!("conferencia: welcome es r = {es:.2}, en r = {en:.2}; menu r = {select:.2}");
    assert!(
        es > 0.6 && en < 0.4 && select < 0.4,
        "es {es:.2} en {en:.2} menu {select:.2}"
    );
    assert_eq!(ua.request("BYE", None, ""), 200);
}
