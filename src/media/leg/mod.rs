//! An RTP leg: one participant's media ([`LegCore`], sans I/O) and the I/O at its edge (its own
//! UDP sockets from the port pool, or the WebRTC driver's relay).
//!
//! The leg is owned by its conference's mixer thread. Each tick the thread calls
//! [`RtpLeg::receive`] (non-blocking reads, bounded per tick), then
//! [`LegCore::produce_frame`] for this tick's 20 ms, then [`RtpLeg::send_own`] or
//! [`RtpLeg::send_payload`] with what the mix has for it, and [`RtpLeg::maintain`] for RTCP and
//! DTMF timeouts. The edge reads and writes; every decision about what came and what goes is
//! the core's, so the core's tests need no socket and no clock.
//!
//! RTCP comes on the RTP port (rtcp-mux) or on the odd port above it, SRTCP when the leg is
//! secured. RFC 4733 digits wait in a small queue for the mixer to take.

mod latch;
mod leg_core;
pub mod name;
mod secure;
mod spec;
mod stats;

use std::net::{SocketAddr, UdpSocket};
use std::ops::{Deref, DerefMut};
use std::time::{Instant, SystemTime};

use super::ports::PortLease;
use super::relay::{RelayPacket, RelayPort};
use super::udp::{self, RX_BATCH, Received};
use crate::conference::{DisconnectReason, ParticipantId};

pub use leg_core::{LegCore, Route, Transmit};
pub use spec::{LegSpec, LegTimers, TelephoneEventSpec};
pub use stats::LegStats;

/// Receive buffer size: larger than any packet we accept, so an oversized datagram is seen
/// whole and refused rather than read truncated.
const RECEIVE_BUFFER: usize = 2048;
/// Most datagrams read per leg and tick (a flood cannot stall the mixer).
const MAX_READS_PER_TICK: usize = 32;

/// The source a relayed packet is latched to (the driver has already checked the peer), and
/// the signalled address of a WebRTC leg.
pub const RELAY_SOURCE: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// Where a leg's packets go.
enum Transport {
    /// Its own socket (and the odd port without rtcp-mux), from the port pool.
    Udp {
        socket: UdpSocket,
        rtcp: Option<UdpSocket>,
        _ports: PortLease,
        /// Buffers one batched read fills, and what came.
        rx_bufs: Box<[Box<[u8; RECEIVE_BUFFER]>; RX_BATCH]>,
        rx_got: [Received; RX_BATCH],
    },
    /// Test-only: datagrams handed in and taken out by the test (a simulated network).
    #[cfg(test)]
    Memory {
        /// What arrived: source, whether on the RTCP port, bytes.
        inbox: std::collections::VecDeque<(SocketAddr, bool, Vec<u8>)>,
        /// What the leg sent: destination, whether from the RTCP port, bytes.
        sent: Vec<(SocketAddr, bool, Vec<u8>)>,
    },
    /// Through the WebRTC driver, which does ICE, DTLS-SRTP and RTCP for it.
    Relay {
        port: RelayPort,
        scratch: Box<RelayPacket>,
        /// Why the relay let the peer go, for the mixer to disconnect it.
        closed: Option<DisconnectReason>,
    },
}

/// A participant's RTP leg: its media core and the sockets or relay it travels by.
pub struct RtpLeg {
    pub participant: ParticipantId,
    core: LegCore,
    transport: Transport,
    /// The caller's recorded name, which goes with the leg into its meeting.
    pub name: name::LegName,
    /// Where the far end is, for the call records (it too goes with the leg).
    pub origin: Option<std::sync::Arc<crate::store::Origin>>,
    /// The language the caller chose at the attendant (none: the default), which goes with the
    /// leg too: the conference speaks its own notices to it in that language.
    pub language: Option<std::sync::Arc<str>>,
}

impl std::fmt::Debug for RtpLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtpLeg")
            .field("participant", &self.participant)
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

/// A leg is its media core with I/O around it: what does not touch a socket is the core's.
impl Deref for RtpLeg {
    type Target = LegCore;
    fn deref(&self) -> &LegCore {
        &self.core
    }
}

impl DerefMut for RtpLeg {
    fn deref_mut(&mut self) -> &mut LegCore {
        &mut self.core
    }
}

