//! An RTP leg: one participant's UDP socket, jitter buffer, codecs and speech detector.
//!
//! The leg is owned by its conference's mixer thread. Each tick the thread calls
//! [`RtpLeg::receive`] (non-blocking reads, bounded per tick), then [`RtpLeg::produce_frame`]
//! for this tick's 20 ms at 48 kHz, then sends what the mix has for it.
//!
//! Symmetric RTP: the leg latches to the source of the first valid packet and drops packets
//! from anywhere else (counted), until the latched source has been silent for `relatch_after`
//! (NAT rebinding). Before latching it sends to the address from signalling.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use confab_dsp::opus::OpusSettings;
use confab_dsp::vad::{Activity, SpeechDetector, SpeechSettings};

use super::codec::{Codec, LegDecoder, LegEncoder, MIX_FRAME, MIX_RATE};
use super::jitter::{Arrival, JitterBuffer, JitterSettings, Playout};
use super::ports::PortLease;
use super::rtp::{self, MAX_PACKET, Outgoing, RtpError};
use super::srtp::{SrtpKeys, SrtpSession};
use crate::conference::ParticipantId;

/// What signalling agreed for a leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegSpec {
    pub codec: Codec,
    /// Payload type of the codec on this leg (both directions).
    pub payload_type: u8,
    /// Outgoing packet time.
    pub ptime_ms: u32,
    /// Where the peer said it receives.
    pub remote: SocketAddr,
    /// RFC 4733 telephone-event payload type, if negotiated.
    pub telephone_event: Option<u8>,
    /// SDES-SRTP keys; `None` is plain RTP.
    pub srtp: Option<SrtpKeys>,
}

/// Counters of one leg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub dropped_foreign_source: u64,
    pub dropped_malformed: u64,
    pub dropped_payload_type: u64,
    pub dropped_rtcp: u64,
    /// SRTP packets that failed authentication (forged, replayed, wrong key).
    pub dropped_srtp_auth: u64,
    pub send_errors: u64,
}

/// Receive buffer size (see `RtpLeg::buf`).
const RECEIVE_BUFFER: usize = 2048;
/// RFC 6464 level (-dBov) from which a frame counts as silence for the jitter buffer.
const QUIET_LEVEL: u8 = 50;
/// What an idle leg reports.
const SILENT: Activity = Activity {
    level: 127,
    active: false,
    talking: false,
};
/// Frames without audio before a leg is treated as idle (the decoder's tail has played out).
const IDLE_AFTER_FRAMES: u32 = 3;
/// Most datagrams read per leg and tick (a flood cannot stall the mixer).
const MAX_READS_PER_TICK: usize = 32;
/// Packets taken from the jitter buffer per tick at most (10 ms packets need two).
const MAX_POPS_PER_TICK: usize = 8;

/// A participant's RTP leg.
pub struct RtpLeg {
    pub participant: ParticipantId,
    spec: LegSpec,
    socket: UdpSocket,
    _ports: PortLease,
    latched: Option<SocketAddr>,
    last_rx: Option<Instant>,
    created: Instant,
    relatch_after: Duration,
    jitter: JitterBuffer,
    decoder: LegDecoder,
    speech: SpeechDetector,
    own: LegEncoder,
    srtp: Option<SrtpSession>,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    /// This tick's decoded audio at 48 kHz.
    frame: Vec<i16>,
    activity: Activity,
    idle_frames: u32,
    stats: LegStats,
    /// Larger than any packet we accept, so an oversized datagram is seen whole and refused
    /// rather than read truncated.
    buf: Box<[u8; RECEIVE_BUFFER]>,
}

impl std::fmt::Debug for RtpLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtpLeg")
            .field("participant", &self.participant)
            .field("spec", &self.spec)
            .field("latched", &self.latched)
            .finish_non_exhaustive()
    }
}

