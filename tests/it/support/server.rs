//! `confab serve` as a child process on free loopback ports, and a small HTTP/1.1 client for
//! its API (written here, so the test does not trust our own server code to read responses).
//! Every bridge started here logs each SIP message it sends, and its guard fails the test on
//! drop when one names an unspecified address; every SDP the API answers with is checked as it
//! is read (`wire_scan`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use super::wire_scan::{self, WireLog};

/// A running bridge.
pub struct Server {
    child: Child,
    pub api: SocketAddr,
    pub sip: SocketAddr,
    pub token: Option<String>,
    /// The bridge's log lines, without the SIP messages it sent (those go to the scan).
    pub lines: mpsc::Receiver<String>,
    wire: Arc<WireLog>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// A port free for both TCP and UDP just now (SIP listens on both; a port free for TCP may be
/// some other process's UDP socket).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP in 100 tries");
}

impl Server {
    /// Starts `confab serve` with its data in `data` and extra arguments. A port picked free
    /// can be taken by another process before the bridge binds it: a start that fails to
    /// listen is tried again (three times at most) on fresh SIP and API ports.
    pub fn start(data: &Path, token: Option<&str>, extra: &[&str]) -> Server {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            match Server::try_start_on(data, token, sip, extra) {
                Ok(server) => return server,
                Err(lines) => seen = lines,
            }
        }
        panic!("confab did not start; its last words:\n{}", seen.join("\n"));
    }

    /// The same with SIP on `sip` (a node restarted where a proxy expects it). A port picked
    /// free can be taken by another test before the bridge binds it: a start that fails to
    /// listen is tried again (three times at most) on a fresh API port.
    pub fn start_on(data: &Path, token: Option<&str>, sip: SocketAddr, extra: &[&str]) -> Server {
        let mut seen = Vec::new();
        for _ in 0..3 {
            match Server::try_start_on(data, token, sip, extra) {
                Ok(server) => return server,
                Err(lines) => seen = lines,
            }
        }
        panic!("confab did not start; its last words:\n{}", seen.join("\n"));
    }

    fn try_start_on(
        data: &Path,
        token: Option<&str>,
        sip: SocketAddr,
        extra: &[&str],
    ) -> Result<Server, Vec<String>> {
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let (min, max) = super::free_port_range();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_confab"));
        for (key, _) in std::env::vars() {
            if key.starts_with("CONFAB_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        // Every SIP message the bridge sends, for the scan on drop.
        cmd.env("CONFAB_LOG_LEVEL", wire_scan::TRACE_FILTER);
        cmd.arg("serve")
            .arg("--api-listen")
            .arg(api.to_string())
            .arg("--sip-listen")
            .arg(sip.to_string())
            .arg("--storage-data-dir")
            .arg(data)
            .arg("--media-rtp-port-min")
            .arg(min.to_string())
            .arg("--media-rtp-port-max")
            .arg((max + 40).to_string())
            .arg("--mixer-threads")
            .arg("1")
            .arg("--webrtc-listen")
            .arg("127.0.0.1:0")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            cmd.arg("--api-token").arg(t);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let wire = Arc::new(WireLog::default());
        let scan = Arc::clone(&wire);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !scan.feed_line(&line) {
                    let _ = tx.send(line);
                }
            }
        });
        let server = Server {
            child,
            api,
            sip,
            token: token.map(str::to_owned),
            lines: rx,
            wire,
            reader: Some(reader),
        };
        // Up to 20 s for the line; the lines before it tell why when it does not come.
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match server.lines.recv_timeout(left) {
                Ok(line) if line.contains("confab started") => return Ok(server),
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        Err(seen)
    }

    /// Waits (at most 20 s) for a log line containing `text`.
    pub fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no log line with `{text}`");
    }

    /// A request with the server's token; returns the status and the parsed JSON body
    /// (`Null` when there is none).
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        http(self.api, method, path, body, self.token.as_deref())
    }

    /// Adds test endpoint `e` to conference `cid` through the API, offering payload type `pt`
    /// as `rtpmap`: the participant's id and the bridge's media address for it.
    pub fn join_endpoint(
        &self,
        cid: &str,
        e: &super::Endpoint,
        (pt, rtpmap): (u8, &str),
        who: &str,
    ) -> (String, SocketAddr) {
        let body =
            serde_json::json!({ "sdp": super::offer_for(e, pt, rtpmap), "display_name": who })
                .to_string();
        let (status, v) = self.call(
            "POST",
            &format!("/v1/conferences/{cid}/participants"),
            Some(&body),
        );
        assert_eq!(status, 201, "{v}");
        let id = v["participant"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (id, super::media_of(v["sdp"].as_str().unwrap()))
    }

    /// The bridge's process id (to measure it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops with SIGTERM and waits for the process.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pipe is closed with the process: the reader has seen every line once it ends.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.wire
            .check(&format!("the bridge with its API on {}", self.api));
    }
}

/// One HTTP/1.1 request (Connection: close); the status and the JSON body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let (status, _, text) = http_raw(addr, method, path, body, token, &[]);
    let json = if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    (status, json)
}

/// The status, the header block and the body as text.
pub fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    // API-leg and WHIP answers: the bridge's SDP never names an unspecified address.
    if (200..300).contains(&status) {
        let problems = wire_scan::scan_http_body(&body);
        assert!(
            problems.is_empty(),
            "{method} {path} answered with an unspecified address: {problems:?}\n{body}"
        );
    }
    (status, head.to_owned(), body)
}

pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// An open Server-Sent Events stream: events as (id, name, data) as they come.
pub struct EventStream {
    reader: BufReader<TcpStream>,
}

impl EventStream {
    pub fn open(addr: SocketAddr, path: &str, token: Option<&str>, last_id: Option<u64>) -> Self {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(id) = last_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(s);
        // Skip the response head.
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if line == "\r\n" {
                break;
            }
            line.clear();
        }
        EventStream { reader }
    }

    /// The next event (skipping comments), or `None` after the read timeout.
    pub fn next(&mut self) -> Option<(u64, String, serde_json::Value)> {
        let (mut id, mut name, mut data) = (0, String::new(), String::new());
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            // Chunked framing: size lines are hex digits only.
            let l = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = l.strip_prefix("id: ") {
                id = v.parse().unwrap_or(0);
            } else if let Some(v) = l.strip_prefix("event: ") {
                name = v.to_owned();
            } else if let Some(v) = l.strip_prefix("data: ") {
                data.push_str(v);
            } else if l.is_empty() && !name.is_empty() {
                let json = serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
                return Some((id, name, json));
            }
        }
    }
}
