//! Opus (RFC 6716) through libopus: 48 kHz mono, VoIP application.
//!
//! Stereo packets from clients are downmixed by the mono decoder. Loss is handled in two ways:
//! [`OpusDecoder::recover`] rebuilds a lost frame from the in-band FEC (LBRR) data carried in the
//! packet that followed it, and [`OpusDecoder::conceal`] runs libopus' PLC when nothing is there.
//! DTX packets (one or two bytes during silence) decode like any other packet, to comfort noise.

use crate::Error;

/// Sample rate of Opus inside Confab.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame at 48 kHz.
pub const FRAME_20MS: usize = 960;
/// Largest frame libopus will hand back (120 ms at 48 kHz).
pub const MAX_FRAME: usize = 5760;
/// A buffer this large holds any Opus packet we produce.
pub const MAX_PACKET: usize = 1275;

/// Encoder settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpusSettings {
    /// Computational complexity, 0 (cheapest) to 10 (best).
    pub complexity: u8,
    /// Target bitrate in bits per second (6000..=510000).
    pub bitrate: u32,
    /// Carry in-band FEC (LBRR) for the previous frame.
    pub inband_fec: bool,
    /// The loss rate (percent) FEC is tuned for.
    pub expected_loss_percent: u8,
    /// Discontinuous transmission during silence.
    pub dtx: bool,
}

impl Default for OpusSettings {
    /// No FEC and no loss hint: both cost quality on a clean path, so they are switched on by
    /// what the receiver reports of its path ([`OpusEncoder::set_inband_fec`],
    /// [`OpusEncoder::set_expected_loss`]).
    fn default() -> Self {
        OpusSettings {
            complexity: 5,
            bitrate: 32_000,
            inband_fec: false,
            expected_loss_percent: 0,
            dtx: false,
        }
    }
}

/// Lowest and highest bitrate libopus takes (bits per second).
pub const BITRATE_RANGE: std::ops::RangeInclusive<u32> = 6_000..=510_000;

/// A 48 kHz mono Opus encoder.
pub struct OpusEncoder {
    inner: opus::Encoder,
    /// What the encoder is set to now (a setter that changes nothing costs no call).
    settings: OpusSettings,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// Creates an encoder with `settings`; out-of-range settings are an error.
    pub fn new(settings: OpusSettings) -> Result<Self, Error> {
        if settings.complexity > 10 {
            return Err(Error::InvalidSetting("opus complexity must be 0..=10"));
        }
        if !BITRATE_RANGE.contains(&settings.bitrate) {
            return Err(Error::InvalidSetting("opus bitrate must be 6000..=510000"));
        }
        if settings.expected_loss_percent > 100 {
            return Err(Error::InvalidSetting(
                "opus expected loss must be 0..=100 percent",
            ));
        }
        let mut inner =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
        inner.set_complexity(i32::from(settings.complexity))?;
        inner.set_bitrate(opus::Bitrate::Bits(settings.bitrate as i32))?;
        inner.set_inband_fec(settings.inband_fec)?;
        inner.set_packet_loss_perc(i32::from(settings.expected_loss_percent))?;
        inner.set_dtx(settings.dtx)?;
        Ok(OpusEncoder { inner, settings })
    }

    /// What the encoder is set to now.
    pub fn settings(&self) -> OpusSettings {
        self.settings
    }

    /// Carries in-band FEC (LBRR) for the previous frame from the next packet on, or stops.
    /// It costs bits the frame itself would have had; it helps only with a loss hint above 0.
    pub fn set_inband_fec(&mut self, on: bool) -> Result<(), Error> {
        if on != self.settings.inband_fec {
            self.inner.set_inband_fec(on)?;
            self.settings.inband_fec = on;
        }
        Ok(())
    }

