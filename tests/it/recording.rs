//! Conference recording on a running `confab serve`: a meeting of three RTP endpoints, each
//! sending its own tone, is recorded through the API; ffmpeg decodes the file to the length
//! recorded and each tone is in it (single-bin DFT, i.e. Goertzel, on the decoded PCM), after the
//! spoken notice that the conference is being recorded (the English prompt's own waveform opens
//! the file). A bridge
//! killed with SIGKILL mid-recording leaves a file ffmpeg decodes up to its last second.
//! Real time: about 12 s.

use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use confab::media::codec::Codec;
use serde_json::Value;
use support::Endpoint;
use support::server::{EventStream, Server};

fn join(server: &Server, cid: &str, e: &Endpoint, pt: u8, rtpmap: &str, who: &str) -> SocketAddr {
    server.join_endpoint(cid, e, (pt, rtpmap), who).1
}

/// The file's audio as ffmpeg decodes it: 48 kHz mono samples.
fn decode(path: &Path) -> Vec<i16> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .unwrap();
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// How closely the first second of `recorded` holds the first second of `said` (both 48 kHz):
/// the best normalised correlation within 20 ms of the start (1.0 is the same waveform alone;
/// other sounds mixed in lower it, an unrelated one is near 0).
fn likeness(recorded: &[i16], said: &[i16]) -> f64 {
    const N: usize = 48_000;
    let said = &said[..N.min(said.len())];
    (0..960)
        .filter_map(|lag| recorded.get(lag..lag + said.len()))
        .map(|part| {
            let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
            for (&x, &y) in part.iter().zip(said) {
                let (x, y) = (f64::from(x), f64::from(y));
                xy += x * y;
                xx += x * x;
                yy += y * y;
            }
            if xx > 0.0 && yy > 0.0 {
                xy / (xx * yy).sqrt()
            } else {
                0.0
            }
        })
        .fold(0.0, f64::max)
}

fn audio_path(data: &Path, id: &str) -> PathBuf {
    data.join("recordings").join(format!("{id}.opus"))
}

