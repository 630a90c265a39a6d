//! Real SIP clients: three baresip instances with tones (440, 660, 880 Hz) dial one meeting ID
//! through Confab's SIP server on 127.0.0.1 — all PCMU, all G.722, all Opus with mandatory
//! SDES-SRTP over SIP on TLS, and mixed codecs; and SDES offered over cleartext SIP is refused. Each must hear the other two and not itself, judged on what
//! baresip itself decoded (its sndfile recording), per 0.5 s block.

use crate::support;

use std::time::Duration;

use confab::conference::{Policy, State};
use support::clients::{self, Baresip, BaresipOptions, SipBridge};

const TONES: [f32; 3] = [440.0, 660.0, 880.0];

fn conference_call(codecs: [&str; 3], srtp: bool, meeting: &str) {
    if !support::require(&["baresip", "sox"]) {
        return;
    }
    let _turn = support::exclusive();
    // SDES keys travel only over TLS: SRTP calls come that way (a certificate of a test CA;
    // baresip does not check it, `sip_tls` proves the checks with clients that do).
    let pki = support::pki::TestPki::new(&["127.0.0.1"]);
    let bridge = if srtp {
        SipBridge::with_tls(&pki)
    } else {
        SipBridge::start()
    };
    bridge
        .engine
        .create_conference(meeting, Policy::default())
        .wait()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let target = if srtp {
        format!("sip:{meeting}@{};transport=tls", bridge.tls_addr())
    } else {
        format!("sip:{meeting}@{}", bridge.sip_addr())
    };
    let seconds = 8;
    let mut clients: Vec<Baresip> = codecs
        .iter()
        .zip(TONES)
        .enumerate()
        .map(|(i, (codec, tone))| {
            Baresip::dial(
                root.path(),
                BaresipOptions {
                    name: &format!("c{i}"),
                    codec,
                    srtp,
                    tone_hz: tone,
                    target: target.clone(),
                    seconds,
                    interactive: false,
                },
            )
        })
        .collect();
    // While the calls are up, all three are connected in the roster.
    std::thread::sleep(Duration::from_secs(4));
    let roster = bridge.engine.roster(meeting).wait().unwrap();
    let connected = roster
        .iter()
        .filter(|p| p.state == State::Connected)
        .count();
    let logs: Vec<String> = clients.iter().map(Baresip::log).collect();
    assert_eq!(
        connected,
        3,
        "roster {roster:?}\nlogs:\n{}",
        logs.join("\n----\n")
    );
    for c in &mut clients {
        c.wait(Duration::from_secs(u64::from(seconds) + 10));
    }
    // They hung up (baresip sends BYE on quitting): everyone is disconnected by hangup.
    std::thread::sleep(Duration::from_millis(300));
    let roster = bridge.engine.roster(meeting).wait().unwrap();
    assert!(
        roster
            .iter()
            .all(|p| matches!(p.state, State::Disconnected(_))),
        "{roster:?}"
    );

    for (i, c) in clients.iter().enumerate() {
        let (rate, heard) = c.heard();
        // Skip the first second (joins, jitter buffers filling).
        let heard = &heard[(rate as usize).min(heard.len())..];
        for (j, tone) in TONES.iter().enumerate() {
            let shares = clients::tone_shares(heard, rate, *tone);
            if i == j {
                assert!(
                    clients::absent(&shares),
                    "{} client {i} hears itself ({tone} Hz): {}",
                    codecs[i],
                    clients::describe(&shares)
                );
            } else {
                assert!(
                    clients::present(&shares),
                    "{} client {i} does not hear {tone} Hz: {}",
                    codecs[i],
                    clients::describe(&shares)
                );
            }
        }
    }
}

#[test]
fn three_baresip_on_pcmu() {
    conference_call(["pcmu", "pcmu", "pcmu"], false, "1001");
}

#[test]
fn three_baresip_on_g722() {
    conference_call(
        ["g722/16000/1", "g722/16000/1", "g722/16000/1"],
        false,
        "1002",
    );
}

#[test]
fn three_baresip_on_opus_with_srtp_over_tls() {
    conference_call(
        ["opus/48000/2", "opus/48000/2", "opus/48000/2"],
        true,
        "1003",
    );
}

#[test]
fn three_baresip_on_mixed_codecs() {
    conference_call(["pcmu", "g722/16000/1", "opus/48000/2"], false, "1004");
}

/// baresip insisting on SRTP over SIP on UDP: the bridge's default policy keeps SDES keys off
/// cleartext signalling, so the call is refused with 488 and says why.
#[test]
fn sdes_over_cleartext_sip_is_refused() {
    if !support::require(&["baresip", "sox"]) {
        return;
    }
    let _turn = support::shared();
    let pki = support::pki::TestPki::new(&["127.0.0.1"]);
    let bridge = SipBridge::with_tls(&pki);
    bridge
        .engine
        .create_conference("1005", Policy::default())
        .wait()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut c = Baresip::dial(
        root.path(),
        BaresipOptions {
            name: "cleartext",
            codec: "pcmu",
            srtp: true,
            tone_hz: 440.0,
            target: format!("sip:1005@{}", bridge.sip_addr()),
            seconds: 3,
            interactive: false,
        },
    );
    c.wait(Duration::from_secs(15));
    let log = c.log();
    assert!(log.contains("488"), "{log}");
    assert!(bridge.engine.roster("1005").wait().unwrap().is_empty());
}