    /// The loss rate (percent, 0..=100) the encoder prepares for: with FEC on, the higher it
    /// is, the more of a frame's bits go to its copy in the next packet.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), Error> {
        if percent > 100 {
            return Err(Error::InvalidSetting(
                "opus expected loss must be 0..=100 percent",
            ));
        }
        if percent != self.settings.expected_loss_percent {
            self.inner.set_packet_loss_perc(i32::from(percent))?;
            self.settings.expected_loss_percent = percent;
        }
        Ok(())
    }

    /// The target bitrate (bits per second, 6000..=510000).
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<(), Error> {
        if !BITRATE_RANGE.contains(&bitrate) {
            return Err(Error::InvalidSetting("opus bitrate must be 6000..=510000"));
        }
        if bitrate != self.settings.bitrate {
            self.inner
                .set_bitrate(opus::Bitrate::Bits(bitrate as i32))?;
            self.settings.bitrate = bitrate;
        }
        Ok(())
    }

    /// Discontinuous transmission during silence, on or off.
    pub fn set_dtx(&mut self, on: bool) -> Result<(), Error> {
        if on != self.settings.dtx {
            self.inner.set_dtx(on)?;
            self.settings.dtx = on;
        }
        Ok(())
    }

    /// Encodes one frame (2.5, 5, 10, 20, 40 or 60 ms of 48 kHz mono) into `out`; returns its
    /// length. With DTX on, silence gives packets of at most two bytes.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, Error> {
        Ok(self.inner.encode(pcm, out)?)
    }
}

/// A 48 kHz mono Opus decoder that remembers the last frame length for PLC and FEC.
pub struct OpusDecoder {
    inner: opus::Decoder,
    last_frame: usize,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("last_frame", &self.last_frame)
            .finish()
    }
}

impl OpusDecoder {
    /// Creates a decoder (mono output; stereo packets are downmixed).
    pub fn new() -> Result<Self, Error> {
        Ok(OpusDecoder {
            inner: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?,
            last_frame: FRAME_20MS,
        })
    }

    /// Decodes a packet into `out`; returns the samples written. A malformed packet is an
    /// error and leaves the decoder usable.
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, Error> {
        if packet.is_empty() {
            return Err(Error::EmptyPacket);
        }
        let n = self.inner.decode(packet, out, false)?;
        self.last_frame = n;
        Ok(n)
    }

    /// Rebuilds the frame lost just before `next_packet` from the FEC data in `next_packet`
    /// (libopus falls back to PLC when it carries none). Call it before decoding `next_packet`.
    pub fn recover(&mut self, next_packet: &[u8], out: &mut [i16]) -> Result<usize, Error> {
        let len = self.last_frame.min(out.len());
        Ok(self.inner.decode(next_packet, &mut out[..len], true)?)
    }

    /// Conceals one lost frame of the last frame's length.
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, Error> {
        let len = self.last_frame.min(out.len());
        Ok(self.inner.decode(&[], &mut out[..len], false)?)
    }
}

/// The samples (at 48 kHz) of `packet` when it is one mono SILK or hybrid frame (TOC code 0)
/// whose SILK layer marks every one of its 10/20 ms subframes as voice-inactive; `None` for
/// anything else (CELT-only, stereo, several frames, voice active, empty).
///
/// The encoder's voice-activity flags are the first symbols of the range-coded SILK layer
/// (RFC 6716, 4.2.3), one per SILK frame, each of probability one half: with the range decoder
/// fresh, such symbols are the leading bits of the first byte after the TOC. Reading them costs
/// nothing, where decoding the packet costs tens of microseconds.
pub fn voice_inactive(packet: &[u8]) -> Option<usize> {
    let (&toc, frame) = packet.split_first()?;
    let config = toc >> 3;
    let stereo = toc & 0x04 != 0;
    let code = toc & 0x03;
    let first = *frame.first()?;
    if config >= 16 || stereo || code != 0 {
        return None;
    }
    // SILK-only configurations 0-11 last 10, 20, 40 or 60 ms (40 and 60 ms are two and three
    // SILK frames); hybrid ones (12-15) 10 or 20 ms, one SILK frame.
    let (ms, silk_frames) = if config < 12 {
        match config & 3 {
            0 => (10, 1),
            1 => (20, 1),
            2 => (40, 2),
            _ => (60, 3),
        }
    } else if config & 1 == 0 {
        (10, 1)
    } else {
        (20, 1)
    };
    let flags = first >> (8 - silk_frames);
    (flags == 0).then_some(ms * (SAMPLE_RATE as usize / 1000))
}
