//! Codecs of a leg, between RTP payloads and the frames the mixer works on.
//!
//! A conference mixes at the highest rate among its legs' codecs (8 kHz for a meeting of
//! phones, 48 kHz once an Opus leg is in it). [`LegDecoder`] turns payloads (or losses) into
//! exactly one 20 ms frame at that mix rate per tick; [`LegEncoder`] turns mix-rate frames into
//! payloads of the negotiated packet time. A leg whose codec runs at the mix rate is not
//! resampled at all; the others go through confab-dsp's polyphase resampler, so G.711 legs get
//! properly band-limited audio and a G.722 or Opus leg hears the whole band. Everything is
//! allocated when the leg is made or the mix rate changes (between ticks).

use confab_dsp::g711::Law;
use confab_dsp::opus::{self, OpusDecoder, OpusEncoder, OpusSettings};
use confab_dsp::plc::Concealer;
use confab_dsp::resample::{Rate, Resampler};
use confab_dsp::stretch::TimeStretcher;
use confab_dsp::{Error as DspError, g722};

use crate::media::opus_path::Target;

/// Samples in one 20 ms frame of the widest mix (48 kHz).
pub const MIX_FRAME: usize = 960;
/// The widest mix's sample rate (prompts are kept at it).
pub const MIX_RATE: u32 = 48_000;
/// The widest mix's rate.
pub const WIDEST_MIX: Rate = Rate::Hz48000;

/// A resampler between two rates, none when they are the same.
fn converter(from: Rate, to: Rate) -> Result<Option<Resampler>, DspError> {
    if from == to {
        Ok(None)
    } else {
        Resampler::new(from, to).map(Some)
    }
}

/// The mean of the squared samples.
fn mean_square(frame: &[i16]) -> i64 {
    let sum: i64 = frame.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
    sum / frame.len().max(1) as i64
}

/// Copies `from` into `to` (the same rate, so the same length; a shorter side leaves the rest
/// of `to` silent rather than panicking).
fn copy_frame(from: &[i16], to: &mut [i16]) {
    let n = from.len().min(to.len());
    to[..n].copy_from_slice(&from[..n]);
    to[n..].fill(0);
}
/// The longest Opus frame (60 ms at 48 kHz).
const OPUS_MAX_FRAME: usize = 2880;
/// Frames an Opus leg must have been quiet (as decoded) before its voice-inactive packets are
/// no longer decoded: half a second, longer than the pauses within speech.
const QUIET_BEFORE_SKIP: u32 = 25;
/// Mean square at or below which a decoded frame is quiet: -60 dBov RMS, below a quiet room
/// through a microphone and far below the mix's non-speech gate.
const QUIET_MEAN_SQUARE: i64 = 1074;
/// While skipping, one packet in this many is decoded anyway, so a leg
/// whose sound the encoder's detector takes for background (a steady tone, music) is heard
/// again within this many packets.
const PROBE_EVERY: u32 = 25;

/// The audio codecs Confab speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
    G722,
    Opus,
}

impl Codec {
    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::Opus => "opus",
        }
    }

    /// Static payload type (RFC 3551), or the customary dynamic one for Opus.
    pub fn default_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::G722 => 9,
            Codec::Opus => 111,
        }
    }

    /// A codec by its SDP encoding name (any case).
    pub fn from_name(name: &str) -> Option<Codec> {
        [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus]
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// RTP timestamp clock rate (G.722's is 8000 although it samples at 16 kHz).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::G722 => g722::RTP_CLOCK_RATE,
            Codec::Opus => 48_000,
        }
    }

    /// The audio sample rate.
    pub fn rate(self) -> Rate {
        match self {
            Codec::Pcmu | Codec::Pcma => Rate::Hz8000,
            Codec::G722 => Rate::Hz16000,
            Codec::Opus => Rate::Hz48000,
        }
    }

    /// RTP timestamp units per audio sample, as (numerator, denominator).
    fn ticks_per_sample(self) -> (u32, u32) {
        match self {
            Codec::G722 => (1, 2),
            _ => (1, 1),
        }
    }

    /// RTP timestamp units in `ms` milliseconds.
    pub fn ticks(self, ms: u32) -> u32 {
        self.clock_rate() / 1000 * ms
    }
}

