//! In-band DTMF detection on 8 kHz audio (ITU-T Q.23/Q.24).
//!
//! Audio is cut into blocks of 102 samples (12.75 ms). In each block a DFT at the eight DTMF
//! frequencies gives each tone's energy, and the phase turn between two overlapping windowed
//! DFTs 25 samples apart gives its actual frequency. A block *hits* a digit when the
//! strongest row and column tone both are loud enough, within twist limits, clearly above the
//! other tones of their group, carry most of the block's energy (speech spreads its energy,
//! DTMF does not) and are within 2.5 % of nominal frequency (Q.24: accept ±1.5 %, reject beyond
//! ±3.5 %). A digit starts after two consecutive hits (any tone of 40 ms or more gives two full
//! blocks) and ends after two consecutive misses.

use crate::tone::{DTMF_COLUMNS, DTMF_KEYS, DTMF_ROWS};

const RATE: f32 = 8000.0;
const BLOCK: usize = 102;
const HALF: usize = BLOCK / 2;
/// Frequency estimate: two windows of SPAN samples, LAG apart (unambiguous to ±160 Hz).
const LAG: usize = 25;
const SPAN: usize = BLOCK - LAG;
/// Largest accepted deviation from a nominal frequency.
const MAX_DEVIATION: f32 = 0.025;
/// Minimum per-tone level (RMS) in dBov.
const MIN_TONE_DBOV: f32 = -36.0;
/// Twist limits: the column tone may be 4 dB louder (reverse) or 8 dB quieter (normal) than the
/// row tone; a dB of measurement margin on each is added so that tones at the limits and
/// 1.5 % off frequency are still accepted.
const REVERSE_TWIST_DB: f32 = 5.0;
const NORMAL_TWIST_DB: f32 = 9.0;
/// Other tones of a group must be this much weaker than the strongest (power ratio, ~5 dB).
const GROUP_DOMINANCE: f32 = 0.3;
/// Largest energy ratio between the two halves of a block that carries a whole tone. A 20 ms tone
/// split over two blocks gives at least 1.76 in one of them.
const HALVES_RATIO: f32 = 1.6;
/// Share of the block energy the two tones must carry.
const MIN_TONE_SHARE: f32 = 0.7;

/// A DTMF event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfEvent {
    /// A digit's tones started (reported once per key press).
    Pressed(char),
    /// The digit's tones stopped after `duration_ms`.
    Released {
        /// The digit.
        digit: char,
        /// How long it was detected.
        duration_ms: u32,
    },
}

/// A DTMF detector for one 8 kHz stream.
#[derive(Clone, Debug)]
pub struct DtmfDetector {
    /// cos and -sin of each frequency, phase zero at the block start.
    twiddles: [[(f32, f32); BLOCK]; 8],
    /// Hann-windowed twiddles of the two overlapping frequency-estimate windows: samples
    /// `0..SPAN` and `LAG..BLOCK`, both with phase zero at the block start.
    early: [[(f32, f32); SPAN]; 8],
    late: [[(f32, f32); SPAN]; 8],
    block: [f32; BLOCK],
    filled: usize,
    candidate: Option<char>,
    candidate_hits: u32,
    current: Option<char>,
    current_blocks: u32,
    misses: u32,
}

