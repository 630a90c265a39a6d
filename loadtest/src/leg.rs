//! One simulated participant: a UDP socket that sends encoded audio as RTP every 20 ms (when it
//! talks) and reads, decodes and checks what the bridge sends back.
//!
//! What it checks: packets received against the 50 a second a listener should get, sequence
//! gaps, and the arrival of marker clicks (a loud 20 ms burst one talker per room sends every
//! second at a recorded time): the bridge-added latency is the click's arrival in the decoded
//! audio minus its send time.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use confab::media::srtp::{KeyMaterial, SrtpKeys, SrtpSession, SrtpSuite};
use confab_dsp::g711::Law;
use confab_dsp::opus::{OpusDecoder, OpusEncoder, OpusSettings};
use confab_dsp::resample::{Rate, Resampler};

/// Codecs the generator speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Pcmu,
    G722,
    Opus,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::G722 => 9,
            Codec::Opus => 111,
        }
    }

    /// Samples per second of the audio (G.722 is 16 kHz with an 8 kHz RTP clock).
    pub fn rate(self) -> u32 {
        match self {
            Codec::Pcmu => 8000,
            Codec::G722 => 16000,
            Codec::Opus => 48000,
        }
    }

    /// RTP timestamp ticks per 20 ms.
    pub fn ticks(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::G722 => 160,
            Codec::Opus => 960,
        }
    }

    pub fn rtpmap(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU/8000",
            Codec::G722 => "G722/8000",
            Codec::Opus => "opus/48000/2",
        }
    }
}

/// What a participant sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Voice {
    /// Nothing (a listener).
    Silent,
    /// A steady tone at this frequency (Hz), -20 dBov.
    Tone(f32),
    /// A speech-like signal: a voiced buzz with a syllable envelope, in talk spurts of 1-3 s
    /// with pauses (deterministic per seed).
    Speech(u32),
    /// Recorded speech (10 s of English, looped), for the quality room's PESQ.
    Recorded,
}

/// The speech test file of confab-dsp: 10 s at 16 kHz, s16le (see dsp/tests/data/README.md).
const SPEECH_16K: &[u8] = include_bytes!("../../dsp/tests/data/speech-16k.s16");

/// The recorded speech at `rate` (8, 16 or 48 kHz).
pub fn recorded_speech(rate: u32) -> Vec<i16> {
    let wide: Vec<i16> = SPEECH_16K
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    match rate {
        8000 => resample(&wide, Rate::Hz16000, Rate::Hz8000),
        48000 => resample(&wide, Rate::Hz16000, Rate::Hz48000),
        _ => wide,
    }
}

/// `audio` from `from` to `to`, whole 10 ms chunks (a partial last chunk is dropped); empty
/// if the rates cannot be converted.
pub fn resample(audio: &[i16], from: Rate, to: Rate) -> Vec<i16> {
    let Ok(mut r) = Resampler::new(from, to) else {
        return Vec::new();
    };
    let chunk = from.samples(10);
    let whole = &audio[..audio.len() / chunk * chunk];
    let mut out = vec![0i16; whole.len() / chunk * to.samples(10)];
    match r.process(whole, &mut out) {
        Ok(n) => {
            out.truncate(n);
            out
        }
        Err(_) => Vec::new(),
    }
}

/// Audio a leg keeps while the run is measured: what the quality room's talker sent, or what
/// its listener decoded (at the codec's rate).
pub type Recording = Arc<std::sync::Mutex<Vec<i16>>>;

/// Per-room click bookkeeping, shared by the room's legs.
#[derive(Debug, Default)]
pub struct Clicks {
    /// Nanoseconds since the run's epoch when the last click was sent (0: none yet).
    pub sent_at: AtomicU64,
}

/// Peak above which decoded audio counts as the click (the mix of -20 dBov tones stays well
/// below it).
const CLICK_PEAK: i16 = 16_000;

enum Encoder {
    G711,
    G722(Box<confab_dsp::g722::Encoder>),
    Opus(Box<OpusEncoder>),
}

enum Decoder {
    G711,
    G722(Box<confab_dsp::g722::Decoder>),
    Opus(Box<OpusDecoder>),
    /// Counted, not decoded (a generator with thousands of Opus listeners decodes a sample).
    None,
}

/// Counters of one leg.
#[derive(Clone, Copy, Debug, Default)]
pub struct LegCounts {
    pub received: u64,
    pub gaps: u64,
    pub sent: u64,
}

