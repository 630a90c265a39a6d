//! WebRTC legs: every browser or app peer on one UDP port, ICE-lite and DTLS-SRTP by str0m.
//!
//! One driver thread owns the socket and every peer's `Rtc` (sans-I/O): it routes each
//! datagram to the peer whose ICE session it belongs to, drives the state machines' timers,
//! and moves RTP between str0m and the peer's mixer leg through a relay (plain RTP both ways,
//! see `media::relay`). There is no task or socket per peer. The mixer rings a doorbell after
//! a tick that queued packets for the driver.
//!
//! A peer is let go on DELETE (WHIP), when ICE consent lapses (no STUN for
//! `consent_timeout`), when DTLS fails or closes, or when its leg leaves the mix (ejected,
//! conference ended): the relay carries the reason to the leg, or the driver sees the leg gone.

mod driver;
pub mod offer;
pub mod sessions;
pub mod stun;
pub mod token;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::media::Mid;
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::mpsc;

use crate::conference::DisconnectReason;
use crate::media::relay::{Doorbell, RelayPacket, RelayPeer};

use driver::Peer;
pub use offer::{Accepted, OfferError};
use sessions::SessionTable;
pub use sessions::{RosterToken, Session};

/// Settings of the WebRTC side (from `[webrtc]`).
#[derive(Clone, Debug)]
pub struct WebRtcSettings {
    pub listen: SocketAddr,
    pub advertise: Option<IpAddr>,
    pub consent_timeout: Duration,
    pub max_handshakes_per_address: usize,
    /// Longest a peer may take from its offer to ICE and DTLS being up.
    pub handshake_timeout: Duration,
    /// STUN/TURN servers for the join page (`webrtc.ice_servers`), as the JSON array of
    /// `RTCIceServer`s the page is given.
    pub ice_servers_json: String,
}

impl WebRtcSettings {
    pub fn from_config(c: &crate::config::WebRtcConfig) -> Self {
        WebRtcSettings {
            listen: c.listen,
            advertise: c.advertise,
            consent_timeout: Duration::from_secs(c.consent_timeout_secs),
            max_handshakes_per_address: c.max_handshakes_per_address,
            handshake_timeout: Duration::from_secs(20),
            // Checked text and lists of it: writing them as JSON cannot fail.
            ice_servers_json: serde_json::to_string(&c.ice_servers)
                .unwrap_or_else(|_| "[]".to_owned()),
        }
    }
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct WebRtcMetrics {
    pub peers: AtomicU64,
    pub handshakes: AtomicU64,
    pub connected_total: AtomicU64,
    pub ice_timeouts_total: AtomicU64,
    pub dtls_failures_total: AtomicU64,
    pub unrouted_datagrams_total: AtomicU64,
    pub relay_drops_total: AtomicU64,
    /// Panics contained while driving a peer (each a bug; that peer was let go).
    pub panics_total: AtomicU64,
}

/// Why a new peer was refused before its offer was looked at.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdmitError {
    #[error("too many WebRTC handshakes in progress from {0}")]
    TooManyHandshakes(IpAddr),
    #[error("the WebRTC driver is not running")]
    Stopped,
}

enum DriverCommand {
    Add(Box<NewPeer>),
    Close(String, DisconnectReason),
}

struct NewPeer {
    session: String,
    accepted: Accepted,
    relay: RelayPeer,
    client: IpAddr,
}

type Sessions = Arc<Mutex<SessionTable>>;

/// The API's handle on the driver.
pub struct WebRtc {
    sessions: Sessions,
    settings: WebRtcSettings,
    local: SocketAddr,
    commands: mpsc::Sender<DriverCommand>,
    doorbell: Doorbell,
    handshakes: Arc<Mutex<HashMap<IpAddr, usize>>>,
    pub metrics: Arc<WebRtcMetrics>,
    driver: std::thread::JoinHandle<()>,
}

/// A handshake slot held for a client address (freed when dropped unless handed on).
pub struct HandshakeSlot {
    client: IpAddr,
    table: Arc<Mutex<HashMap<IpAddr, usize>>>,
    armed: bool,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        if self.armed {
            release(&self.table, self.client);
        }
    }
}

fn release(table: &Mutex<HashMap<IpAddr, usize>>, client: IpAddr) {
    if let Ok(mut t) = table.lock()
        && let Some(n) = t.get_mut(&client)
    {
        *n = n.saturating_sub(1);
        if *n == 0 {
            t.remove(&client);
        }
    }
}