impl RtpLeg {
    /// A leg on `socket` (bound from the port pool, made non-blocking here).
    pub fn new(
        participant: ParticipantId,
        spec: LegSpec,
        socket: UdpSocket,
        ports: PortLease,
        now: Instant,
        ssrc: u32,
    ) -> std::io::Result<Self> {
        socket.set_nonblocking(true)?;
        let invalid =
            |e: confab_dsp::Error| std::io::Error::new(ErrorKind::InvalidInput, e.to_string());
        let opus = OpusSettings::default();
        let srtp = match &spec.srtp {
            Some(keys) => Some(
                SrtpSession::new(keys)
                    .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e.to_string()))?,
            ),
            None => None,
        };
        Ok(RtpLeg {
            srtp,
            participant,
            spec,
            socket,
            _ports: ports,
            latched: None,
            last_rx: None,
            created: now,
            relatch_after: Duration::from_secs(2),
            jitter: JitterBuffer::new(JitterSettings::new(spec.codec.clock_rate())),
            decoder: LegDecoder::new(spec.codec).map_err(invalid)?,
            speech: SpeechDetector::new(MIX_RATE, 20, SpeechSettings::default()),
            own: LegEncoder::new(spec.codec, spec.ptime_ms, opus).map_err(invalid)?,
            ssrc,
            sequence: (ssrc >> 16) as u16,
            timestamp: ssrc.rotate_left(11),
            frame: vec![0; MIX_FRAME],
            activity: SILENT,
            idle_frames: 0,
            stats: LegStats::default(),
            buf: Box::new([0; RECEIVE_BUFFER]),
        })
    }

    pub fn spec(&self) -> &LegSpec {
        &self.spec
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn stats(&self) -> LegStats {
        self.stats
    }

    pub fn frame(&self) -> &[i16] {
        &self.frame
    }

    pub fn activity(&self) -> Activity {
        self.activity
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Whether media arrived at all.
    pub fn media_seen(&self) -> bool {
        self.last_rx.is_some()
    }

    /// Time since the last packet (or since the leg was made).
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_rx.unwrap_or(self.created))
    }

    /// Reads what arrived (non-blocking, bounded) into the jitter buffer.
    pub fn receive(&mut self, now: Instant) {
        for _ in 0..MAX_READS_PER_TICK {
            let (n, from) = match self.socket.recv_from(&mut self.buf[..]) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            };
            self.datagram(now, from, n);
        }
    }

    fn datagram(&mut self, now: Instant, from: SocketAddr, len: usize) {
        if let Some(latched) = self.latched
            && latched != from
        {
            let stale = self
                .last_rx
                .is_none_or(|t| now.saturating_duration_since(t) >= self.relatch_after);
            if !stale {
                self.stats.dropped_foreign_source += 1;
                return;
            }
        }
        let decrypted;
        let datagram: &[u8] = match &mut self.srtp {
            None => &self.buf[..len],
            Some(_) if rtp::is_rtcp(&self.buf[..len]) => {
                // SRTCP is read by the RTCP layer (not yet wired); count it as RTCP.
                self.stats.dropped_rtcp += 1;
                return;
            }
            Some(srtp) => match srtp.unprotect_rtp(&self.buf[..len]) {
                Ok(plain) => {
                    decrypted = plain;
                    &decrypted
                }
                Err(_) => {
                    self.stats.dropped_srtp_auth += 1;
                    return;
                }
            },
        };
        let packet = match rtp::parse(datagram) {
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
        if packet.payload_type != self.spec.payload_type {
            if Some(packet.payload_type) != self.spec.telephone_event {
                self.stats.dropped_payload_type += 1;
                return;
            }
            // RFC 4733 events are handled by the DTMF receiver (not yet wired).
        } else {
            self.jitter.insert(
                now,
                Arrival {
                    ssrc: packet.ssrc,
                    sequence: packet.sequence,
                    timestamp: packet.timestamp,
                    payload: packet.payload,
                },
            );
        }
        self.latched = Some(from);
        self.last_rx = Some(now);
        self.stats.packets_in += 1;
        self.stats.bytes_in += len as u64;
    }

    /// Decodes this tick's 20 ms (concealing losses) and runs speech detection on it. A leg with
    /// nothing to play (no packets, or the sender stopped) costs almost nothing: its frame is
    /// silence and no decoder, resampler or detector runs.
    pub fn produce_frame(&mut self) {
        // Drift correction may only drop or insert audio nobody would hear: judged by level,
        // not by the speech detector (a steady tone is not speech, but it is not silence).
        let silent = self.activity.level >= QUIET_LEVEL;
        let mut audio = self.decoder.has_frame();
        for _ in 0..MAX_POPS_PER_TICK {
            if self.decoder.has_frame() {
                break;
            }
            match self.jitter.pop(silent) {
                Playout::Waiting => break,
                Playout::Packet { payload, .. } => {
                    self.decoder.decode(payload);
                }
                Playout::Lost => match self.jitter.peek_next() {
                    Some(next) => self.decoder.recover(next),
                    None => self.decoder.conceal(),
                },
                Playout::Stretch => self.decoder.conceal(),
            }
            audio = true;
        }
        if !audio {
            if self.idle_frames < IDLE_AFTER_FRAMES {
                self.idle_frames += 1;
            } else {
                if self.activity != SILENT {
                    self.frame.fill(0);
                    self.activity = SILENT;
                }
                return;
            }
        } else {
            self.idle_frames = 0;
        }
        self.decoder.frame(&mut self.frame);
        self.activity = self.speech.process(&self.frame);
    }

    /// Encodes `frame` (48 kHz) with the leg's own encoder and sends what it yields.
    /// Returns the packets encoded.
    pub fn send_own(&mut self, frame: &[i16], csrcs: &[u32]) -> u32 {
        self.own.push_frame(frame);
        let mut payload = [0u8; MAX_PACKET];
        let mut encoded = 0;
        while let Some(n) = self.own.pull_packet(&mut payload) {
            encoded += 1;
            let ticks = self.own.packet_ticks();
            self.send_payload(&payload[..n], ticks, csrcs);
        }
        encoded
    }

    /// Sends an already encoded payload (a group's shared packet).
    pub fn send_payload(&mut self, payload: &[u8], ticks: u32, csrcs: &[u32]) {
        let header = Outgoing {
            payload_type: self.spec.payload_type,
            marker: false,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            csrcs,
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(ticks);
        let Some(len) = rtp::write(&mut self.buf[..], header, payload) else {
            self.stats.send_errors += 1;
            return;
        };
        let to = self.latched.unwrap_or(self.spec.remote);
        let protected;
        let datagram: &[u8] = match &mut self.srtp {
            None => &self.buf[..len],
            Some(srtp) => match srtp.protect_rtp(&self.buf[..len]) {
                Ok(p) => {
                    protected = p;
                    &protected
                }
                Err(_) => {
                    self.stats.send_errors += 1;
                    return;
                }
            },
        };
        match self.socket.send_to(datagram, to) {
            Ok(_) => {
                self.stats.packets_out += 1;
                self.stats.bytes_out += datagram.len() as u64;
            }
            Err(_) => self.stats.send_errors += 1,
        }
    }
}
