//! SIP over TCP and TLS: the accept loop, and a task per connection that frames the stream into
//! messages for the serving task and writes back what it sends there. A connection is held
//! only within limits (how many in all and per source, from where, how long it may stay
//! silent): each one holds a descriptor and buffers, which strangers must not be able to
//! exhaust.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::conference::limiter::source_of;
use crate::sip::message::StreamFramer;
use crate::sip::uas::Peer;

use super::supervisor::AbortOnDrop;

/// Concurrent TCP connections at most.
const MAX_CONNECTIONS: usize = 1024;
/// Concurrent TCP connections from one source address at most (one source cannot take all).
const MAX_CONNECTIONS_PER_SOURCE: usize = 32;
/// A TCP connection must bring its first complete message within this...
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(32);
/// ...and each further one within this of the last (otherwise it is closed).
const IDLE_TIMEOUT: Duration = Duration::from_secs(900);
/// A TLS client must finish its handshake within this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Open TCP connections by our id. Bound: `MAX_CONNECTIONS` (more are closed at accept), at
/// most `MAX_CONNECTIONS_PER_SOURCE` of one address; an entry goes when its connection closes.
pub(crate) type Connections = Arc<Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>>;

/// What a TCP connection may hold.
#[derive(Clone, Debug)]
pub(crate) struct TcpLimits {
    pub(crate) total: usize,
    pub(crate) per_source: usize,
    pub(crate) first_message: Duration,
    pub(crate) idle: Duration,
    /// Where connections may come from (`sip.trusted`; none: anywhere). Every request from
    /// elsewhere is refused 403 anyway; a stranger's connection would only hold a slot.
    pub(crate) trusted: Option<Vec<crate::config::Network>>,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            total: MAX_CONNECTIONS,
            per_source: MAX_CONNECTIONS_PER_SOURCE,
            first_message: FIRST_MESSAGE_TIMEOUT,
            idle: IDLE_TIMEOUT,
            trusted: None,
        }
    }
}

/// Accepts SIP connections on `listener`, over TLS with `tls`. The caps on connections in all
/// are shared with the other listener (one map); the per-source caps are this listener's.
pub(crate) async fn accept_loop(
    listener: Arc<TcpListener>,
    tls: Option<TlsAcceptor>,
    frames: mpsc::Sender<(Peer, Vec<u8>)>,
    connections: Connections,
    limits: TcpLimits,
) {
    let mut next_id = 1u64;
    // Open connections per source address. Bound: `limits.total` keys (a connection is counted
    // only once accepted under the caps); a key goes when its last connection closes.
    let per_source: Arc<Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
    let mut backoff = Duration::ZERO;
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(e) => {
                // Out of descriptors (EMFILE) and the like: wait before trying again instead
                // of spinning, longer each time it fails in a row (up to a second).
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "sip tcp accept");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let stranger = limits
            .trusted
            .as_ref()
            .is_some_and(|t| !t.iter().any(|n| n.contains(addr.ip())));
        let full = connections.lock().map_or(true, |c| c.len() >= limits.total);
        let admitted = !stranger
            && !full
            && per_source.lock().is_ok_and(|mut m| {
                let n = m.entry(source_of(addr.ip())).or_insert(0);
                if *n >= limits.per_source {
                    false
                } else {
                    *n += 1;
                    true
                }
            });
        if !admitted {
            debug!(%addr, stranger, "sip tcp connection refused (untrusted source or connection limit)");
            drop(stream);
            continue;
        }
        // TLS connections' ids carry the bit that tells the core the peer is on TLS.
        let id = if tls.is_some() {
            next_id | Peer::TLS
        } else {
            next_id
        };
        next_id += 1;
        let (tx, rx) = mpsc::channel::<Vec<u8>>(64);
        if let Ok(mut c) = connections.lock() {
            c.insert(id, tx);
        }
        let frames = frames.clone();
        let connections = Arc::clone(&connections);
        let per_source = Arc::clone(&per_source);
        let tls = tls.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let peer = Peer {
                addr,
                connection: Some(id),
            };
            match tls {
                None => carry(stream, peer, frames, rx, &limits).await,
                // The handshake has its own short deadline: a stranger that opens a connection
                // and says nothing must not hold a slot for the first-message timeout.
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => carry(stream, peer, frames, rx, &limits).await,
                        Ok(Err(e)) => debug!(%addr, error = %e, "sip tls handshake failed"),
                        Err(_) => debug!(%addr, "sip tls handshake timed out"),
                    }
                }
            }
            if let Ok(mut c) = connections.lock() {
                c.remove(&id);
            }
            if let Ok(mut m) = per_source.lock()
                && let Some(n) = m.get_mut(&source_of(addr.ip()))
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&source_of(addr.ip()));
                }
            }
        });
    }
}