/// A sample FIFO of fixed capacity.
#[derive(Debug)]
struct Fifo {
    buf: Vec<i16>,
    len: usize,
}

impl Fifo {
    fn new(capacity: usize) -> Self {
        Fifo {
            buf: vec![0; capacity],
            len: 0,
        }
    }

    fn free(&mut self) -> &mut [i16] {
        &mut self.buf[self.len..]
    }

    fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
    }

    fn take(&mut self, out: &mut [i16]) -> bool {
        if self.len < out.len() {
            return false;
        }
        out.copy_from_slice(&self.buf[..out.len()]);
        self.buf.copy_within(out.len()..self.len, 0);
        self.len -= out.len();
        true
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "one per leg, made once; G.722 state inline keeps it in cache"
)]
enum DecoderKind {
    G711(Law),
    G722(g722::Decoder),
    Opus(OpusDecoder),
}

/// Payloads in, one mix-rate frame per tick out.
pub struct LegDecoder {
    codec: Codec,
    kind: DecoderKind,
    concealer: Concealer,
    /// Shortens or lengthens what `native` holds by a pitch period (playout drift).
    stretcher: TimeStretcher,
    resampler: Option<Resampler>,
    native: Fifo,
    frame: Vec<i16>,
    last_packet_samples: usize,
    /// Frames of digital silence in a row (a muted phone, a generator's listener).
    zero_run: u32,
    /// Quiet frames in a row (Opus), as decoded.
    quiet_run: u32,
    /// Voice-inactive Opus packets in a row taken as silence without decoding (a probe
    /// decoded among them does not end the run).
    skipped_run: u32,
    /// Packets taken as silence without decoding, in all.
    skipped: u64,
    /// The last packet was not decoded: a loss now is concealed as silence, without FEC.
    behind: bool,
}

impl std::fmt::Debug for LegDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegDecoder")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

/// What came out of decoding one payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Samples added at the codec's rate.
    Samples(usize),
    /// The payload was malformed; it was concealed instead.
    Malformed,
}

impl LegDecoder {
    /// A decoder whose frames come at `mix`, the conference's mix rate.
    pub fn new(codec: Codec, mix: Rate) -> Result<Self, DspError> {
        let kind = match codec {
            Codec::Pcmu => DecoderKind::G711(Law::Ulaw),
            Codec::Pcma => DecoderKind::G711(Law::Alaw),
            Codec::G722 => DecoderKind::G722(g722::Decoder::new(g722::Mode::Kbps64)),
            Codec::Opus => DecoderKind::Opus(OpusDecoder::new()?),
        };
        let rate = codec.rate();
        let resampler = converter(rate, mix)?;
        Ok(LegDecoder {
            codec,
            kind,
            concealer: Concealer::new(rate.hz()),
            stretcher: TimeStretcher::new(rate.hz())?,
            resampler,
            // 120 ms of Opus on top of the 30 ms a stretch needs, and the 15 ms it may add.
            native: Fifo::new(rate.samples(170)),
            frame: vec![0; rate.samples(20)],
            last_packet_samples: rate.samples(20),
            zero_run: 0,
            quiet_run: 0,
            skipped_run: 0,
            skipped: 0,
            behind: false,
        })
    }

    /// Voice-inactive Opus packets taken as silence without decoding them (a muted or silent
    /// WebRTC participant costs no decode).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Frames come at `mix` from now on; what is buffered at the codec's rate stays. Allocates.
    pub fn set_mix_rate(&mut self, mix: Rate) -> Result<(), DspError> {
        self.resampler = converter(self.codec.rate(), mix)?;
        // The new resampler's history is zeros: the skip after digital silence stays exact
        // only after two more silent frames.
        self.zero_run = 0;
        Ok(())
    }

