//! The binary from the outside: `check-config` answers with line and key, `serve` starts on a
//! config, logs, and stops cleanly on SIGTERM and SIGINT.

use crate::support;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn confab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_confab"));
    // Keep the test independent of the caller's environment.
    for (key, _) in std::env::vars() {
        if key.starts_with("CONFAB_") || key == "RUST_LOG" {
            c.env_remove(key);
        }
    }
    // Several bridges may run at once: none takes the default WebRTC port.
    c.env("CONFAB_WEBRTC_LISTEN", "127.0.0.1:0");
    c
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn check_config_accepts_a_good_file() {
    let _turn = support::shared();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "good.toml",
        "[sip]\nlisten = \"127.0.0.1:5070\"\n\n[mixer]\nmax_talkers = 4\n",
    );
    let out = confab().arg("check-config").arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn check_config_names_line_and_key() {
    let _turn = support::shared();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[sip]\nlisten = \"127.0.0.1:5060\"\ntrusted_networks = []\n",
            ":3:",
            "sip.trusted_networks",
        ),
        ("\n[api]\nlisten = \"0.0.0.0:8080\"\n", ":2:", "api.token"),
        (
            "[media]\nrtp_port_min = 9\nrtp_port_max = 8\n",
            ":2:",
            "media.rtp_port_min",
        ),
        ("[mixer]\nthreads = \"many\"\n", ":2:", "mixer.threads"),
        ("[storage\n", ":1:", ""),
    ];
    for (i, (text, line, key)) in cases.iter().enumerate() {
        let file = write(&dir, &format!("bad{i}.toml"), text);
        let out = confab().arg("check-config").arg(&file).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} accepted");
        assert!(
            stderr.contains(&format!("bad{i}.toml{line}")),
            "case {i}: {stderr}"
        );
        assert!(stderr.contains(key), "case {i}: {stderr}");
    }
    let out = confab()
        .arg("check-config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

/// Starts `serve`, waits for the start-up log line and returns the child with its log lines.
fn start(mut cmd: Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no log line containing {needle:?}");
}

/// The "confab started" line, or `None` if the process ended first (its stderr closed).
fn started(rx: &mpsc::Receiver<String>) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("confab started") => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Starts `serve` from `make(sip_port, api_port)` on free ports. A port found free can be
/// taken by another test's socket before the bridge binds it; then the bridge exits, and new
/// ports are tried (five times at most).
fn start_on_free_ports(
    make: impl Fn(u16, u16) -> Command,
) -> (Child, mpsc::Receiver<String>, u16, u16, String) {
    for _ in 0..5 {
        let (sip, api) = (free_port(), free_port());
        let (mut child, rx) = start(make(sip, api));
        if let Some(line) = started(&rx) {
            return (child, rx, sip, api, line);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("confab did not start on free ports in five tries");
}

/// `serve` on these SIP and API ports by flags, its data in `dir`.
fn serve_by_flags(dir: &tempfile::TempDir, sip: u16, api: u16) -> Command {
    let mut cmd = confab();
    cmd.arg("serve")
        .arg("--sip-listen")
        .arg(format!("127.0.0.1:{sip}"))
        .arg("--api-listen")
        .arg(format!("127.0.0.1:{api}"))
        .env("CONFAB_STORAGE_DATA_DIR", dir.path().join("d"));
    cmd
}

fn stop_with(child: &mut Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit after {signal}: {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still running 30 s after {signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_runs_on_a_config_and_stops_on_signals() {
    let _turn = support::shared();
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (mut child, rx, sip, _, line) = start_on_free_ports(|sip, api| {
            let file = write(
                &dir,
                "confab.toml",
                &format!(
                    "[sip]\nlisten = \"127.0.0.1:{sip}\"\n[api]\nlisten = \"127.0.0.1:{api}\"\n[storage]\ndata_dir = \"{}\"\n",
                    data.display()
                ),
            );
            let mut cmd = confab();
            cmd.arg("serve").arg("--config").arg(&file);
            cmd
        });
        assert!(line.contains(&format!("127.0.0.1:{sip}")), "{line}");
        assert!(data.is_dir(), "data directory created");
        stop_with(&mut child, signal);
        wait_for_line(&rx, "shutting down");
    }
}

#[test]
fn flags_and_environment_override_the_file() {
    let _turn = support::shared();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "confab.toml",
        "[sip]\nlisten = \"127.0.0.1:5999\"\n[api]\nlisten = \"127.0.0.1:5998\"\n",
    );
    let (mut child, _rx, sip, api, line) = start_on_free_ports(|sip, api| {
        let mut cmd = confab();
        cmd.arg("serve")
            .arg("--config")
            .arg(&file)
            .arg("--sip-listen")
            .arg(format!("127.0.0.1:{sip}"))
            .env("CONFAB_API_LISTEN", format!("127.0.0.1:{api}"))
            .env("CONFAB_STORAGE_DATA_DIR", dir.path().join("d"))
            .env("CONFAB_LOG_FORMAT", "json");
        cmd
    });
    assert!(line.starts_with('{'), "JSON log expected: {line}");
    assert!(
        line.contains(&format!("127.0.0.1:{sip}")) && line.contains(&format!("127.0.0.1:{api}")),
        "{line}"
    );
    stop_with(&mut child, "TERM");
}

#[test]
fn serve_refuses_an_exposed_api_without_token() {
    let _turn = support::shared();
    let out = confab()
        .args(["serve", "--api-listen", "0.0.0.0:18080"])
        .env(
            "CONFAB_STORAGE_DATA_DIR",
            std::env::temp_dir().join("confab-unused"),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("api.token"));
}

fn options(branch: &str, transport: &str) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:9;branch={branch}\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn serve_answers_sip_over_udp_and_tcp() {
    let _turn = support::shared();
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (mut child, rx, sip, _, _) = start_on_free_ports(|sip, api| serve_by_flags(&dir, sip, api));

    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let recv = |udp: &std::net::UdpSocket| {
        let mut buf = [0u8; 4096];
        let n = udp.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    udp.send_to(options("z9hG4bKu1", "UDP").as_bytes(), ("127.0.0.1", sip))
        .unwrap();
    let answer = recv(&udp);
    assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Allow: INVITE"), "{answer}");
    // An INVITE for a meeting that does not exist: Trying, then 404.
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:9999@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKi1\r\nFrom: <sip:a@127.0.0.1>;tag=2\r\nTo: <sip:9999@127.0.0.1>\r\nCall-ID: i1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:9>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    udp.send_to(invite.as_bytes(), ("127.0.0.1", sip)).unwrap();
    assert!(recv(&udp).starts_with("SIP/2.0 100 Trying"));
    let answer = recv(&udp);
    assert!(answer.starts_with("SIP/2.0 404 "), "{answer}");
    // A malformed request: 400.
    let bad = options("z9hG4bKu2", "UDP").replace("Content-Length: 0", "Content-Length: -1");
    udp.send_to(bad.as_bytes(), ("127.0.0.1", sip)).unwrap();
    assert!(recv(&udp).starts_with("SIP/2.0 400 "));

    // Over TCP, framed by Content-Length, two requests in one write.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", sip)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let two = format!(
        "{}{}",
        options("z9hG4bKt1", "TCP"),
        options("z9hG4bKt2", "TCP")
    );
    tcp.write_all(two.as_bytes()).unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while got.matches("SIP/2.0 200 OK").count() < 2 {
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("branch=z9hG4bKt1") && got.contains("branch=z9hG4bKt2"));
    stop_with(&mut child, "TERM");
    wait_for_line(&rx, "shutting down");
}

#[test]
fn serve_says_so_when_the_sip_port_is_taken() {
    let _turn = support::shared();
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = confab()
        .arg("serve")
        .arg("--sip-listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--api-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .env("CONFAB_STORAGE_DATA_DIR", dir.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen for SIP on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn serve_refuses_a_corrupt_database_with_its_path() {
    let _turn = support::shared();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("confab.db"), vec![0x5A; 16_384]).unwrap();
    let out = confab()
        .arg("serve")
        .arg("--sip-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--api-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--storage-data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open the database") && err.contains("confab.db"),
        "{err}"
    );
}

/// A minimal HTTP request; the status code.
fn http_status(port: u16, method: &str, path: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn sigterm_drains_until_the_last_call_ends_and_exits_0() {
    let _turn = support::shared();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, rx, _, api, _) = start_on_free_ports(|sip, api| serve_by_flags(&dir, sip, api));
    assert_eq!(
        http_status(api, "POST", "/v1/conferences", r#"{"id":"7070"}"#),
        201
    );
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sdp = format!(
        "v=0\\r\\no=- 1 1 IN IP4 127.0.0.1\\r\\ns=-\\r\\nc=IN IP4 127.0.0.1\\r\\nt=0 0\\r\\nm=audio {} RTP/AVP 0\\r\\n",
        peer.local_addr().unwrap().port()
    );
    let body = format!(r#"{{"sdp":"{sdp}"}}"#);
    assert_eq!(
        http_status(api, "POST", "/v1/conferences/7070/participants", &body),
        201
    );
    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    wait_for_line(&rx, "draining");
    // Still up while the call lasts, refusing new work.
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited with a call in progress"
    );
    assert_eq!(http_status(api, "GET", "/readyz", ""), 503);
    assert_eq!(
        http_status(api, "POST", "/v1/conferences", r#"{"id":"8080"}"#),
        503
    );
    // The call ends: the drain is over and the process exits 0.
    assert_eq!(http_status(api, "DELETE", "/v1/conferences/7070", ""), 204);
    wait_for_line(&rx, "shutting down");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