pub struct SimLeg {
    /// Shared with other legs (see `Sockets`): the bridge tells legs apart by its own port, we
    /// by the address a packet comes from, which is where the leg sends (symmetric RTP).
    pub socket: Arc<UdpSocket>,
    pub bridge: SocketAddr,
    pub codec: Codec,
    pub payload_type: u8,
    voice: Voice,
    clicker: bool,
    clicks: Arc<Clicks>,
    encoder: Encoder,
    decoder: Decoder,
    ssrc: u32,
    seq: u16,
    ts: u32,
    phase: f64,
    frame_index: u64,
    last_seq: Option<u16>,
    last_click_seen: Option<u64>,
    pub counts: LegCounts,
    /// Counting only after the warm-up.
    pub measuring: bool,
    pcm: Vec<i16>,
    out: Vec<i16>,
    packet: Vec<u8>,
    /// A listener's silent payload, encoded once.
    silence: Vec<u8>,
    /// The recorded speech `Voice::Recorded` plays, and where it is.
    speech: Vec<i16>,
    speech_at: usize,
    /// Where this leg's audio goes while measuring (the quality room's two legs).
    pub recording: Option<Recording>,
    /// SDES-SRTP: the key this leg offers (it encrypts with it) and, once answered, the session.
    pub srtp_key: Option<KeyMaterial>,
    srtp: Option<SrtpSession>,
}

/// The run's time base for clicks.
pub fn nanos_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

impl SimLeg {
    /// A leg on `socket`; `bridge` is set once signalling says where to send.
    pub fn new(
        codec: Codec,
        voice: Voice,
        clicker: bool,
        clicks: Arc<Clicks>,
        decode: bool,
        ssrc: u32,
        socket: Arc<UdpSocket>,
    ) -> anyhow::Result<Self> {
        let encoder = match codec {
            Codec::Pcmu => Encoder::G711,
            Codec::G722 => Encoder::G722(Box::new(confab_dsp::g722::Encoder::new())),
            Codec::Opus => Encoder::Opus(Box::new(
                OpusEncoder::new(OpusSettings {
                    complexity: 4,
                    ..OpusSettings::default()
                })
                .map_err(|e| anyhow::anyhow!("opus: {e}"))?,
            )),
        };
        let decoder = match (codec, decode) {
            (_, false) => Decoder::None,
            (Codec::Pcmu, true) => Decoder::G711,
            (Codec::G722, true) => Decoder::G722(Box::new(confab_dsp::g722::Decoder::new(
                confab_dsp::g722::Mode::Kbps64,
            ))),
            (Codec::Opus, true) => Decoder::Opus(Box::new(
                OpusDecoder::new().map_err(|e| anyhow::anyhow!("opus: {e}"))?,
            )),
        };
        Ok(SimLeg {
            socket,
            bridge: SocketAddr::from(([127, 0, 0, 1], 9)),
            codec,
            payload_type: codec.payload_type(),
            voice,
            clicker,
            clicks,
            encoder,
            decoder,
            ssrc,
            seq: (ssrc >> 8) as u16,
            ts: ssrc.rotate_left(7),
            phase: 0.0,
            frame_index: 0,
            last_seq: None,
            last_click_seen: None,
            counts: LegCounts::default(),
            measuring: false,
            pcm: vec![0; 960],
            out: vec![0; 5760],
            packet: vec![0; 1500],
            silence: Vec::new(),
            speech: if voice == Voice::Recorded {
                recorded_speech(codec.rate())
            } else {
                Vec::new()
            },
            speech_at: 0,
            recording: None,
            srtp_key: None,
            srtp: None,
        })
    }

    /// Offers SDES-SRTP with a fresh key (a load generator's key: random, not secret).
    pub fn offer_srtp(&mut self) {
        let mut key = [0u8; 30];
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            let mut h = RandomState::new().build_hasher();
            h.write_usize(i);
            h.write_u32(self.ssrc);
            let bytes = h.finish().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        self.srtp_key = Some(key);
    }

    /// The bridge answered with its key: packets are protected from now on.
    pub fn secure(&mut self, bridge_key: KeyMaterial) -> anyhow::Result<()> {
        let local = self
            .srtp_key
            .ok_or_else(|| anyhow::anyhow!("SRTP answered but not offered"))?;
        let keys = SrtpKeys {
            suite: SrtpSuite::AesCm128HmacSha1_80,
            local,
            remote: bridge_key,
        };
        self.srtp = Some(SrtpSession::new(&keys).map_err(|e| anyhow::anyhow!("{e}"))?);
        Ok(())
    }

