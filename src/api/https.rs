//! The API, console and join pages over HTTPS: `axum::serve` speaks plain TCP only, so this is
//! the accept loop for TLS. Each connection gets a TLS handshake (bounded in time), then
//! HTTP/2 or HTTP/1.1 as ALPN chose, served by the same router with the client's address as
//! `ConnectInfo<SocketAddr>`.
//!
//! Bounds, because everything here comes from strangers ([`Limits`]): at most 1,024
//! connections at once (further ones wait in the kernel's backlog until one ends), of which 32
//! from one client address (an IPv6 /64 counting as one; more are closed as soon as accepted),
//! 10 s to finish the handshake, HTTP/1.1 request heads within 30 s, HTTP/2 peers that stop
//! answering pings dropped, and at shutdown 5 s for requests in flight.
//!
//! The certificate is replaced without a restart (`https_reload`): each connection is accepted
//! with the configuration current when it came.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::https_reload::{CHECK_EVERY, CertFiles, Reloader, hangups};
use crate::conference::limiter::source_of;

/// The protocols offered in ALPN, preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// How much a connection may hold, and for how long.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Connections served at once; beyond it, connections wait unaccepted.
    pub(super) max_connections: usize,
    /// Connections served at once from one client address (an IPv6 /64 counting as one);
    /// beyond it, a new one is closed as soon as accepted.
    pub(super) per_address: usize,
    /// Longest a TLS handshake may take: a connection that says nothing must not keep a slot.
    pub(super) handshake_timeout: Duration,
    /// How long shutdown waits for requests in flight (event streams never end by themselves).
    pub(super) grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // A browser keeps a few connections, an operator's tools a few more.
            max_connections: MAX_CONNECTIONS,
            per_address: MAX_CONNECTIONS_PER_ADDRESS,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            grace: GRACE,
        }
    }
}

const MAX_CONNECTIONS: usize = 1024;
/// One address's share: a browser and an operator's tools behind one NAT fit well within it.
const MAX_CONNECTIONS_PER_ADDRESS: usize = 32;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(5);
/// Longest an HTTP/1.1 request head may take to arrive (also between keep-alive requests).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 pings an idle connection every this long; no answer within the same time ends it.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// First and longest pause after a failing `accept` (out of file descriptors), not to spin.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// HTTPS for the API: the server's TLS configuration (certificate, key, [`ALPN`]), whether
/// responses carry `Strict-Transport-Security`, and the files to read again when they change
/// (none: the configuration is kept as it is).
#[derive(Clone)]
pub struct ApiTls {
    pub config: Arc<rustls::ServerConfig>,
    pub hsts: bool,
    pub files: Option<CertFiles>,
}

impl ApiTls {
    /// From `api.tls_cert` and `api.tls_key`, read now and again when they change.
    pub fn from_files(cert: &Path, key: &Path, hsts: bool) -> Result<Self, crate::tls::TlsError> {
        Ok(ApiTls {
            config: crate::tls::server_config(cert, key, &ALPN)?,
            hsts,
            files: Some(CertFiles {
                cert: cert.to_owned(),
                key: key.to_owned(),
            }),
        })
    }
}

/// Live connections by client address (`source_of`: an IPv6 /64 as one). Bound: an entry
/// counts at least one connection holding one of `max_connections` slots, so there are at most
/// that many; an entry goes with its last connection (`AddressSlot`'s drop).
type PerAddress = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One connection counted against its address, until dropped.
struct AddressSlot {
    table: PerAddress,
    source: IpAddr,
}

impl AddressSlot {
    /// Counts a connection from `client`, or `None` if its address has `cap` already.
    fn take(table: &PerAddress, client: IpAddr, cap: usize) -> Option<AddressSlot> {
        let source = source_of(client);
        let mut counts = table.lock().ok()?;
        let n = counts.entry(source).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: Arc::clone(table),
            source,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.table.lock()
            && let Some(n) = counts.get_mut(&self.source)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.source);
            }
        }
    }
}

/// Serves `app` over HTTPS with `tls` (its files watched and read again when they change or on
/// SIGHUP, see `https_reload`) until `shutdown` resolves.
pub(super) async fn serve_tls(
    listener: TcpListener,
    app: Router,
    tls: ApiTls,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let Some(files) = tls.files else {
        let (_fixed, configs) = watch::channel(tls.config);
        return serve(listener, app, configs, limits, shutdown).await;
    };
    let (reloader, configs) = Reloader::new(files, tls.config);
    let reloading = tokio::spawn(reloader.run(CHECK_EVERY, hangups()));
    serve(listener, app, configs, limits, shutdown).await;
    reloading.abort();
}

/// One year, what browsers expect of a site that means it.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

/// Adds `Strict-Transport-Security` to every response (HTTPS only: over plain HTTP the header
/// means nothing and browsers ignore it).
pub(super) fn with_hsts(app: Router) -> Router {
    app.layer(axum::middleware::map_response(
        |mut response: axum::response::Response| async move {
            response
                .headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
            response
        },
    ))
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then lets requests in flight
/// finish (for `limits.grace` at most). Each connection is accepted with the configuration
/// `configs` holds when it comes.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    configs: watch::Receiver<Arc<rustls::ServerConfig>>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let per_address = PerAddress::default();
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE);
    // Every connection's task, so that those still running after the grace can be ended.
    let mut connections = tokio::task::JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    tokio::pin!(shutdown);
    loop {
        // Ended connections are reaped as new ones come, so the set stays within the bound.
        while connections.try_join_next().is_some() {}
        // A slot first, so that beyond the bound connections wait unaccepted.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
        };
        let (tcp, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff = ACCEPT_BACKOFF.0;
                    a
                }
                Err(e) => {
                    let pause_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
                    tracing::warn!(error = %e, pause_ms, "api accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                    continue;
                }
            },
        };
        let Some(address_slot) = AddressSlot::take(&per_address, remote.ip(), limits.per_address)
        else {
            tracing::debug!(%remote, "api connection refused: too many from its address");
            drop(tcp);
            continue;
        };
        // Watched from here, so a shutdown during the handshake still reaches the connection.
        let watcher = graceful.watcher();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&*configs.borrow()));
        let builder = builder.clone();
        let mut make = make.clone();
        connections.spawn(async move {
            let _slots = (slot, address_slot);
            // The router with `ConnectInfo<SocketAddr>`, as `axum::serve` gives it.
            let Ok(service) = tower_service::Service::call(&mut make, remote).await;
            let stream =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "api TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "api TLS handshake timed out");
                        return;
                    }
                };
            // ALPN decides; a client that offered none gets whichever it speaks.
            let builder = match stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => builder.http2_only(),
                Some(b"http/1.1") => builder.http1_only(),
                _ => builder,
            };
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%remote, error = %e, "api connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("api: requests still in flight after the grace period are cut off");
    }
    connections.shutdown().await;
}

#[cfg(test)]
#[path = "https_tests.rs"]
mod tests;
