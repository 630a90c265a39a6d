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
//!
//! The driver thread is supervised (`supervisor`): if the driver itself panics, its peers are
//! let go as internal-error and a new driver takes the same socket after a back-off.

mod driver;
pub mod handshakes;
pub mod offer;
pub mod sessions;
pub mod stun;
mod supervisor;
pub mod token;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
pub use handshakes::{HandshakeCap, HandshakeLimits};
use handshakes::{HandshakeKey, SharedHandshakes, release};
pub use offer::{Accepted, DtlsCerts, OfferError};
use sessions::SessionTable;
pub use sessions::{RosterToken, Session};

/// Settings of the WebRTC side (from `[webrtc]`).
#[derive(Clone, Debug)]
pub struct WebRtcSettings {
    pub listen: SocketAddr,
    pub advertise: Option<IpAddr>,
    pub consent_timeout: Duration,
    /// Handshakes in progress allowed: in all, per meeting, per client address.
    pub handshake_limits: HandshakeLimits,
    /// Longest a peer may take from its offer to ICE and DTLS being up.
    pub handshake_timeout: Duration,
    /// STUN/TURN servers for the join page (`webrtc.ice_servers`), as the JSON array of
    /// `RTCIceServer`s the page is given.
    pub ice_servers_json: String,
    /// The same servers as the `Link` header values a WHIP answer carries (RFC 9725).
    pub ice_server_links: Vec<String>,
    /// The first wait before a dead driver is started again (doubling to `MAX_RESTART_WAIT`).
    pub restart_wait: Duration,
}

impl WebRtcSettings {
    pub fn from_config(c: &crate::config::WebRtcConfig) -> Self {
        WebRtcSettings {
            listen: c.listen,
            advertise: c.advertise,
            consent_timeout: Duration::from_secs(c.consent_timeout_secs),
            handshake_limits: HandshakeLimits {
                total: c.max_handshakes,
                per_conference: c.max_handshakes_per_conference,
                per_address: c.max_handshakes_per_address,
            },
            handshake_timeout: Duration::from_secs(20),
            // Checked text and lists of it: writing them as JSON cannot fail.
            ice_servers_json: serde_json::to_string(&c.ice_servers)
                .unwrap_or_else(|_| "[]".to_owned()),
            ice_server_links: c.ice_servers.link_headers(),
            restart_wait: supervisor::FIRST_RESTART_WAIT,
        }
    }
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct WebRtcMetrics {
    pub peers: AtomicU64,
    pub handshakes: AtomicU64,
    pub connected_total: AtomicU64,
    pub unrouted_datagrams_total: AtomicU64,
    pub relay_drops_total: AtomicU64,
    /// Panics contained while driving a peer (each a bug; that peer was let go), and panics
    /// of the driver itself (each a bug; every peer was let go and the driver restarted).
    pub panics_total: AtomicU64,
    /// Times the driver ended without being asked and was started again.
    pub driver_restarts_total: AtomicU64,
    /// WHIP joins refused for too many handshakes in progress, by the cap they met
    /// (`HandshakeCap`: address, conference, total).
    pub handshakes_refused_total: [AtomicU64; 3],
}

impl WebRtcMetrics {
    fn refused(&self, cap: HandshakeCap) -> &AtomicU64 {
        &self.handshakes_refused_total[cap as usize]
    }