impl Default for DtmfDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl DtmfDetector {
    /// A detector with nothing heard yet.
    pub fn new() -> Self {
        let mut twiddles = [[(0.0, 0.0); BLOCK]; 8];
        let mut early = [[(0.0, 0.0); SPAN]; 8];
        let mut late = [[(0.0, 0.0); SPAN]; 8];
        for (k, f) in DTMF_ROWS.iter().chain(&DTMF_COLUMNS).enumerate() {
            let twiddle = |n: usize, weight: f64| {
                let phase = 2.0 * std::f64::consts::PI * f64::from(*f) * n as f64 / f64::from(RATE);
                (
                    (weight * phase.cos()) as f32,
                    (-weight * phase.sin()) as f32,
                )
            };
            for (n, t) in twiddles[k].iter_mut().enumerate() {
                *t = twiddle(n, 1.0);
            }
            for n in 0..SPAN {
                let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / SPAN as f64).cos();
                early[k][n] = twiddle(n, hann);
                late[k][n] = twiddle(n + LAG, hann);
            }
        }
        DtmfDetector {
            twiddles,
            early,
            late,
            block: [0.0; BLOCK],
            filled: 0,
            candidate: None,
            candidate_hits: 0,
            current: None,
            current_blocks: 0,
            misses: 0,
        }
    }

    /// Feeds 8 kHz samples; `on_event` is called for every digit pressed or released.
    pub fn process(&mut self, samples: &[i16], mut on_event: impl FnMut(DtmfEvent)) {
        for &s in samples {
            self.block[self.filled] = f32::from(s);
            self.filled += 1;
            if self.filled == BLOCK {
                self.filled = 0;
                let hit = self.analyse_block();
                self.step(hit, &mut on_event);
            }
        }
    }

    fn step(&mut self, hit: Option<char>, on_event: &mut impl FnMut(DtmfEvent)) {
        if hit.is_some() && hit == self.candidate {
            self.candidate_hits += 1;
        } else {
            self.candidate = hit;
            self.candidate_hits = u32::from(hit.is_some());
        }
        match self.current {
            Some(digit) => {
                self.current_blocks += 1;
                if hit == Some(digit) {
                    self.misses = 0;
                } else {
                    self.misses += 1;
                    if self.misses >= 2 {
                        let blocks = self.current_blocks - self.misses;
                        let duration_ms = (blocks as f32 * BLOCK as f32 * 1000.0 / RATE) as u32;
                        on_event(DtmfEvent::Released { digit, duration_ms });
                        self.current = None;
                    }
                }
            }
            None => {
                if let (Some(digit), 2..) = (self.candidate, self.candidate_hits) {
                    self.current = Some(digit);
                    self.current_blocks = 2;
                    self.misses = 0;
                    on_event(DtmfEvent::Pressed(digit));
                }
            }
        }
    }

    /// The digit this block carries, if it passes every check.
    fn analyse_block(&self) -> Option<char> {
        let energy: f32 = self.block.iter().map(|x| x * x).sum();
        let mut power = [0f32; 8];
        let mut deviation = [0f32; 8];
        for k in 0..8 {
            let tw = &self.twiddles[k];
            let (mut re, mut im) = (0f32, 0f32);
            for (x, t) in self.block.iter().zip(tw) {
                re += x * t.0;
                im += x * t.1;
            }
            let (mut ar, mut ai, mut br, mut bi) = (0f32, 0f32, 0f32, 0f32);
            for n in 0..SPAN {
                let (x, y) = (self.block[n], self.block[n + LAG]);
                ar += x * self.early[k][n].0;
                ai += x * self.early[k][n].1;
                br += y * self.late[k][n].0;
                bi += y * self.late[k][n].1;
            }
            // Phase turn from the early window to the late one (b · conj(a)) over LAG samples
            // is the offset from the nominal frequency.
            let turn = (bi * ar - br * ai).atan2(br * ar + bi * ai);
            deviation[k] = turn * RATE / (2.0 * std::f32::consts::PI * LAG as f32);
            // A sine of amplitude A gives |X| = A·N/2 and energy A²·N/2 in the block; undo the
            // loss of the rectangular window off its centre frequency (at most 3 dB).
            let offset = deviation[k] * BLOCK as f32 / RATE;
            power[k] = 2.0 * (re * re + im * im) / BLOCK as f32 / sinc_squared(offset).max(0.5);
        }
        // A tone that starts or stops inside the block fills one half much more than the other:
        // such blocks do not count, so a tone must span whole blocks.
        let first: f32 = self.block[..HALF].iter().map(|x| x * x).sum();
        let second = energy - first;
        let halves_even = first <= HALVES_RATIO * second && second <= HALVES_RATIO * first;
        let strongest = |range: std::ops::Range<usize>| {
            range
                .max_by(|&a, &b| power[a].total_cmp(&power[b]))
                .unwrap_or(0)
        };
        let row = strongest(0..4);
        let column = strongest(4..8);
        let (pr, pc) = (power[row], power[column]);

        let min_energy = BLOCK as f32 * (32768.0 * 10f32.powf(MIN_TONE_DBOV / 20.0)).powi(2);
        let twist_ok = pc <= pr * 10f32.powf(REVERSE_TWIST_DB / 10.0)
            && pr <= pc * 10f32.powf(NORMAL_TWIST_DB / 10.0);
        let dominant = (0..4).all(|k| k == row || power[k] <= pr * GROUP_DOMINANCE)
            && (4..8).all(|k| k == column || power[k] <= pc * GROUP_DOMINANCE);
        let nominal = |k: usize| {
            if k < 4 {
                DTMF_ROWS[k]
            } else {
                DTMF_COLUMNS[k - 4]
            }
        };
        let on_frequency = [row, column]
            .iter()
            .all(|&k| deviation[k].abs() <= MAX_DEVIATION * nominal(k));
        let ok = pr >= min_energy
            && pc >= min_energy
            && twist_ok
            && dominant
            && halves_even
            && pr + pc >= MIN_TONE_SHARE * energy
            && on_frequency;
        ok.then(|| DTMF_KEYS[row][column - 4])
    }
}

