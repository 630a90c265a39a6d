//! Sample-rate conversion between 8, 16 and 48 kHz by polyphase FIR filters.
//!
//! Every ratio Confab needs is a whole number (2, 3 or 6), so one Kaiser-windowed sinc at the
//! higher rate does the job both ways: going up, each output phase is a 32-tap dot product over
//! the input history; going down, each output sample is one dot product of 32 × ratio taps over
//! the high-rate input. Pass band to ~86 % of the lower rate's Nyquist within 0.1 dB, stop band
//! ~70 dB down from ~114 % of it; linear phase, delay (taps - 1) / 2 at the high rate (2 ms for
//! 48 kHz <-> 8 kHz).
//!
//! Everything is allocated in [`Resampler::new`]; [`Resampler::process`] converts whole 10 ms
//! chunks without allocating. The dot products keep eight partial sums so that the compiler can
//! use SIMD lanes (float addition is not reassociated for us).

use crate::Error;

/// A sample rate Confab converts between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rate {
    /// 8 kHz (G.711, telephony).
    Hz8000,
    /// 16 kHz (G.722).
    Hz16000,
    /// 48 kHz (Opus, the mix).
    Hz48000,
}

impl Rate {
    /// The rate in hertz.
    pub fn hz(self) -> u32 {
        match self {
            Rate::Hz8000 => 8_000,
            Rate::Hz16000 => 16_000,
            Rate::Hz48000 => 48_000,
        }
    }

    /// Samples in `ms` milliseconds at this rate.
    pub fn samples(self, ms: u32) -> usize {
        (self.hz() / 1000 * ms) as usize
    }
}

/// Taps per polyphase branch (a multiple of the 8 partial sums).
const TAPS_PER_PHASE: usize = 32;
/// Kaiser window shape: about 70 dB of stop-band attenuation.
const KAISER_BETA: f64 = 6.8;
/// Adding and subtracting 1.5 · 2^23 rounds an f32 below 2^22 to the nearest integer (ties to
/// even) without a call into libm.
const ROUND_MAGIC: f32 = 12_582_912.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// Each input sample gives `ratio` output samples.
    Up,
    /// Every `ratio`-th filtered input sample is kept.
    Down,
}

/// A mono resampler for one direction, converting 10 ms chunks.
pub struct Resampler {
    direction: Direction,
    ratio: usize,
    /// Up: `TAPS_PER_PHASE` rows of `row_width` slots (one per phase), oldest input's first.
    /// Down: the whole filter reversed (`TAPS_PER_PHASE * ratio` taps). Both include the gain.
    taps: Vec<f32>,
    /// Input samples at the input rate: the filter's history, then the chunk being converted.
    history: Vec<f32>,
    /// Samples of history kept between chunks.
    keep: usize,
    chunk_in: usize,
    chunk_out: usize,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("direction", &self.direction)
            .field("ratio", &self.ratio)
            .field("chunk_in", &self.chunk_in)
            .field("chunk_out", &self.chunk_out)
            .finish_non_exhaustive()
    }
}