    /// Whether a 20 ms frame is ready at the codec's rate.
    pub fn has_frame(&self) -> bool {
        self.native.len >= self.frame.len()
    }

    /// Audio decoded and not played yet, in RTP timestamp units.
    pub fn held_ticks(&self) -> u64 {
        let (ticks, samples) = self.codec.ticks_per_sample();
        self.native.len as u64 * u64::from(ticks) / u64::from(samples)
    }

    /// Whether enough is decoded (30 ms) to shorten or lengthen it by a pitch period.
    pub fn can_stretch(&self) -> bool {
        self.native.len >= self.stretcher.min_input()
    }

    /// Shortens what is decoded by a pitch period, where the audio is periodic enough (or
    /// quiet enough) for the cut not to be heard; true when it did.
    pub fn accelerate(&mut self) -> bool {
        let before = self.native.len;
        self.native.len = self.stretcher.accelerate(&mut self.native.buf, before);
        self.native.len < before
    }

    /// Lengthens what is decoded by a pitch period, as [`LegDecoder::accelerate`] shortens.
    pub fn expand(&mut self) -> bool {
        let before = self.native.len;
        self.native.len = self.stretcher.expand(&mut self.native.buf, before);
        self.native.len > before
    }

    /// Decodes one payload into the FIFO. An Opus leg that has been quiet for a while (muted,
    /// listening) and whose packets its encoder marks voice-inactive is not decoded: its
    /// packets are taken as digital silence, but for one in `PROBE_EVERY`, and the first one
    /// with voice is decoded again.
    pub fn decode(&mut self, payload: &[u8]) -> Decoded {
        if let DecoderKind::Opus(_) = &self.kind {
            let probe = self.skipped_run % PROBE_EVERY == PROBE_EVERY - 1;
            if self.quiet_run >= QUIET_BEFORE_SKIP
                && !probe
                && let Some(n) = opus::voice_inactive(payload)
                && let Some(free) = self.native.free().get_mut(..n)
            {
                free.fill(0);
                // What a loss is concealed from: this silence, not older audio.
                self.concealer.good(free);
                self.native.commit(n);
                self.last_packet_samples = n;
                self.skipped_run += 1;
                self.skipped += 1;
                self.behind = true;
                return Decoded::Samples(n);
            }
            // The decoder did not see the packets skipped; its history is of the quiet packets
            // before them, as close to what they would have left as a reset, and a reset is
            // dear (libopus probes the CPU again: a trap to the hypervisor in a VM).
            self.behind = false;
            self.skipped_run = if probe { self.skipped_run + 1 } else { 0 };
        }
        let free = self.native.free();
        let result = match &mut self.kind {
            DecoderKind::G711(law) => Ok(law.decode(payload, free)),
            DecoderKind::G722(d) => Ok(d.decode(payload, free)),
            DecoderKind::Opus(d) => d.decode(payload, free),
        };
        match result {
            Ok(n) if n > 0 => {
                let start = self.native.len;
                self.native.commit(n);
                self.concealer.good(&mut self.native.buf[start..start + n]);
                self.last_packet_samples = n;
                Decoded::Samples(n)
            }
            _ => {
                self.conceal();
                Decoded::Malformed
            }
        }
    }

