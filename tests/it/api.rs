//! The control API of a running `confab serve`: conferences, participants added by SDP offer
//! and heard by RTP endpoints, controls, events over SSE with resume, persistence and records
//! across a restart, auth, and drain as seen from the API and from SIP.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use confab::media::codec::Codec;
use serde_json::{Value, json};
use support::Endpoint;
use support::server::{EventStream, Server, http, http_raw};

fn join(
    server: &Server,
    cid: &str,
    e: &Endpoint,
    pt: u8,
    name: &str,
    who: &str,
) -> (String, SocketAddr) {
    let body = json!({ "sdp": support::offer_for(e, pt, name), "display_name": who }).to_string();
    let (status, v) = server.call(
        "POST",
        &format!("/v1/conferences/{cid}/participants"),
        Some(&body),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["participant"]["id"].as_str().unwrap().to_owned();
    (id, support::media_of(v["sdp"].as_str().unwrap()))
}

#[test]
fn conferences_participants_and_events() {
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);

    // Create, with validation.
    let (s, v) = server.call(
        "POST",
        "/v1/conferences",
        Some(r#"{"id":"4321","name":"Standup","passcode":"777"}"#),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["conference"]["name"], "Standup");
    let (s, v) = server.call("POST", "/v1/conferences", Some(r#"{"id":"4321"}"#));
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("conflict")));
    for (body, code) in [
        (r#"{"id":"12"}"#, 422),
        (r#"{"id":"12345678901234"}"#, 422),
        (r#"{"id":"12ab"}"#, 422),
        (r#"{"passcode":"12a"}"#, 422),
        (r#"{"colour":"red"}"#, 422),
        (r#"{"max_talkers":99}"#, 422),
        (r#"{"access":"secret"}"#, 422),
        (r#"{"name":"#, 400),
    ] {
        let (s, v) = server.call("POST", "/v1/conferences", Some(body));
        assert_eq!(s, code, "{body}: {v}");
        assert!(v["error"]["message"].is_string(), "{body}: {v}");
    }
    let name = "x".repeat(129);
    let (s, _) = server.call(
        "POST",
        "/v1/conferences",
        Some(&json!({ "name": name }).to_string()),
    );
    assert_eq!(s, 422);
    // Without an id, one is made up.
    let (s, v) = server.call("POST", "/v1/conferences", Some("{}"));
    assert_eq!(s, 201);
    let made = v["conference"]["id"].as_str().unwrap().to_owned();
    assert!(
        made.len() == 8 && made.bytes().all(|b| b.is_ascii_digit()),
        "{made}"
    );
    let (s, v) = server.call("GET", "/v1/conferences", None);
    assert_eq!(s, 200);
    assert_eq!(v["conferences"].as_array().unwrap().len(), 2);
    assert_eq!(server.call("GET", "/v1/conferences/9999", None).0, 404);
    assert_eq!(server.call("GET", "/v1/nothing", None).0, 404);

    // Events from here on, of this conference and of all.
    let mut events = EventStream::open(server.api, "/v1/conferences/4321/events", None, None);
    let mut everything = EventStream::open(server.api, "/v1/events", None, None);

    // Two RTP endpoints join by SDP offer and hear each other.
    let mut a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 1);
    let mut b = Endpoint::new(Codec::G722, 660.0, -20.0, 2);
    let (a_id, a_media) = join(&server, "4321", &a, 0, "PCMU/8000", "Ann");
    let (b_id, b_media) = join(&server, "4321", &b, 9, "G722/8000", "Bob");
    support::run(
        &mut [(&mut a, a_media), (&mut b, b_media)],
        Duration::from_millis(1500),
        |_| {},
    );
    assert!(
        a.level_of(660.0, 0.5) > -22.0,
        "a hears b at {}",
        a.level_of(660.0, 0.5)
    );
    let (s, v) = server.call("GET", "/v1/conferences/4321", None);
    assert_eq!(s, 200);
    let roster = v["participants"].as_array().unwrap();
    assert_eq!(roster.len(), 2);
    let ann = roster.iter().find(|p| p["id"] == a_id.as_str()).unwrap();
    assert_eq!(
        (ann["state"].as_str(), ann["display_name"].as_str()),
        (Some("connected"), Some("Ann"))
    );
    assert_eq!(ann["media"]["codec"], "PCMU");
    assert!(ann["media"]["packets_in"].as_u64().unwrap() > 30);

    // Mute B: A stops hearing it; the API and the events say so.
    let (s, v) = server.call(
        "POST",
        &format!("/v1/conferences/4321/participants/{b_id}/mute"),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["participant"]["muted"], true);
    support::run(
        &mut [(&mut a, a_media), (&mut b, b_media)],
        Duration::from_millis(1000),
        |_| {},
    );
    assert!(
        a.level_of(660.0, 0.5) < -50.0,
        "muted b still heard: {}",
        a.level_of(660.0, 0.5)
    );
    assert_eq!(
        server
            .call(
                "POST",
                &format!("/v1/conferences/4321/participants/{b_id}/sing"),
                None
            )
            .0,
        404
    );

    // Eject A: 204, then acting on A is a conflict.
    let path = format!("/v1/conferences/4321/participants/{a_id}");
    assert_eq!(server.call("DELETE", &path, None).0, 204);
    let (s, v) = server.call("POST", &format!("{path}/mute"), None);
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("conflict")));
    assert_eq!(server.call("DELETE", &path, None).0, 409);
    assert_eq!(
        server
            .call("GET", "/v1/conferences/4321/participants/p999999", None)
            .0,
        404
    );

    let mut seen: Vec<(u64, String, Value)> = Vec::new();
    while let Some(e) = events.next() {
        let done = e.1 == "participant.state"
            && e.2["participant"] == a_id.as_str()
            && e.2["state"] == "disconnected";
        seen.push(e);
        if done {
            break;
        }
    }
    let first_of_all = everything.next().unwrap();
    assert_eq!(first_of_all.1, "participant.state");
    assert_eq!(first_of_all.2["conference"], "4321");
    drop(everything);
    let kinds: Vec<&str> = seen.iter().map(|(_, k, _)| k.as_str()).collect();
    assert!(kinds.contains(&"participant.muted"), "{kinds:?}");
    let ejected = seen.last().unwrap();
    assert_eq!(ejected.2["disconnect_reason"], "ejected");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
    // Reconnecting with Last-Event-ID replays what came after it.
    let middle = seen[seen.len() / 2].0;
    let mut again = EventStream::open(
        server.api,
        "/v1/conferences/4321/events",
        None,
        Some(middle),
    );
    let replayed = again.next().unwrap();
    assert_eq!(replayed.0, seen.iter().find(|e| e.0 > middle).unwrap().0);

    // Lock: a new join is refused with 403; unlock, mute-all.
    assert_eq!(
        server.call("POST", "/v1/conferences/4321/lock", None).0,
        200
    );
    let c = Endpoint::new(Codec::Pcmu, 880.0, -20.0, 3);
    let body = json!({ "sdp": support::offer_for(&c, 0, "PCMU/8000") }).to_string();
    let (s, v) = server.call("POST", "/v1/conferences/4321/participants", Some(&body));
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("locked")));
    assert_eq!(
        server.call("POST", "/v1/conferences/4321/unlock", None).0,
        200
    );
    assert_eq!(
        server.call("POST", "/v1/conferences/4321/mute-all", None).0,
        204
    );
    let body = r#"{"sdp":"v=0\r\nnot sdp"}"#;
    assert_eq!(
        server
            .call("POST", "/v1/conferences/4321/participants", Some(body))
            .0,
        400
    );
    let (s, _) = server.call(
        "POST",
        "/v1/conferences/4321/participants",
        Some(r#"{"dial":"mailto:x"}"#),
    );
    assert_eq!(s, 422);
    assert_eq!(
        server
            .call("POST", "/v1/conferences/4321/participants", Some("{}"))
            .0,
        422
    );

    // Patch: settings change and stick.
    let (s, v) = server.call(
        "PATCH",
        "/v1/conferences/4321",
        Some(r#"{"name":"Retro","leader_pin":"9999","max_participants":5,"entry_exit":"tones"}"#),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["conference"]["name"].as_str(),
            v["conference"]["leader_pin"].as_str()
        ),
        (Some("Retro"), Some("9999"))
    );
    assert_eq!(
        server
            .call("PATCH", "/v1/conferences/4321", Some(r#"{"id":"5555"}"#))
            .0,
        422
    );
    drop(events);
    drop(again);
    server.stop();

    // After a restart: the conference with its settings, and the records of the call.
    let server = Server::start(data.path(), None, &[]);
    let (s, v) = server.call("GET", "/v1/conferences/4321", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["conference"]["name"], "Retro");
    assert_eq!(v["conference"]["passcode"], "777");
    assert_eq!(v["conference"]["entry_exit"], "tones");
    let (s, v) = server.call("GET", "/v1/records?conference=4321", None);
    assert_eq!(s, 200, "{v}");
    let records = v["records"].as_array().unwrap();
    let ann = records
        .iter()
        .find(|r| r["participant"] == a_id.as_str())
        .unwrap();
    assert_eq!(ann["disconnect_reason"], "ejected");
    assert_eq!(ann["codec"], "PCMU");
    assert!(ann["packets_in"].as_u64().unwrap() > 30, "{ann}");
    assert!(ann["mos"].as_f64().unwrap() > 3.5, "{ann}");
    // Bob was still in the call when the server stopped: his record closed.
    let bob = records
        .iter()
        .find(|r| r["participant"] == b_id.as_str())
        .unwrap();
    assert!(bob["left_at"].is_i64(), "{bob}");
    assert_eq!(server.call("GET", "/v1/records?limit=0", None).0, 422);
    assert_eq!(server.call("GET", "/v1/records?colour=red", None).0, 422);

    // End: everyone out, the conference gone.
    assert_eq!(server.call("DELETE", "/v1/conferences/4321", None).0, 204);
    assert_eq!(server.call("GET", "/v1/conferences/4321", None).0, 404);
    server.stop();
}

#[test]
fn a_token_guards_the_api_and_drain_stops_new_work() {
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), Some("s3cret"), &[]);
    assert_eq!(
        http(server.api, "GET", "/v1/conferences", None, None).0,
        401
    );
    let (s, v) = http(server.api, "GET", "/v1/conferences", None, Some("wrong"));
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(server.call("GET", "/v1/conferences", None).0, 200);
    // Health needs no token.
    assert_eq!(http(server.api, "GET", "/healthz", None, None).0, 200);
    assert_eq!(http(server.api, "GET", "/readyz", None, None).0, 200);
    assert_eq!(
        server
            .call("POST", "/v1/conferences", Some(r#"{"id":"2468"}"#))
            .0,
        201
    );
    // The OpenAPI 3.1 document names every route.
    let (s, doc) = server.call("GET", "/v1/openapi.json", None);
    assert_eq!(s, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    // Every route the bridge serves, and nothing else: a route added without its document (or
    // a document left for a route taken away) fails here.
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/healthz",
            "/metrics",
            "/readyz",
            "/v1/admin/drain",
            "/v1/conferences",
            "/v1/conferences/{cid}",
            "/v1/conferences/{cid}/events",
            "/v1/conferences/{cid}/lock",
            "/v1/conferences/{cid}/moderation",
            "/v1/conferences/{cid}/mute-all",
            "/v1/conferences/{cid}/participants",
            "/v1/conferences/{cid}/participants/{pid}",
            "/v1/conferences/{cid}/participants/{pid}/gain",
            "/v1/conferences/{cid}/participants/{pid}/noise_suppression",
            "/v1/conferences/{cid}/participants/{pid}/role",
            "/v1/conferences/{cid}/participants/{pid}/{action}",
            "/v1/conferences/{cid}/recording",
            "/v1/conferences/{cid}/tokens",
            "/v1/conferences/{cid}/unlock",
            "/v1/conferences/{cid}/whip",
            "/v1/conferences/{cid}/whip/{session}",
            "/v1/events",
            "/v1/recordings",
            "/v1/recordings/{id}",
            "/v1/recordings/{id}/audio",
            "/v1/records",
            "/v1/records/conferences",
        ]
    );
    assert!(doc["components"]["schemas"]["ConferenceSettings"].is_object());

    // Drain: not ready, no new conferences or participants, SIP OPTIONS 503.
    assert_eq!(server.call("POST", "/v1/admin/drain", None).0, 202);
    assert_eq!(http(server.api, "GET", "/readyz", None, None).0, 503);
    let (s, v) = server.call("POST", "/v1/conferences", Some(r#"{"id":"1357"}"#));
    assert_eq!((s, v["error"]["code"].as_str()), (503, Some("draining")));
    let e = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 1);
    let body = json!({ "sdp": support::offer_for(&e, 0, "PCMU/8000") }).to_string();
    assert_eq!(
        server
            .call("POST", "/v1/conferences/2468/participants", Some(&body))
            .0,
        503
    );
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let options = "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKd\r\nFrom: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: d1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    udp.send_to(options.as_bytes(), server.sip).unwrap();
    let mut buf = [0u8; 2048];
    let n = udp.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 503"));
    // A body too large is refused.
    let big = format!(r#"{{"name":"{}"}}"#, "y".repeat(100_000));
    let (s, _, _) = http_raw(
        server.api,
        "POST",
        "/v1/conferences",
        Some(&big),
        Some("s3cret"),
        &[],
    );
    assert_eq!(s, 413);
    server.stop();
}

#[test]
fn dial_out_through_the_api() {
    if !support::require(&["sipp"]) {
        return;
    }
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    assert_eq!(
        server
            .call("POST", "/v1/conferences", Some(r#"{"id":"6600"}"#))
            .0,
        201
    );
    // A called party that rings and answers 486 (SIPp).
    let port = support::clients::free_port();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp/uas_busy.xml");
    let mut callee = std::process::Command::new("sipp")
        .args(["-sf", scenario, "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "30s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp (Debian package sip-tester) is needed for this test");
    std::thread::sleep(Duration::from_millis(500));
    let body =
        json!({ "dial": format!("sip:busy@127.0.0.1:{port}"), "display_name": "Busy" }).to_string();
    let (s, v) = server.call("POST", "/v1/conferences/6600/participants", Some(&body));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["participant"]["state"], "inviting");
    let pid = v["participant"]["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let last = loop {
        let (_, v) = server.call(
            "GET",
            &format!("/v1/conferences/6600/participants/{pid}"),
            None,
        );
        if v["participant"]["state"] == "disconnected" || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(last["participant"]["disconnect_reason"], "busy", "{last}");
    assert_eq!(last["participant"]["sip_status"], 486);
    let _ = callee.wait();
    server.stop();
}

/// An SRTP offer posted to the real server: its SDES keys are taken over HTTPS and refused
/// (422, `sdes_over_cleartext`) over plain HTTP, where anyone on the path reads them.
#[test]
fn api_legs_take_sdes_keys_only_over_https() {
    let _turn = support::shared();
    let savp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 31000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:q9X4vqHDWpozQKDFv1TRGR365nuarNkLDbvXz9Fg\r\n";
    let add = json!({ "sdp": savp }).to_string();
    let create = r#"{"id":"5200"}"#;

    let data = tempfile::tempdir().unwrap();
    let plain = Server::start(data.path(), None, &[]);
    assert_eq!(plain.call("POST", "/v1/conferences", Some(create)).0, 201);
    let (status, v) = plain.call("POST", "/v1/conferences/5200/participants", Some(&add));
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "sdes_over_cleartext", "{v}");
    drop(plain);

    let pki = support::pki::TestPki::new(&["127.0.0.1"]);
    let (cert, key) = (
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
    );
    let data = tempfile::tempdir().unwrap();
    let https = Server::start(
        data.path(),
        None,
        &["--api-tls-cert", &cert, "--api-tls-key", &key],
    );
    let call = |method, path, body: Option<&str>| {
        support::https::https(https.api, &pki.ca, method, path, body, None)
    };
    assert_eq!(call("POST", "/v1/conferences", Some(create)).0, 201);
    let (status, v) = call("POST", "/v1/conferences/5200/participants", Some(&add));
    assert_eq!(status, 201, "{v}");
    let answer = v["sdp"].as_str().unwrap();
    assert!(
        answer.contains("m=audio ") && answer.contains(" RTP/SAVP "),
        "{answer}"
    );
    assert!(
        answer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{answer}"
    );
}

/// A conference's own `srtp` reaches SIP: with it `required`, a plain INVITE naming the
/// conference is refused (488) where the bridge's `optional` takes it; set back to the bridge's
/// (null), the same call is answered.
#[test]
fn a_conference_srtp_policy_reaches_sip_invites_naming_it() {
    let _turn = support::shared();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    let (status, v) = server.call(
        "POST",
        "/v1/conferences",
        Some(r#"{"id":"5300","srtp":"required"}"#),
    );
    assert_eq!(
        (status, &v["conference"]["srtp"]),
        (201, &json!("required"))
    );
    let phone = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 7);
    let plain = support::offer_for(&phone, 0, "PCMU/8000");
    let mut ua = support::clients::RawUa::new(server.sip, "srtp-conf-1");
    let (status, _) = ua.invite("5300", &plain);
    assert_eq!(status, 488);

    let (status, v) = server.call("PATCH", "/v1/conferences/5300", Some(r#"{"srtp":null}"#));
    assert_eq!(
        (status, &v["conference"]["srtp"]),
        (200, &Value::Null),
        "{v}"
    );
    let mut ua = support::clients::RawUa::new(server.sip, "srtp-conf-2");
    let (status, answer) = ua.invite("5300", &plain);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(ua.request("BYE", None, ""), 200);
}
