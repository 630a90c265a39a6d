//! WebRTC participants of a running `confab serve`, joined by WHIP: real aiortc peers next to a
//! plain RTP participant (each hears the others and not itself, measured by tone), ten peers
//! connecting at once, an abrupt disappearance, and every refusal the contract names.
//!
//! aiortc runs from tests/webrtc/whip_peers.py (CI installs it from PyPI).

use crate::support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use confab::media::codec::Codec;
use serde_json::{Value, json};
use support::Endpoint;
use support::clients::{absent, describe, present, read_wav, tone_shares};
use support::server::{Server, http_raw};

const CHROMIUM_OFFER: &str = include_str!("../fixtures/chromium-156-offer.sdp");

// The roster token of a WHIP session: tests/it/webrtc_roster.rs.
#[path = "webrtc_roster.rs"]
mod roster;

// Leader rights on the join page, promotion and gains: tests/it/webrtc_leader.rs.
#[path = "webrtc_leader.rs"]
mod leader;

/// POSTs an SDP offer to the conference's WHIP endpoint: status, headers, body.
fn whip(
    server: &Server,
    cid: &str,
    offer: &str,
    bearer: Option<&str>,
    content_type: &str,
) -> (u16, String, String) {
    http_raw(
        server.api,
        "POST",
        &format!("/v1/conferences/{cid}/whip?name=tester"),
        Some(offer),
        bearer,
        &[("Content-Type", content_type)],
    )
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn participant(server: &Server, cid: &str, pid: &str) -> Value {
    let (s, v) = server.call(
        "GET",
        &format!("/v1/conferences/{cid}/participants/{pid}"),
        None,
    );
    assert_eq!(s, 200, "{v}");
    v["participant"].clone()
}

/// Waits until `pid`'s state is `state`; its JSON.
fn wait_state(server: &Server, cid: &str, pid: &str, state: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let p = participant(server, cid, pid);
        if p["state"] == state {
            return p;
        }
        assert!(start.elapsed() < limit, "{pid} never became {state}: {p}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn create(server: &Server, body: Value) {
    let (s, v) = server.call("POST", "/v1/conferences", Some(&body.to_string()));
    assert_eq!(s, 201, "{v}");
}

/// Starts the aiortc script; its one JSON line comes out when it ends.
fn peers(
    server: &Server,
    cid: &str,
    out: &std::path::Path,
    seconds: f32,
    freqs: &[f32],
    extra: &[&str],
) -> std::process::Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webrtc/whip_peers.py");
    let url = format!("http://{}/v1/conferences/{cid}/whip", server.api);
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(url)
        .arg(out)
        .arg(seconds.to_string())
        .args(freqs.iter().map(|f| f.to_string()))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn()
        .expect("python3 with aiortc (pip install aiortc aiohttp numpy)")
}

fn results(child: std::process::Child) -> Vec<Value> {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "whip_peers.py printed no result: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["peers"].as_array().cloned().unwrap_or_default()
}

#[test]
fn aiortc_peers_and_an_rtp_participant_hear_each_other_not_themselves() {
    if !support::require_python(&["aiortc", "aiohttp", "av", "numpy"]) {
        return;
    }
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    create(&server, json!({ "id": "5150", "name": "Mixed" }));

    // A plain RTP participant (PCMU) with 440 Hz.
    let mut rtp = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 0x4400);
    let body = json!({ "sdp": support::offer_for(&rtp, 0, "PCMU/8000"), "display_name": "phone" })
        .to_string();
    let (s, v) = server.call("POST", "/v1/conferences/5150/participants", Some(&body));
    assert_eq!(s, 201, "{v}");
    let to = support::media_of(v["sdp"].as_str().unwrap());
    let phone = v["participant"]["id"].as_str().unwrap().to_owned();

    // The shared WebRTC port, from an answer's candidate (that session is let go at once).
    let (status, head, answer) = whip(&server, "5150", CHROMIUM_OFFER, None, "application/sdp");
    assert_eq!(status, 201, "{answer}");
    let webrtc_port: u16 = answer
        .lines()
        .find(|l| l.starts_with("a=candidate:") && l.contains(" udp "))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|p| p.parse().ok())
        .unwrap();
    let location = header(&head, "location").unwrap().to_owned();
    let (s, _, _) = http_raw(server.api, "DELETE", &location, None, None, &[]);
    assert_eq!(s, 200);
    let webrtc_addr = SocketAddr::from(([127, 0, 0, 1], webrtc_port));
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();

    // Two aiortc peers with 660 and 880 Hz, recording 6 s once connected.
    let out = tempfile::tempdir().unwrap();
    let mut child = peers(&server, "5150", out.path(), 6.0, &[660.0, 880.0], &[]);
    // The RTP side runs in real time while they talk; its loudest second of each tone counts.
    let mut best = [f32::MIN; 3];
    let mut own_worst = f32::MIN;
    let start = Instant::now();
    let mut done = false;
    while !done && start.elapsed() < Duration::from_secs(40) {
        // Meanwhile junk hits the shared port: STUN-, DTLS- and RTP-looking and random
        // datagrams from a stranger. None of it may disturb the peers.
        support::run(&mut [(&mut rtp, to)], Duration::from_secs(1), |tick| {
            let n = tick as u8;
            for first in [0x00u8, 0x01, 0x16, 0x17, 0x80, 0x90, n] {
                let mut d = vec![first, n, 0x00, 0x2c, 0x21, 0x12, 0xa4, 0x42];
                d.extend((0..40).map(|i: u8| i.wrapping_mul(n).wrapping_add(first)));
                let _ = junk.send_to(&d, webrtc_addr);
            }
        });
        best[1] = best[1].max(rtp.level_of(660.0, 1.0));
        best[2] = best[2].max(rtp.level_of(880.0, 1.0));
        own_worst = own_worst.max(rtp.level_of(440.0, 1.0));
        done = child.try_wait().unwrap().is_some();
    }
    let results = results(child);
    eprintln!("peers: {results:?}; phone heard {best:?}, itself {own_worst}");
    let (_, _, metrics) = http_raw(server.api, "GET", "/metrics", None, None, &[]);
    let unrouted: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("confab_webrtc_unrouted_datagrams_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(unrouted > 100.0, "junk datagrams counted: {unrouted}");
    assert_eq!(results.len(), 2);
    for r in &results {
        assert_eq!(r["status"], 201, "{r}");
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["delete_status"], 200, "{r}");
    }
    // (aiortc upmixes its mono tone to stereo at -3 dB before Opus: -26 dBov arrives for a
    // tone of -23 dBov RMS; checked against libopus directly.)
    assert!(
        best[1] > -35.0 && best[2] > -35.0,
        "the phone hears both peers: {best:?}"
    );
    assert!(
        own_worst < -45.0,
        "the phone does not hear itself: {own_worst}"
    );

    for r in &results {
        let own = r["freq"].as_f64().unwrap() as f32;
        let (rate, samples) = read_wav(std::path::Path::new(r["wav"].as_str().unwrap()));
        assert_eq!(rate, 48000);
        assert!(
            samples.len() > 48000 * 4,
            "{} samples recorded",
            samples.len()
        );
        // Skip the first second (the mix settles as the others join).
        let samples = &samples[48000..];
        for freq in [440.0f32, 660.0, 880.0] {
            let shares = tone_shares(samples, rate, freq);
            if freq == own {
                assert!(
                    absent(&shares),
                    "peer {own} hears itself: {}",
                    describe(&shares)
                );
            } else {
                assert!(
                    present(&shares),
                    "peer {own} misses {freq}: {}",
                    describe(&shares)
                );
            }
        }
    }

    // Both left by DELETE: disconnected, hangup; the roster showed them as WebRTC legs.
    let (_, v) = server.call("GET", "/v1/conferences/5150/participants", None);
    let webrtc: Vec<&Value> = v["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["display_name"]
                .as_str()
                .unwrap_or_default()
                .starts_with("tone")
        })
        .collect();
    assert_eq!(webrtc.len(), 2, "{v}");
    for p in webrtc {
        assert_eq!(p["state"], "disconnected", "{p}");
        assert_eq!(p["disconnect_reason"], "hangup", "{p}");
    }
    let (s, _) = server.call(
        "DELETE",
        &format!("/v1/conferences/5150/participants/{phone}"),
        None,
    );
    assert_eq!(s, 204);
    server.stop();
}

