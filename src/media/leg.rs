//! An RTP leg: one participant's UDP socket, jitter buffer, codecs and speech detector.
//!
//! The leg is owned by its conference's mixer thread. Each tick the thread calls
//! [`RtpLeg::receive`] (non-blocking reads, bounded per tick), then [`RtpLeg::produce_frame`]
//! for this tick's 20 ms at 48 kHz, then sends what the mix has for it.
//!
//! Symmetric RTP: the leg latches to the source of the first valid packet and drops packets
//! from anywhere else (counted), until the latched source has been silent for `relatch_after`
//! (NAT rebinding). Before latching it sends to the address from signalling.
//!
//! RTCP comes on the RTP port (rtcp-mux) or on the odd port above it, SRTCP when the leg is
//! secured; [`RtpLeg::maintain`] sends our reports when due and ends DTMF events whose end
//! packets were lost. RFC 4733 digits wait in a small queue for the mixer to take.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use std::sync::Arc;

use confab_dsp::dtmf::{DtmfDetector, DtmfEvent};
use confab_dsp::opus::OpusSettings;
use confab_dsp::resample::{Rate, Resampler};
use confab_dsp::vad::{Activity, SpeechDetector, SpeechSettings};

use super::codec::{Codec, LegDecoder, LegEncoder, MIX_FRAME, WIDEST_MIX};
use super::jitter::{Arrival, JitterBuffer, JitterSettings, Playout};
use super::ports::PortLease;
use super::quality;
use super::relay::{RelayPacket, RelayPort};
use super::rtcp::{NtpClock, Rtcp, Sent};
use super::rtp::{self, MAX_PACKET, Outgoing, RtpError};
use super::srtp::{SrtpKeys, SrtpSession};
use super::telephone_event::{Dtmf, TelephoneEvents};
use super::udp::{self, RX_BATCH, Received};
use crate::conference::{DisconnectReason, ParticipantId};

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
    /// Where the peer receives RTCP; `None` is rtcp-mux (RTCP on the RTP port both ways).
    pub remote_rtcp: Option<SocketAddr>,
    /// RFC 4733 telephone-event, if negotiated.
    pub telephone_event: Option<TelephoneEventSpec>,
    /// Extension id of the RFC 6464 client-to-mixer audio level, if negotiated.
    pub audio_level_id: Option<u8>,
    /// Extension id of the RFC 6465 mixer-to-client audio levels, if negotiated.
    pub csrc_audio_level_id: Option<u8>,
    /// SDES-SRTP keys; `None` is plain RTP.
    pub srtp: Option<SrtpKeys>,
    /// The peer may send from another host than `remote` names (it is behind a NAT that
    /// signalling did not see through): the leg latches to whoever sends first. Otherwise it
    /// takes media only from `remote`'s host, so a stranger spraying the port range is never
    /// latched, even before the peer's first packet.
    pub latch_any_source: bool,
}

/// The negotiated telephone-event format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEventSpec {
    pub payload_type: u8,
    /// 8000 or 48000 (linphone offers it at the Opus rate only).
    pub clock_rate: u32,
}

impl LegSpec {
    /// Plain RTP with `codec` at its default payload type, 20 ms, rtcp-mux, nothing else.
    pub fn new(codec: Codec, remote: SocketAddr) -> Self {
        LegSpec {
            codec,
            payload_type: codec.default_payload_type(),
            ptime_ms: 20,
            remote,
            remote_rtcp: None,
            telephone_event: None,
            audio_level_id: None,
            csrc_audio_level_id: None,
            srtp: None,
            latch_any_source: false,
        }
    }
}

/// Timing settings of legs (from the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegTimers {
    /// Silence of the latched source after which another source may take over.
    pub relatch_after: Duration,
    /// RFC 3550 T_min of the RTCP report interval.
    pub rtcp_interval: Duration,
    /// Every leg latches to the first source, whatever its offer said (`media.latch_any_source`).
    pub latch_any_source: bool,
}

