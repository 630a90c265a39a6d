//! Headless Chromium (Debian's /usr/bin/chromium, a fake microphone playing a tone file) uses
//! Confab's own pages: it joins through `/join/{cid}` next to two RTP phones (the page asks for
//! echo cancellation, noise suppression and automatic gain and gets them, lists the
//! microphones, meters the level, says "you are muted" while muted with the tone on, and sends
//! an unprocessed track in place of the first when its checkbox is unticked), getStats shows
//! audio arriving and getContributingSources names the phone that talks; then `/console` mutes
//! that phone (the API says muted, the other phone stops hearing its tone), starts recording by
//! its button (the indicator turns on, the API says recording; stopped through the API, the
//! indicator turns off by the API's event; a failed start is shown) and locks the conference (a
//! new join through the page is refused). Screenshots go under target/.
//!
//! All of it over HTTPS (`api.tls_cert` from a test CA): Chromium is told to trust the
//! server's public key (`--ignore-certificate-errors-spki-list`, the SHA-256 of its
//! SubjectPublicKeyInfo, computed here), and the test's own API calls verify the CA.
//!
//! playwright-core drives Chromium from tests/browser (scripts/prereqs runs `npm ci` there).

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use confab::media::codec::Codec;
use serde_json::{Value, json};
use support::Endpoint;
use support::clients::tone_wav;
use support::https::{https, https_raw};
use support::pki::TestPki;
use support::process::Guarded;
use support::server::Server;

/// The bridge's API over HTTPS, verified against the test CA.
struct Api<'a> {
    server: &'a Server,
    pki: &'a TestPki,
}

impl Api<'_> {
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        https(self.server.api, &self.pki.ca, method, path, body, None)
    }
}

/// Adds an RTP phone; its participant JSON and where to send.
fn add_phone(api: &Api, cid: &str, e: &Endpoint, name: &str) -> (Value, SocketAddr) {
    let body =
        json!({ "sdp": support::offer_for(e, 0, "PCMU/8000"), "display_name": name }).to_string();
    let (s, v) = api.call(
        "POST",
        &format!("/v1/conferences/{cid}/participants"),
        Some(&body),
    );
    assert_eq!(s, 201, "{v}");
    (
        v["participant"].clone(),
        support::media_of(v["sdp"].as_str().unwrap()),
    )
}