#[test]
fn ten_aiortc_peers_each_connect_in_under_two_seconds() {
    if !support::require_python(&["aiortc", "aiohttp", "av", "numpy"]) {
        return;
    }
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    create(&server, json!({ "id": "1010", "passcode": "2468" }));
    let out = tempfile::tempdir().unwrap();
    let freqs: Vec<f32> = (0..10).map(|i| 400.0 + 100.0 * i as f32).collect();
    let child = peers(
        &server,
        "1010",
        out.path(),
        1.0,
        &freqs,
        &["--token", "2468"],
    );
    let results = results(child);
    assert_eq!(results.len(), 10);
    for r in &results {
        assert_eq!(r["status"], 201, "{r}");
        let t = r["connect_s"].as_f64().unwrap_or(f64::MAX);
        assert!(t < 2.0, "connected in {t} s: {r}");
    }
    let (_, _, m) = http_raw(server.api, "GET", "/metrics", None, None, &[]);
    assert!(m.contains("confab_webrtc_connected_total 10"), "{m}");
    server.stop();
}

/// One aiortc peer in a fresh conference, run in `mode` (`--hang`, `--close`); the state
/// its participant ends in, waited for up to `limit`.
fn one_peer_ends(extra: &[&str], mode: &str, limit: Duration) -> Value {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, extra);
    create(&server, json!({ "id": "7007" }));
    let out = tempfile::tempdir().unwrap();
    let child = peers(&server, "7007", out.path(), 1.5, &[500.0], &[mode]);
    let results = results(child);
    assert_eq!(results[0]["status"], 201, "{:?}", results);
    let (_, v) = server.call("GET", "/v1/conferences/7007/participants", None);
    let pid = v["participants"][0]["id"].as_str().unwrap().to_owned();
    let p = wait_state(&server, "7007", &pid, "disconnected", limit);
    server.stop();
    p
}

