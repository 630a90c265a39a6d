//! Tone generation: DTMF digits (for in-band DTMF and tests) and dual tones (prompts, beeps).

use crate::Error;

/// DTMF row (low group) frequencies in Hz.
pub const DTMF_ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// DTMF column (high group) frequencies in Hz.
pub const DTMF_COLUMNS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// The keypad: `DTMF_KEYS[row][column]`.
pub const DTMF_KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// The (row, column) frequencies of a DTMF digit (`0-9`, `*`, `#`, `A-D`, case-insensitive).
pub fn dtmf_frequencies(digit: char) -> Option<(f32, f32)> {
    let digit = digit.to_ascii_uppercase();
    DTMF_KEYS.iter().enumerate().find_map(|(r, row)| {
        row.iter()
            .position(|&k| k == digit)
            .map(|c| (DTMF_ROWS[r], DTMF_COLUMNS[c]))
    })
}

/// A generator of the sum of two sines (one may be silent), phase-continuous across calls.
#[derive(Clone, Debug)]
pub struct ToneGenerator {
    steps: [f64; 2],
    phases: [f64; 2],
    amplitudes: [f64; 2],
}

impl ToneGenerator {
    /// Two tones at `freqs` Hz with RMS levels `dbov` each, at `rate_hz`.
    pub fn dual(rate_hz: u32, freqs: [f32; 2], dbov: [f32; 2]) -> Self {
        let step = |f: f32| 2.0 * std::f64::consts::PI * f64::from(f) / f64::from(rate_hz);
        ToneGenerator {
            steps: [step(freqs[0]), step(freqs[1])],
            phases: [0.0; 2],
            amplitudes: [
                f64::from(crate::signal::sine_amplitude(dbov[0])),
                f64::from(crate::signal::sine_amplitude(dbov[1])),
            ],
        }
    }

    /// One tone.
    pub fn single(rate_hz: u32, freq: f32, dbov: f32) -> Self {
        Self::dual(rate_hz, [freq, 0.0], [dbov, -200.0])
    }

    /// The tone pair of a DTMF `digit`, each tone at `dbov`. Unknown digits are an error.
    pub fn dtmf(rate_hz: u32, digit: char, dbov: f32) -> Result<Self, Error> {
        let (row, column) = dtmf_frequencies(digit).ok_or(Error::InvalidDigit(digit))?;
        Ok(Self::dual(rate_hz, [row, column], [dbov, dbov]))
    }

    /// Writes the next samples into `out`.
    pub fn fill(&mut self, out: &mut [i16]) {
        for o in out.iter_mut() {
            let v = self.amplitudes[0] * self.phases[0].sin()
                + self.amplitudes[1] * self.phases[1].sin();
            *o = v.round().clamp(-32768.0, 32767.0) as i16;
            for (p, s) in self.phases.iter_mut().zip(self.steps) {
                *p = (*p + s) % std::f64::consts::TAU;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::tone_level_dbov;

    #[test]
    fn dtmf_digits_have_their_tones() {
        let mut g = ToneGenerator::dtmf(8000, '5', -10.0).unwrap();
        let mut buf = vec![0i16; 8000];
        g.fill(&mut buf[..3000]);
        g.fill(&mut buf[3000..]);
        assert!((tone_level_dbov(&buf, 8000, 770.0) + 10.0).abs() < 0.1);
        assert!((tone_level_dbov(&buf, 8000, 1336.0) + 10.0).abs() < 0.1);
        assert!(tone_level_dbov(&buf, 8000, 697.0) < -50.0);
        assert!(ToneGenerator::dtmf(8000, 'x', -10.0).is_err());
        assert_eq!(dtmf_frequencies('d'), Some((941.0, 1633.0)));
    }
}