/// Frames what `stream` brings into messages for the serving task, and writes back what the
/// serving task sends on `rx`, until either side ends or the stream falls silent too long.
async fn carry<S>(
    stream: S,
    peer: Peer,
    frames: mpsc::Sender<(Peer, Vec<u8>)>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    limits: &TcpLimits,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let addr = peer.addr;
    let (mut read, mut write) = tokio::io::split(stream);
    let writer = AbortOnDrop(tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if write.write_all(&bytes).await.is_err() || write.flush().await.is_err() {
                break;
            }
        }
    }));
    let mut framer = StreamFramer::default();
    let mut buf = vec![0u8; 8192];
    // A complete message is due by then: the first soon, each further one within the idle
    // timeout (keep-alives and partial messages do not count).
    let mut deadline = tokio::time::Instant::now() + limits.first_message;
    'read: loop {
        let n = match tokio::time::timeout_at(deadline, read.read(&mut buf)).await {
            Err(_) => {
                debug!(%addr, "sip connection closed: no complete message in time");
                break;
            }
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_message() {
                Ok(Some(frame)) => {
                    deadline = tokio::time::Instant::now() + limits.idle;
                    if frames.send((peer, frame)).await.is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
                // The stream cannot be framed any more: close it.
                Err(_) => break 'read,
            }
        }
    }
    drop(writer);
}

/// How long opening a connection to a peer we dial may take (TCP and TLS handshakes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens SIP connections to peers we dial, carried like accepted ones (the same map, the
/// same cap in all, the same frames channel to the serving task).
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) frames: mpsc::Sender<(Peer, Vec<u8>)>,
    pub(crate) connections: Connections,
    pub(crate) limits: TcpLimits,
    /// Ids of connections we open: from 2^62 up, apart from the accept loops' (from 1).
    pub(crate) next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl Connector {
    pub(crate) fn new(
        frames: mpsc::Sender<(Peer, Vec<u8>)>,
        connections: Connections,
        limits: TcpLimits,
    ) -> Connector {
        Connector {
            frames,
            connections,
            limits,
            next_id: Arc::new(std::sync::atomic::AtomicU64::new(1 << 62)),
        }
    }

    /// A TLS connection to `to` whose certificate must name `host` and chain to `client`'s
    /// CAs; its id (with [`Peer::TLS`]) for the call core.
    pub(crate) async fn open_tls(
        &self,
        to: std::net::SocketAddr,
        host: &str,
        client: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<u64> {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| std::io::Error::other(format!("`{host}` is not a server name: {e}")))?;
        let full = self
            .connections
            .lock()
            .map_or(true, |c| c.len() >= self.limits.total);
        if full {
            return Err(std::io::Error::other("too many SIP connections"));
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let tcp = tokio::net::TcpStream::connect(to).await?;
            tokio_rustls::TlsConnector::from(client)
                .connect(name, tcp)
                .await
        })
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            | Peer::TLS;
        let (tx, rx) = mpsc::channel::<Vec<u8>>(64);
        if let Ok(mut c) = self.connections.lock() {
            c.insert(id, tx);
        }
        let peer = Peer {
            addr: to,
            connection: Some(id),
        };
        let (frames, connections, limits) = (
            self.frames.clone(),
            Arc::clone(&self.connections),
            self.limits.clone(),
        );
        tokio::spawn(async move {
            carry(stream, peer, frames, rx, &limits).await;
            if let Ok(mut c) = connections.lock() {
                c.remove(&id);
            }
        });
        Ok(id)
    }
}
