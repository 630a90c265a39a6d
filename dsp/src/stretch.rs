//! Time-stretching for playout, in the spirit of WebRTC NetEQ's "accelerate" and "preemptive
//! expand": shorten or lengthen a block of decoded audio by one pitch period, cross-faded where
//! the signal best matches itself one period earlier (a pitch-synchronous WSOLA step).
//!
//! A jitter buffer that is too deep can then shed 2.5 to 15 ms without the click of a dropped
//! packet, and one that is too shallow can gain as much without a concealed frame.
//!
//! How one step works, on the first [`TimeStretcher::min_input`] samples (30 ms) of the block:
//!
//! 1. If the 30 ms are quiet (below -55 dBov RMS, the speech detector's floor), any cut or
//!    insertion is inaudible: the period is the longest allowed (15 ms), with no search.
//! 2. Otherwise the period is searched on an 8 kHz view (a box-filtered decimation, as
//!    [`crate::plc`] does): the lag of 2.5 to 15 ms whose normalised correlation between the
//!    15 ms after the splice point (15 ms in) and the 15 ms one lag earlier is highest. Of
//!    near-equal peaks (a periodic signal matches at every multiple of its period) the shortest
//!    lag wins. At 16 and 48 kHz the lag is then refined at the full rate, one 8 kHz sample
//!    either side.
//! 3. If that correlation is below 0.9 (NetEQ's threshold) the signal is not periodic enough
//!    (noise, a transient, a glide) and the block is left as it is.
//! 4. Accelerate: the period before the splice point is cross-faded (linearly) into the period
//!    after it, and the rest moves up by one period. Expand: the period after the splice point is
//!    cross-faded into a repeat of the period before it, and the rest moves down by one period.
//!    Both joins are continuous by construction; the splice is inaudible when the two periods are
//!    alike, which step 3 checks.
//!
//! Samples before `15 ms - period` are never changed, nor is anything past the first 30 ms other
//! than by the shift. No allocation after [`TimeStretcher::new`]; no panic for any input.

use crate::Error;

/// Shortest period at 8 kHz: 2.5 ms (400 Hz).
const MIN_PERIOD_8K: usize = 20;
/// Longest period at 8 kHz: 15 ms (66.7 Hz).
const MAX_PERIOD_8K: usize = 120;
/// The splice point, 15 ms into the block (at 8 kHz).
const SPLICE_8K: usize = 120;
/// Correlation window after the splice point: 15 ms (at 8 kHz), at least one longest period, so
/// a slow wave does not look periodic at a short lag.
const WINDOW_8K: usize = 120;
/// Samples analysed (at 8 kHz): 30 ms.
const INPUT_8K: usize = SPLICE_8K + WINDOW_8K;
/// Normalised correlation a period must reach to be cut or repeated (NetEQ's 0.9).
const PERIODIC: f32 = 0.9;
/// Of the correlation peaks within this much of the best, the shortest lag is taken.
const NEAR_BEST: f32 = 0.05;
/// Below this RMS level (dBov) a block is quiet: a splice there is inaudible.
const QUIET_DBOV: f32 = -55.0;

/// Shortens or lengthens blocks of audio by one pitch period. Holds only scratch buffers: one
/// stretcher can serve any number of streams at its rate.
#[derive(Clone, Debug)]
pub struct TimeStretcher {
    /// Samples per 8 kHz sample (1, 2 or 6).
    factor: usize,
    /// Mean square below which a block is quiet (in i16 units squared).
    quiet: f32,
    /// The analysed 30 ms at 8 kHz.
    low: Vec<f32>,
    /// Normalised correlation per 8 kHz lag, `MIN_PERIOD_8K..=MAX_PERIOD_8K`.
    scores: Vec<f32>,
}

impl TimeStretcher {
    /// A stretcher for `rate_hz`: 8000, 16000 or 48000 (others: [`Error::InvalidSetting`]).
    pub fn new(rate_hz: u32) -> Result<Self, Error> {
        let factor = match rate_hz {
            8000 => 1,
            16000 => 2,
            48000 => 6,
            _ => return Err(Error::InvalidSetting("stretch rate: 8000, 16000 or 48000")),
        };
        let quiet_rms = 32768.0 * 10f32.powf(QUIET_DBOV / 20.0);
        Ok(TimeStretcher {
            factor,
            quiet: quiet_rms * quiet_rms,
            low: vec![0.0; INPUT_8K],
            scores: vec![0.0; MAX_PERIOD_8K - MIN_PERIOD_8K + 1],
        })
    }

    /// Samples a block must hold for [`accelerate`](Self::accelerate) or
    /// [`expand`](Self::expand) to act: 30 ms (240, 480 or 1440). Shorter blocks are returned
    /// unchanged.
    pub fn min_input(&self) -> usize {
        INPUT_8K * self.factor
    }

    /// The longest period removed or inserted: 15 ms (120, 240 or 720 samples). The shortest is
    /// 2.5 ms.
    pub fn max_period(&self) -> usize {
        MAX_PERIOD_8K * self.factor
    }