    /// The SSRC this leg sends with (unique in a run: the generator's handle on the leg).
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn local(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn talks(&self) -> bool {
        self.voice != Voice::Silent
    }

    /// The next 20 ms of this leg's voice at the codec's rate into `self.pcm`.
    fn voice_frame(&mut self, epoch: Instant) -> usize {
        let rate = self.codec.rate() as f64;
        let n = (self.codec.rate() / 50) as usize;
        self.frame_index += 1;
        // A click every 50 frames from the room's clicker.
        if self.clicker && self.frame_index.is_multiple_of(50) {
            for (i, s) in self.pcm[..n].iter_mut().enumerate() {
                let t = i as f64 / rate;
                *s = ((2.0 * std::f64::consts::PI * 1000.0 * t).sin() * 30_000.0) as i16;
            }
            self.clicks
                .sent_at
                .store(nanos_since(epoch).max(1), Ordering::Relaxed);
            return n;
        }
        match self.voice {
            Voice::Silent => self.pcm[..n].fill(0),
            Voice::Tone(f) => {
                let step = 2.0 * std::f64::consts::PI * f64::from(f) / rate;
                for s in &mut self.pcm[..n] {
                    *s = (self.phase.sin() * 3277.0) as i16;
                    self.phase = (self.phase + step) % (2.0 * std::f64::consts::PI);
                }
            }
            Voice::Recorded => {
                for s in &mut self.pcm[..n] {
                    *s = self.speech.get(self.speech_at).copied().unwrap_or(0);
                    self.speech_at = (self.speech_at + 1) % self.speech.len().max(1);
                }
            }
            Voice::Speech(seed) => {
                // Talk spurts: 2 s on, 1 s off, shifted per seed so rooms do not align.
                let t = (self.frame_index + u64::from(seed) * 17) % 150;
                let on = t < 100;
                let f0 = 110.0 + f64::from(seed % 7) * 15.0;
                for (i, s) in self.pcm[..n].iter_mut().enumerate() {
                    if !on {
                        *s = 0;
                        continue;
                    }
                    let tt = (self.frame_index as f64 * 0.02) + i as f64 / rate;
                    // Syllables at ~4 Hz, a few harmonics of the voice's pitch.
                    let env = (0.5 - 0.5 * (2.0 * std::f64::consts::PI * 4.0 * tt).cos()).powi(2);
                    let v: f64 = (1..6)
                        .map(|h| (2.0 * std::f64::consts::PI * f0 * h as f64 * tt).sin() / h as f64)
                        .sum();
                    *s = (v * env * 4000.0) as i16;
                }
            }
        }
        n
    }

    /// Encodes and sends this tick's packet. Listeners send silence, as phones do (a bridge
    /// counts a participant as connected once its media flows); their silent payload is
    /// encoded once and repeated, so thousands of listeners cost the generator little.
    /// Makes this tick's packet; returns its length (0: nothing to send). The packet is
    /// [`SimLeg::packet`], sent by the leg's socket group with those of the other legs.
    pub fn prepare(&mut self, epoch: Instant) -> usize {
        let payload_len = if self.talks() {
            self.encode_voice(epoch)
        } else {
            if self.silence.is_empty() {
                for _ in 0..3 {
                    let n = self.voice_frame(epoch);
                    self.pcm[..n].fill(0);
                    let len = self.encode_pcm(n);
                    self.silence = self.packet[12..12 + len].to_vec();
                }
            }
            let len = self.silence.len();
            self.packet[12..12 + len].copy_from_slice(&self.silence);
            len
        };
        let len = self.header(payload_len);
        let Some(srtp) = &mut self.srtp else {
            return len;
        };
        if len == 0 {
            return 0;
        }
        match srtp.protect_rtp(&self.packet[..len]) {
            Ok(protected) if protected.len() <= self.packet.len() => {
                self.packet[..protected.len()].copy_from_slice(&protected);
                protected.len()
            }
            _ => 0,
        }
    }

    /// The packet `prepare` made, `len` bytes.
    pub fn packet(&self, len: usize) -> &[u8] {
        &self.packet[..len.min(self.packet.len())]
    }

    fn encode_voice(&mut self, epoch: Instant) -> usize {
        let n = self.voice_frame(epoch);
        if self.measuring
            && let Some(r) = &self.recording
            && let Ok(mut r) = r.lock()
        {
            r.extend_from_slice(&self.pcm[..n]);
        }
        self.encode_pcm(n)
    }

    fn encode_pcm(&mut self, n: usize) -> usize {
        match &mut self.encoder {
            Encoder::G711 => Law::Ulaw.encode(&self.pcm[..n], &mut self.packet[12..]),
            Encoder::G722(e) => e.encode(&self.pcm[..n], &mut self.packet[12..]),
            Encoder::Opus(e) => {
                // Opus is fed 48 kHz: our pcm is at 48 kHz already.
                e.encode(&self.pcm[..n], &mut self.packet[12..])
                    .unwrap_or(0)
            }
        }
    }

    /// Writes the RTP header before `payload_len` bytes of payload; the packet's length.
    fn header(&mut self, payload_len: usize) -> usize {
        if payload_len == 0 {
            return 0;
        }
        let h = &mut self.packet[..12];
        h[0] = 0x80;
        h[1] = self.payload_type & 0x7F;
        h[2..4].copy_from_slice(&self.seq.to_be_bytes());
        h[4..8].copy_from_slice(&self.ts.to_be_bytes());
        h[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.codec.ticks());
        12 + payload_len
    }

    /// Takes one datagram from the bridge; click latencies seen (ns) go into `latencies`.
    pub fn on_packet(&mut self, buf: &[u8], epoch: Instant, latencies: &mut Vec<u64>) {
        let n = buf.len();
        if n < 12 || buf[0] >> 6 != 2 {
            return;
        }
        let pt = buf[1] & 0x7F;
        if (72..=76).contains(&(buf[1] & 0x7F)) || pt != self.payload_type {
            return; // RTCP, telephone-event, comfort noise
        }
        let plain;
        let buf = match &mut self.srtp {
            None => buf,
            Some(srtp) => match srtp.unprotect_rtp(buf) {
                Ok(p) => {
                    plain = p;
                    &plain[..]
                }
                // Not authentic: not received either, which the receive ratio shows.
                Err(_) => return,
            },
        };
        let n = buf.len();
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let csrcs = usize::from(buf[0] & 0x0F);
        let mut start = 12 + 4 * csrcs;
        if buf[0] & 0x10 != 0 && n >= start + 4 {
            let words = usize::from(u16::from_be_bytes([buf[start + 2], buf[start + 3]]));
            start += 4 + 4 * words;
        }
        if start > n {
            return;
        }
        if self.measuring {
            self.counts.received += 1;
            if let Some(last) = self.last_seq
                && seq.wrapping_sub(last) > 1
                && seq.wrapping_sub(last) < 1000
            {
                self.counts.gaps += u64::from(seq.wrapping_sub(last) - 1);
            }
        }
        self.last_seq = Some(seq);
        let payload = &buf[start..n];
        let samples = match &mut self.decoder {
            Decoder::None => return,
            Decoder::G711 => Law::Ulaw.decode(payload, &mut self.out),
            Decoder::G722(d) => d.decode(payload, &mut self.out),
            Decoder::Opus(d) => d.decode(payload, &mut self.out).unwrap_or(0),
        };
        if self.measuring
            && let Some(r) = &self.recording
            && let Ok(mut r) = r.lock()
        {
            r.extend_from_slice(&self.out[..samples]);
        }
        let peak = self.out[..samples]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0);
        if !self.clicker && peak >= CLICK_PEAK as u16 {
            let sent = self.clicks.sent_at.load(Ordering::Relaxed);
            if sent > 0 && self.last_click_seen != Some(sent) {
                self.last_click_seen = Some(sent);
                let now = nanos_since(epoch);
                // Only a click of the last second counts (a late duplicate does not).
                if now > sent && now - sent < 1_000_000_000 && self.measuring {
                    latencies.push(now - sent);
                }
            }
        }
    }
}