impl Resampler {
    /// Creates a resampler from `from` to `to`.
    pub fn new(from: Rate, to: Rate) -> Result<Self, Error> {
        let (direction, low, high) = if to.hz() > from.hz() {
            (Direction::Up, from.hz(), to.hz())
        } else if to.hz() < from.hz() {
            (Direction::Down, to.hz(), from.hz())
        } else {
            return Err(Error::Resampler(format!(
                "nothing to convert: {} Hz to {} Hz",
                from.hz(),
                to.hz()
            )));
        };
        if !high.is_multiple_of(low) {
            return Err(Error::Resampler(format!(
                "{} Hz to {} Hz is not a whole ratio",
                from.hz(),
                to.hz()
            )));
        }
        let ratio = (high / low) as usize;
        if ratio > LANES {
            return Err(Error::Resampler(format!("ratio {ratio} is above {LANES}")));
        }
        let len = TAPS_PER_PHASE * ratio;
        // Cut off at the lower rate's Nyquist frequency, as a fraction of the higher rate.
        let filter = kaiser_sinc(len, 0.5 / ratio as f64, KAISER_BETA);
        let taps = match direction {
            // Output n·ratio + p is Σ_k tap[k·ratio + p] · input[n - k]. Stored by k, oldest
            // input first, with the `ratio` phases side by side in a row, so that one
            // input sample times one row updates every phase at once; the gain of `ratio`
            // restores what the zeros of upsampling take away.
            Direction::Up => (0..TAPS_PER_PHASE)
                .rev()
                .flat_map(|k| {
                    let filter = &filter;
                    (0..row_width(ratio)).map(move |p| {
                        if p < ratio {
                            (filter[k * ratio + p] * ratio as f64) as f32
                        } else {
                            0.0
                        }
                    })
                })
                .collect(),
            Direction::Down => filter.iter().rev().map(|&h| h as f32).collect(),
        };
        let keep = match direction {
            Direction::Up => TAPS_PER_PHASE - 1,
            Direction::Down => len - 1,
        };
        let chunk_in = from.samples(10);
        Ok(Resampler {
            direction,
            ratio,
            taps,
            history: vec![0.0; keep + chunk_in],
            keep,
            chunk_in,
            chunk_out: to.samples(10),
        })
    }

    /// Delay in output samples (rounded): half the filter, at the output rate.
    pub fn delay(&self) -> usize {
        let half_high = (TAPS_PER_PHASE * self.ratio - 1) / 2;
        match self.direction {
            Direction::Up => half_high,
            Direction::Down => half_high.div_ceil(self.ratio),
        }
    }

    /// Converts `input` (a whole number of 10 ms chunks) into `output`; returns the samples
    /// written. `output` must hold the converted length.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<usize, Error> {
        if !input.len().is_multiple_of(self.chunk_in) {
            return Err(Error::FrameSize {
                expected: self.chunk_in,
                got: input.len(),
            });
        }
        let chunks = input.len() / self.chunk_in;
        if output.len() < chunks * self.chunk_out {
            return Err(Error::FrameSize {
                expected: chunks * self.chunk_out,
                got: output.len(),
            });
        }
        for (inp, out) in input
            .chunks_exact(self.chunk_in)
            .zip(output.chunks_exact_mut(self.chunk_out))
        {
            self.chunk(inp, out);
        }
        Ok(chunks * self.chunk_out)
    }

    /// One chunk: `input` is `chunk_in` samples, `output` `chunk_out`.
    fn chunk(&mut self, input: &[i16], output: &mut [i16]) {
        let keep = self.keep;
        for (h, &s) in self.history[keep..].iter_mut().zip(input) {
            *h = f32::from(s);
        }
        filter(
            self.direction,
            self.ratio,
            &self.taps,
            &self.history,
            output,
        );
        let len = self.history.len();
        self.history.copy_within(len - keep..len, 0);
    }

    /// Forgets all history (a new stream).
    pub fn reset(&mut self) {
        self.history.fill(0.0);
    }
}

/// Slots per row of the upsampling taps at most (phases side by side, zero-padded).
const LANES: usize = 8;

/// Slots per row of the upsampling taps for `ratio` phases: 4 (one SSE register) or 8.
fn row_width(ratio: usize) -> usize {
    if ratio <= 4 { 4 } else { LANES }
}

/// Filters `history` (the kept samples, then this chunk) into `output`.
#[inline]
fn filter(direction: Direction, ratio: usize, taps: &[f32], history: &[f32], output: &mut [i16]) {
    match direction {
        Direction::Up if ratio <= 4 => interpolate::<4>(ratio, taps, history, output),
        Direction::Up => interpolate::<LANES>(ratio, taps, history, output),
        Direction::Down => {
            let width = taps.len();
            for (m, out) in output.iter_mut().enumerate() {
                // The window ends at input m·ratio of this chunk.
                let start = m * ratio;
                *out = to_i16(dot(&history[start..start + width], taps));
            }
        }
    }
}