impl Default for LegTimers {
    fn default() -> Self {
        LegTimers {
            relatch_after: Duration::from_secs(2),
            rtcp_interval: Duration::from_secs(5),
            latch_any_source: false,
        }
    }
}

/// Counters and quality figures of one leg.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LegStats {
    /// RTP packets accepted (audio and telephone events).
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
    pub rtcp_in: u64,
    pub rtcp_out: u64,
    /// DTMF digits received by RFC 4733.
    pub dtmf_in: u64,
    /// Voice-inactive Opus packets of a quiet leg taken as silence without decoding.
    pub decodes_skipped: u64,
    /// The last RFC 6464 level (-dBov) the client reported, if it sends them.
    pub client_level: Option<u8>,
    /// Packets of the peer's stream lost (RFC 3550 cumulative count).
    pub packets_lost: i64,
    pub packets_expected: u64,
    /// Interarrival jitter of the peer's stream, in milliseconds.
    pub jitter_ms: f64,
    /// Loss the peer reports of our stream (fraction lost of its last report), in percent.
    pub remote_loss_percent: Option<f64>,
    pub remote_jitter_ms: Option<f64>,
    pub rtt_ms: Option<f64>,
    /// Estimated MOS (simplified E-model, see `media::quality`).
    pub mos: f64,
    /// What the leg negotiated: codec, telephone-event clock rate, SRTP.
    pub codec: Option<Codec>,
    pub telephone_event_rate: Option<u32>,
    pub srtp: bool,
    /// A WebRTC leg (DTLS-SRTP through the shared WebRTC port).
    pub webrtc: bool,
    /// The SSRC we send this leg's audio with: it is the CSRC naming this participant in
    /// what the others receive while it talks (RFC 6465 levels go with it where negotiated).
    pub ssrc: u32,
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
/// Digits held for the mixer to take (it takes them every tick).
const DTMF_QUEUE: usize = 4;
/// Largest RTCP report we write.
const RTCP_BUFFER: usize = 256;

/// Where a leg's packets go.
enum Transport {
    /// Its own socket (and the odd port without rtcp-mux), from the port pool.
    Udp {
        socket: UdpSocket,
        rtcp: Option<UdpSocket>,
        _ports: PortLease,
    },
    /// Through the WebRTC driver, which does ICE, DTLS-SRTP and RTCP for it.
    Relay {
        port: RelayPort,
        scratch: Box<RelayPacket>,
    },
}

