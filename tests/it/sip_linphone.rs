//! linphonec (a second, independent SIP client) joins with Opus and telephone-event/48000 only,
//! plays a tone into the conference and hears the other participant's.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use confab::conference::{Policy, Role, State};
use confab::engine::Joiner;
use confab::media::codec::Codec;
use confab::media::leg::LegSpec;
use support::Endpoint;
use support::clients::{self, SipBridge, free_port};

#[test]
fn linphone_joins_with_opus_and_telephone_event_48000() {
    if !support::require(&["linphonec", "sox"]) {
        return;
    }
    let _turn = support::exclusive();
    let bridge = SipBridge::start();
    bridge
        .engine
        .create_conference("7000", Policy::default())
        .wait()
        .unwrap();
    let mut talker = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 5);
    let joiner = Joiner {
        display_name: "talker".into(),
        uri: "sip:talker@test".into(),
        role: Role::Attendee,
        identity: None,
    };
    let (_, talker_addr) = bridge
        .engine
        .add_rtp_leg("7000", joiner, LegSpec::new(Codec::Pcmu, talker.addr()))
        .wait()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // linphonec opens no SIP port unless this exists.
    std::fs::create_dir_all(home.join(".local/share/linphone")).unwrap();
    let tone = dir.path().join("tone.wav");
    clients::tone_wav(&tone, 48000, 880.0, 30);
    let rec = dir.path().join("rec.wav");
    let (sip_port, rtp_port) = (free_port(), free_port());
    let rc = dir.path().join("linphonerc");
    std::fs::write(
        &rc,
        format!(
            "[sip]\nsip_port={sip_port}\nsip_tcp_port=-1\ncontact=\"Lin\" <sip:lin@127.0.0.1>\n\
             bind_address=127.0.0.1\n[rtp]\naudio_rtp_port={rtp_port}\n[net]\nbind_address=127.0.0.1\n\
             [sound]\nechocancellation=0\n\
             [audio_codec_0]\nmime=opus\nrate=48000\nchannels=2\nenabled=1\n\
             [audio_codec_1]\nmime=PCMU\nrate=8000\nchannels=1\nenabled=0\n\
             [audio_codec_2]\nmime=PCMA\nrate=8000\nchannels=1\nenabled=0\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("linphone.log")).unwrap();
    let mut linphone = Command::new("linphonec")
        .arg("-c")
        .arg(&rc)
        .env("HOME", &home)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("linphonec (Debian package linphone-cli) is needed for this test");
    let mut stdin = linphone.stdin.take().unwrap();
    let mut type_line = |line: &str| {
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
    };
    type_line("soundcard use files");
    type_line(&format!("play {}", tone.display()));
    type_line(&format!("record {}", rec.display()));
    type_line(&format!("call sip:7000@{}", bridge.sip_addr()));

    let log_text = || std::fs::read_to_string(dir.path().join("linphone.log")).unwrap_or_default();
    let find = || {
        bridge
            .engine
            .roster("7000")
            .wait()
            .unwrap()
            .into_iter()
            .find(|p| p.uri.contains("sip:lin@"))
    };
    let start = Instant::now();
    let mut connected_at = None;
    while start.elapsed() < Duration::from_secs(20) {
        support::run(
            &mut [(&mut talker, talker_addr)],
            Duration::from_millis(200),
            |_| {},
        );
        if connected_at.is_none() && find().is_some_and(|p| p.state == State::Connected) {
            connected_at = Some(Instant::now());
        }
        if connected_at.is_some_and(|t| t.elapsed() > Duration::from_secs(4)) {
            break;
        }
    }
    assert!(
        connected_at.is_some(),
        "linphone never connected:\n{}",
        log_text()
    );
    let lin = find().unwrap();
    let stats = bridge.engine.leg_stats("7000", lin.id).wait().unwrap();
    assert_eq!(stats.codec, Some(Codec::Opus));
    assert_eq!(stats.telephone_event_rate, Some(48000));
    assert!(stats.packets_in > 100, "{stats:?}");
    // The talker hears linphone's 880 Hz through the bridge.
    assert!(
        talker.level_of(880.0, 2.0) > -35.0,
        "talker hears linphone at {:.1} dBov",
        talker.level_of(880.0, 2.0)
    );
    type_line("terminate");
    type_line("quit");
    let _ = linphone.wait();
    let gone = bridge
        .engine
        .roster("7000")
        .wait()
        .unwrap()
        .into_iter()
        .find(|p| p.id == lin.id)
        .map(|p| p.state);
    assert!(matches!(gone, Some(State::Disconnected(_))), "{gone:?}");
}