#[test]
fn a_vanished_peer_is_disconnected_for_ice_timeout() {
    if !support::require_python(&["aiortc", "aiohttp", "av", "numpy"]) {
        return;
    }
    let _turn = support::exclusive();
    let p = one_peer_ends(
        &["--webrtc-consent-timeout-secs", "5"],
        "--hang",
        Duration::from_secs(20),
    );
    assert_eq!(p["disconnect_reason"], "ice-timeout", "{p}");
}

#[test]
fn a_peer_closing_dtls_has_hung_up() {
    if !support::require_python(&["aiortc", "aiohttp", "av", "numpy"]) {
        return;
    }
    let _turn = support::exclusive();
    let started = Instant::now();
    // Well before any consent or media timeout (30 s).
    let p = one_peer_ends(&[], "--close", Duration::from_secs(10));
    assert_eq!(p["disconnect_reason"], "hangup", "{p}");
    // Before the 30 s consent timeout could have ended it (the reason says so too); the
    // server's and aiortc's start-up count here, which on a loaded CI machine took over 15 s.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn refusals_are_the_contracts() {
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        None,
        &["--webrtc-max-handshakes-per-address", "3"],
    );
    create(
        &server,
        json!({ "id": "3030", "passcode": "1357", "leader_pin": "9999" }),
    );

    // Malformed, not SDP, no audio, unknown conference.
    let (s, _, b) = whip(
        &server,
        "3030",
        "v=0\r\nnonsense",
        Some("1357"),
        "application/sdp",
    );
    assert_eq!(s, 400, "{b}");
    let (s, _, b) = whip(&server, "3030", CHROMIUM_OFFER, Some("1357"), "text/plain");
    assert_eq!(s, 415, "{b}");
    let video = CHROMIUM_OFFER.replace("m=audio", "m=video");
    let (s, _, b) = whip(&server, "3030", &video, Some("1357"), "application/sdp");
    assert!(s == 422 || s == 400, "{s} {b}");
    // An unknown meeting ID is refused exactly as missing credentials are (nothing tells
    // whether a meeting exists).
    let (s, _, unknown) = whip(&server, "4040", CHROMIUM_OFFER, None, "application/sdp");
    assert_eq!(s, 401, "{unknown}");

    // Credentials: none, wrong, a forged token, an expired one.
    let (s, head, b) = whip(&server, "3030", CHROMIUM_OFFER, None, "application/sdp");
    assert_eq!(s, 401, "{b}");
    assert!(b.contains("passcode"), "{b}");
    assert_eq!(b, unknown);
    assert!(
        header(&head, "access-control-allow-origin").is_some(),
        "{head}"
    );
    let (s, _, _) = whip(
        &server,
        "3030",
        CHROMIUM_OFFER,
        Some("0000"),
        "application/sdp",
    );
    assert_eq!(s, 401);
    let (s, v) = server.call(
        "POST",
        "/v1/conferences/3030/tokens",
        Some(r#"{"display_name":"Grace","role":"leader","ttl_secs":1}"#),
    );
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let mut forged = token.clone();
    forged.replace_range(0..2, if &token[0..2] == "7b" { "7c" } else { "7b" });
    let (s, _, _) = whip(
        &server,
        "3030",
        CHROMIUM_OFFER,
        Some(&forged),
        "application/sdp",
    );
    assert_eq!(s, 401);
    for (body, code) in [
        (r#"{"display_name":""}"#, 422),
        (r#"{"display_name":"x","role":"boss"}"#, 422),
        (r#"{"display_name":"x","ttl_secs":0}"#, 422),
        (r#"{"display_name":"x","colour":1}"#, 422),
    ] {
        let (s, v) = server.call("POST", "/v1/conferences/3030/tokens", Some(body));
        assert_eq!(s, code, "{body}: {v}");
    }
    // The token works while fresh: Grace joins as leader (connecting: no ICE ever comes).
    let (s, head, answer) = whip(
        &server,
        "3030",
        CHROMIUM_OFFER,
        Some(&token),
        "application/sdp",
    );
    assert_eq!(s, 201, "{answer}");
    assert!(
        answer.contains("a=ice-lite") && answer.contains("typ host"),
        "{answer}"
    );
    assert_eq!(header(&head, "content-type"), Some("application/sdp"));
    let location = header(&head, "location").unwrap().to_owned();
    assert!(
        location.starts_with("/v1/conferences/3030/whip/"),
        "{location}"
    );
    let exposed = header(&head, "access-control-expose-headers").unwrap_or_default();
    assert!(exposed.contains("Location"), "{head}");
    let grace = header(&head, "confab-participant").unwrap().to_owned();
    let p = participant(&server, "3030", &grace);
    assert_eq!(
        (p["display_name"].as_str(), p["role"].as_str()),
        (Some("Grace"), Some("leader"))
    );
    assert_eq!(p["state"], "connecting", "{p}");
    std::thread::sleep(Duration::from_millis(1200));
    let (s, _, b) = whip(
        &server,
        "3030",
        CHROMIUM_OFFER,
        Some(&token),
        "application/sdp",
    );
    assert_eq!(s, 401, "expired: {b}");
    assert!(b.contains("expired"), "{b}");

    // CORS preflight, trickle PATCH, DELETE (once).
    let (s, head, _) = http_raw(
        server.api,
        "OPTIONS",
        "/v1/conferences/3030/whip",
        None,
        None,
        &[],
    );
    assert_eq!(s, 204, "{head}");
    assert!(
        header(&head, "access-control-allow-methods")
            .unwrap_or_default()
            .contains("POST")
    );
    assert!(
        header(&head, "access-control-allow-headers")
            .unwrap_or_default()
            .contains("Authorization")
    );
    let (s, _, _) = http_raw(
        server.api,
        "PATCH",
        &location,
        Some("a=candidate"),
        None,
        &[("Content-Type", "application/trickle-ice-sdpfrag")],
    );
    assert_eq!(s, 405);
    let (s, _, _) = http_raw(server.api, "DELETE", &location, None, None, &[]);
    assert_eq!(s, 200);
    let p = wait_state(
        &server,
        "3030",
        &grace,
        "disconnected",
        Duration::from_secs(5),
    );
    assert_eq!(p["disconnect_reason"], "hangup");
    let (s, _, _) = http_raw(server.api, "DELETE", &location, None, None, &[]);
    assert_eq!(s, 404);

    // Handshakes from one address are limited (3 here): two more are in progress, then 429.
    let mut held = Vec::new();
    for _ in 0..3 {
        let (s, head, b) = whip(
            &server,
            "3030",
            CHROMIUM_OFFER,
            Some("1357"),
            "application/sdp",
        );
        assert_eq!(s, 201, "{b}");
        held.push(header(&head, "location").unwrap().to_owned());
    }
    let (s, _, b) = whip(
        &server,
        "3030",
        CHROMIUM_OFFER,
        Some("1357"),
        "application/sdp",
    );
    assert_eq!(s, 429, "{b}");
    for l in &held {
        let (s, _, _) = http_raw(server.api, "DELETE", l, None, None, &[]);
        assert_eq!(s, 200);
    }
    // Slots come back once those peers are gone.
    let (s, head, b) = whip(
        &server,
        "3030",
        CHROMIUM_OFFER,
        Some("9999"),
        "application/sdp",
    );
    assert_eq!(s, 201, "{b}");
    let leader = header(&head, "confab-participant").unwrap().to_owned();
    assert_eq!(participant(&server, "3030", &leader)["role"], "leader");

    // Locked: 403; full: 409; draining: 503.
    let (s, _) = server.call("POST", "/v1/conferences/3030/lock", None);
    assert_eq!(s, 200);
    let (s, _, b) = whip(
        &server,
        "3030",
        CHROMIUM_OFFER,
        Some("1357"),
        "application/sdp",
    );
    assert_eq!(s, 403, "{b}");
    create(&server, json!({ "id": "3031", "max_participants": 1 }));
    let (s, _, _) = whip(&server, "3031", CHROMIUM_OFFER, None, "application/sdp");
    assert_eq!(s, 201);
    let (s, _, b) = whip(&server, "3031", CHROMIUM_OFFER, None, "application/sdp");
    assert_eq!(s, 409, "{b}");
    // Nothing of this disturbed the API.
    let (s, _) = server.call("GET", "/v1/conferences/3030", None);
    assert_eq!(s, 200);
    let (s, _) = server.call("POST", "/v1/admin/drain", None);
    assert_eq!(s, 202);
    let (s, _, b) = whip(&server, "3031", CHROMIUM_OFFER, None, "application/sdp");
    assert_eq!(s, 503, "{b}");
    // (Dropped, not stopped: the drain would wait for the peers that never connect.)
}