    /// Refused handshakes by cap, labelled for `/metrics`.
    pub fn handshakes_refused(&self) -> [(&'static str, u64); 3] {
        [
            HandshakeCap::Address,
            HandshakeCap::Conference,
            HandshakeCap::Total,
        ]
        .map(|c| (c.as_str(), self.refused(c).load(Ordering::Relaxed)))
    }
}

/// Why a new peer was refused before its offer was looked at.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdmitError {
    #[error("too many WebRTC handshakes in progress from {0}")]
    TooManyHandshakes(IpAddr),
    #[error("too many WebRTC handshakes in progress for meeting {0}")]
    TooManyForConference(String),
    #[error("too many WebRTC handshakes in progress on this bridge")]
    TooManyInAll,
    #[error("the WebRTC driver is not running")]
    Stopped,
}

enum DriverCommand {
    Add(Box<NewPeer>),
    Close(String, DisconnectReason),
    /// Test-only: panics the driver's loop itself, outside every peer's containment.
    #[cfg(test)]
    PanicForTest,
    /// Test-only: the driver waits until the sender is dropped (commands queue meanwhile).
    #[cfg(test)]
    HoldForTest(std::sync::mpsc::Receiver<()>),
}

struct NewPeer {
    session: String,
    accepted: Accepted,
    relay: RelayPeer,
    /// Travels with the peer: a peer dropped anywhere (a full queue, a queue dropped with a
    /// dead driver, a peer let go) gives its slot back.
    handshake: HandshakeSlot,
}

type Sessions = Arc<Mutex<SessionTable>>;

/// Commands queued for the driver (joins and DELETEs); a full queue refuses the join (503).
const COMMAND_QUEUE: usize = 256;

/// The running driver's command channel. The supervisor puts a new one here at each restart
/// (holding it weakly: once the handle is dropped, the channel closes and the driver stops).
type Commands = Arc<Mutex<mpsc::Sender<DriverCommand>>>;

/// The API's handle on the driver.
pub struct WebRtc {
    sessions: Sessions,
    settings: WebRtcSettings,
    local: SocketAddr,
    commands: Commands,
    doorbell: Doorbell,
    handshakes: SharedHandshakes,
    certs: DtlsCerts,
    pub metrics: Arc<WebRtcMetrics>,
    /// Whether a driver runs now (false from its death until its successor runs).
    up: Arc<AtomicBool>,
    supervisor: std::thread::JoinHandle<()>,
}

/// A handshake slot held for a client address and meeting, from the WHIP request until its
/// peer connects or goes; freed when dropped, wherever that happens.
pub struct HandshakeSlot {
    key: HandshakeKey,
    table: SharedHandshakes,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        release(&self.table, &self.key);
    }
}

impl WebRtc {
    /// Binds the shared port and starts the driver thread (under its supervisor).
    pub fn start(settings: WebRtcSettings) -> std::io::Result<Arc<WebRtc>> {
        // Both may already be installed (tests start several bridges in one process).
        let _ = std::panic::catch_unwind(|| {
            str0m::crypto::from_feature_flags().install_process_default();
        });
        let certs = DtlsCerts::new(Instant::now())
            .ok_or_else(|| std::io::Error::other("cannot make a DTLS certificate"))?;
        let socket = std::net::UdpSocket::bind(settings.listen)?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let commands: Commands = Arc::new(Mutex::new(tx));
        let doorbell: Doorbell = Arc::default();
        let handshakes = SharedHandshakes::default();
        let metrics = Arc::new(WebRtcMetrics::default());
        let sessions: Sessions = Arc::default();
        let up = Arc::new(AtomicBool::new(true));
        let supervisor = supervisor::Supervisor {
            socket,
            commands: Arc::downgrade(&commands),
            sessions: sessions.clone(),
            metrics: metrics.clone(),
            doorbell: doorbell.clone(),
            up: up.clone(),
            consent_timeout: settings.consent_timeout,
            handshake_timeout: settings.handshake_timeout,
            restart_wait: settings.restart_wait,
        };
        let supervisor = std::thread::Builder::new()
            .name("confab-webrtc".into())
            .spawn(move || supervisor.run(rx))?;
        tracing::info!(%local, "webrtc listening");
        Ok(Arc::new(WebRtc {
            sessions,
            settings,
            local,
            commands,
            doorbell,
            handshakes,
            certs,
            metrics,
            up,
            supervisor,
        }))
    }