/// Upsampling with rows of `W` slots (`W` >= `ratio`; 4 fills an SSE register).
#[inline(always)]
fn interpolate<const W: usize>(ratio: usize, taps: &[f32], history: &[f32], output: &mut [i16]) {
    let (rows, _) = taps.as_chunks::<W>();
    for (n, outs) in output.chunks_exact_mut(ratio).enumerate() {
        // Inputs n-31 ..= n of this chunk, oldest first, each times its row.
        // Two sums, even and odd taps, so that each addition need not wait for the last.
        let mut even = [0.0f32; W];
        let mut odd = [0.0f32; W];
        let window = &history[n..n + TAPS_PER_PHASE];
        for (x, pair) in window.chunks_exact(2).zip(rows.chunks_exact(2)) {
            for i in 0..W {
                even[i] += x[0] * pair[0][i];
            }
            for i in 0..W {
                odd[i] += x[1] * pair[1][i];
            }
        }
        for ((out, &e), &o) in outs.iter_mut().zip(&even).zip(&odd) {
            *out = to_i16(e + o);
        }
    }
}

/// Σ a·b over equal lengths that are multiples of 4, in four partial sums (one SSE register).
/// The sums are added in order at the end: with a tree of pairs there, the vectoriser makes
/// two-lane vectors of the loop.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 4];
    let (a, _) = a.as_chunks::<4>();
    let (b, _) = b.as_chunks::<4>();
    for (x, y) in a.iter().zip(b) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum()
}

/// Rounds to the nearest sample, saturating.
#[inline(always)]
fn to_i16(x: f32) -> i16 {
    // Past 2^22 the trick no longer rounds, but such values saturate in the cast anyway.
    ((x + ROUND_MAGIC) - ROUND_MAGIC) as i16
}

/// A linear-phase low-pass of `len` taps cutting off at `cutoff` (cycles per sample), with a
/// Kaiser window of shape `beta`, normalised to unity gain at DC.
fn kaiser_sinc(len: usize, cutoff: f64, beta: f64) -> Vec<f64> {
    let centre = (len - 1) as f64 / 2.0;
    let norm = bessel_i0(beta);
    let mut taps: Vec<f64> = (0..len)
        .map(|k| {
            let t = k as f64 - centre;
            let x = 2.0 * std::f64::consts::PI * cutoff * t;
            let sinc = if t == 0.0 { 1.0 } else { x.sin() / x };
            let r = t / centre;
            let window = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / norm;
            2.0 * cutoff * sinc * window
        })
        .collect();
    let sum: f64 = taps.iter().sum();
    for t in &mut taps {
        *t /= sum;
    }
    taps
}

/// The modified Bessel function of the first kind, order 0, by its power series.
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..50 {
        term *= (half / k as f64) * (half / k as f64);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dc_passes_at_unity_both_ways() {
        for (from, to) in [
            (Rate::Hz8000, Rate::Hz48000),
            (Rate::Hz48000, Rate::Hz8000),
            (Rate::Hz16000, Rate::Hz48000),
            (Rate::Hz48000, Rate::Hz16000),
            (Rate::Hz8000, Rate::Hz16000),
            (Rate::Hz16000, Rate::Hz8000),
        ] {
            let mut r = Resampler::new(from, to).unwrap_or_else(|e| panic!("{e}"));
            let input = vec![10_000i16; from.samples(40)];
            let mut out = vec![0i16; to.samples(40)];
            assert_eq!(r.process(&input, &mut out).ok(), Some(out.len()));
            // After the filter has filled, every output sample is the input level.
            for &s in &out[out.len() / 2..] {
                assert!((i32::from(s) - 10_000).abs() <= 2, "{from:?}->{to:?}: {s}");
            }
        }
    }

    #[test]
    fn a_ratio_that_is_not_whole_or_no_conversion_is_refused() {
        assert!(Resampler::new(Rate::Hz8000, Rate::Hz8000).is_err());
    }

    #[test]
    fn rounding_is_to_nearest_and_saturates() {
        assert_eq!(to_i16(1.4), 1);
        assert_eq!(to_i16(1.6), 2);
        assert_eq!(to_i16(-1.6), -2);
        assert_eq!(to_i16(40_000.0), 32767);
        assert_eq!(to_i16(-40_000.0), -32768);
    }
}