/// The source a relayed packet is latched to (the driver has already checked the peer).
pub const RELAY_SOURCE: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// A participant's RTP leg.
pub struct RtpLeg {
    pub participant: ParticipantId,
    spec: LegSpec,
    transport: Transport,
    /// Why the relay let the peer go (WebRTC legs), for the mixer to disconnect it.
    closed: Option<DisconnectReason>,
    latched: Option<SocketAddr>,
    /// The SSRC of the last packet from the latched source: after `relatch_after` of silence
    /// (hold, DTX, a NAT rebinding) another source may take over a plain-RTP leg only with
    /// this SSRC, so that spraying the port range does not capture a quiet call's mix.
    latched_ssrc: Option<u32>,
    rtcp_latched: Option<SocketAddr>,
    /// Last RTP or RTCP from the peer (keeps the leg alive, e.g. on hold).
    last_rx: Option<Instant>,
    rtp_seen: bool,
    created: Instant,
    timers: LegTimers,
    rtcp: Rtcp,
    cname: String,
    telephone_events: Option<TelephoneEvents>,
    dtmf: [Option<Dtmf>; DTMF_QUEUE],
    /// In-band DTMF detection on the decoded audio (attendant legs only: it costs).
    inband: Option<Box<DtmfDetector>>,
    /// A prompt being played to this leg instead of the mix.
    prompt: Option<Prompt>,
    /// The conference's mix rate (the widest until the conference says): `frame` and what
    /// `send_own` takes come at it.
    mix: Rate,
    jitter: JitterBuffer,
    decoder: LegDecoder,
    speech: SpeechDetector,
    own: LegEncoder,
    srtp: Option<SrtpSession>,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    /// This tick's decoded audio at the mix rate.
    frame: Vec<i16>,
    /// `frame` holds digital silence (so it need not be zeroed or scanned again).
    frame_is_zero: bool,
    activity: Activity,
    idle_frames: u32,
    stats: LegStats,
    /// Larger than any packet we accept, so an oversized datagram is seen whole and refused
    /// rather than read truncated.
    buf: Box<[u8; RECEIVE_BUFFER]>,
    /// Buffers one batched read fills (swapped with `buf` to be parsed), and what came.
    rx_bufs: [Box<[u8; RECEIVE_BUFFER]>; RX_BATCH],
    rx_got: [Received; RX_BATCH],
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
        let transport = Transport::Udp {
            socket,
            rtcp,
            _ports: ports,
        };
        Self::build(participant, spec, transport, now, ssrc, timers)
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
        let spec = LegSpec { srtp: None, ..spec };
        let transport = Transport::Relay {
            port,
            scratch: Box::new(RelayPacket::new(0, 0, 0, 0)),
        };
        Self::build(participant, spec, transport, now, ssrc, timers)
    }

    fn build(
        participant: ParticipantId,
        spec: LegSpec,
        transport: Transport,
        now: Instant,
        ssrc: u32,
        timers: LegTimers,
    ) -> std::io::Result<Self> {
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
            transport,
            closed: None,
            latched: None,
            latched_ssrc: None,
            rtcp_latched: None,
            last_rx: None,
            rtp_seen: false,
            created: now,
            timers,
            rtcp: Rtcp::new(
                ssrc,
                spec.codec.clock_rate(),
                NtpClock::new(now, std::time::SystemTime::now()),
                timers.rtcp_interval,
            ),
            cname: format!("confab-{ssrc:08x}"),
            telephone_events: spec
                .telephone_event
                .map(|t| TelephoneEvents::new(t.clock_rate)),
            dtmf: [None; DTMF_QUEUE],
            inband: None,
            prompt: None,
            mix: WIDEST_MIX,
            jitter: JitterBuffer::new(JitterSettings::new(spec.codec.clock_rate())),
            decoder: LegDecoder::new(spec.codec, WIDEST_MIX).map_err(invalid)?,
            speech: speech_detector(spec.codec),
            own: LegEncoder::new(spec.codec, spec.ptime_ms, opus, WIDEST_MIX).map_err(invalid)?,
            ssrc,
            sequence: (ssrc >> 16) as u16,
            timestamp: ssrc.rotate_left(11),
            frame: vec![0; MIX_FRAME],
            frame_is_zero: true,
            activity: SILENT,
            idle_frames: 0,
            stats: LegStats::default(),
            buf: Box::new([0; RECEIVE_BUFFER]),
            rx_bufs: std::array::from_fn(|_| Box::new([0; RECEIVE_BUFFER])),
            rx_got: [Received::default(); RX_BATCH],
        })
    }

    /// The peer was taken off hold: it may come back with a new stream (many phones start a
    /// new SSRC on resume), so the next source after a quiet spell may bring any SSRC.
    pub fn forget_ssrc(&mut self) {
        self.latched_ssrc = None;
    }

    pub fn spec(&self) -> &LegSpec {
        &self.spec
    }

    /// The leg's own RTP address (relayed legs have none).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.transport {
            Transport::Udp { socket, .. } => socket.local_addr(),
            Transport::Relay { .. } => Err(std::io::Error::new(
                ErrorKind::Unsupported,
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
        self.closed
    }

    /// The leg's counters with its quality figures (RTCP, MOS) filled in.
    pub fn stats(&self) -> LegStats {
        let mut s = self.stats;
        s.decodes_skipped += self.decoder.skipped();
        s.packets_lost = self.rtcp.packets_lost();
        s.packets_expected = self.rtcp.packets_expected();
        s.jitter_ms = self.rtcp.jitter().as_secs_f64() * 1000.0;
        let remote = self.rtcp.remote_report();
        s.remote_loss_percent = remote.map(|b| f64::from(b.fraction_lost) * 100.0 / 256.0);
        s.remote_jitter_ms = self.rtcp.remote_jitter().map(|j| j.as_secs_f64() * 1000.0);
        s.rtt_ms = self.rtcp.round_trip().map(|r| r.as_secs_f64() * 1000.0);
        // The worse direction's loss; one-way delay from half the round trip, the jitter
        // buffer's depth and a packet time.
        let local_loss = if s.packets_expected == 0 {
            0.0
        } else {
            s.packets_lost.max(0) as f64 * 100.0 / s.packets_expected as f64
        };
        let loss = local_loss.max(s.remote_loss_percent.unwrap_or(0.0));
        let delay = self.rtcp.round_trip().unwrap_or_default() / 2
            + self.jitter.depth()
            + Duration::from_millis(u64::from(self.spec.ptime_ms));
        s.mos = quality::mos(self.spec.codec, loss, delay);
        s.codec = Some(self.spec.codec);
        s.telephone_event_rate = self.spec.telephone_event.map(|t| t.clock_rate);
        s.srtp = self.spec.srtp.is_some();
        s.webrtc = matches!(self.transport, Transport::Relay { .. });
        s.ssrc = self.ssrc;
        s.srtp |= s.webrtc;
        s
    }

    /// Signalling agreed something else (a re-INVITE changed the codec, an offerless call's
    /// answer came): the codecs, jitter buffer and keys follow `spec`; the socket stays.
    /// Allocates: between ticks.
    pub fn respec(&mut self, spec: LegSpec) -> std::io::Result<()> {
        let invalid =
            |e: confab_dsp::Error| std::io::Error::new(ErrorKind::InvalidInput, e.to_string());
        let decoder = LegDecoder::new(spec.codec, self.mix).map_err(invalid)?;
        let own = LegEncoder::new(spec.codec, spec.ptime_ms, OpusSettings::default(), self.mix)
            .map_err(invalid)?;
        if spec.srtp != self.spec.srtp {
            self.srtp = match &spec.srtp {
                Some(keys) => Some(
                    SrtpSession::new(keys)
                        .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e.to_string()))?,
                ),
                None => None,
            };
        }
        if spec.codec != self.spec.codec {
            self.jitter = JitterBuffer::new(JitterSettings::new(spec.codec.clock_rate()));
        }
        if spec.codec.rate() != self.spec.codec.rate() {
            self.speech = speech_detector(spec.codec);
        }
        // A new address is a new source to latch to. An unspecified one (hold the old way,
        // c=0.0.0.0) is no address: the latch stays, so the peer's RTCP keeps the held call
        // alive and a stranger cannot take it over while it is quiet.
        if spec.remote != self.spec.remote && !spec.remote.ip().is_unspecified() {
            self.latched = None;
            self.latched_ssrc = None;
        }
        self.stats.decodes_skipped += self.decoder.skipped();
        self.decoder = decoder;
        self.own = own;
        self.telephone_events = spec
            .telephone_event
            .map(|t| TelephoneEvents::new(t.clock_rate));
        self.spec = spec;
        Ok(())
    }

    /// The conference mixes at `mix` from now on: the frame, the resamplers around the codecs
    /// and a playing prompt's follow; the codecs' own state and what is buffered stay.
    /// Allocates: between ticks. Fails only for a rate pair the resampler lacks (none of ours).
    pub fn set_mix_rate(&mut self, mix: Rate) -> std::io::Result<()> {
        if mix == self.mix {
            return Ok(());
        }
        let invalid =
            |e: confab_dsp::Error| std::io::Error::new(ErrorKind::InvalidInput, e.to_string());
        self.decoder.set_mix_rate(mix).map_err(invalid)?;
        self.own.set_mix_rate(mix).map_err(invalid)?;
        if let Some(prompt) = &mut self.prompt {
            prompt.resampler = prompt_resampler(mix);
        }
        self.mix = mix;
        self.frame = vec![0; mix.samples(20)];
        self.frame_is_zero = true;
        Ok(())
    }

    /// Plays `audio` (48 kHz) to the leg instead of the mix, or stops the prompt playing.
    /// Allocates (a resampler to a narrower mix): between ticks.
    pub fn play(&mut self, audio: Option<Arc<[i16]>>) {
        self.prompt = audio.map(|audio| Prompt {
            audio,
            at: 0,
            resampler: prompt_resampler(self.mix),
        });
    }

    /// Whether a prompt is playing.
    pub fn playing(&self) -> bool {
        self.prompt.is_some()
    }

    /// The prompt's next 20 ms into `out` at the mix rate (the rest silence); false when none
    /// plays. The prompt ends by itself after its last frame.
    pub fn prompt_frame(&mut self, out: &mut [i16]) -> bool {
        let Some(prompt) = &mut self.prompt else {
            return false;
        };
        let mut wide = [0i16; MIX_FRAME];
        let n = MIX_FRAME.min(prompt.audio.len().saturating_sub(prompt.at));
        wide[..n].copy_from_slice(&prompt.audio[prompt.at..prompt.at + n]);
        let converted = match &mut prompt.resampler {
            Some(r) => r.process(&wide, out).is_ok(),
            None if out.len() == MIX_FRAME => {
                out.copy_from_slice(&wide);
                true
            }
            None => false,
        };
        if !converted {
            out.fill(0);
        }
        prompt.at += MIX_FRAME;
        if prompt.at >= prompt.audio.len() {
            self.prompt = None;
        }
        true
    }

    /// Turns in-band DTMF detection on the decoded audio on or off (allocates: between ticks).
    pub fn detect_inband_dtmf(&mut self, on: bool) {
        self.inband = on.then(|| Box::new(DtmfDetector::new()));
    }

    /// The next DTMF digit received, oldest first.
    pub fn take_dtmf(&mut self) -> Option<Dtmf> {
        let first = self.dtmf[0].take();
        self.dtmf.rotate_left(1);
        first
    }

    fn queue_dtmf(&mut self, d: Dtmf) {
        self.stats.dtmf_in += 1;
        if let Some(slot) = self.dtmf.iter_mut().find(|s| s.is_none()) {
            *slot = Some(d);
        }
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

    /// Whether RTP arrived at all.
    pub fn media_seen(&self) -> bool {
        self.rtp_seen
    }

    /// Time since the last packet (or since the leg was made).
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_rx.unwrap_or(self.created))
    }

    /// Reads what arrived (non-blocking, bounded) into the jitter buffer.
    pub fn receive(&mut self, now: Instant) {
        if let Transport::Relay { .. } = self.transport {
            self.receive_relayed(now);
            return;
        }
        let mut reads = 0;
        while reads < MAX_READS_PER_TICK {
            let Transport::Udp { socket, .. } = &self.transport else {
                break;
            };
            let n = udp::read_batch(socket, &mut self.rx_bufs, &mut self.rx_got);
            for i in 0..n {
                let Received { len, from } = self.rx_got[i];
                // The datagram is parsed from `buf`: trade buffers rather than copy it.
                std::mem::swap(&mut self.buf, &mut self.rx_bufs[i]);
                if let Some(from) = from {
                    self.datagram(now, from, len);
                }
            }
            reads += n;
            if n < RX_BATCH {
                // Fewer than asked for: the queue is empty, no second call needed.
                break;
            }
        }
        for _ in 0..MAX_READS_PER_TICK {
            let Transport::Udp {
                rtcp: Some(socket), ..
            } = &self.transport
            else {
                break;
            };
            let (n, from) = match socket.recv_from(&mut self.buf[..]) {
                Ok(r) => r,
                Err(_) => break,
            };
            if self.rtcp_latched.is_some_and(|l| l != from) && !self.stale(now) {
                self.stats.dropped_foreign_source += 1;
                continue;
            }
            // RTCP is taken from the peer's host only: the latched RTP source's, or before
            // that the signalled one (any, for a peer behind a NAT). A stranger's reports would
            // take the RTCP latch, and keep a dead call alive.
            let host = from.ip().to_canonical();
            let from_peer = match self.latched {
                Some(l) => l.ip().to_canonical() == host,
                None => {
                    let signalled = self.spec.remote.ip().to_canonical();
                    self.spec.latch_any_source
                        || self.timers.latch_any_source
                        || signalled.is_unspecified()
                        || signalled == host
                }
            };
            if !from_peer {
                self.stats.dropped_foreign_source += 1;
                continue;
            }
            if self.rtcp_datagram(now, n, self.latched.is_some()) {
                self.rtcp_latched = Some(from);
            }
        }
    }

    fn receive_relayed(&mut self, now: Instant) {
        for _ in 0..MAX_READS_PER_TICK {
            let Transport::Relay { port, scratch } = &mut self.transport else {
                return;
            };
            match port.receive(scratch) {
                None => break,
                Some(Err(reason)) => {
                    self.closed = Some(reason);
                    break;
                }
                Some(Ok(())) => {}
            }
            let p = &**scratch;
            if p.audio_level.is_some() && p.payload_type == self.spec.payload_type {
                self.stats.client_level = p.audio_level;
            }
            // As plain RTP into the receive buffer: from here on it is any leg's packet.
            let header = Outgoing {
                payload_type: p.payload_type,
                marker: p.marker,
                sequence: p.sequence,
                timestamp: p.timestamp,
                ssrc: p.ssrc,
                csrcs: &[],
                csrc_levels: None,
            };
            match rtp::write(&mut self.buf[..], header, p.payload()) {
                Some(n) => self.datagram(now, RELAY_SOURCE, n),
                None => self.stats.dropped_malformed += 1,
            }
        }
    }

    /// Whether the latched source has been silent long enough for another to take over.
    fn stale(&self, now: Instant) -> bool {
        self.last_rx
            .is_none_or(|t| now.saturating_duration_since(t) >= self.timers.relatch_after)
    }

    /// An RTCP datagram of `len` bytes in `buf`; true if it was accepted. It keeps the leg
    /// alive only when it came `from_peer` (the latched RTP source's host).
    fn rtcp_datagram(&mut self, now: Instant, len: usize, from_peer: bool) -> bool {
        let decrypted;
        let datagram: &[u8] = match &mut self.srtp {
            None => &self.buf[..len],
            Some(srtp) => match srtp.unprotect_rtcp(&self.buf[..len]) {
                Ok(plain) => {
                    decrypted = plain;
                    &decrypted
                }
                Err(_) => {
                    self.stats.dropped_srtp_auth += 1;
                    return false;
                }
            },
        };
        match self.rtcp.on_rtcp(now, datagram) {
            Ok(_) => {
                self.stats.rtcp_in += 1;
                if from_peer {
                    self.last_rx = Some(now);
                }
                true
            }
            Err(_) => {
                self.stats.dropped_malformed += 1;
                false
            }
        }
    }

    fn datagram(&mut self, now: Instant, from: SocketAddr, len: usize) {
        // Canonical: a dual-stack socket sees an IPv4 peer as ::ffff:a.b.c.d.
        let signalled = self.spec.remote.ip().to_canonical();
        if !self.spec.latch_any_source
            && !self.timers.latch_any_source
            && !signalled.is_unspecified()
            && from.ip().to_canonical() != signalled
        {
            self.stats.dropped_foreign_source += 1;
            return;
        }
        let foreign = self.latched.is_some_and(|l| l != from);
        if foreign && !self.stale(now) {
            self.stats.dropped_foreign_source += 1;
            return;
        }
        if rtp::is_rtcp(&self.buf[..len]) {
            // rtcp-mux (or a peer that sends RTCP to the RTP port anyway). Only RTP latches,
            // and only the latched source's RTCP keeps the leg alive.
            if foreign {
                self.stats.dropped_foreign_source += 1;
            } else if self.latched.is_some() {
                self.rtcp_datagram(now, len, true);
            } else {
                self.stats.dropped_rtcp += 1;
            }
            return;
        }
        // A new source for a quiet plain-RTP leg: only the same stream (its SSRC) from a new
        // address takes over. Under SRTP a packet that authenticates may (it has the key).
        if foreign
            && self.srtp.is_none()
            && self.latched_ssrc.is_some()
            && rtp::ssrc_of(&self.buf[..len]) != self.latched_ssrc
        {
            self.stats.dropped_foreign_source += 1;
            return;
        }
        let decrypted;
        let datagram: &[u8] = match &mut self.srtp {
            None => &self.buf[..len],
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
        let telephone_event = self
            .spec
            .telephone_event
            .is_some_and(|t| t.payload_type == packet.payload_type);
        let mut ended = None;
        if packet.payload_type == self.spec.payload_type {
            if let Some(id) = self.spec.audio_level_id
                && let Some((_, level)) = packet.audio_level(id)
            {
                self.stats.client_level = Some(level);
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
                    return;
                }
            }
        } else {
            self.stats.dropped_payload_type += 1;
            return;
        }
        self.rtcp
            .on_rtp(now, packet.ssrc, packet.sequence, packet.timestamp);
        self.latched = Some(from);
        self.latched_ssrc = Some(packet.ssrc);
        self.last_rx = Some(now);
        self.rtp_seen = true;
        self.stats.packets_in += 1;
        self.stats.bytes_in += len as u64;
        if let Some(d) = ended {
            self.queue_dtmf(d);
        }
    }

    /// Per-tick housekeeping: our RTCP report when it is due, and DTMF events whose end
    /// packets never came. Costs two comparisons when there is nothing to do.
    pub fn maintain(&mut self, now: Instant) {
        if let Some(events) = &mut self.telephone_events
            && let Some(d) = events.poll(now)
        {
            self.queue_dtmf(d);
        }
        if !self.rtcp.due(now) || matches!(self.transport, Transport::Relay { .. }) {
            // Relayed legs: str0m writes the RTCP of WebRTC peers.
            return;
        }
        let sent = (self.stats.packets_out > 0).then_some(Sent {
            packets: self.stats.packets_out as u32,
            octets: self.stats.bytes_out as u32,
            rtp_timestamp: self.timestamp,
        });
        let mut report = [0u8; RTCP_BUFFER];
        let Some(len) = self.rtcp.write_report(now, sent, &self.cname, &mut report) else {
            return;
        };
        let (socket, to) = match &self.transport {
            Transport::Udp { rtcp: Some(s), .. } => (
                s,
                self.rtcp_latched
                    .or(self.spec.remote_rtcp)
                    .unwrap_or(self.spec.remote),
            ),
            Transport::Udp { socket, .. } => (socket, self.latched.unwrap_or(self.spec.remote)),
            Transport::Relay { .. } => return,
        };
        let protected;
        let datagram: &[u8] = match &mut self.srtp {
            None => &report[..len],
            Some(srtp) => match srtp.protect_rtcp(&report[..len]) {
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
        match socket.send_to(datagram, to) {
            Ok(_) => self.stats.rtcp_out += 1,
            Err(_) => self.stats.send_errors += 1,
        }
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
                    self.frame_is_zero = true;
                    self.activity = SILENT;
                }
                return;
            }
        } else {
            self.idle_frames = 0;
        }
        // (Digital silence skips the resampler; the speech and digit detectors still see it:
        // pauses are part of what tells speech from a steady sound, and end digits.)
        // A frame known to be zeros is neither written again nor scanned again.
        let zeros = self.decoder.frame(&mut self.frame, self.frame_is_zero);
        self.frame_is_zero = zeros;
        // Speech is judged at the codec's rate: the same audio, a sixth of the samples for a
        // phone.
        let native = self.decoder.native_frame();
        self.activity = if zeros {
            self.speech.process_silence(native)
        } else {
            self.speech.process(native)
        };
        if let Some(detector) = &mut self.inband {
            // The codec's rate to the detector's 8 kHz: the mean of each `step` samples (a
            // boxcar low-pass is enough below 1.7 kHz, and no DTMF energy lies above).
            let step = (native.len() / DTMF_FRAME).max(1);
            let mut narrow = [0i16; DTMF_FRAME];
            for (n, chunk) in narrow.iter_mut().zip(native.chunks_exact(step)) {
                *n = (chunk.iter().map(|&s| i32::from(s)).sum::<i32>() / step as i32) as i16;
            }
            let mut found = None;
            detector.process(&narrow, |e| {
                if let DtmfEvent::Released { digit, duration_ms } = e {
                    found = Some(Dtmf {
                        digit,
                        duration: Duration::from_millis(u64::from(duration_ms)),
                    });
                }
            });
            if let Some(d) = found {
                self.queue_dtmf(d);
            }
        }
    }

    /// Encodes `frame` (at the mix rate) with the leg's own encoder and sends what it yields, naming
    /// the talkers in it (`csrcs`, with their levels in -dBov). Returns the packets encoded.
    pub fn send_own(&mut self, frame: &[i16], csrcs: &[u32], levels: &[u8]) -> u32 {
        self.own.push_frame(frame);
        let mut payload = [0u8; MAX_PACKET];
        let mut encoded = 0;
        while let Some(n) = self.own.pull_packet(&mut payload) {
            encoded += 1;
            let ticks = self.own.packet_ticks();
            self.send_payload(&payload[..n], ticks, csrcs, levels);
        }
        encoded
    }

    /// Sends an already encoded payload (a group's shared packet).
    pub fn send_payload(&mut self, payload: &[u8], ticks: u32, csrcs: &[u32], levels: &[u8]) {
        let header = Outgoing {
            payload_type: self.spec.payload_type,
            marker: false,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            csrcs,
            csrc_levels: self.spec.csrc_audio_level_id.map(|id| (id, levels)),
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(ticks);
        if let Transport::Relay { port, .. } = &self.transport {
            let mut packet = RelayPacket::new(
                header.payload_type,
                header.sequence,
                header.timestamp,
                self.ssrc,
            );
            let n = csrcs.len().min(15);
            packet.csrcs[..n].copy_from_slice(&csrcs[..n]);
            packet.csrc_count = n as u8;
            if packet.set_payload(payload) && port.send(packet) {
                self.stats.packets_out += 1;
                self.stats.bytes_out += (12 + 4 * n + payload.len()) as u64;
            } else {
                self.stats.send_errors += 1;
            }
            return;
        }
        let Some(len) = rtp::write(&mut self.buf[..], header, payload) else {
            self.stats.send_errors += 1;
            return;
        };
        let to = self.latched.unwrap_or(self.spec.remote);
        if to.ip().is_unspecified() || to.port() == 0 {
            // No address yet (an offerless call before its answer, or c=0.0.0.0 hold).
            return;
        }
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
        let Transport::Udp { socket, .. } = &self.transport else {
            return;
        };
        match socket.send_to(datagram, to) {
            Ok(_) => {
                self.stats.packets_out += 1;
                self.stats.bytes_out += datagram.len() as u64;
            }
            Err(_) => self.stats.send_errors += 1,
        }
    }
}

/// A prompt playing to a leg: 48 kHz audio, how far it is, and the resampler to a narrower mix.
struct Prompt {
    audio: Arc<[i16]>,
    at: usize,
    resampler: Option<Resampler>,
}

/// The resampler from prompts' 48 kHz to `mix` (none at 48 kHz; none either if it cannot be
/// made, and then the prompt plays as silence).
fn prompt_resampler(mix: Rate) -> Option<Resampler> {
    if mix == WIDEST_MIX {
        return None;
    }
    Resampler::new(WIDEST_MIX, mix).ok()
}

/// Samples in the in-band DTMF detector's 20 ms (8 kHz).
const DTMF_FRAME: usize = 160;

/// The speech detector of a leg, at its codec's own rate.
fn speech_detector(codec: Codec) -> SpeechDetector {
    SpeechDetector::new(codec.rate().hz(), 20, SpeechSettings::default())
}
