//! The roster token of a WHIP session (`Confab-Roster-Token`) against a bridge with an API
//! token: it reads its own conference's participants (without SIP identities or media) and
//! event stream by GET, and nothing else — not another conference, not any write, not once its
//! session is gone (its event stream ends with it); a forged token reads nothing. Also the
//! STUN/TURN servers the join page is given from `webrtc.ice_servers`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{CHROMIUM_OFFER, create, header, whip};
use crate::support;
use crate::support::server::{Server, http, http_raw};

/// A GET of an event stream with `Connection: close`: its status, and a reader of its lines
/// that sees the end of the stream as the end of the connection.
fn open_stream(addr: SocketAddr, path: &str, token: &str) -> (u16, BufReader<TcpStream>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
         Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    (status, reader)
}

/// Reads the stream until `data:` contains `want`; the line.
fn read_until(reader: &mut BufReader<TcpStream>, want: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the stream ended before {want}");
        if line.starts_with("data:") && line.contains(want) {
            return line;
        }
    }
}

#[test]
fn a_roster_token_reads_its_own_conference_and_nothing_else() {
    let _turn = support::shared();
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("confab.toml");
    std::fs::write(
        &config,
        "[webrtc]\nice_servers = [\n  { urls = [\"stun:stun.example.net:3478\"] },\n  \
         { urls = [\"turn:turn.example.net:3478?transport=udp\"], username = \"1733400000:ann\", \
         credential = \"dHVybg==\" },\n]\n",
    )
    .unwrap();
    let server = Server::start(
        data.path(),
        Some("operator-s3cret"),
        &["--config", config.to_str().unwrap()],
    );
    let api = server.api;
    create(&server, json!({ "id": "7070", "passcode": "1357" }));
    create(&server, json!({ "id": "7171" }));
    // A phone with a SIP identity in 7070; the page must not learn it.
    let phone = support::Endpoint::new(confab::media::codec::Codec::Pcmu, 440.0, -20.0, 0x7070);
    let body = json!({ "sdp": support::offer_for(&phone, 0, "PCMU/8000"), "display_name": "phone",
                       "uri": "sip:+4930123456@gw.example.net" });
    let (s, v) = server.call(
        "POST",
        "/v1/conferences/7070/participants",
        Some(&body.to_string()),
    );
    assert_eq!(s, 201, "{v}");
    let phone_id = v["participant"]["id"].as_str().unwrap().to_owned();

    // The join page's STUN/TURN servers: public, as configured, never cached.
    let (s, head, b) = http_raw(api, "GET", "/pages/ice-servers.json", None, None, &[]);
    assert_eq!(s, 200, "{b}");
    assert_eq!(header(&head, "cache-control"), Some("no-store"), "{head}");
    let ice: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        ice,
        json!({ "iceServers": [
            { "urls": ["stun:stun.example.net:3478"] },
            { "urls": ["turn:turn.example.net:3478?transport=udp"],
              "username": "1733400000:ann", "credential": "dHVybg==" },
        ] })
    );

    // A WHIP join (its handshake never completes: the session lives for the test's seconds).
    let (s, head, b) = whip(
        &server,
        "7070",
        CHROMIUM_OFFER,
        Some("1357"),
        "application/sdp",
    );
    assert_eq!(s, 201, "{b}");
    let roster = header(&head, "confab-roster-token").unwrap().to_owned();
    let location = header(&head, "location").unwrap().to_owned();
    let me = header(&head, "confab-participant").unwrap().to_owned();
    assert!(
        header(&head, "access-control-expose-headers")
            .is_some_and(|h| h.contains("Confab-Roster-Token")),
        "{head}"
    );
    // Neither the session's resource nor the operator's token.
    assert!(!location.contains(&roster[4..20]), "{roster} {location}");

    // Its own conference's roster: names and states, no identities, addresses or media.
    let (s, v) = http(
        api,
        "GET",
        "/v1/conferences/7070/participants",
        None,
        Some(&roster),
    );
    assert_eq!(s, 200, "{v}");
    let list = v["participants"].as_array().unwrap();
    let names: Vec<&str> = list
        .iter()
        .filter_map(|p| p["display_name"].as_str())
        .collect();
    assert!(names.contains(&"phone") && names.contains(&"tester"), "{v}");
    for p in list {
        let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["display_name", "id", "muted", "speaking", "state"],
            "{p}"
        );
    }
    assert!(!v.to_string().contains("4930123456"), "{v}");
    // The operator sees more.
    let (_, full) = server.call("GET", "/v1/conferences/7070/participants", None);
    assert!(full.to_string().contains("4930123456"), "{full}");

    // Its own conference's events: the operator mutes the phone, the page hears it.
    let (s, mut events) = open_stream(api, "/v1/conferences/7070/events", &roster);
    assert_eq!(s, 200);
    let (s, v) = server.call(
        "POST",
        &format!("/v1/conferences/7070/participants/{phone_id}/mute"),
        None,
    );
    assert_eq!(s, 200, "{v}");
    let line = read_until(&mut events, "\"muted\"");
    assert!(line.contains(&phone_id), "{line}");

    // Another conference: refused, roster and events alike.
    for path in [
        "/v1/conferences/7171/participants",
        "/v1/conferences/7171/events",
    ] {
        let (s, v) = http(api, "GET", path, None, Some(&roster));
        assert_eq!(s, 403, "{path}: {v}");
    }
    // Anything else of its own conference, or of the bridge.
    for path in [
        "/v1/conferences/7070",
        &format!("/v1/conferences/7070/participants/{me}"),
        "/v1/conferences",
        "/v1/events",
        "/v1/records",
        "/v1/openapi.json",
    ] {
        let (s, v) = http(api, "GET", path, None, Some(&roster));
        assert_eq!(s, 403, "{path}: {v}");
    }
    // No write: not its own mute, not an eject, not a new conference, not a token, not an end.
    let writes = [
        (
            "POST",
            format!("/v1/conferences/7070/participants/{me}/mute"),
        ),
        (
            "POST",
            format!("/v1/conferences/7070/participants/{phone_id}/mute"),
        ),
        (
            "DELETE",
            format!("/v1/conferences/7070/participants/{phone_id}"),
        ),
        ("POST", "/v1/conferences/7070/participants".to_owned()),
        ("POST", "/v1/conferences/7070/lock".to_owned()),
        ("POST", "/v1/conferences/7070/tokens".to_owned()),
        ("DELETE", "/v1/conferences/7070".to_owned()),
        ("POST", "/v1/conferences".to_owned()),
        ("POST", "/v1/admin/drain".to_owned()),
    ];
    for (method, path) in &writes {
        let (s, v) = http(api, method, path, Some("{}"), Some(&roster));
        assert_eq!(s, 403, "{method} {path}: {v}");
    }
    let (_, v) = server.call(
        "GET",
        &format!("/v1/conferences/7070/participants/{phone_id}"),
        None,
    );
    assert_ne!(
        v["participant"]["state"], "disconnected",
        "still there: {v}"
    );
    let (_, v) = server.call("GET", "/v1/conferences/7070", None);
    assert_eq!(v["conference"]["locked"], false, "{v}");

    // Forged: one character of the secret changed; made up; the join passcode.
    let mut forged = roster.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    let made_up = format!("rv1_{}_{}", "0".repeat(16), "0".repeat(32));
    for bad in [forged.as_str(), made_up.as_str(), "1357"] {
        let (s, v) = http(
            api,
            "GET",
            "/v1/conferences/7070/participants",
            None,
            Some(bad),
        );
        assert_eq!(s, 401, "{bad}: {v}");
    }

    // The session ends (WHIP DELETE): its token reads nothing more, and its open stream ends.
    let (s, _, b) = http_raw(api, "DELETE", &location, None, None, &[]);
    assert_eq!(s, 200, "{b}");
    let deleted = Instant::now();
    let mut line = String::new();
    while events.read_line(&mut line).is_ok_and(|n| n > 0) {
        line.clear();
        assert!(
            deleted.elapsed() < Duration::from_secs(5),
            "the participant's event stream outlives its session"
        );
    }
    assert!(deleted.elapsed() < Duration::from_secs(5));
    for path in [
        "/v1/conferences/7070/participants",
        "/v1/conferences/7070/events",
    ] {
        let (s, v) = http(api, "GET", path, None, Some(&roster));
        assert_eq!(s, 401, "{path} after the session: {v}");
    }
    server.stop();
}
