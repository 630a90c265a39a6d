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

struct Peer {
    session: String,
    rtc: Rtc,
    mid: Mid,
    relay: RelayPeer,
    /// The client address while the handshake is in progress (its slot is held).
    handshaking: Option<IpAddr>,
    created: Instant,
    /// Last datagram from the peer (STUN consent, DTLS, SRTP).
    last_rx: Instant,
    deadline: Instant,
    /// Our outgoing sequence number, extended over wraps for SRTP's rollover counter.
    out_seq: Option<(u16, u64)>,
    sources: Vec<SocketAddr>,
    /// Our ICE ufrag in its answer (the key of `Driver::by_ufrag`).
    ufrag: Option<String>,
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

/// What driving a peer found.
enum Drive {
    Alive,
    Gone(DisconnectReason),
}

static NEXT_PEER: AtomicU64 = AtomicU64::new(1);

impl Driver {
    async fn run(
        mut self,
        socket: std::net::UdpSocket,
        mut commands: mpsc::Receiver<DriverCommand>,
        doorbell: Doorbell,
    ) {
        let socket = match tokio::net::UdpSocket::from_std(socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "webrtc socket");
                return;
            }
        };
        let mut buf = vec![0u8; 2048];
        loop {
            let now = Instant::now();
            let next = self
                .peers
                .values()
                .map(|p| p.deadline)
                .min()
                .unwrap_or(now + Duration::from_secs(1))
                .max(now);
            tokio::select! {
                r = socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        // Routing a stranger's datagram asks every peer's str0m whether it is
                        // theirs; a panic there is contained like one while driving a peer.
                        let routed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            self.datagram(&socket, from, &buf[..n]);
                        }));
                        if routed.is_err() {
                            self.metrics.panics_total.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(%from, "webrtc: routing a datagram panicked");
                        }
                    }
                }
                cmd = commands.recv() => match cmd {
                    None => break,
                    Some(DriverCommand::Add(p)) => self.add(&socket, *p),
                    Some(DriverCommand::Close(session, reason)) => {
                        let id = self.peers.iter().find(|(_, p)| p.session == session).map(|(k, _)| *k);
                        if let Some(id) = id {
                            self.remove(&socket, id, reason);
                        }
                    }
                },
                _ = doorbell.notified() => self.forward_all(&socket),
                _ = tokio::time::sleep_until(next.into()) => self.timers(&socket),
            }
        }
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for id in ids {
            self.remove(&socket, id, DisconnectReason::Hangup);
        }
    }

    fn add(&mut self, socket: &tokio::net::UdpSocket, p: NewPeer) {
        let now = Instant::now();
        let id = NEXT_PEER.fetch_add(1, Ordering::Relaxed);
        let ufrag = stun::answer_ufrag(&p.accepted.answer).map(str::to_owned);
        if let Some(u) = &ufrag {
            self.by_ufrag.insert(u.clone(), id);
        }
        let peer = Peer {
            ufrag,
            session: p.session,
            rtc: p.accepted.rtc,
            mid: p.accepted.mid,
            relay: p.relay,
            handshaking: Some(p.client),
            created: now,
            last_rx: now,
            deadline: now,
            out_seq: None,
            sources: Vec::new(),
        };
        self.peers.insert(id, peer);
        self.metrics.peers.fetch_add(1, Ordering::Relaxed);
        self.metrics.handshakes.fetch_add(1, Ordering::Relaxed);
        self.drive_peer(socket, id, Input::Timeout(now));
    }

    fn datagram(&mut self, socket: &tokio::net::UdpSocket, from: SocketAddr, data: &[u8]) {
        let Ok(contents) = data.try_into() else {
            self.metrics
                .unrouted_datagrams_total
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        let now = Instant::now();
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: self.local,
                contents,
            },
        );
        // A known source goes to its peer; a new one must be a STUN binding request whose
        // USERNAME names a peer (ICE checks come first from every new address), and only that
        // peer is asked. Junk from strangers costs a lookup, not a scan of every peer.
        let id = match self.routes.get(&from) {
            Some(id) if self.peers.get(id).is_some_and(|p| p.rtc.accepts(&input)) => Some(*id),
            _ => stun::local_ufrag(data)
                .and_then(|u| self.by_ufrag.get(u))
                .copied()
                .filter(|id| self.peers.get(id).is_some_and(|p| p.rtc.accepts(&input))),
        };
        let Some(id) = id else {
            self.metrics
                .unrouted_datagrams_total
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Some(p) = self.peers.get_mut(&id) {
            p.last_rx = now;
            if !p.sources.contains(&from) && p.sources.len() < 8 {
                p.sources.push(from);
                self.routes.insert(from, id);
            }
        }
        self.drive_peer(socket, id, input);
    }

    /// Feeds one input to a peer and drains what it has to say; lets it go if it is done.
    fn drive_peer(&mut self, socket: &tokio::net::UdpSocket, id: u64, input: Input<'_>) {
        // No panic crosses a peer's boundary: the peer whose input panicked is let go as
        // internal-error and the driver goes on with the others.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match self.peers.get_mut(&id) {
                None => Drive::Alive,
                Some(peer) => match peer.rtc.handle_input(input) {
                    Ok(()) => self.drain(socket, id),
                    Err(e) => {
                        tracing::debug!(error = %e, "webrtc input refused");
                        Drive::Gone(DisconnectReason::DtlsFailed)
                    }
                },
            }
        }))
        .unwrap_or_else(|_| {
            self.metrics.panics_total.fetch_add(1, Ordering::Relaxed);
            tracing::error!(peer = id, "webrtc: driving a peer panicked");
            Drive::Gone(DisconnectReason::InternalError)
        });
        if let Drive::Gone(reason) = outcome {
            let removed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.remove(socket, id, reason);
            }));
            if removed.is_err() {
                // Its goodbye panicked too: forget it without one.
                self.metrics.panics_total.fetch_add(1, Ordering::Relaxed);
                if let Some(peer) = self.peers.remove(&id) {
                    peer.relay.close(DisconnectReason::InternalError);
                }
            }
        }
    }

    /// Polls a peer until it only has a timeout left.
    fn drain(&mut self, socket: &tokio::net::UdpSocket, id: u64) -> Drive {
        let Some(peer) = self.peers.get_mut(&id) else {
            return Drive::Alive;
        };
        loop {
            let out = match peer.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(error = %e, "webrtc peer failed");
                    return Drive::Gone(DisconnectReason::DtlsFailed);
                }
            };
            match out {
                Output::Timeout(t) => {
                    peer.deadline = t;
                    break;
                }
                Output::Transmit(t) => {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => {
                    if let Some(client) = peer.handshaking.take() {
                        release(&self.handshakes, client);
                        self.metrics.handshakes.fetch_sub(1, Ordering::Relaxed);
                        self.metrics.connected_total.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // The client closed DTLS (its close_notify): it hung up.
                Output::Event(Event::Closed) => return Drive::Gone(DisconnectReason::Hangup),
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => {
                    return Drive::Gone(DisconnectReason::IceTimeout);
                }
                Output::Event(Event::RtpPacket(p)) => {
                    let mut packet = RelayPacket::new(
                        *p.header.payload_type,
                        p.header.sequence_number,
                        p.header.timestamp,
                        *p.header.ssrc,
                    );
                    packet.marker = p.header.marker;
                    packet.audio_level = p
                        .header
                        .ext_vals
                        .audio_level
                        .map(|l| l.unsigned_abs().min(127));
                    if !packet.set_payload(&p.payload) {
                        continue;
                    }
                    match peer.relay.inbound.try_send(packet) {
                        Ok(()) => {}
                        Err(std::sync::mpsc::TrySendError::Full(_)) => {
                            self.metrics
                                .relay_drops_total
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        // The leg left the mix (ejected, ended): the peer goes too.
                        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                            return Drive::Gone(DisconnectReason::Hangup);
                        }
                    }
                }
                Output::Event(_) => {}
            }
        }
        if !peer.rtc.is_alive() {
            return Drive::Gone(DisconnectReason::Hangup);
        }
        Drive::Alive
    }

    /// Moves what the mixer queued to every peer's str0m.
    fn forward_all(&mut self, socket: &tokio::net::UdpSocket) {
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for id in ids {
            let mut gone = None;
            while let Some(peer) = self.peers.get_mut(&id) {
                let packet = match peer.relay.outbound.try_recv() {
                    Ok(p) => p,
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        gone = Some(DisconnectReason::Hangup);
                        break;
                    }
                };
                if peer.handshaking.is_some() {
                    // Not connected yet: nothing can be sent.
                    continue;
                }
                let seq = match peer.out_seq {
                    None => u64::from(packet.sequence),
                    Some((last, ext)) => ext + u64::from(packet.sequence.wrapping_sub(last)),
                };
                peer.out_seq = Some((packet.sequence, seq));
                let now = Instant::now();
                let mut api = peer.rtc.direct_api();
                let Some(stream) = api.stream_tx_by_mid(peer.mid, None) else {
                    break;
                };
                let write = RtpWrite::new(
                    packet.payload_type.into(),
                    SeqNo::from(seq),
                    packet.timestamp,
                    now,
                    packet.payload().to_vec(),
                )
                .marker(packet.marker)
                .csrc(packet.csrcs());
                stream.write_rtp(write);
                if let Drive::Gone(r) = self.drain(socket, id) {
                    gone = Some(r);
                    break;
                }
            }
            if let Some(reason) = gone {
                self.remove(socket, id, reason);
            }
        }
    }

    /// Timeouts: str0m's own, consent freshness and the handshake limit; one decision a peer.
    fn timers(&mut self, socket: &tokio::net::UdpSocket) {
        let now = Instant::now();
        let due: Vec<(u64, bool)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| {
                let lapsed = now.duration_since(p.last_rx) > self.consent_timeout
                    || (p.handshaking.is_some()
                        && now.duration_since(p.created) > self.handshake_timeout);
                (lapsed || p.deadline <= now).then_some((*id, lapsed))
            })
            .collect();
        for (id, lapsed) in due {
            if lapsed {
                self.remove(socket, id, DisconnectReason::IceTimeout);
            } else {
                self.drive_peer(socket, id, Input::Timeout(now));
            }
        }
    }

    fn remove(&mut self, socket: &tokio::net::UdpSocket, id: u64, reason: DisconnectReason) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        // First, so that the session and its roster token go even if the goodbye panics.
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(&peer.session);
        }
        match reason {
            DisconnectReason::IceTimeout => {
                self.metrics
                    .ice_timeouts_total
                    .fetch_add(1, Ordering::Relaxed);
            }
            DisconnectReason::DtlsFailed => {
                self.metrics
                    .dtls_failures_total
                    .fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        tracing::info!(session = %peer.session, reason = reason.as_str(), "webrtc peer closed");
        peer.relay.close(reason);
        // Say goodbye (RTCP BYE, DTLS close_notify) so the client learns at once; bounded.
        if reason != DisconnectReason::IceTimeout && peer.rtc.close().is_ok() {
            for _ in 0..32 {
                match peer.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        let _ = socket.try_send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Event(_)) => {}
                    Ok(Output::Timeout(_)) | Err(_) => break,
                }
            }
        }
        peer.rtc.disconnect();
        for s in &peer.sources {
            self.routes.remove(s);
        }
        if let Some(u) = &peer.ufrag {
            self.by_ufrag.remove(u);
        }
        if let Some(client) = peer.handshaking.take() {
            release(&self.handshakes, client);
            self.metrics.handshakes.fetch_sub(1, Ordering::Relaxed);
        }
        self.metrics.peers.fetch_sub(1, Ordering::Relaxed);
    }
}
