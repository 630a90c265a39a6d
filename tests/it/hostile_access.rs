//! Strangers against the running bridge (loopback only, bounded in count and time): invented
//! SIP methods cannot grow `/metrics`; WHIP tells an unknown meeting from a known one by
//! nothing and locks a guesser out; `/metrics` names no meeting by default.

use crate::support;

use std::time::Duration;

use serde_json::json;
use support::server::{Server, http_raw};

const CHROMIUM_OFFER: &str = include_str!("../fixtures/chromium-156-offer.sdp");

/// A bridge on free loopback ports, and its data directory (to be kept while it runs).
fn start_bridge() -> (tempfile::TempDir, Server) {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    (data, server)
}

/// Creates meeting `id` with passcode 2468.
fn create_meeting(server: &Server, id: &str) {
    let (s, v) = server.call(
        "POST",
        "/v1/conferences",
        Some(&json!({ "id": id, "passcode": "2468" }).to_string()),
    );
    assert_eq!(s, 201, "{v}");
}

fn whip(server: &Server, cid: &str, bearer: Option<&str>) -> (u16, String, String) {
    http_raw(
        server.api,
        "POST",
        &format!("/v1/conferences/{cid}/whip?name=guesser"),
        Some(CHROMIUM_OFFER),
        bearer,
        &[("Content-Type", "application/sdp")],
    )
}

fn metrics(server: &Server) -> String {
    http_raw(server.api, "GET", "/metrics", None, None, &[]).2
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn invented_sip_methods_leave_the_metrics_bounded() {
    let _turn = support::exclusive();
    let (_data, server) = start_bridge();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let lines_before = metrics(&server).lines().count();
    let mut answered = 0;
    let mut buf = [0u8; 4096];
    for i in 0..1000 {
        let method = format!("XMETHOD{i}");
        let msg = format!(
            "{method} sip:1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKinv{i}\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:1234@127.0.0.1>\r\nCall-ID: inv{i}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        udp.send_to(msg.as_bytes(), server.sip).unwrap();
        // Paced by the answers (501), so that none is lost to a full socket buffer.
        if udp.recv(&mut buf).is_ok() {
            answered += 1;
        }
    }
    assert!(answered > 900, "only {answered} answers");
    let text = metrics(&server);
    assert!(
        !text.contains("XMETHOD"),
        "an invented method became a label"
    );
    let other = text
        .lines()
        .find(|l| l.starts_with("confab_sip_requests_total{method=\"other\"}"))
        .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok());
    assert!(other.is_some_and(|n| n >= answered as f64), "{text}");
    let lines_after = text.lines().count();
    assert!(
        lines_after <= lines_before + 10,
        "the exposition grew from {lines_before} to {lines_after} lines"
    );
    server.stop();
}

#[test]
fn whip_refuses_alike_and_locks_out_a_guesser() {
    let _turn = support::exclusive();
    let (_data, server) = start_bridge();
    create_meeting(&server, "7070");
    // An unknown meeting and a wrong passcode: one status, one body.
    let (s1, _, unknown) = whip(&server, "7171", Some("2468"));
    let (s2, _, wrong) = whip(&server, "7070", Some("0000"));
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(unknown, wrong);
    // Ten failures from this address (the default limit): from then on 429 with Retry-After,
    // for any meeting ID and even for the right passcode.
    for i in 0..8 {
        let (s, _, b) = whip(&server, "7070", Some(&format!("{i:04}")));
        assert_eq!((s, b.as_str()), (401, wrong.as_str()));
    }
    for cid in ["7070", "7171"] {
        let (s, head, b) = whip(&server, cid, Some("2468"));
        assert_eq!(s, 429, "{cid}: {b}");
        let retry: u64 = header(&head, "retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
    let text = metrics(&server);
    assert!(
        text.contains("confab_auth_failures_total{transport=\"whip\"} 10"),
        "{text}"
    );
    assert!(text.contains("confab_auth_lockouts_total 1"), "{text}");
    // `/metrics` names no meeting by default.
    assert!(!text.contains("conference=\""), "{text}");
    server.stop();
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit(')').next().unwrap();
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn accept_errors_back_off_instead_of_spinning() {
    if !support::require(&["prlimit"]) {
        return;
    }
    use std::io::{Read, Write};
    let _turn = support::exclusive();
    let (_data, server) = start_bridge();
    let pid = server.pid();
    // Leave the bridge 16 descriptors more than it has: SIP over TCP soon runs out (EMFILE).
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = open + 16;
    let ok = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .expect("prlimit (util-linux) is needed for this test")
        .success();
    assert!(ok, "prlimit failed");
    // 4 sources x 20 connections (under the per-source cap): more than the descriptors left.
    let mut held = Vec::new();
    for source in 1..=4u8 {
        for _ in 0..20 {
            let s = connect_from([127, 0, 0, source], server.sip);
            held.push(s);
        }
    }
    // Out of descriptors, with connections waiting: the accept loop must not spin.
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    assert!(
        used < 40,
        "{used} ticks of CPU in 2 s while out of descriptors"
    );
    // It did run out (and said so).
    let said = server.wait_for("sip tcp accept");
    assert!(
        said.to_lowercase().contains("too many open files"),
        "{said}"
    );
    // Once the connections are gone, SIP over TCP works again.
    drop(held);
    let mut answered = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !answered && std::time::Instant::now() < deadline {
        let mut s = std::net::TcpStream::connect(server.sip).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let options = "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKemfile\r\nFrom: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: emfile\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let _ = s.write_all(options.as_bytes());
        let mut buf = [0u8; 512];
        answered = matches!(s.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"SIP/2.0 200"));
    }
    assert!(answered, "SIP over TCP did not recover");
    server.stop();
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: [u8; 4], to: std::net::SocketAddr) -> std::net::TcpStream {
    // std has no bind-before-connect: a tokio socket does it, then becomes a std stream.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(std::net::SocketAddr::from((from, 0))).unwrap();
        s.connect(to).await.unwrap().into_std().unwrap()
    })
}

#[test]
fn guesses_held_back_and_released_at_once_are_limited_all_the_same() {
    use std::io::{Read, Write};
    let _turn = support::exclusive();
    let (_data, server) = start_bridge();
    create_meeting(&server, "7272");
    // 40 guesses whose headers arrive first, every body held back, then all released.
    let mut held = Vec::new();
    for i in 0..40 {
        let mut s = std::net::TcpStream::connect(server.api).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let head = format!(
            "POST /v1/conferences/7272/whip HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {:04}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
            1000 + i,
            CHROMIUM_OFFER.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    for s in &mut held {
        s.write_all(CHROMIUM_OFFER.as_bytes()).unwrap();
    }
    let mut statuses = Vec::new();
    for mut s in held {
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        statuses.push(answer.get(9..12).unwrap_or("").to_owned());
    }
    let compared = statuses.iter().filter(|s| *s == "401").count();
    let refused = statuses.iter().filter(|s| *s == "429").count();
    // The default limit is ten failures: no more guesses than that were compared.
    assert_eq!(compared, 10, "{statuses:?}");
    assert_eq!(refused, 30, "{statuses:?}");
    drop(server);
}