    /// Conceals one lost packet (of the last packet's length).
    pub fn conceal(&mut self) {
        let n = self
            .last_packet_samples
            .min(self.native.buf.len() - self.native.len);
        let start = self.native.len;
        let out = &mut self.native.buf[start..start + n];
        let made = match &mut self.kind {
            DecoderKind::Opus(_) if self.behind => {
                // A loss among packets not decoded: more of the same silence.
                out.fill(0);
                n
            }
            DecoderKind::Opus(d) => {
                // libopus still runs its own concealment so that its state follows the loss;
                // what is heard is the pitch repetition, which holds a steady sound's energy
                // where CELT's concealment fades it.
                let mut scratch = [0i16; OPUS_MAX_FRAME];
                let made = d
                    .conceal(&mut scratch[..n.min(OPUS_MAX_FRAME)])
                    .unwrap_or(0);
                self.concealer.conceal(&mut out[..made]);
                made
            }
            _ => {
                self.concealer.conceal(out);
                n
            }
        };
        self.native.commit(made);
    }

    /// Rebuilds a lost packet from the FEC data of the packet after it (Opus), else conceals.
    pub fn recover(&mut self, next_payload: &[u8]) {
        // Only SILK and hybrid packets (TOC configurations 0-15) can carry in-band FEC.
        let may_carry_fec = next_payload.first().is_some_and(|toc| toc >> 3 < 16);
        if may_carry_fec
            && !self.behind
            && let DecoderKind::Opus(d) = &mut self.kind
        {
            let start = self.native.len;
            let n = self.last_packet_samples.min(self.native.buf.len() - start);
            if let Ok(made) = d.recover(next_payload, &mut self.native.buf[start..start + n]) {
                self.native.commit(made);
                return;
            }
        }
        self.conceal();
    }

    /// The 20 ms frame the last [`LegDecoder::frame`] took, at the codec's own rate (what the
    /// leg's speech detector looks at: a phone's 160 samples rather than their 960 at 48 kHz).
    pub fn native_frame(&self) -> &[i16] {
        &self.frame
    }

    /// Takes the next 20 ms and writes it at the mix rate into `out`; silence when
    /// nothing is buffered. Returns true when the frame is digital silence after at least one
    /// more such frame: then the resampler's history is all zeros too, so skipping it changes
    /// nothing, and the caller may skip its own analysis of the frame.
    /// `out_is_zero`: the caller knows `out` holds zeros already (its last frame was digital
    /// silence), so digital silence writes nothing at all.
    pub fn frame(&mut self, out: &mut [i16], out_is_zero: bool) -> bool {
        if !self.native.take(&mut self.frame) {
            self.frame.fill(0);
        }
        if self.frame.iter().all(|&s| s == 0) {
            self.zero_run = self.zero_run.saturating_add(1);
        } else {
            self.zero_run = 0;
        }
        if matches!(self.kind, DecoderKind::Opus(_)) {
            let quiet = self.zero_run > 0 || mean_square(&self.frame) <= QUIET_MEAN_SQUARE;
            self.quiet_run = if quiet {
                self.quiet_run.saturating_add(1)
            } else {
                0
            };
        }
        if self.zero_run >= 2 {
            if !out_is_zero {
                out.fill(0);
            }
            return true;
        }
        match &mut self.resampler {
            None => copy_frame(&self.frame, out),
            Some(r) => {
                if r.process(&self.frame, out).is_err() {
                    out.fill(0);
                }
            }
        }
        false
    }
}

#[allow(clippy::large_enum_variant, reason = "one per leg or group, made once")]
enum EncoderKind {
    G711(Law),
    G722(g722::Encoder),
    Opus(Box<OpusEncoder>),
}

/// Mix-rate frames in, payloads of the leg's packet time out.
pub struct LegEncoder {
    codec: Codec,
    kind: EncoderKind,
    resampler: Option<Resampler>,
    native: Fifo,
    packet: Vec<i16>,
    ptime_ms: u32,
}

impl std::fmt::Debug for LegEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegEncoder")
            .field("codec", &self.codec)
            .field("ptime_ms", &self.ptime_ms)
            .finish()
    }
}