    /// Whether a driver runs (`/readyz` is not ready while a dead one waits to restart, or
    /// if the supervisor itself has ended).
    pub fn running(&self) -> bool {
        self.up.load(Ordering::Acquire) && !self.supervisor.is_finished()
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

    /// The DTLS certificate to answer an offer with now.
    pub fn dtls_cert(&self) -> str0m::config::DtlsCert {
        self.certs.for_offer(Instant::now())
    }

    pub fn doorbell(&self) -> Doorbell {
        self.doorbell.clone()
    }

    /// Reserves a handshake for `client` joining meeting `cid`, or refuses when the client,
    /// the meeting or the bridge has too many in progress (counted by the cap met).
    pub fn reserve(&self, client: IpAddr, cid: &str) -> Result<HandshakeSlot, AdmitError> {
        let key = HandshakeKey {
            client,
            cid: cid.to_owned(),
        };
        let taken = self
            .handshakes
            .lock()
            .map_err(|_| AdmitError::Stopped)?
            .take(&key, self.settings.handshake_limits);
        if let Err(cap) = taken {
            self.metrics.refused(cap).fetch_add(1, Ordering::Relaxed);
            return Err(match cap {
                HandshakeCap::Address => AdmitError::TooManyHandshakes(client),
                HandshakeCap::Conference => AdmitError::TooManyForConference(key.cid),
                HandshakeCap::Total => AdmitError::TooManyInAll,
            });
        }
        Ok(HandshakeSlot {
            key,
            table: self.handshakes.clone(),
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
        slot: HandshakeSlot,
    ) -> Result<(), AdmitError> {
        // The session is entered and the peer sent under the channel's lock: a supervisor
        // emptying the table after a driver's death does so before or after both, never
        // between (no session outlives its peer).
        let commands = self
            .commands
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(session.clone(), info, roster);
        }
        let peer = NewPeer {
            session: session.clone(),
            accepted,
            relay,
            handshake: slot,
        };
        if commands
            .try_send(DriverCommand::Add(Box::new(peer)))
            .is_err()
        {
            // The driver is dead or swamped: the peer comes back in the error and is dropped,
            // the relay's end (the leg leaves) and the slot with it.
            if let Ok(mut s) = self.sessions.lock() {
                s.remove(&session);
            }
            return Err(AdmitError::Stopped);
        }
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

    /// The STUN/TURN servers as a WHIP answer's `Link` header values.
    pub fn ice_server_links(&self) -> &[String] {
        &self.settings.ice_server_links
    }

    /// Ends a session (WHIP DELETE); false if the driver is gone.
    pub fn close(&self, session: &str) -> bool {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(session);
        }
        self.send(DriverCommand::Close(
            session.to_owned(),
            DisconnectReason::Hangup,
        ))
    }

    fn send(&self, command: DriverCommand) -> bool {
        let commands = self
            .commands
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        commands.try_send(command).is_ok()
    }

    /// Test-only: panics the driver's loop (as a bug outside every peer's containment would).
    #[cfg(test)]
    pub(crate) fn panic_driver_for_test(&self) -> bool {
        self.send(DriverCommand::PanicForTest)
    }

    /// Test-only: holds the driver until the returned sender is dropped.
    #[cfg(test)]
    pub(crate) fn hold_driver_for_test(&self) -> Option<std::sync::mpsc::Sender<()>> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.send(DriverCommand::HoldForTest(rx)).then_some(tx)
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
    consent_timeout: Duration,
    handshake_timeout: Duration,
    peers: HashMap<u64, Peer>,
    /// Source address -> peer, learnt from the first datagram a peer accepted. Bound: 8 per
    /// peer (`Peer::sources`), removed with the peer.
    routes: HashMap<SocketAddr, u64>,
    /// Our ICE ufrag -> peer: a datagram from an unknown source is asked of the one peer its
    /// STUN USERNAME names, never of every peer. Bound: one per peer, removed with the peer.
    by_ufrag: HashMap<String, u64>,
    metrics: Arc<WebRtcMetrics>,
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
