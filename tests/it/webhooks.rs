//! Webhooks of a running `confab serve`, received by a small HTTP server on loopback written
//! here: a meeting's events (a recording's too) arrive signed (checked with OpenSSL's HMAC, not
//! ours) after the receiver refused the first attempts, and a delivery pending when the bridge
//! is killed is made after it starts again. Real time: about 10 s.

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use confab::media::codec::Codec;
use serde_json::Value;
use support::Endpoint;
use support::server::Server;

const SECRET: &str = "w3bh00k-test-secret-0123456789abcdef";

/// One request the receiver took, and what it answered.
#[derive(Clone, Debug)]
struct Got {
    signature: String,
    body: String,
    status: u16,
}

/// A webhook receiver on loopback: it answers 500 to its first `refuse` requests, then 200
/// (503 to every one while `down` is set).
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    fn start(refuse: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let down: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (log, off) = (Arc::clone(&got), Arc::clone(&down));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let Some((head, body)) = read_request(&mut stream) else {
                    continue;
                };
                let signature = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Confab-Signature: "))
                    .unwrap_or_default()
                    .to_owned();
                let mut log = log.lock().unwrap();
                let status = if off.load(std::sync::atomic::Ordering::Relaxed) {
                    503
                } else if log.len() < refuse {
                    500
                } else {
                    200
                };
                log.push(Got {
                    signature,
                    body,
                    status,
                });
                drop(log);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            }
        });
        Receiver { addr, got, down }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (`secs` at most) until `done` holds for what was received.
    fn until(&self, secs: u64, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "{what} never came; got {got:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The head and the body (by its Content-Length) of one request.
fn read_request(stream: &mut std::net::TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))?
        .trim()
        .parse()
        .ok()?;
    while buf.len() < end + length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[end..end + length]).into_owned();
    Some((head, body))
}

/// Checks `Confab-Signature` as a receiver would: the HMAC by OpenSSL over `<t>.<body>`, and
/// a timestamp within five minutes of now.
fn verify(got: &Got) {
    let (t, v1) = got
        .signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .unwrap_or_else(|| panic!("no signature: {got:?}"));
    let t: u64 = t.parse().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(t) < 300, "old timestamp {t} (now {now})");
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", SECRET])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    write!(stdin, "{t}.{}", got.body).unwrap();
    drop(stdin);
    let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    let theirs = out.trim().rsplit(' ').next().unwrap();
    assert_eq!(v1, theirs, "bad signature on {}", got.body);
}