/// The power response of a rectangular-window DFT `offset` bins off centre.
fn sinc_squared(offset: f32) -> f32 {
    if offset.abs() < 1e-6 {
        return 1.0;
    }
    let x = std::f32::consts::PI * offset;
    (x.sin() / x).powi(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{ToneGenerator, dtmf_frequencies};

    fn detect(samples: &[i16]) -> Vec<DtmfEvent> {
        let mut d = DtmfDetector::new();
        let mut events = Vec::new();
        for chunk in samples.chunks(160) {
            d.process(chunk, |e| events.push(e));
        }
        events
    }

    fn pressed(events: &[DtmfEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                DtmfEvent::Pressed(d) => Some(*d),
                DtmfEvent::Released { .. } => None,
            })
            .collect()
    }

    /// `digit` with the row and column tones scaled in frequency and at their own levels,
    /// `on_ms` long, after `lead` samples of silence and followed by 60 ms of silence.
    fn key(
        digit: char,
        factors: (f32, f32),
        levels: (f32, f32),
        on_ms: usize,
        lead: usize,
    ) -> Vec<i16> {
        let (r, c) = dtmf_frequencies(digit).unwrap();
        let mut g = ToneGenerator::dual(8000, [r * factors.0, c * factors.1], [levels.0, levels.1]);
        let mut out = vec![0i16; lead + on_ms * 8 + 480];
        g.fill(&mut out[lead..lead + on_ms * 8]);
        out
    }

    const DIGITS: &str = "0123456789*#ABCD";

    #[test]
    fn every_digit_at_nominal_frequency() {
        for d in DIGITS.chars() {
            let events = detect(&key(d, (1.0, 1.0), (-10.0, -10.0), 100, 37));
            assert_eq!(pressed(&events), d.to_string());
            match events.last() {
                Some(DtmfEvent::Released { digit, duration_ms }) => {
                    assert_eq!(*digit, d);
                    assert!((75..=125).contains(duration_ms), "{d}: {duration_ms} ms");
                }
                other => panic!("{d}: no release, {other:?}"),
            }
        }
    }

    #[test]
    fn accepts_1_5_percent_deviation_and_twist() {
        for d in DIGITS.chars() {
            for dev in [0.985, 1.015] {
                for (fr, fc) in [(dev, 1.0), (1.0, dev), (dev, dev)] {
                    for levels in [(-10.0, -10.0), (-6.0, -13.5), (-13.0, -9.5)] {
                        let s = key(d, (fr, fc), levels, 60, 0);
                        assert_eq!(
                            pressed(&detect(&s)),
                            d.to_string(),
                            "{d} {fr} {fc} {levels:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_3_5_percent_deviation() {
        for d in DIGITS.chars() {
            for dev in [0.965, 1.035, 0.95, 1.05] {
                for (fr, fc) in [(dev, 1.0), (1.0, dev)] {
                    let s = key(d, (fr, fc), (-10.0, -10.0), 200, 0);
                    assert_eq!(pressed(&detect(&s)), "", "{d} {fr} {fc}");
                }
            }
        }
    }

    #[test]
    fn rejects_excessive_twist_and_weak_tones() {
        for d in DIGITS.chars() {
            assert_eq!(
                pressed(&detect(&key(d, (1.0, 1.0), (-5.0, -15.0), 200, 0))),
                "",
                "{d} normal"
            );
            assert_eq!(
                pressed(&detect(&key(d, (1.0, 1.0), (-16.0, -10.0), 200, 0))),
                "",
                "{d} reverse"
            );
            assert_eq!(
                pressed(&detect(&key(d, (1.0, 1.0), (-45.0, -45.0), 200, 0))),
                "",
                "{d} weak"
            );
        }
    }

    #[test]
    fn forty_ms_is_enough_twenty_is_not() {
        for lead in (0..102).step_by(17) {
            for d in DIGITS.chars() {
                assert_eq!(
                    pressed(&detect(&key(d, (1.0, 1.0), (-10.0, -10.0), 40, lead))),
                    d.to_string()
                );
                assert_eq!(
                    pressed(&detect(&key(d, (1.0, 1.0), (-10.0, -10.0), 20, lead))),
                    ""
                );
            }
        }
    }

    #[test]
    fn a_digit_sequence_with_short_gaps() {
        let mut s = Vec::new();
        for d in "19#0*".chars() {
            s.extend(key(d, (1.0, 1.0), (-12.0, -12.0), 50, 0));
        }
        assert_eq!(pressed(&detect(&s)), "19#0*");
    }

    #[test]
    fn ignores_single_tones_and_noise() {
        let mut g = ToneGenerator::single(8000, 697.0, -10.0);
        let mut s = vec![0i16; 8000];
        g.fill(&mut s);
        assert_eq!(pressed(&detect(&s)), "");
        let mut noise = crate::signal::Noise::new(4, -15.0);
        noise.fill(&mut s);
        assert_eq!(pressed(&detect(&s)), "");
    }
}