    /// Shortens `audio[..len]` in place by one pitch period (2.5 to 15 ms; 15 ms when the block
    /// is quiet), cross-faded at the splice 15 ms in, and returns the new length. Returns `len`
    /// unchanged when the signal is neither periodic enough nor quiet, or when
    /// `len < min_input()`; `len.min(audio.len())` when `len > audio.len()`. Samples past the new
    /// length are left as they were.
    pub fn accelerate(&mut self, audio: &mut [i16], len: usize) -> usize {
        let n = self.min_input();
        if len > audio.len() || len < n {
            return len.min(audio.len());
        }
        let Some(period) = self.find_period(&audio[..n]) else {
            return len;
        };
        let splice = SPLICE_8K * self.factor;
        // period <= max_period() = splice and splice + period <= n <= len: all in range.
        let (head, tail) = audio.split_at_mut(splice);
        let fade = (period + 1) as f32;
        for (i, (out, &next)) in head[splice - period..]
            .iter_mut()
            .zip(&tail[..period])
            .enumerate()
        {
            *out = mix(*out, next, (i + 1) as f32 / fade);
        }
        audio.copy_within(splice + period..len, splice);
        len - period
    }

    /// Lengthens `audio[..len]` in place by one pitch period (2.5 to 15 ms; 15 ms when the block
    /// is quiet), cross-faded at the splice 15 ms in, and returns the new length. Needs room:
    /// `audio.len() >= len + max_period()`. Returns `len` unchanged without that room, when the
    /// signal is neither periodic enough nor quiet, or when `len < min_input()`;
    /// `len.min(audio.len())` when `len > audio.len()`.
    pub fn expand(&mut self, audio: &mut [i16], len: usize) -> usize {
        let n = self.min_input();
        if len > audio.len() || len < n || audio.len() - len < self.max_period() {
            return len.min(audio.len());
        }
        let Some(period) = self.find_period(&audio[..n]) else {
            return len;
        };
        let splice = SPLICE_8K * self.factor;
        audio.copy_within(splice..len, splice + period);
        // Now head[splice - period..splice] is the period before the splice, tail[..period] the
        // one after it; head[splice..] becomes the fade from the latter into the former.
        let (head, tail) = audio.split_at_mut(splice + period);
        let fade = (period + 1) as f32;
        for (i, &next) in tail[..period].iter().enumerate() {
            let earlier = head[splice - period + i];
            head[splice + i] = mix(next, earlier, (i + 1) as f32 / fade);
        }
        len + period
    }

    /// The period to cut or repeat in `x` (the first `min_input()` samples), or `None` when the
    /// block is neither periodic enough nor quiet.
    fn find_period(&mut self, x: &[i16]) -> Option<usize> {
        let f = self.factor;
        // Integer sums vectorise (and 1440 squares of i16 fit an i64 easily).
        let energy: i64 = x.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
        let mean_square = energy as f32 / x.len().max(1) as f32;
        if mean_square < self.quiet {
            return Some(self.max_period());
        }

        // The 8 kHz view (the scale does not matter to a normalised correlation).
        for (d, chunk) in self.low.iter_mut().zip(x.chunks_exact(f)) {
            *d = chunk.iter().map(|&s| f32::from(s)).sum();
        }
        let after = &self.low[SPLICE_8K..SPLICE_8K + WINDOW_8K];
        let mut best = 0f32;
        for (score, lag) in self.scores.iter_mut().zip(MIN_PERIOD_8K..) {
            let start = SPLICE_8K - lag;
            *score = correlation(after, &self.low[start..start + WINDOW_8K]);
            best = best.max(*score);
        }
        if best < PERIODIC - NEAR_BEST {
            return None;
        }
        // The shortest lag at a local peak near the best.
        let last = self.scores.len() - 1;
        let k = (0..=last).find(|&k| {
            let s = self.scores[k];
            s >= best - NEAR_BEST
                && (k == 0 || s >= self.scores[k - 1])
                && (k == last || s >= self.scores[k + 1])
        })?;
        let coarse = (MIN_PERIOD_8K + k) * f;

        // Refine at the full rate.
        let (splice, window) = (SPLICE_8K * f, WINDOW_8K * f);
        let after = &x[splice..splice + window];
        let lo = coarse.saturating_sub(f - 1).max(MIN_PERIOD_8K * f);
        let hi = (coarse + f - 1).min(MAX_PERIOD_8K * f);
        let (mut period, mut score) = (coarse, f32::MIN);
        for lag in lo..=hi {
            let start = splice - lag;
            let s = correlation(after, &x[start..start + window]);
            if s > score {
                (period, score) = (lag, s);
            }
        }
        (score >= PERIODIC).then_some(period)
    }
}

/// `a * (1 - w) + b * w`, rounded.
#[inline]
fn mix(a: i16, b: i16, w: f32) -> i16 {
    (f32::from(a) * (1.0 - w) + f32::from(b) * w).round() as i16
}

/// Normalised cross-correlation of `a` and `b` (0 when either is silent). Eight partial sums
/// per term so the loop vectorises.
fn correlation<T: Copy + Into<f32>>(a: &[T], b: &[T]) -> f32 {
    const LANES: usize = 8;
    let (mut cross, mut ea, mut eb) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let (chunks_a, chunks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (rest_a, rest_b) = (chunks_a.remainder(), chunks_b.remainder());
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for l in 0..LANES {
            let (p, q) = (ca[l].into(), cb[l].into());
            cross[l] += p * q;
            ea[l] += p * p;
            eb[l] += q * q;
        }
    }
    for (l, (&p, &q)) in rest_a.iter().zip(rest_b).enumerate() {
        let (p, q): (f32, f32) = (p.into(), q.into());
        cross[l] += p * q;
        ea[l] += p * p;
        eb[l] += q * q;
    }
    let (cross, ea, eb) = (
        cross.iter().sum::<f32>(),
        ea.iter().sum::<f32>(),
        eb.iter().sum::<f32>(),
    );
    if ea > 0.0 && eb > 0.0 {
        cross / (ea.sqrt() * eb.sqrt())
    } else {
        0.0
    }
}

#[cfg(test)]
#[path = "stretch_tests.rs"]
mod tests;
