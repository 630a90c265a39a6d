//! The driver thread's work: each peer's `Rtc` fed with datagrams, relay packets and time,
//! its output sent, and the peer let go (with the reason) when it ends.

use super::*;

pub(super) struct Peer {
    session: String,
    rtc: Rtc,
    mid: Mid,
    /// Our candidate's address in its answer: the destination str0m is told every datagram
    /// from the peer had (its ICE takes a check only on a candidate it has), whatever address
    /// the socket is bound to: a wildcard, or a private one behind a NAT.
    candidate: SocketAddr,
    relay: RelayPeer,
    /// The handshake's slot while the handshake is in progress (given back when dropped).
    handshaking: Option<HandshakeSlot>,
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

/// Where the driver's datagrams go: the shared socket, or a test's list.
pub(super) trait Wire {
    fn send(&self, contents: &[u8], to: SocketAddr);
}

impl Wire for tokio::net::UdpSocket {
    fn send(&self, contents: &[u8], to: SocketAddr) {
        // A full send buffer drops the datagram, as the network may: str0m resends.
        let _ = self.try_send_to(contents, to);
    }
}

/// What driving a peer found.
enum Drive {
    Alive,
    Gone(DisconnectReason),
}

/// How a driver's run ended (a panic ends it too, see `supervisor`).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// Its handle was dropped: the bridge is stopping.
    Stopped,
    /// It could not run (the socket could not be registered with its runtime).
    Failed,
}

static NEXT_PEER: AtomicU64 = AtomicU64::new(1);

impl Driver {
    /// Serves peers until the handle is dropped. Borrows the driver so that, if this panics,
    /// the supervisor still holds the peers and can let them go (`abandon`).
    pub(super) async fn run(
        &mut self,
        socket: std::net::UdpSocket,
        mut commands: mpsc::Receiver<DriverCommand>,
        doorbell: Doorbell,
        up: &AtomicBool,
    ) -> Ended {
        let socket = match tokio::net::UdpSocket::from_std(socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "webrtc socket");
                return Ended::Failed;
            }
        };
        up.store(true, Ordering::Release);
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
                    #[cfg(test)]
                    Some(DriverCommand::PanicForTest) => panic!("webrtc driver: panic injected by a test"),
                    #[cfg(test)]
                    Some(DriverCommand::HoldForTest(until)) => while until.recv().is_ok() {},
                },
                _ = doorbell.notified() => self.forward_all(&socket),
                _ = tokio::time::sleep_until(next.into()) => self.timers(&socket),
            }
        }
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for id in ids {
            self.remove(&socket, id, DisconnectReason::Hangup);
        }
        Ended::Stopped
    }

    /// After the driver died: every peer it held is let go as internal-error (the relay's
    /// reason, then its end dropped, so the leg leaves the mix) and its handshake slot given
    /// back (dropped with it). No goodbye is sent: a peer's state may be half-changed by the
    /// panic.
    pub(super) fn abandon(&mut self) {
        for (_, peer) in self.peers.drain() {
            peer.relay.close(DisconnectReason::InternalError);
        }
        self.routes.clear();
        self.by_ufrag.clear();
        // The next driver starts with none (a peer half-removed by the panic counted here).
        self.metrics.peers.store(0, Ordering::Relaxed);
        self.metrics.handshakes.store(0, Ordering::Relaxed);
    }

    fn add(&mut self, socket: &dyn Wire, p: NewPeer) {
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
            candidate: p.accepted.candidate,
            relay: p.relay,
            handshaking: Some(p.handshake),
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

    fn datagram(&mut self, socket: &dyn Wire, from: SocketAddr, data: &[u8]) {
        let now = Instant::now();
        // A known source goes to its peer; a new one must be a STUN binding request whose
        // USERNAME names a peer (ICE checks come first from every new address), and only that
        // peer is asked. Junk from strangers costs a lookup, not a scan of every peer.
        let routed = self.routes.get(&from).copied();
        let found = routed
            .and_then(|id| self.accepted_by(id, from, data, now))
            .or_else(|| {
                stun::local_ufrag(data)
                    .and_then(|u| self.by_ufrag.get(u))
                    .copied()
                    .and_then(|id| self.accepted_by(id, from, data, now))
            });
        let Some((id, input)) = found else {
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

    /// The datagram as peer `id` is given it, if its str0m takes it: sent from `from` to the
    /// candidate its answer named (not the socket's own address, which may be a wildcard or a
    /// private address behind a NAT). `None` for a datagram str0m cannot read.
    fn accepted_by<'a>(
        &self,
        id: u64,
        from: SocketAddr,
        data: &'a [u8],
        now: Instant,
    ) -> Option<(u64, Input<'a>)> {
        let peer = self.peers.get(&id)?;
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: peer.candidate,
                contents: data.try_into().ok()?,
            },
        );
        peer.rtc.accepts(&input).then_some((id, input))
    }

    /// Feeds one input to a peer and drains what it has to say; lets it go if it is done.
    fn drive_peer(&mut self, socket: &dyn Wire, id: u64, input: Input<'_>) {
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
    fn drain(&mut self, socket: &dyn Wire, id: u64) -> Drive {
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
                    socket.send(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => {
                    if let Some(slot) = peer.handshaking.take() {
                        drop(slot);
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
                // What the peer's receiver reports say of our stream (None: no new report),
                // for the Opus toward it.
                Output::Event(Event::MediaEgressStats(stats)) => {
                    if let Some(loss) = stats.loss {
                        peer.relay.report_loss(loss);
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
    fn forward_all(&mut self, socket: &dyn Wire) {
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
    fn timers(&mut self, socket: &dyn Wire) {
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

    fn remove(&mut self, socket: &dyn Wire, id: u64, reason: DisconnectReason) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        // First, so that the session and its roster token go even if the goodbye panics.
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(&peer.session);
        }
        // ICE timeouts and DTLS failures are counted where every leaving participant is, by
        // reason (`confab_participants_disconnected_total`), not twice.
        tracing::info!(session = %peer.session, reason = reason.as_str(), "webrtc peer closed");
        peer.relay.close(reason);
        // Say goodbye (RTCP BYE, DTLS close_notify) so the client learns at once; bounded.
        if reason != DisconnectReason::IceTimeout && peer.rtc.close().is_ok() {
            for _ in 0..32 {
                match peer.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        socket.send(&t.contents, t.destination);
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
        if let Some(slot) = peer.handshaking.take() {
            drop(slot);
            self.metrics.handshakes.fetch_sub(1, Ordering::Relaxed);
        }
        self.metrics.peers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