impl WebRtc {
    /// Binds the shared port and starts the driver thread.
    pub fn start(settings: WebRtcSettings) -> std::io::Result<Arc<WebRtc>> {
        // Both may already be installed (tests start several bridges in one process).
        let _ = std::panic::catch_unwind(|| {
            str0m::crypto::from_feature_flags().install_process_default();
        });
        let socket = std::net::UdpSocket::bind(settings.listen)?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let (tx, rx) = mpsc::channel(256);
        let doorbell: Doorbell = Arc::default();
        let handshakes = Arc::new(Mutex::new(HashMap::new()));
        let metrics = Arc::new(WebRtcMetrics::default());
        let sessions: Sessions = Arc::default();
        let driver = Driver {
            sessions: sessions.clone(),
            local,
            consent_timeout: settings.consent_timeout,
            handshake_timeout: settings.handshake_timeout,
            peers: HashMap::new(),
            routes: HashMap::new(),
            by_ufrag: HashMap::new(),
            handshakes: handshakes.clone(),
            metrics: metrics.clone(),
        };
        let bell = doorbell.clone();
        let driver = std::thread::Builder::new()
            .name("confab-webrtc".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "webrtc driver runtime");
                        return;
                    }
                };
                runtime.block_on(driver.run(socket, rx, bell));
            })?;
        tracing::info!(%local, "webrtc listening");
        Ok(Arc::new(WebRtc {
            sessions,
            settings,
            local,
            commands: tx,
            doorbell,
            handshakes,
            metrics,
            driver,
        }))
    }

    /// Whether the driver thread runs (`/readyz` is not ready once it has ended).
    pub fn running(&self) -> bool {
        !self.driver.is_finished()
    }

    /// The shared UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address our ICE candidate names for a browser at `peer` (never a wildcard).
    pub fn candidate(&self, peer: IpAddr) -> SocketAddr {
        crate::addr::Advertise::new(self.settings.advertise, self.local.ip())
            .socket_for_peer(self.local, peer)
    }

    pub fn doorbell(&self) -> Doorbell {
        self.doorbell.clone()
    }

    /// Reserves a handshake for `client`, or refuses when it has too many in progress.
    pub fn reserve(&self, client: IpAddr) -> Result<HandshakeSlot, AdmitError> {
        let mut t = self.handshakes.lock().map_err(|_| AdmitError::Stopped)?;
        let n = t.entry(client).or_insert(0);
        if *n >= self.settings.max_handshakes_per_address {
            return Err(AdmitError::TooManyHandshakes(client));
        }
        *n += 1;
        Ok(HandshakeSlot {
            client,
            table: self.handshakes.clone(),
            armed: true,
        })
    }

    /// Hands an accepted peer to the driver; its handshake slot goes with it. `roster` is the
    /// session's roster token, valid while the session lives.
    pub fn add(
        &self,
        session: String,
        info: Session,
        roster: RosterToken,
        accepted: Accepted,
        relay: RelayPeer,
        mut slot: HandshakeSlot,
    ) -> Result<(), AdmitError> {
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(session.clone(), info, roster);
        }
        let peer = NewPeer {
            session,
            accepted,
            relay,
            client: slot.client,
        };
        self.commands
            .try_send(DriverCommand::Add(Box::new(peer)))
            .map_err(|_| AdmitError::Stopped)?;
        // (If the driver refused it, the relay's end is dropped and the leg leaves.)
        slot.armed = false;
        Ok(())
    }

    /// A live session.
    pub fn session(&self, session: &str) -> Option<Session> {
        self.sessions.lock().ok()?.get(session).cloned()
    }

    /// The live session whose roster token this is (forged, malformed or ended: `None`).
    pub fn roster_session(&self, token: &str) -> Option<Session> {
        self.sessions.lock().ok()?.by_roster_token(token).cloned()
    }

    /// The STUN/TURN servers the join page gives its browser, as a JSON array.
    pub fn ice_servers_json(&self) -> &str {
        &self.settings.ice_servers_json
    }

    /// Ends a session (WHIP DELETE); false if the driver is gone.
    pub fn close(&self, session: &str) -> bool {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(session);
        }
        self.commands
            .try_send(DriverCommand::Close(
                session.to_owned(),
                DisconnectReason::Hangup,
            ))
            .is_ok()
    }
}

/// A new random session id (the WHIP resource).
pub fn session_id() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

struct Driver {
    sessions: Sessions,
    local: SocketAddr,
    consent_timeout: Duration,
    handshake_timeout: Duration,
    peers: HashMap<u64, Peer>,
    /// Source address -> peer, learnt from the first datagram a peer accepted. Bound: 8 per
    /// peer (`Peer::sources`), removed with the peer.
    routes: HashMap<SocketAddr, u64>,
    /// Our ICE ufrag -> peer: a datagram from an unknown source is asked of the one peer its
    /// STUN USERNAME names, never of every peer. Bound: one per peer, removed with the peer.
    by_ufrag: HashMap<String, u64>,
    handshakes: Arc<Mutex<HashMap<IpAddr, usize>>>,
    metrics: Arc<WebRtcMetrics>,
}