/// Sockets handed out to legs (on loopback unless `bound`), a new one every `per_socket` legs: the generator's
/// system calls grow with sockets, not legs (a socket per leg polled every 5 ms cost the
/// generator as much CPU as the bridge it measures).
pub struct Sockets {
    per_socket: usize,
    bind: std::net::IpAddr,
    current: Option<Arc<UdpSocket>>,
    handed: usize,
}

impl Sockets {
    pub fn new(per_socket: usize) -> Self {
        Sockets {
            per_socket: per_socket.max(1),
            bind: std::net::Ipv4Addr::LOCALHOST.into(),
            current: None,
            handed: 0,
        }
    }

    /// Sockets bound to `ip` (the generator's address towards a bridge on another host).
    pub fn bound(mut self, ip: std::net::IpAddr) -> Self {
        self.bind = ip;
        self
    }

    /// The socket for the next leg.
    pub fn take(&mut self) -> anyhow::Result<Arc<UdpSocket>> {
        if let Some(s) = &self.current
            && self.handed < self.per_socket
        {
            self.handed += 1;
            return Ok(s.clone());
        }
        let socket = UdpSocket::bind(SocketAddr::new(self.bind, 0))?;
        socket.set_nonblocking(true)?;
        let socket = Arc::new(socket);
        self.current = Some(socket.clone());
        self.handed = 1;
        Ok(socket)
    }
}