impl RtpLeg {
    /// A leg on `socket` (and `rtcp_socket` without rtcp-mux), bound from the port pool and
    /// made non-blocking here.
    pub fn new(
        participant: ParticipantId,
        spec: LegSpec,
        sockets: (UdpSocket, Option<UdpSocket>),
        ports: PortLease,
        now: Instant,
        ssrc: u32,
        timers: LegTimers,
    ) -> std::io::Result<Self> {
        let (socket, rtcp) = sockets;
        socket.set_nonblocking(true)?;
        if let Some(s) = &rtcp {
            s.set_nonblocking(true)?;
        }
        let route = Route::Direct {
            separate_rtcp: rtcp.is_some(),
        };
        let core = LegCore::new(spec, route, now, SystemTime::now(), ssrc, timers)?;
        let transport = Transport::Udp {
            socket,
            rtcp,
            _ports: ports,
            rx_bufs: Box::new(std::array::from_fn(|_| Box::new([0; RECEIVE_BUFFER]))),
            rx_got: [Received::default(); RX_BATCH],
        };
        Ok(RtpLeg {
            participant,
            core,
            transport,
            name: Default::default(),
            origin: None,
            language: None,
        })
    }

    /// A WebRTC leg: its packets pass through the driver on `port` (no SRTP of its own).
    pub fn relayed(
        participant: ParticipantId,
        spec: LegSpec,
        port: RelayPort,
        now: Instant,
        ssrc: u32,
        timers: LegTimers,
    ) -> std::io::Result<Self> {
        let core = LegCore::new(spec, Route::Relayed, now, SystemTime::now(), ssrc, timers)?;
        let transport = Transport::Relay {
            port,
            scratch: Box::new(RelayPacket::new(0, 0, 0, 0)),
            closed: None,
        };
        Ok(RtpLeg {
            participant,
            core,
            transport,
            name: Default::default(),
            origin: None,
            language: None,
        })
    }

    /// In the tick: this tick's frame (at mix rate `rate`) into the name being recorded.
    pub fn record_name(&mut self, rate: confab_dsp::resample::Rate) {
        if self.name.recording() {
            self.name.record(self.core.frame(), rate);
        }
    }

    /// The loss (percent) the receiver last reported of our stream: from the leg's own RTCP,
    /// or for a WebRTC leg from the driver, which reads its RTCP.
    pub fn path_report(&self) -> Option<f32> {
        match &self.transport {
            Transport::Relay { port, .. } => port.reported_loss(),
            _ => self.core.reported_loss(),
        }
    }

    /// Test-only: a direct leg whose datagrams travel through the test, not a socket.
    #[cfg(test)]
    pub(crate) fn in_memory(
        participant: ParticipantId,
        spec: LegSpec,
        now: Instant,
        ssrc: u32,
        timers: LegTimers,
    ) -> std::io::Result<Self> {
        let route = Route::Direct {
            separate_rtcp: spec.remote_rtcp.is_some(),
        };
        let core = LegCore::new(spec, route, now, SystemTime::UNIX_EPOCH, ssrc, timers)?;
        Ok(RtpLeg {
            participant,
            core,
            transport: Transport::Memory {
                inbox: Default::default(),
                sent: Vec::new(),
            },
            name: Default::default(),
            origin: None,
            language: None,
        })
    }

    /// Test-only: a datagram arrives (read at the next `receive`).
    #[cfg(test)]
    pub(crate) fn deliver(&mut self, from: SocketAddr, rtcp_port: bool, data: Vec<u8>) {
        if let Transport::Memory { inbox, .. } = &mut self.transport {
            inbox.push_back((from, rtcp_port, data));
        }
    }

    /// Test-only: what the leg sent since the last call.
    #[cfg(test)]
    pub(crate) fn take_sent(&mut self) -> Vec<(SocketAddr, bool, Vec<u8>)> {
        match &mut self.transport {
            Transport::Memory { sent, .. } => std::mem::take(sent),
            _ => Vec::new(),
        }
    }

