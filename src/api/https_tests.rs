//! The HTTPS accept loop against real TLS clients on loopback: handlers see the client's
//! address, ALPN picks the protocol, a silent connection gives its slot back after the
//! handshake timeout, and shutdown lets a request in flight finish but waits no longer than
//! the grace period.

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
    let addr = listener.local_addr().unwrap();
    let tls = crate::tls::server_config(&pki.cert, &pki.key, &ALPN).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app(), tls, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A client that verifies the server against `ca`, offering `alpn`.
async fn connect(addr: SocketAddr, ca: &Path, alpn: &[&[u8]]) -> std::io::Result<Tls> {
    let mut config = (*crate::tls::client_config(Some(ca)).unwrap()).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
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
