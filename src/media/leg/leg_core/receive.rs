//! What arrives: datagrams on the RTP and RTCP ports, and packets the WebRTC driver parsed.
//!
//! Every datagram is judged by the latch before anything else looks at it, authenticated (SRTP)
//! before it is parsed, and parsed before it reaches the jitter buffer, RTCP or the
//! telephone-event reader. Each refusal is counted by its reason in the leg's stats.

use std::net::SocketAddr;
use std::time::Instant;

use super::LegCore;
use crate::media::jitter::Arrival;
use crate::media::leg::RELAY_SOURCE;
use crate::media::leg::latch::RtpSource;
use crate::media::leg::secure::Kind;
use crate::media::relay::RelayPacket;
use crate::media::rtp::{self, RtpError};

/// The fields of an accepted RTP packet that the leg uses, however it arrived.
struct Accepted<'a> {
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &'a [u8],
    /// The RFC 6464 level the client sent, if it did.
    client_level: Option<u8>,
    /// Bytes on the wire, for the counters.
    wire_len: usize,
}

impl LegCore {
    /// A datagram that came to the leg's RTP port from `from` (RTP, or RTCP under rtcp-mux).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let source = self.latch.rtp_source(now, from);
        if source == RtpSource::Foreign {
            self.stats.dropped_foreign_source += 1;
            return;
        }
        if rtp::is_rtcp(datagram) {
            // rtcp-mux (or a peer that sends RTCP to the RTP port anyway). Only RTP latches,
            // and only the latched source's RTCP keeps the leg alive.
            if source == RtpSource::Takeover {
                self.stats.dropped_foreign_source += 1;
            } else if self.latch.latched().is_some() {
                self.rtcp_datagram(now, datagram, true);
            } else {
                self.stats.dropped_rtcp += 1;
            }
            return;
        }
        // A new source for a quiet plain-RTP leg: only the same stream (its SSRC) from a new
        // address takes over. Under SRTP a packet that authenticates may (it has the key).
        if source == RtpSource::Takeover
            && !self.secure.is_secured()
            && !self.latch.takeover_ssrc_ok(rtp::ssrc_of(datagram))
        {
            self.stats.dropped_foreign_source += 1;
            return;
        }
        let plain = match self.secure.open(Kind::Rtp, datagram) {
            Ok(p) => p,
            Err(_) => {
                self.stats.dropped_srtp_auth += 1;
                return;
            }
        };
        let packet = match rtp::parse(&plain) {
            Ok(p) => p,
            Err(RtpError::Rtcp) => {
                self.stats.dropped_rtcp += 1;
                return;
            }
            Err(_) => {
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        let client_level = self
            .spec
            .audio_level_id
            .and_then(|id| packet.audio_level(id))
            .map(|(_, level)| level);
        let accepted = Accepted {
            payload_type: packet.payload_type,
            sequence: packet.sequence,
            timestamp: packet.timestamp,
            ssrc: packet.ssrc,
            payload: packet.payload,
            client_level,
            wire_len: datagram.len(),
        };
        if self.accept(now, accepted) {
            self.latch.on_rtp(now, from, packet.ssrc);
        }
    }

    /// A datagram that came to the leg's separate RTCP port (no rtcp-mux) from `from`.
    pub fn handle_rtcp_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if !self.latch.rtcp_port_source(now, from) {
            self.stats.dropped_foreign_source += 1;
            return;
        }
        // A new RTCP source of a plain leg must name the peer's stream: the peer's host may be
        // a NAT others share. Under SRTP a report that authenticates may (it has the key).
        if !self.secure.is_secured() && !self.latch.rtcp_sender_ok(from, rtcp_sender(datagram)) {
            self.stats.dropped_foreign_source += 1;
            return;
        }
        let from_peer = self.latch.latched().is_some();
        if self.rtcp_datagram(now, datagram, from_peer) {
            self.latch.on_rtcp_port(from);
        }
    }

    /// A packet from a WebRTC peer, parsed and checked by the driver (no latching, no SRTP
    /// here, and no writing it back into bytes).
    pub fn handle_relayed(&mut self, now: Instant, packet: &RelayPacket) {
        let payload = packet.payload();
        let accepted = Accepted {
            payload_type: packet.payload_type,
            sequence: packet.sequence,
            timestamp: packet.timestamp,
            ssrc: packet.ssrc,
            payload,
            client_level: packet.audio_level,
            wire_len: 12 + payload.len(),
        };
        if self.accept(now, accepted) {
            self.latch.on_rtp(now, RELAY_SOURCE, packet.ssrc);
        }
    }

    /// An RTCP datagram; true if it was accepted. It keeps the leg alive only when it came
    /// `from_peer` (the latched RTP source's host).
    fn rtcp_datagram(&mut self, now: Instant, datagram: &[u8], from_peer: bool) -> bool {
        let plain = match self.secure.open(Kind::Rtcp, datagram) {
            Ok(p) => p,
            Err(_) => {
                self.stats.dropped_srtp_auth += 1;
                return false;
            }
        };
        match self.rtcp.on_rtcp(now, &plain) {
            Ok(_) => {
                self.stats.rtcp_in += 1;
                if from_peer {
                    self.latch.on_peer_rtcp(now);
                }
                true
            }
            Err(_) => {
                self.stats.dropped_malformed += 1;
                false
            }
        }
    }

    /// An authenticated, parsed RTP packet from the peer: audio to the jitter buffer, telephone
    /// events to their reader. False if its payload type or content is refused.
    fn accept(&mut self, now: Instant, packet: Accepted<'_>) -> bool {
        let telephone_event = self
            .spec
            .telephone_event
            .is_some_and(|t| t.payload_type == packet.payload_type);
        let mut ended = None;
        if packet.payload_type == self.spec.payload_type {
            if packet.client_level.is_some() {
                self.stats.client_level = packet.client_level;
            }
            self.jitter.insert(
                now,
                Arrival {
                    ssrc: packet.ssrc,
                    sequence: packet.sequence,
                    timestamp: packet.timestamp,
                    payload: packet.payload,
                },
            );
        } else if telephone_event && let Some(events) = &mut self.telephone_events {
            match events.packet(now, packet.timestamp, packet.payload) {
                Ok(d) => ended = d,
                Err(_) => {
                    self.stats.dropped_malformed += 1;
                    return false;
                }
            }
        } else {
            self.stats.dropped_payload_type += 1;
            return false;
        }
        self.rtcp
            .on_rtp(now, packet.ssrc, packet.sequence, packet.timestamp);
        self.rtp_seen = true;
        self.stats.packets_in += 1;
        self.stats.bytes_in += packet.wire_len as u64;
        if let Some(d) = ended {
            self.queue_dtmf(d);
        }
        true
    }
}

/// The sender SSRC of an RTCP datagram's first packet (bytes 4-7: SR, RR, SDES and BYE alike),
/// read before anything else is trusted.
fn rtcp_sender(datagram: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = datagram.get(4..8)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}