impl LegEncoder {
    /// An encoder with packet time `ptime_ms` (10 to 60 ms in steps of 10; Opus: 10, 20, 40, 60)
    /// for frames at `mix`, the conference's mix rate.
    pub fn new(
        codec: Codec,
        ptime_ms: u32,
        opus: OpusSettings,
        mix: Rate,
    ) -> Result<Self, DspError> {
        let valid = match codec {
            Codec::Opus => matches!(ptime_ms, 10 | 20 | 40 | 60),
            _ => ptime_ms.is_multiple_of(10) && (10..=60).contains(&ptime_ms),
        };
        if !valid {
            return Err(DspError::InvalidSetting("unsupported packet time"));
        }
        let kind = match codec {
            Codec::Pcmu => EncoderKind::G711(Law::Ulaw),
            Codec::Pcma => EncoderKind::G711(Law::Alaw),
            Codec::G722 => EncoderKind::G722(g722::Encoder::new()),
            Codec::Opus => EncoderKind::Opus(Box::new(OpusEncoder::new(opus)?)),
        };
        let rate = codec.rate();
        let resampler = converter(mix, rate)?;
        Ok(LegEncoder {
            codec,
            kind,
            resampler,
            native: Fifo::new(rate.samples(80)),
            packet: vec![0; rate.samples(ptime_ms)],
            ptime_ms,
        })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn ptime_ms(&self) -> u32 {
        self.ptime_ms
    }

    /// Frames come at `mix` from now on; what is buffered at the codec's rate stays. Allocates.
    pub fn set_mix_rate(&mut self, mix: Rate) -> Result<(), DspError> {
        self.resampler = converter(mix, self.codec.rate())?;
        Ok(())
    }

    /// RTP timestamp units per packet.
    pub fn packet_ticks(&self) -> u32 {
        let (num, den) = self.codec.ticks_per_sample();
        self.packet.len() as u32 * num / den
    }

    /// Drops audio pushed but not yet encoded (part of a 40 or 60 ms packet): a shared
    /// encode nobody listens to this tick must not keep it for whoever listens next.
    pub fn discard_partial(&mut self) {
        self.native.len = 0;
    }

    /// Adds one 20 ms frame at the mix rate.
    pub fn push_frame(&mut self, frame: &[i16]) {
        let rate_frame = self.codec.rate().samples(20);
        let free = self.native.free();
        if free.len() < rate_frame {
            return;
        }
        match &mut self.resampler {
            None => copy_frame(frame, &mut free[..rate_frame]),
            Some(r) => {
                if r.process(frame, &mut free[..rate_frame]).is_err() {
                    free[..rate_frame].fill(0);
                }
            }
        }
        self.native.commit(rate_frame);
    }

    /// An Opus encoder's settings now (`None` for the other codecs).
    pub fn opus_settings(&self) -> Option<OpusSettings> {
        match &self.kind {
            EncoderKind::Opus(e) => Some(e.settings()),
            _ => None,
        }
    }

    /// Sets an Opus encoder to `target` (FEC, loss hint, bitrate, DTX); the other codecs
    /// have nothing to set. Allocates nothing; a setting unchanged costs no call to libopus.
    pub fn adapt(&mut self, target: &Target) -> Result<(), DspError> {
        let EncoderKind::Opus(e) = &mut self.kind else {
            return Ok(());
        };
        e.set_inband_fec(target.fec)?;
        e.set_expected_loss(target.loss_percent)?;
        e.set_bitrate(target.bitrate)?;
        e.set_dtx(target.dtx)
    }

    /// Encodes the next packet into `out` if a packet time's worth is buffered; returns its
    /// length.
    pub fn pull_packet(&mut self, out: &mut [u8]) -> Option<usize> {
        if !self.native.take(&mut self.packet) {
            return None;
        }
        match &mut self.kind {
            EncoderKind::G711(law) => Some(law.encode(&self.packet, out)),
            EncoderKind::G722(e) => Some(e.encode(&self.packet, out)),
            EncoderKind::Opus(e) => e.encode(&self.packet, out).ok(),
        }
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