/// Waits (10 s at most) until the recording's metadata says `complete`.
fn until_complete(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = server.call("GET", &format!("/v1/recordings/{id}"), None);
        if status == 200 && v["state"] == "complete" {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never complete: {status} {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_three_talker_meeting_is_recorded_with_each_tone() {
    if !support::require(&["ffmpeg"]) {
        return;
    }
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    let (s, v) = server.call("POST", "/v1/conferences", Some(r#"{"id":"6001"}"#));
    assert_eq!(s, 201, "{v}");
    let mut a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 1);
    let mut b = Endpoint::new(Codec::G722, 660.0, -20.0, 2);
    let mut c = Endpoint::new(Codec::Opus, 1000.0, -20.0, 3);
    let a_media = join(&server, "6001", &a, 0, "PCMU/8000", "Ann");
    let b_media = join(&server, "6001", &b, 9, "G722/8000", "Bob");
    let c_media = join(&server, "6001", &c, 111, "opus/48000/2", "Cy");

    let (s, started) = server.call("POST", "/v1/conferences/6001/recording", None);
    assert_eq!(s, 201, "{started}");
    let began = Instant::now();
    let id = started["id"].as_str().unwrap().to_owned();
    support::run(
        &mut [(&mut a, a_media), (&mut b, b_media), (&mut c, c_media)],
        Duration::from_millis(4_500),
        |_| {},
    );
    let (s, stopped) = server.call("DELETE", "/v1/conferences/6001/recording", None);
    let recorded = began.elapsed();
    assert_eq!((s, stopped["id"].as_str()), (200, Some(id.as_str())));
    let meta = until_complete(&server, &id);

    let pcm = decode(&audio_path(data.path(), &id));
    let seconds = pcm.len() as f64 / 48_000.0;
    eprintln!(
        "recorded {:.2} s by the test's clock, {seconds:.2} s decoded, sidecar {} ms, {} bytes",
        recorded.as_secs_f64(),
        meta["duration_ms"],
        meta["bytes"]
    );
    assert!(
        (seconds - recorded.as_secs_f64()).abs() < 0.5,
        "{seconds:.2} s decoded for {:.2} s recorded",
        recorded.as_secs_f64()
    );
    let sidecar_s = meta["duration_ms"].as_f64().unwrap() / 1000.0;
    assert!((sidecar_s - seconds).abs() < 0.1, "{meta}");
    // The notice is said first (about 2 s): two seconds after it, every talker's tone, and
    // nothing at a frequency nobody sent.
    let english = confab::sip::prompts::Prompts::embedded_language("en")
        .unwrap()
        .audio(confab::sip::prompts::Prompt::BeingRecorded);
    let german = confab::sip::prompts::Prompts::embedded_language("de")
        .unwrap()
        .audio(confab::sip::prompts::Prompt::BeingRecorded);
    let after_notice = english.len() + 4_800;
    let middle = &pcm[after_notice.min(pcm.len())..(after_notice + 96_000).min(pcm.len())];
    assert!(
        middle.len() > 72_000,
        "{} samples after the notice",
        middle.len()
    );
    for f in [440.0, 660.0, 1000.0] {
        let level = confab_dsp::signal::tone_level_dbov(middle, 48_000, f);
        eprintln!("{f} Hz at {level:.1} dBov");
        assert!(level > -35.0, "{f} Hz at {level:.1} dBov");
    }
    let stray = confab_dsp::signal::tone_level_dbov(middle, 48_000, 1500.0);
    assert!(stray < -50.0, "1500 Hz at {stray:.1} dBov");
    // The spoken notice, in the default language, opens the recording: its first second is
    // the English prompt's waveform (under the tones and through Opus), not the German one's;
    // the old 1.4 kHz beeps are gone.
    let said = likeness(&pcm, &english);
    let other = likeness(&pcm, &german);
    let beeps = confab_dsp::signal::tone_level_dbov(&pcm[..48_000], 48_000, 1400.0);
    eprintln!("notice: English {said:.2}, German {other:.2}; 1.4 kHz at {beeps:.1} dBov");
    assert!(
        said > 0.4 && other < 0.2,
        "English {said:.2}, German {other:.2}"
    );
    assert!(beeps < -40.0, "1.4 kHz at {beeps:.1} dBov");
    let people = meta["participants"].as_array().unwrap();
    let mut names: Vec<&str> = people.iter().filter_map(|p| p["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["Ann", "Bob", "Cy"], "{meta}");
    // Listed under its conference.
    let (_, list) = server.call("GET", "/v1/recordings?conference=6001", None);
    assert_eq!(list["recordings"][0]["id"], id.as_str());
    // Told on the conference's event stream (replayed from the start).
    let mut events = EventStream::open(server.api, "/v1/conferences/6001/events", None, Some(0));
    let mut told = Vec::new();
    while let Some((_, kind, data)) = events.next() {
        if kind.starts_with("recording.") {
            assert_eq!(data["recording"], id.as_str(), "{data}");
            told.push(kind);
        }
        if told.len() == 2 {
            break;
        }
    }
    assert_eq!(told, ["recording.started", "recording.stopped"]);
}

#[test]
fn a_killed_bridge_leaves_a_playable_recording() {
    if !support::require(&["ffmpeg"]) {
        return;
    }
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    let (s, v) = server.call("POST", "/v1/conferences", Some(r#"{"id":"6002"}"#));
    assert_eq!(s, 201, "{v}");
    let (s, started) = server.call("POST", "/v1/conferences/6002/recording", None);
    assert_eq!(s, 201, "{started}");
    let began = Instant::now();
    let id = started["id"].as_str().unwrap().to_owned();
    // Real time: the bridge is another process with its own clock.
    std::thread::sleep(Duration::from_millis(4_300));
    let killed = Command::new("kill")
        .args(["-KILL", &server.pid().to_string()])
        .status()
        .unwrap();
    let elapsed = began.elapsed().as_secs_f64();
    assert!(killed.success());
    drop(server);
    let pcm = decode(&audio_path(data.path(), &id));
    let seconds = pcm.len() as f64 / 48_000.0;
    eprintln!("killed after {elapsed:.2} s of recording: {seconds:.2} s decoded");
    assert!(
        seconds >= elapsed - 1.5,
        "{seconds:.2} s decoded of {elapsed:.2} s"
    );
    // Started again on the same data: the recording is told as interrupted, with the length
    // its audio has.
    let server = Server::start(data.path(), None, &[]);
    let (s, meta) = server.call("GET", &format!("/v1/recordings/{id}"), None);
    assert_eq!(
        (s, meta["state"].as_str()),
        (200, Some("interrupted")),
        "{meta}"
    );
    let told = meta["duration_ms"].as_f64().unwrap() / 1000.0;
    assert!(
        (told - seconds).abs() < 0.1,
        "{told} s told, {seconds:.2} s decoded"
    );
}