    /// The leg's own RTP address (relayed legs have none).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.transport {
            Transport::Udp { socket, .. } => socket.local_addr(),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "a relayed leg has no socket",
            )),
        }
    }

    /// Whether this leg's packets go through the WebRTC driver.
    pub fn is_relayed(&self) -> bool {
        matches!(self.transport, Transport::Relay { .. })
    }

    /// Tells the WebRTC driver this tick's packets are queued (relayed legs only).
    pub fn flush(&self) {
        if let Transport::Relay { port, .. } = &self.transport {
            port.ring();
        }
    }

    /// Why the relay let this leg's peer go, once it has.
    pub fn closed(&self) -> Option<DisconnectReason> {
        match &self.transport {
            Transport::Relay { closed, .. } => *closed,
            _ => None,
        }
    }

    /// Reads what arrived (non-blocking, bounded) and hands it to the core.
    pub fn receive(&mut self, now: Instant) {
        let core = &mut self.core;
        match &mut self.transport {
            #[cfg(test)]
            Transport::Memory { inbox, .. } => {
                for (from, rtcp_port, data) in inbox.drain(..) {
                    if rtcp_port {
                        core.handle_rtcp_datagram(now, from, &data);
                    } else {
                        core.handle_datagram(now, from, &data);
                    }
                }
            }
            Transport::Relay {
                port,
                scratch,
                closed,
            } => {
                for _ in 0..MAX_READS_PER_TICK {
                    match port.receive(scratch) {
                        None => break,
                        Some(Err(reason)) => {
                            *closed = Some(reason);
                            break;
                        }
                        Some(Ok(())) => core.handle_relayed(now, scratch),
                    }
                }
            }
            Transport::Udp {
                socket,
                rtcp,
                rx_bufs,
                rx_got,
                ..
            } => {
                let mut reads = 0;
                while reads < MAX_READS_PER_TICK {
                    let n = udp::read_batch(socket, rx_bufs, rx_got);
                    for (buf, got) in rx_bufs.iter().zip(rx_got.iter()).take(n) {
                        if let (Some(from), Some(datagram)) = (got.from, buf.get(..got.len)) {
                            core.handle_datagram(now, from, datagram);
                        }
                    }
                    reads += n;
                    if n < RX_BATCH {
                        // Fewer than asked for: the queue is empty, no second call needed.
                        break;
                    }
                }
                let Some(rtcp) = rtcp else {
                    return;
                };
                let buf = &mut rx_bufs[0];
                for _ in 0..MAX_READS_PER_TICK {
                    let Ok((n, from)) = rtcp.recv_from(&mut buf[..]) else {
                        break;
                    };
                    if let Some(datagram) = buf.get(..n) {
                        core.handle_rtcp_datagram(now, from, datagram);
                    }
                }
            }
        }
    }

    /// Per-tick housekeeping: our RTCP report when it is due, and DTMF events whose end
    /// packets never came.
    pub fn maintain(&mut self, now: Instant) {
        self.core.handle_timeout(now);
        self.transmit();
    }

    /// Encodes `frame` (at the mix rate) with the leg's own encoder and sends what it yields,
    /// naming the talkers in it (`csrcs`, with their levels in -dBov). Returns the packets
    /// encoded.
    pub fn send_own(&mut self, frame: &[i16], csrcs: &[u32], levels: &[u8]) -> u32 {
        let encoded = self.core.encode_own(frame, csrcs, levels);
        self.transmit();
        encoded
    }

    /// Sends an already encoded payload (a group's shared packet).
    pub fn send_payload(&mut self, payload: &[u8], ticks: u32, csrcs: &[u32], levels: &[u8]) {
        self.core.queue_payload(payload, ticks, csrcs, levels);
        self.transmit();
    }

    /// Sends what the core has queued.
    fn transmit(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            let ok = match (t, &self.transport) {
                (
                    Transmit::Datagram {
                        to,
                        rtcp_port,
                        data,
                    },
                    Transport::Udp { socket, rtcp, .. },
                ) => {
                    let socket = match rtcp {
                        Some(rtcp) if rtcp_port => rtcp,
                        _ => socket,
                    };
                    socket.send_to(data, to).is_ok()
                }
                (Transmit::Relay(packet), Transport::Relay { port, .. }) => port.send(*packet),
                #[cfg(test)]
                (
                    Transmit::Datagram {
                        to,
                        rtcp_port,
                        data,
                    },
                    Transport::Memory { .. },
                ) => {
                    let data = data.to_vec();
                    if let Transport::Memory { sent, .. } = &mut self.transport {
                        sent.push((to, rtcp_port, data));
                    }
                    true
                }
                _ => false,
            };
            self.core.transmitted(ok);
        }
    }
}
