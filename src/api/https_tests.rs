//! The HTTPS accept loop against real TLS clients on loopback: handlers see the client's
//! address, ALPN picks the protocol, a silent connection gives its slot back after the
//! handshake timeout, and shutdown lets a request in flight finish but waits no longer than
//! the grace period. One address gets its share of connections, not more; a new certificate is
//! served once its files change, and a pair that cannot be used leaves the old one served.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::super::https_reload::{CertFiles, Checked, Reloader};
use super::{ALPN, Limits, serve};
use crate::testing::pki::Pki;

fn pki() -> Pki {
    crate::testing::pki::pki(&["127.0.0.1"])
}

/// `/who` answers the client's address as the handler sees it; `/slow` answers after 300 ms;
/// `/forever` never ends its body.
fn app() -> Router {
    Router::new()
        .route(
            "/who",
            get(|ConnectInfo(who): ConnectInfo<SocketAddr>| async move { who.to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        )
        .route(
            "/forever",
            get(|| async {
                let stream = futures_util::stream::pending::<Result<String, std::io::Error>>();
                axum::body::Body::from_stream(stream)
            }),
        )
}

/// The loop on a loopback port, and what stops it.
async fn start(
    pki: &Pki,
    limits: Limits,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = crate::tls::server_config(&pki.cert, &pki.key, &ALPN).unwrap();
    let (_fixed, configs) = tokio::sync::watch::channel(tls);
    start_with(listener, configs, limits)
}

/// The loop on `listener` with the configurations `configs` gives.
fn start_with(
    listener: TcpListener,
    configs: tokio::sync::watch::Receiver<Arc<rustls::ServerConfig>>,
    limits: Limits,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app(), configs, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A client that verifies the server against `ca`, offering `alpn`.
async fn connect(addr: SocketAddr, ca: &Path, alpn: &[&[u8]]) -> std::io::Result<Tls> {
    connect_from(addr, [127, 0, 0, 1], ca, alpn).await
}

/// `connect` from the loopback address `from`.
async fn connect_from(
    addr: SocketAddr,
    from: [u8; 4],
    ca: &Path,
    alpn: &[&[u8]],
) -> std::io::Result<Tls> {
    let mut config = (*crate::tls::client_config(Some(ca)).unwrap()).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    let tcp = socket.connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    connector.connect(name, tcp).await
}

/// GET `path` over HTTP/1.1; the whole response as text.
async fn get_text(tls: &mut Tls, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test]
async fn handlers_see_the_client_address_and_alpn_picks_the_protocol() {
    let pki = pki();
    let (addr, _stop, _task) = start(&pki, Limits::default()).await;

    let mut tls = connect(addr, &pki.ca, &[b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let me = tls.get_ref().0.local_addr().unwrap();
    let response = get_text(&mut tls, "/who").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(&me.to_string()), "{me}: {response}");

    let tls = connect(addr, &pki.ca, &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // Without ALPN the server still answers whatever the client speaks.
    let mut tls = connect(addr, &pki.ca, &[]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    assert!(get_text(&mut tls, "/who").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_silent_connection_gives_its_slot_back_after_the_handshake_timeout() {
    let pki = pki();
    let limits = Limits {
        max_connections: 1,
        handshake_timeout: Duration::from_millis(400),
        ..Limits::default()
    };
    let (addr, _stop, _task) = start(&pki, limits).await;
    let started = Instant::now();
    // Takes the only slot and says nothing.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Waits in the backlog until the silent one is dropped, then is served.
    let mut tls = tokio::time::timeout(
        Duration::from_secs(5),
        connect(addr, &pki.ca, &[b"http/1.1"]),
    )
    .await
    .unwrap()
    .unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(350), "{waited:?}");
    assert!(get_text(&mut tls, "/who").await.starts_with("HTTP/1.1 200"));
    // The silent connection was closed by the server.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(1), silent.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_waits_no_longer_than_the_grace() {
    let pki = pki();
    let limits = Limits {
        grace: Duration::from_millis(800),
        ..Limits::default()
    };
    let (addr, stop, task) = start(&pki, limits).await;
    let mut slow = connect(addr, &pki.ca, &[b"http/1.1"]).await.unwrap();
    let mut forever = connect(addr, &pki.ca, &[b"http/1.1"]).await.unwrap();
    forever
        .write_all(b"GET /forever HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let slow = tokio::spawn(async move { get_text(&mut slow, "/slow").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    stop.send(()).unwrap();
    // The request in flight gets its whole answer.
    let response = slow.await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("done"), "{response}");
    // The endless one is cut off at the grace period, and the loop ends.
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .unwrap()
        .unwrap();
    let took = stopping.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // No one is listening any more.
    assert!(TcpStream::connect(addr).await.is_err());
}

/// Flooded from 127.0.0.1 beyond its share (3 here), the loop closes the excess at once and
/// still serves 127.0.0.2; when one of the three goes, 127.0.0.1 is served again.
#[tokio::test]
async fn one_address_gets_its_share_of_connections_and_another_is_still_served() {
    let pki = pki();
    let limits = Limits {
        per_address: 3,
        ..Limits::default()
    };
    let (addr, _stop, _task) = start(&pki, limits).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(addr, &pki.ca, &[b"http/1.1"]).await.unwrap());
    }
    for _ in 0..5 {
        let refused = connect(addr, &pki.ca, &[b"http/1.1"]).await;
        assert!(refused.is_err(), "a fourth connection from one address");
    }
    let mut other = connect_from(addr, [127, 0, 0, 2], &pki.ca, &[b"http/1.1"])
        .await
        .unwrap();
    let response = get_text(&mut other, "/who").await;
    assert!(
        response.ends_with(&format!(
            "127.0.0.2:{}",
            other.get_ref().0.local_addr().unwrap().port()
        )),
        "{response}"
    );
    // One of the three ends (its request answered, the connection closed): its place is free
    // once the server has seen it go.
    let mut first = held.remove(0);
    assert!(
        get_text(&mut first, "/who")
            .await
            .starts_with("HTTP/1.1 200")
    );
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut again = loop {
        match connect(addr, &pki.ca, &[b"http/1.1"]).await {
            Ok(tls) => break tls,
            Err(_) if Instant::now() < deadline => tokio::task::yield_now().await,
            Err(e) => panic!("127.0.0.1 was not served again: {e}"),
        }
    };
    assert!(
        get_text(&mut again, "/who")
            .await
            .starts_with("HTTP/1.1 200")
    );
}

/// The certificate chain's first certificate a client was shown.
fn leaf(tls: &Tls) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Copies `from`'s certificate and key over the served files, dated `secs` after the epoch
/// (so that the change shows whatever the clock's resolution).
fn install(files: &CertFiles, cert: &Path, key: &Path, secs: u64) {
    for (from, to) in [(cert, &files.cert), (key, &files.key)] {
        std::fs::copy(from, to).unwrap();
        let file = std::fs::File::options().write(true).open(to).unwrap();
        file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }
}

/// Served with A's pair; B's copied over the files: a check swaps it in (a client trusting only
/// B's CA is served, one trusting only A's no longer is), a second check finds nothing new.
/// A bad pair (a key that is not a key, then A's key under B's certificate) is refused, even
/// when forced as SIGHUP does, and B's is still served.
#[tokio::test]
async fn a_changed_certificate_is_served_and_a_bad_one_is_refused() {
    let (a, b) = (pki(), pki());
    let dir = tempfile::tempdir().unwrap();
    let files = CertFiles {
        cert: dir.path().join("api.crt"),
        key: dir.path().join("api.key"),
    };
    install(&files, &a.cert, &a.key, 1_000);
    let first = crate::tls::server_config(&files.cert, &files.key, &ALPN).unwrap();
    let (mut reloader, configs) = Reloader::new(files.clone(), first);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, _stop, _task) = start_with(listener, configs, Limits::default());

    let seen_a = leaf(&connect(addr, &a.ca, &[]).await.unwrap());
    assert!(connect(addr, &b.ca, &[]).await.is_err());
    assert_eq!(reloader.check(false), Checked::Unchanged);

    install(&files, &b.cert, &b.key, 2_000);
    assert_eq!(reloader.check(false), Checked::Replaced);
    let seen_b = leaf(&connect(addr, &b.ca, &[]).await.unwrap());
    assert_ne!(seen_a, seen_b);
    assert!(connect(addr, &a.ca, &[]).await.is_err());
    assert_eq!(reloader.check(false), Checked::Unchanged);

    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nnot a key\n").unwrap();
    install(&files, &b.cert, &garbage, 3_000);
    assert_eq!(reloader.check(false), Checked::Refused);
    assert_eq!(reloader.check(false), Checked::Unchanged, "reported once");
    install(&files, &b.cert, &a.key, 4_000);
    assert_eq!(reloader.check(false), Checked::Refused);
    assert_eq!(reloader.check(true), Checked::Refused);
    assert_eq!(leaf(&connect(addr, &b.ca, &[]).await.unwrap()), seen_b);
}

/// A key rewritten with the same length and the same modification time (as `cp -p` of another
/// file may leave it) is noticed: the files are compared by their contents.
#[test]
fn a_change_that_keeps_length_and_time_is_noticed() {
    let a = pki();
    let dir = tempfile::tempdir().unwrap();
    let files = CertFiles {
        cert: dir.path().join("api.crt"),
        key: dir.path().join("api.key"),
    };
    install(&files, &a.cert, &a.key, 1_000);
    let first = crate::tls::server_config(&files.cert, &files.key, &ALPN).unwrap();
    let (mut reloader, _configs) = Reloader::new(files.clone(), first);
    assert_eq!(reloader.check(false), Checked::Unchanged);
    // One base64 character of the key's body changed: same length.
    let mut key = std::fs::read_to_string(&a.key).unwrap();
    let at = key.find('\n').unwrap() + 10;
    let swapped = if &key[at..at + 1] == "A" { "B" } else { "A" };
    key.replace_range(at..at + 1, swapped);
    let changed = dir.path().join("changed.key");
    std::fs::write(&changed, &key).unwrap();
    assert_eq!(
        std::fs::metadata(&changed).unwrap().len(),
        std::fs::metadata(&a.key).unwrap().len()
    );
    install(&files, &a.cert, &changed, 1_000);
    assert_eq!(reloader.check(false), Checked::Refused);
    assert_eq!(reloader.check(false), Checked::Unchanged, "reported once");
}

/// The watching task itself: the files change and, within its period, clients see the new
/// certificate.
#[tokio::test]
async fn the_watcher_picks_up_changed_files() {
    let (a, b) = (pki(), pki());
    let dir = tempfile::tempdir().unwrap();
    let files = CertFiles {
        cert: dir.path().join("api.crt"),
        key: dir.path().join("api.key"),
    };
    install(&files, &a.cert, &a.key, 1_000);
    let first = crate::tls::server_config(&files.cert, &files.key, &ALPN).unwrap();
    let (reloader, configs) = Reloader::new(files.clone(), first);
    let mut changed = configs.clone();
    let watching = tokio::spawn(reloader.run(Duration::from_millis(20), None));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, _stop, _task) = start_with(listener, configs, Limits::default());
    assert!(connect(addr, &a.ca, &[]).await.is_ok());

    install(&files, &b.cert, &b.key, 2_000);
    tokio::time::timeout(Duration::from_secs(5), changed.changed())
        .await
        .expect("the new pair was never read")
        .unwrap();
    assert!(connect(addr, &b.ca, &[]).await.is_ok());
    assert!(connect(addr, &a.ca, &[]).await.is_err());
    watching.abort();
}