#[test]
fn chromium_joins_by_the_page_and_the_console_mutes_and_locks() {
    if !support::require(&["node", "chromium", "sox"])
        || !support::require_path("tests/browser/node_modules/playwright-core")
    {
        return;
    }
    let _turn = support::exclusive();
    let browser_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let data = tempfile::tempdir().unwrap();
    let pki = TestPki::new(&["127.0.0.1", "localhost"]);
    let tls = [
        "--api-tls-cert",
        pki.cert.to_str().unwrap(),
        "--api-tls-key",
        pki.key.to_str().unwrap(),
    ];
    let server = Server::start(data.path(), None, &tls);
    let api = Api {
        server: &server,
        pki: &pki,
    };
    let (s, v) = api.call(
        "POST",
        "/v1/conferences",
        Some(r#"{"id":"6060","name":"Browser","passcode":"2468"}"#),
    );
    assert_eq!(s, 201, "{v}");

    // Two phones: "phone" talks 440 Hz, "desk" 880 Hz.
    let mut phone = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 0x4401);
    let mut desk = Endpoint::new(Codec::Pcmu, 880.0, -20.0, 0x8801);
    let (phone_json, phone_to) = add_phone(&api, "6060", &phone, "phone");
    let (_, desk_to) = add_phone(&api, "6060", &desk, "desk");
    let phone_id = phone_json["id"].as_str().unwrap().to_owned();

    // Chromium's microphone: 660 Hz.
    let fake = data.path().join("mic-660.wav");
    tone_wav(&fake, 48000, 660.0, 60);
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // In its own process group, so Chromium goes with node when the guard drops (pass or fail).
    let mut node = Guarded::spawn(
        Command::new("node")
            .arg(format!("{browser_dir}/join_and_console.mjs"))
            .arg(format!("https://{}", server.api))
            .args(["6060", "2468"])
            .arg(&fake)
            .arg(&shots)
            .arg("phone")
            .arg(pki.spki_hash())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let mut to_node = node.0.stdin.take().unwrap();
    let (tx, steps) = mpsc::channel::<Value>();
    let stdout = node.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    // The phones run in real time; between rounds the test follows the browser's steps.
    let next_step = |phone: &mut Endpoint, desk: &mut Endpoint, limit: Duration| -> Value {
        let start = Instant::now();
        loop {
            support::run(
                &mut [(&mut *phone, phone_to), (&mut *desk, desk_to)],
                Duration::from_millis(200),
                |_| {},
            );
            if let Ok(v) = steps.try_recv() {
                assert_ne!(v["step"], "error", "{v}");
                return v;
            }
            assert!(start.elapsed() < limit, "the browser script stalled");
        }
    };
    let go = |to: &mut std::process::ChildStdin| {
        to.write_all(b"go\n").unwrap();
        to.flush().unwrap();
    };

    // 1. Joined through the page.
    let joined = next_step(&mut phone, &mut desk, Duration::from_secs(60));
    assert_eq!(joined["step"], "joined", "{joined}");
    assert_eq!(joined["state"], "connected", "{joined}");
    assert_eq!(joined["origin"]["protocol"], "https:", "{joined}");
    assert_eq!(joined["origin"]["secure"], true, "{joined}");
    // The page asked for echo cancellation, noise suppression and automatic gain by default,
    // and the track Chromium gave it has them; unticked, a track without them is sent instead.
    for key in ["echoCancellation", "noiseSuppression", "autoGainControl"] {
        assert_eq!(joined["defaults"][key], true, "{key} by default: {joined}");
        assert_eq!(joined["off"][key], false, "{key} turned off: {joined}");
    }
    assert_eq!(joined["defaults"]["checkbox"], true, "{joined}");
    assert_eq!(joined["defaults"]["sent"], true, "{joined}");
    assert_eq!(joined["off"]["checkbox"], false, "{joined}");
    assert_eq!(
        joined["off"]["sent"], true,
        "the new track is the one sent: {joined}"
    );
    // The microphone picker lists Chromium's (fake) microphones by name.
    let microphones = joined["microphones"].as_array().unwrap();
    assert!(
        microphones
            .iter()
            .any(|m| m["value"] != "" && !m["label"].as_str().unwrap().is_empty()),
        "{joined}"
    );
    // Another one picked during the call is sent instead, still without processing.
    assert_eq!(joined["picked"]["sent"], true, "{joined}");
    assert_eq!(joined["picked"]["echoCancellation"], false, "{joined}");
    assert!(
        joined["meter"].as_f64().unwrap() > 0.05,
        "the level meter: {joined}"
    );
    assert_eq!(joined["mutedNotice"]["shown"], true, "{joined}");
    assert_eq!(joined["mutedNotice"]["goneWhenUnmuted"], true, "{joined}");
    assert!(
        joined["packetsReceived"].as_u64().unwrap() > 100,
        "{joined}"
    );
    assert!(joined["audioLevel"].as_f64().unwrap() > 0.01, "{joined}");
    let phone_ssrc = {
        let (_, v) = api.call(
            "GET",
            &format!("/v1/conferences/6060/participants/{phone_id}"),
            None,
        );
        v["participant"]["media"]["ssrc"].as_u64().unwrap()
    };
    let sources: Vec<u64> = joined["csrcs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["source"].as_u64())
        .collect();
    assert!(
        sources.contains(&phone_ssrc),
        "getContributingSources {sources:?} names the phone ({phone_ssrc}): {joined}"
    );
    let roster = joined["roster"].to_string();
    assert!(
        roster.contains("phone") && roster.contains("desk") && roster.contains("Chromium (you)"),
        "{roster}"
    );
    let chromium = joined["participant"].as_str().unwrap().to_owned();
    let (_, v) = api.call(
        "GET",
        &format!("/v1/conferences/6060/participants/{chromium}"),
        None,
    );
    assert_eq!(v["participant"]["state"], "connected", "{v}");
    assert_eq!(
        v["participant"]["muted"], false,
        "unmuted by the page again: {v}"
    );
    assert_eq!(v["participant"]["media"]["transport"], "webrtc", "{v}");
    // Chromium sends RFC 6464 levels; the bridge reads them (a 660 Hz tone at about -10 dBov).
    let level = v["participant"]["media"]["client_level_dbov"].as_f64();
    assert!(level.is_some_and(|l| l > -40.0), "{v}");
    // The phones hear Chromium's microphone; the desk hears the phone.
    assert!(
        phone.level_of(660.0, 1.0) > -45.0,
        "{}",
        phone.level_of(660.0, 1.0)
    );
    assert!(desk.level_of(660.0, 1.0) > -45.0);
    assert!(
        desk.level_of(440.0, 1.0) > -30.0,
        "{}",
        desk.level_of(440.0, 1.0)
    );
    assert!(shots.join("browser-join.png").is_file());
    go(&mut to_node);

    // 2. The console mutes the phone: the API says so and the desk stops hearing it. (It also
    // mutes and unmutes Chromium, whose page follows; the desk hears Chromium again after.)
    let muted = next_step(&mut phone, &mut desk, Duration::from_secs(40));
    assert_eq!(muted["step"], "muted", "{muted}");
    // Chromium muted and unmuted by the console in between: its page followed both.
    assert_eq!(muted["byModerator"]["button"], "Unmute me", "{muted}");
    assert_eq!(muted["byModerator"]["trackEnabled"], false, "{muted}");
    assert_eq!(muted["unmuted"], "Mute me", "{muted}");
    let (_, v) = api.call(
        "GET",
        &format!("/v1/conferences/6060/participants/{phone_id}"),
        None,
    );
    assert_eq!(v["participant"]["muted"], true, "{v}");
    support::run(
        &mut [(&mut phone, phone_to), (&mut desk, desk_to)],
        Duration::from_millis(1500),
        |_| {},
    );
    assert!(
        desk.level_of(440.0, 1.0) < -50.0,
        "the desk still hears the muted phone: {}",
        desk.level_of(440.0, 1.0)
    );
    assert!(
        desk.level_of(660.0, 1.0) > -45.0,
        "the desk still hears Chromium"
    );
    go(&mut to_node);

    // 3. The console starts recording: its indicator turns on and the API says so.
    let started = next_step(&mut phone, &mut desk, Duration::from_secs(40));
    let shown = |v: &Value| ["state", "text", "button"].map(|k| v[k].as_str().map(str::to_owned));
    let off = ["false", "Not recorded", "Start recording"].map(|s| Some(s.to_owned()));
    assert_eq!(started["step"], "recording", "{started}");
    assert_eq!(shown(&started["before"]), off, "{started}");
    let on = ["true", "Being recorded", "Stop recording"].map(|s| Some(s.to_owned()));
    assert_eq!(shown(&started["on"]), on, "{started}");
    assert!(shots.join("browser-recording.png").is_file());
    let (_, list) = api.call("GET", "/v1/recordings?conference=6060&limit=1", None);
    assert_eq!(list["recordings"][0]["state"], "recording", "{list}");
    // Stopped from outside the console: only the event can tell it.
    let (s, v) = api.call("DELETE", "/v1/conferences/6060/recording", None);
    assert_eq!(s, 200, "{v}");
    go(&mut to_node);
    let stopped = next_step(&mut phone, &mut desk, Duration::from_secs(40));
    assert_eq!(stopped["step"], "recording-stopped", "{stopped}");
    assert_eq!(shown(&stopped["off"]), off, "{stopped}");
    // A failed start is shown to the operator, as an error, and the indicator stays off.
    let failed = stopped["failed"]["status"].as_str().unwrap_or("");
    assert!(failed.contains("Start recording failed: recording is not available"));
    assert_eq!(stopped["failed"]["error"], true, "{stopped}");
    assert_eq!(shown(&stopped["after"]), off, "{stopped}");
    go(&mut to_node);

    // 4. The console locks: the API says so, and a join (by WHIP, and by the page) is refused.
    let locked = next_step(&mut phone, &mut desk, Duration::from_secs(40));
    assert_eq!(locked["step"], "locked", "{locked}");
    let (_, v) = api.call("GET", "/v1/conferences/6060", None);
    assert_eq!(v["conference"]["locked"], true, "{v}");
    let offer = include_str!("../fixtures/chromium-156-offer.sdp");
    let (s, _, b) = https_raw(
        server.api,
        &pki.ca,
        "POST",
        "/v1/conferences/6060/whip",
        Some(offer),
        Some("2468"),
        &[("Content-Type", "application/sdp")],
    );
    assert_eq!(s, 403, "{b}");
    assert!(shots.join("browser-console.png").is_file());
    go(&mut to_node);
    let refused = next_step(&mut phone, &mut desk, Duration::from_secs(40));
    assert_eq!(refused["step"], "refused", "{refused}");
    assert!(
        refused["status"].as_str().unwrap().contains("locked"),
        "{refused}"
    );
    drop(to_node);
    let _ = node.0.wait();
    // Ending the conference lets everyone go, so the drain at stop has nothing to wait for.
    let (s, _) = api.call("DELETE", "/v1/conferences/6060", None);
    assert!(s == 200 || s == 204, "{s}");
    server.stop();
}

/// A STUN server that answers Binding requests (RFC 8489: XOR-MAPPED-ADDRESS of the sender,
/// IPv4) and counts them; it stops when `stop` is set.
fn stun_server(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (
    SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::thread::JoinHandle<()>,
) {
    use std::sync::atomic::Ordering;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&seen);
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, SocketAddr::V4(from))) = socket.recv_from(&mut buf) else {
                continue;
            };
            // A Binding request with the magic cookie; anything else is not answered.
            if n < 20 || buf[..2] != [0, 1] || buf[4..8] != [0x21, 0x12, 0xa4, 0x42] {
                continue;
            }
            count.fetch_add(1, Ordering::Relaxed);
            let mut reply = vec![0x01, 0x01, 0, 12];
            reply.extend_from_slice(&buf[4..20]);
            let port = from.port() ^ 0x2112;
            let ip = u32::from(*from.ip()) ^ 0x2112_a442;
            reply.extend_from_slice(&[0x00, 0x20, 0, 8, 0, 1]);
            reply.extend_from_slice(&port.to_be_bytes());
            reply.extend_from_slice(&ip.to_be_bytes());
            let _ = socket.send_to(&reply, from);
        }
    });
    (addr, seen, thread)
}

