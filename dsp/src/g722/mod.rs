//! G.722 wideband ADPCM (ITU-T G.722), written from the Recommendation's block diagrams.
//!
//! 16 kHz linear audio is split by a 24-tap QMF into a low band (6-bit ADPCM) and a high band
//! (2-bit ADPCM), one byte per pair of input samples: 64 kbit/s. The decoder also accepts the
//! 56 and 48 kbit/s modes, where the low band loses one or two bits.
//!
//! Integer arithmetic follows the Recommendation, so our bitstream is the one every other
//! implementation (spandsp, ffmpeg) produces. State is a few hundred bytes; nothing allocates.

mod band;
mod decoder;
mod encoder;

pub use decoder::Decoder;
pub use encoder::Encoder;

/// Audio sample rate of G.722.
pub const SAMPLE_RATE: u32 = 16_000;
/// RTP timestamp clock rate of G.722: 8000 Hz although it samples at 16 kHz (RFC 3551 §4.5.2),
/// an error in RFC 1890 kept for compatibility. The media layer advances RTP timestamps by this.
pub const RTP_CLOCK_RATE: u32 = 8_000;

/// G.722 modes: bits per code word kept for the low band.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// 64 kbit/s: 6 low-band bits (the only mode used on RTP).
    Kbps64,
    /// 56 kbit/s: 5 low-band bits, one bit of each byte carries auxiliary data.
    Kbps56,
    /// 48 kbit/s: 4 low-band bits, two bits of each byte carry auxiliary data.
    Kbps48,
}

/// QMF coefficients (Table 11/G.722), shared by the transmit and receive filters.
const QMF_COEFFS: [i16; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

#[inline]
fn saturate(v: i32) -> i32 {
    v.clamp(i16::MIN as i32, i16::MAX as i32)
}

/// The 24-tap QMF delay line, kept as two contiguous 12-sample lines (the samples at even and
/// at odd positions) of 16-bit values, so both dot products vectorise (16-bit multiplies with
/// 32-bit sums exist in every x86-64 SIMD level). Every value fits: the encoder filters 16-bit
/// input, the decoder the sum and difference of two bands limited to 15 bits.
#[derive(Clone, Debug, Default)]
struct Qmf {
    /// `x[0], x[2], …, x[22]` of the Recommendation's delay line (oldest first).
    even: [i16; 12],
    /// `x[1], x[3], …, x[23]`.
    odd: [i16; 12],
}

/// QMF_COEFFS reversed, for the odd line.
const QMF_COEFFS_REV: [i16; 12] = {
    let mut r = [0; 12];
    let mut i = 0;
    while i < 12 {
        r[i] = QMF_COEFFS[11 - i];
        i += 1;
    }
    r
};

impl Qmf {
    /// Pushes two samples and returns the (odd-tap, even-tap) sums.
    #[inline]
    fn push(&mut self, a: i16, b: i16) -> (i32, i32) {
        self.even.copy_within(1.., 0);
        self.odd.copy_within(1.., 0);
        self.even[11] = a;
        self.odd[11] = b;
        let dot = |x: &[i16; 12], c: &[i16; 12]| -> i32 {
            x.iter()
                .zip(c)
                .map(|(&x, &c)| i32::from(x) * i32::from(c))
                .sum()
        };
        (
            dot(&self.even, &QMF_COEFFS),
            dot(&self.odd, &QMF_COEFFS_REV),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn tone(freq: f64, amplitude: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amplitude * (2.0 * PI * freq * i as f64 / 16000.0).sin()) as i16)
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn round_trip_keeps_tone_level() {
        for freq in [300.0, 1000.0, 3000.0, 5000.0, 7000.0] {
            let input = tone(freq, 10000.0, 16000);
            let mut enc = Encoder::new();
            let mut dec = Decoder::new(Mode::Kbps64);
            let mut codes = vec![0u8; input.len() / 2];
            let mut out = vec![0i16; input.len()];
            assert_eq!(enc.encode(&input, &mut codes), codes.len());
            assert_eq!(dec.decode(&codes, &mut out), out.len());
            // Skip the start-up of the adaptive quantisers.
            let db = 20.0 * (rms(&out[4000..]) / rms(&input[4000..])).log10();
            assert!(db.abs() < 0.5, "{freq} Hz: {db:.2} dB");
        }
    }

    #[test]
    fn silence_stays_silent() {
        let mut enc = Encoder::new();
        let mut dec = Decoder::new(Mode::Kbps64);
        let input = [0i16; 320];
        let mut codes = [0u8; 160];
        let mut out = [0i16; 320];
        for _ in 0..10 {
            enc.encode(&input, &mut codes);
            dec.decode(&codes, &mut out);
        }
        assert!(out.iter().all(|s| s.abs() < 4));
    }
}
