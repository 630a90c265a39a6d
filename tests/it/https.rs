//! The API over HTTPS (`api.tls_cert`, `api.tls_key`), from clients that verify the bridge
//! against the test CA: health and an authenticated API call over HTTP/1.1, a GET over HTTP/2
//! when ALPN offers `h2`, a client trusting another CA refused at the handshake, plain HTTP to
//! the port answered by no API, and `Strict-Transport-Security` only when `api.hsts` is on and
//! only over HTTPS. The startup line names the API as `https://`. SIGHUP swaps the certificate.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::https::{connect, h2_get, https, https_raw};
use support::pki::TestPki;
use support::process::Guarded;
use support::server::{Server, free_port, http_raw};

fn tls_flags(pki: &TestPki) -> Vec<String> {
    vec![
        "--api-tls-cert".into(),
        pki.cert.display().to_string(),
        "--api-tls-key".into(),
        pki.key.display().to_string(),
    ]
}

#[test]
fn a_verifying_client_reaches_the_api_over_https_and_offering_h2_gets_http2() {
    let _turn = support::shared();
    let pki = TestPki::new(&["127.0.0.1", "localhost"]);
    let data = tempfile::tempdir().unwrap();
    let flags = tls_flags(&pki);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start(data.path(), Some("s3cret-token"), &flags);
    let api = server.api;

    // HTTP/1.1: health without the token, the API with it (and 401 without).
    let (status, head, body) = https_raw(api, &pki.ca, "GET", "/healthz", None, None, &[]);
    assert_eq!((status, body.as_str()), (200, "ok"), "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("strict-transport-security"),
        "HSTS without api.hsts: {head}"
    );
    let create = r#"{"id":"7070","name":"Over TLS"}"#;
    let (status, v) = https(api, &pki.ca, "POST", "/v1/conferences", Some(create), None);
    assert_eq!(status, 401, "{v}");
    let (status, v) = https(
        api,
        &pki.ca,
        "POST",
        "/v1/conferences",
        Some(create),
        Some("s3cret-token"),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = https(
        api,
        &pki.ca,
        "GET",
        "/v1/conferences/7070",
        None,
        Some("s3cret-token"),
    );
    assert_eq!(
        (status, &v["conference"]["name"]),
        (200, &"Over TLS".into())
    );

    // HTTP/2 when offered: ALPN says h2 and the answer comes in HTTP/2 frames.
    let reply = h2_get(api, &pki.ca, "/healthz");
    assert_eq!(reply.alpn.as_deref(), Some(&b"h2"[..]));
    // `:status: 200` is entry 8 of HPACK's static table (RFC 7541, appendix A).
    assert_eq!(
        reply.header_block.first(),
        Some(&0x88),
        "{:?}",
        reply.header_block
    );
    assert_eq!(reply.body, b"ok");

    // A client that trusts another CA refuses the bridge at the handshake.
    let other = TestPki::new(&["127.0.0.1"]);
    let Err(e) = connect(api, &other.ca, &[b"http/1.1"]) else {
        panic!("a client trusting another CA was let in");
    };
    let cause = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    assert!(
        matches!(cause, Some(rustls::Error::InvalidCertificate(_))),
        "{e:?}"
    );

    // Plain HTTP to the HTTPS port: no HTTP answer (a TLS alert at most), and no API.
    let mut plain = TcpStream::connect(api).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(
        !raw.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(
        !String::from_utf8_lossy(&raw).contains("ok"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    server.stop();
}

/// `confab serve` with `extra` flags on a free API port: the process (stopped on drop), its
/// API address and its "confab started" line.
fn serve_with(data: &std::path::Path, extra: &[String]) -> (Guarded, std::net::SocketAddr, String) {
    let api: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_confab"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CONFAB_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.arg("serve")
        .arg("--api-listen")
        .arg(api.to_string())
        .arg("--sip-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--storage-data-dir")
        .arg(data)
        .args(["--mixer-threads", "1", "--webrtc-listen", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Guarded::spawn(&mut cmd);
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("confab started") => return (child, api, line),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no `confab started` line");
}

#[test]
fn hsts_is_sent_when_asked_for_and_only_over_https() {
    let _turn = support::shared();
    let pki = TestPki::new(&["127.0.0.1"]);
    let data = tempfile::tempdir().unwrap();
    let mut flags = tls_flags(&pki);
    flags.extend(["--api-hsts".into(), "true".into()]);
    let (_bridge, api, started) = serve_with(&data.path().join("tls"), &flags);
    assert!(started.contains(&format!("https://{api}")), "{started}");
    let (status, head, _) = https_raw(api, &pki.ca, "GET", "/healthz", None, None, &[]);
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );
    // The pages too.
    let (status, head, _) = https_raw(api, &pki.ca, "GET", "/join/1234", None, None, &[]);
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("strict-transport-security")
    );

    // The same setting without a certificate: plain HTTP, no HSTS.
    let plain_flags = vec!["--api-hsts".to_owned(), "true".to_owned()];
    let (_plain, api, started) = serve_with(&data.path().join("plain"), &plain_flags);
    assert!(started.contains(&format!("http://{api}")), "{started}");
    let (status, head, _) = http_raw(api, "GET", "/healthz", None, None, &[]);
    assert_eq!(status, 200, "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("strict-transport-security"),
        "{head}"
    );
}

/// A running bridge takes a new certificate on SIGHUP, the pair rewritten in place: a client
/// trusting only the new CA is served, one trusting only the old one is refused. A pair that
/// cannot be used, then SIGHUP, leaves the process up and the previous certificate served.
#[test]
fn sighup_swaps_the_certificate_without_a_restart() {
    let _turn = support::shared();
    let (old, new) = (TestPki::new(&["127.0.0.1"]), TestPki::new(&["127.0.0.1"]));
    let data = tempfile::tempdir().unwrap();
    let (cert, key) = (data.path().join("api.crt"), data.path().join("api.key"));
    let install = |from: &TestPki| {
        std::fs::copy(&from.cert, &cert).unwrap();
        std::fs::copy(&from.key, &key).unwrap();
    };
    install(&old);
    let flags = vec![
        "--api-tls-cert".to_owned(),
        cert.display().to_string(),
        "--api-tls-key".to_owned(),
        key.display().to_string(),
    ];
    let (bridge, api, _) = serve_with(&data.path().join("db"), &flags);
    let hangup = || {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(bridge.0.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    };
    assert!(connect(api, &old.ca, &[]).is_ok());
    assert!(connect(api, &new.ca, &[]).is_err());

    install(&new);
    hangup();
    // The signal is handled on the bridge's time: asked again until served (5 s at most).
    let deadline = Instant::now() + Duration::from_secs(5);
    while connect(api, &new.ca, &[]).is_err() {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::yield_now();
    }
    assert!(connect(api, &old.ca, &[]).is_err());

    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nnot a key\n").unwrap();
    hangup();
    for _ in 0..20 {
        assert!(connect(api, &new.ca, &[]).is_ok());
    }
    let (status, _, body) = https_raw(api, &new.ca, "GET", "/healthz", None, None, &[]);
    assert_eq!((status, body.as_str()), (200, "ok"));
}
