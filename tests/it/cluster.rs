//! Several nodes on one PostgreSQL: a meeting runs on exactly one node, the holder of its
//! lease, and the other nodes send its callers there (SIP 302, WHIP 307); when the owner dies,
//! its lease runs out and the meeting starts again on the node the next caller reaches.

use std::time::{Duration, Instant};

use confab_loadtest::postgres::{PostgresUnavailable, TestPostgres};

use crate::support;
use crate::support::clients::RawUa;
use crate::support::server::{Server, http_raw};

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// A throwaway PostgreSQL, or `None` (a skip) where it is not installed outside CI.
pub(crate) fn postgres() -> Option<TestPostgres> {
    match TestPostgres::start() {
        Ok(server) => Some(server),
        Err(PostgresUnavailable::NotInstalled)
            if std::env::var_os("CONFAB_REQUIRE_POSTGRES").is_none()
                && std::env::var_os("CI").is_none() =>
        {
            eprintln!("SKIP: PostgreSQL is not installed");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Calls `meeting` at `sip` until the answer is `want` (at most `within`); the last answer.
fn call_until(sip: std::net::SocketAddr, meeting: &str, want: u16, within: Duration) -> RawUa {
    let deadline = Instant::now() + within;
    for attempt in 0.. {
        let mut ua = RawUa::new(sip, &format!("{meeting}-{}-{attempt}", sip.port()));
        let (code, _) = ua.invite(meeting, SDP);
        if code == want || Instant::now() >= deadline {
            assert_eq!(code, want, "{}", ua.last_final);
            return ua;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    unreachable!()
}

#[test]
fn a_meeting_runs_on_one_node_and_the_others_send_its_callers_there() {
    let _turn = support::shared();
    let Some(pg) = postgres() else {
        return;
    };
    let url = pg.create_database("cluster").unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node = |name: &'static str| {
        [
            "--storage-url".to_owned(),
            url.clone(),
            "--storage-node".to_owned(),
            name.to_owned(),
            "--storage-lease-secs".to_owned(),
            "3".to_owned(),
        ]
    };
    let args_a = node("a");
    let args_b = node("b");
    let a = Server::start(dir_a.path(), None, &args_a.each_ref().map(String::as_str));
    let b = Server::start(dir_b.path(), None, &args_b.each_ref().map(String::as_str));
    // Created through node a, after b started: b learns of it within a renewal (1 s).
    let (s, v) = a.call("POST", "/v1/conferences", Some(r#"{"id":"4321"}"#));
    assert_eq!(s, 201, "{v}");

    // The first call, at a, claims the meeting for a.
    let mut first = RawUa::new(a.sip, "first");
    let (code, _) = first.invite("4321", SDP);
    assert_eq!(code, 200, "{}", first.last_final);

    // A call to b is sent to a (404 until b knows the conference).
    let moved = call_until(b.sip, "4321", 302, Duration::from_secs(5));
    assert!(
        moved
            .last_final
            .contains(&format!("Contact: <sip:4321@{}>", a.sip)),
        "{}",
        moved.last_final
    );

    // A browser's WHIP join at b goes to a's API.
    let (status, head, body) = http_raw(
        b.api,
        "POST",
        "/v1/conferences/4321/whip?name=Ann",
        Some("v=0\r\n"),
        None,
        &[("Content-Type", "application/sdp")],
    );
    assert_eq!(status, 307, "{head}\n{body}");
    let location = format!(
        "location: http://{}/v1/conferences/4321/whip?name=Ann",
        a.api
    );
    // (hyper writes header names in lower case)
    assert!(head.contains(&location), "{head}");

    // So is a leg added through b's API.
    let offer = serde_json::json!({ "sdp": SDP }).to_string();
    let (status, head, body) = http_raw(
        b.api,
        "POST",
        "/v1/conferences/4321/participants",
        Some(&offer),
        None,
        &[],
    );
    assert_eq!(status, 307, "{head}\n{body}");
    let location = format!(
        "location: http://{}/v1/conferences/4321/participants",
        a.api
    );
    assert!(head.contains(&location), "{head}");

    // So is a watcher of its roster (RFC 4575): b answers 302 to a, a takes it.
    let moved = subscribe(b.sip, "4321", "watch-b");
    assert!(moved.starts_with("SIP/2.0 302"), "{moved}");
    assert!(
        moved.contains(&format!("Contact: <sip:4321@{}>", a.sip)),
        "{moved}"
    );
    let taken = subscribe(a.sip, "4321", "watch-a");
    assert!(taken.starts_with("SIP/2.0 200"), "{taken}");

    // The redirects are counted where they were sent, the meeting where it runs.
    assert!(
        metric(&b, "confab_placement_redirects_total") >= 4.0,
        "b sent two SIP 302s and two HTTP 307s"
    );
    assert_eq!(metric(&a, "confab_placement_owned_meetings"), 1.0);
    assert_eq!(metric(&b, "confab_placement_owned_meetings"), 0.0);

    // Settings changed through a reach b: a passcode set at a is asked for at b.
    let (s, v) = a.call(
        "PATCH",
        "/v1/conferences/4321",
        Some(r#"{"passcode":"2468"}"#),
    );
    assert_eq!(s, 200, "{v}");
    whip_until(&b, "4321", 401);
    // And cleared again (a call needing a passcode is answered by b's attendant, which
    // would hide the takeover below).
    let (s, v) = a.call("PATCH", "/v1/conferences/4321", Some(r#"{"passcode":""}"#));
    assert_eq!(s, 200, "{v}");
    whip_until(&b, "4321", 307);

    // A conference deleted through a ends at b: its call there is hung up, and new calls
    // find no conference.
    let (s, v) = a.call("POST", "/v1/conferences", Some(r#"{"id":"5555"}"#));
    assert_eq!(s, 201, "{v}");
    let at_b = call_until(b.sip, "5555", 200, Duration::from_secs(5));
    let (s, _) = a.call("DELETE", "/v1/conferences/5555", None);
    assert_eq!(s, 204);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !at_b
        .poll(Duration::from_millis(500))
        .is_some_and(|m| m.starts_with("BYE "))
    {
        assert!(Instant::now() < deadline, "the call at b was not hung up");
    }
    call_until(b.sip, "5555", 404, Duration::from_secs(2));

    // a dies: its lease runs out (3 s) and the next call to b is taken there.
    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut taken = call_until(b.sip, "4321", 200, Duration::from_secs(10));
    // Not before the lease ran out: its last renewal was at most a third of it before.
    let after = killed.elapsed();
    assert!(
        after >= Duration::from_millis(1_900),
        "took over after {after:?}"
    );
    // A call to b now stays at b.
    assert_eq!(taken.request("BYE", None, ""), 200);

    // Both nodes wrote their calls' records to PostgreSQL, each under its name.
    let nodes = pg
        .psql("cluster", "SELECT DISTINCT node FROM records ORDER BY node")
        .unwrap();
    assert_eq!(nodes.split_whitespace().collect::<Vec<_>>(), ["a", "b"]);
    drop((a, b));
}

/// Posts a WHIP offer for `meeting` to `server` until the answer is `want` (at most 5 s).
/// A SUBSCRIBE to `meeting`'s roster at `sip` (from loopback, a trusted source): the final
/// answer, whole.
fn subscribe(sip: std::net::SocketAddr, meeting: &str, call_id: &str) -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let local = socket.local_addr().unwrap();
    let text = format!(
        "SUBSCRIBE sip:{meeting}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call_id};rport\r\n\
         From: <sip:watcher@{local}>;tag=w{call_id}\r\nTo: <sip:{meeting}@{sip}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 SUBSCRIBE\r\nContact: <sip:watcher@{local}>\r\nEvent: conference\r\nExpires: 60\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    socket.send_to(text.as_bytes(), sip).unwrap();
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = socket.recv(&mut buf).expect("an answer to the SUBSCRIBE");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        // Its NOTIFYs are left unanswered: the subscription ends by itself.
        if m.starts_with("SIP/2.0 ") && !m.starts_with("SIP/2.0 1") {
            return m;
        }
    }
}

fn whip_until(server: &Server, meeting: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, _) = http_raw(
            server.api,
            "POST",
            &format!("/v1/conferences/{meeting}/whip"),
            Some("v=0\r\n"),
            None,
            &[("Content-Type", "application/sdp")],
        );
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {status}, not {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The sum of a metric's samples in a node's `/metrics`.
pub(crate) fn metric(server: &Server, name: &str) -> f64 {
    let (_, _, text) = http_raw(server.api, "GET", "/metrics", None, None, &[]);
    text.lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