fn config(dir: &Path, receiver: SocketAddr, events: &[&str]) -> String {
    let path = dir.join("confab.toml");
    let events: Vec<String> = events.iter().map(|e| format!("\"{e}\"")).collect();
    std::fs::write(
        &path,
        format!(
            "[[webhooks]]\nurl = \"http://{receiver}/hooks/confab?from=test\"\n\
             secret = \"{SECRET}\"\nevents = [{}]\n",
            events.join(", ")
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

fn body(g: &Got) -> Value {
    serde_json::from_str(&g.body).unwrap_or_else(|e| panic!("{e}: {}", g.body))
}

/// The bodies answered 200, for conference `cid`.
fn delivered(got: &[Got], cid: &str) -> Vec<Value> {
    got.iter()
        .filter(|g| g.status == 200)
        .map(body)
        .filter(|b| b["conference"] == cid)
        .collect()
}

fn has(bodies: &[Value], kind: &str) -> bool {
    bodies.iter().any(|b| b["type"] == kind)
}

#[test]
fn a_meetings_events_arrive_signed_after_the_receiver_refused_the_first_attempts() {
    if !support::require(&["openssl"]) {
        return;
    }
    let _turn = support::exclusive();
    let receiver = Receiver::start(2);
    let data = tempfile::tempdir().unwrap();
    let events = [
        "conference.started",
        "conference.ended",
        "participant.joined",
        "participant.left",
        "participant.muted",
        "recording.ready",
    ];
    let file = config(data.path(), receiver.addr, &events);
    let server = Server::start(data.path(), None, &["--config", &file]);
    let (s, v) = server.call("POST", "/v1/conferences", Some(r#"{"id":"7301"}"#));
    assert_eq!(s, 201, "{v}");
    let mut ann = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 1);
    let (pid, media) = server.join_endpoint("7301", &ann, (0, "PCMU/8000"), "Ann");
    let (s, v) = server.call("POST", "/v1/conferences/7301/recording", None);
    assert_eq!(s, 201, "{v}");
    support::run(&mut [(&mut ann, media)], Duration::from_secs(1), |_| {});
    let (s, v) = server.call("DELETE", "/v1/conferences/7301/recording", None);
    assert_eq!(s, 200, "{v}");
    let recording = v["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/conferences/7301/participants/{pid}");
    let (s, v) = server.call("POST", &format!("{path}/mute"), None);
    assert_eq!(s, 200, "{v}");
    let (s, v) = server.call("DELETE", &path, None);
    assert!((200..300).contains(&s), "{s} {v}");
    let (s, v) = server.call("DELETE", "/v1/conferences/7301", None);
    assert!((200..300).contains(&s), "{s} {v}");

    let got = receiver.until(30, "every event of the meeting", |got| {
        let bodies = delivered(got, "7301");
        events.iter().all(|k| has(&bodies, k))
    });
    // The first two attempts were refused, and what they carried came again.
    assert_eq!(got[0].status, 500);
    assert_eq!(got[1].status, 500);
    let refused: Vec<String> = got[..2]
        .iter()
        .map(|g| body(g)["id"].as_str().unwrap().to_owned())
        .collect();
    let bodies = delivered(&got, "7301");
    for id in &refused {
        assert!(
            bodies.iter().any(|b| b["id"] == id.as_str()),
            "{id} not delivered"
        );
    }
    for g in &got {
        verify(g);
    }
    // One delivery per event: ids are not repeated among those answered 200.
    let mut ids: Vec<&str> = bodies.iter().filter_map(|b| b["id"].as_str()).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "an event delivered twice: {bodies:#?}");
    let of = |kind: &str| bodies.iter().find(|b| b["type"] == kind).unwrap().clone();
    assert_eq!(of("participant.joined")["participant"], pid.as_str());
    assert_eq!(of("participant.muted")["data"]["muted"], true);
    assert_eq!(of("participant.left")["data"]["reason"], "ejected");
    assert_eq!(of("conference.ended")["data"]["peak_participants"], 1);
    assert_eq!(
        of("recording.ready")["data"]["recording"],
        recording.as_str()
    );
    assert!(
        of("recording.ready")["data"]["duration_ms"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(of("conference.started").get("participant").is_none());
    assert!(of("conference.started")["at"].as_i64().unwrap() > 1_700_000_000_000);

    let (status, _, metrics) =
        support::server::http_raw(server.api, "GET", "/metrics", None, None, &[]);
    assert_eq!(status, 200);
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert!(value("confab_webhook_delivered_total") >= events.len() as f64);
    assert!(value("confab_webhook_attempts_failed_total") >= 2.0);
    assert_eq!(value("confab_webhook_failed_total"), 0.0);
}

#[test]
fn a_delivery_pending_when_the_bridge_is_killed_is_made_after_it_starts_again() {
    let _turn = support::exclusive();
    let receiver = Receiver::start(0);
    receiver
        .down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let data = tempfile::tempdir().unwrap();
    let file = config(data.path(), receiver.addr, &["conference.started"]);
    let server = Server::start(data.path(), None, &["--config", &file]);
    let (s, v) = server.call("POST", "/v1/conferences", Some(r#"{"id":"7302"}"#));
    assert_eq!(s, 201, "{v}");
    let got = receiver.until(15, "two refused attempts", |got| got.len() >= 2);
    let pending = body(&got[0])["id"].as_str().unwrap().to_owned();
    // SIGKILL: nothing is flushed on the way out.
    drop(server);
    receiver
        .down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let server = Server::start(data.path(), None, &["--config", &file]);
    let got = receiver.until(30, "the pending delivery", |got| {
        got.iter()
            .any(|g| g.status == 200 && body(g)["id"] == pending.as_str())
    });
    let made = got
        .iter()
        .filter(|g| g.status == 200 && body(g)["id"] == pending.as_str())
        .count();
    assert_eq!(made, 1, "delivered more than once: {got:#?}");
    drop(server);
}