/// The join page on a bridge with an API token and STUN/TURN servers: Chromium is given the
/// servers (its `getConfiguration()` has them, and it asks the STUN server), the roster shows
/// without the API token (the page never has it: it reads with its WHIP session's roster
/// token), and the attendee's "Mute me" reaches the bridge with that token; when the bridge lets the session go (deleted here, with the page's event stream
/// stopped first so that only the connection can tell it), the page joins again as a new
/// participant of the same name; once ejected, it does not.
#[test]
fn chromium_rejoins_after_losing_its_session_with_the_configured_ice_servers() {
    if !support::require(&["node", "chromium", "sox"])
        || !support::require_path("tests/browser/node_modules/playwright-core")
    {
        return;
    }
    let _turn = support::exclusive();
    let browser_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let data = tempfile::tempdir().unwrap();
    let pki = TestPki::new(&["127.0.0.1", "localhost"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stun, stun_seen, stun_thread) = stun_server(std::sync::Arc::clone(&stop));
    // A TURN server over TCP where nothing listens: refused at once, so gathering is not held up.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = data.path().join("confab.toml");
    let ice = json!([
        { "urls": [format!("stun:{stun}")] },
        { "urls": [format!("turn:127.0.0.1:{closed}?transport=tcp")],
          "username": "1733400000:chromium", "credential": "dHVybi1zZWNyZXQ=" },
    ]);
    std::fs::write(
        &config,
        format!(
            "[webrtc]\nice_servers = [\n  {{ urls = [\"stun:{stun}\"] }},\n  \
             {{ urls = [\"turn:127.0.0.1:{closed}?transport=tcp\"], \
             username = \"1733400000:chromium\", credential = \"dHVybi1zZWNyZXQ=\" }},\n]\n"
        ),
    )
    .unwrap();
    let token = "operator-only-5e3d";
    let server = Server::start(
        data.path(),
        Some(token),
        &[
            "--api-tls-cert",
            pki.cert.to_str().unwrap(),
            "--api-tls-key",
            pki.key.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--media-timeout-secs",
            "300",
        ],
    );
    let call = |method: &str, path: &str, body: Option<&str>| {
        https(server.api, &pki.ca, method, path, body, Some(token))
    };
    let (s, v) = call(
        "POST",
        "/v1/conferences",
        Some(r#"{"id":"6161","name":"Rejoin","passcode":"8642"}"#),
    );
    assert_eq!(s, 201, "{v}");
    let phone = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 0x6161);
    let body = json!({ "sdp": support::offer_for(&phone, 0, "PCMU/8000"), "display_name": "phone",
                       "uri": "sip:+4930765432@gw.example.net" })
    .to_string();
    let (s, v) = call("POST", "/v1/conferences/6161/participants", Some(&body));
    assert_eq!(s, 201, "{v}");

    let fake = data.path().join("mic-660.wav");
    tone_wav(&fake, 48000, 660.0, 60);
    let mut node = Guarded::spawn(
        Command::new("node")
            .arg(format!("{browser_dir}/rejoin.mjs"))
            .arg(format!("https://{}", server.api))
            .args(["6161", "8642"])
            .arg(&fake)
            .arg(pki.spki_hash())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let mut to_node = node.0.stdin.take().unwrap();
    let (tx, steps) = mpsc::channel::<Value>();
    let stdout = node.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let next_step = |limit: Duration| -> Value {
        let v = steps
            .recv_timeout(limit)
            .expect("the browser script stalled");
        assert_ne!(v["step"], "error", "{v}");
        v
    };
    let mut go = || {
        to_node.write_all(b"go\n").unwrap();
        to_node.flush().unwrap();
    };
    let chromiums = || -> Vec<Value> {
        let (s, v) = call("GET", "/v1/conferences/6161/participants", None);
        assert_eq!(s, 200, "{v}");
        v["participants"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["display_name"] == "Chromium")
            .cloned()
            .collect()
    };

    // 1. Joined: the configured servers, asked; the roster without the API token.
    let joined = next_step(Duration::from_secs(60));
    assert_eq!(joined["step"], "joined", "{joined}");
    // (Chromium fills in empty strings for what an entry leaves out.)
    let mut given = joined["iceServers"].clone();
    for server in given.as_array_mut().unwrap() {
        server.as_object_mut().unwrap().retain(|_, v| v != "");
    }
    assert_eq!(given, ice, "{joined}");
    assert!(
        stun_seen.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "Chromium never asked the configured STUN server"
    );
    assert_eq!(joined["apiToken"], Value::Null, "{joined}");
    // "Mute me" and "Unmute me" reached the bridge with the session's own roster token.
    assert_eq!(
        joined["selfMute"],
        json!({ "muted": true, "unmuted": true }),
        "{joined}"
    );
    let rows = joined["roster"].to_string();
    assert!(
        rows.contains("phone") && rows.contains("Chromium (you)"),
        "{rows}"
    );
    assert!(!rows.contains("4930765432"), "{rows}");
    let first = joined["participant"].as_str().unwrap().to_owned();
    go();

    // 2. The bridge lets the session go; the page only sees its connection fail.
    let cut = next_step(Duration::from_secs(20));
    assert_eq!(cut["step"], "cut", "{cut}");
    let location = joined["location"].as_str().unwrap();
    let (s, _, b) = https_raw(server.api, &pki.ca, "DELETE", location, None, None, &[]);
    assert_eq!(s, 200, "{b}");
    let lost = Instant::now();
    go();
    let rejoined = next_step(Duration::from_secs(60));
    assert_eq!(rejoined["step"], "rejoined", "{rejoined}");
    let second = rejoined["participant"].as_str().unwrap().to_owned();
    assert_ne!(first, second, "{rejoined}");
    assert!(
        rejoined["statusLog"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "Reconnecting…"),
        "{rejoined}"
    );
    assert!(
        rejoined["roster"].to_string().contains("Chromium (you)"),
        "{rejoined}"
    );
    eprintln!(
        "rejoined {:?} after the session was deleted",
        lost.elapsed()
    );
    let present = chromiums();
    let state = |id: &str| {
        present
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| p["state"].clone())
    };
    assert_eq!(state(&first), Some(json!("disconnected")), "{present:?}");
    assert_eq!(state(&second), Some(json!("connected")), "{present:?}");

    // 3. Ejected: the page says so and does not join again.
    let (s, v) = call(
        "DELETE",
        &format!("/v1/conferences/6161/participants/{second}"),
        None,
    );
    assert!(s == 200 || s == 204, "{s} {v}");
    go();
    let ejected = next_step(Duration::from_secs(60));
    assert_eq!(ejected["step"], "ejected", "{ejected}");
    assert_eq!(ejected["sessions"], 2, "{ejected}");
    assert_eq!(ejected["over"], "ejected", "{ejected}");
    let after = chromiums();
    assert_eq!(after.len(), 2, "no third join: {after:?}");
    assert!(
        after.iter().all(|p| p["state"] == "disconnected"),
        "{after:?}"
    );

    let _ = node.0.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = stun_thread.join();
    let (s, _) = call("DELETE", "/v1/conferences/6161", None);
    assert!(s == 200 || s == 204, "{s}");
    server.stop();
}
