//! Signal sources: white noise (for comfort noise and tests) and sine tones (for tests,
//! benchmarks and the load generator). Levels are RMS in dBov (0 dBov = full-scale square wave).

/// Peak amplitude of a sine with RMS level `dbov`.
pub fn sine_amplitude(dbov: f32) -> f32 {
    32768.0 * 10f32.powf(dbov / 20.0) * std::f32::consts::SQRT_2
}

/// `n` samples of a sine at `freq` Hz and `dbov` at `rate_hz`, starting at phase 0.
/// (Allocates: for tests and tools, not for the media path.)
pub fn sine(rate_hz: u32, freq: f32, dbov: f32, n: usize) -> Vec<i16> {
    let amplitude = f64::from(sine_amplitude(dbov));
    let step = 2.0 * std::f64::consts::PI * f64::from(freq) / f64::from(rate_hz);
    (0..n)
        .map(|i| {
            (amplitude * (step * i as f64).sin())
                .round()
                .clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// Uniform white noise from a xorshift generator: deterministic for a seed, no allocation.
#[derive(Clone, Debug)]
pub struct Noise {
    state: u64,
    amplitude: f32,
}

impl Noise {
    /// Noise with RMS level `dbov`; the same seed gives the same noise.
    pub fn new(seed: u64, dbov: f32) -> Self {
        let mut noise = Noise {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            amplitude: 0.0,
        };
        noise.set_level(dbov);
        noise
    }

    /// Changes the RMS level.
    pub fn set_level(&mut self, dbov: f32) {
        // A uniform distribution on [-a, a] has RMS a/sqrt(3).
        self.amplitude = (32768.0 * 10f32.powf(dbov / 20.0) * 3f32.sqrt()).min(32767.0);
    }

    /// The next sample.
    #[inline]
    pub fn sample(&mut self) -> i16 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        // Top 24 bits as a uniform value in [-1, 1).
        let unit = (self.state >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        (unit * self.amplitude) as i16
    }

    /// Fills `out` with noise.
    pub fn fill(&mut self, out: &mut [i16]) {
        for o in out {
            *o = self.sample();
        }
    }

    /// A frame of `N` samples.
    pub fn frame<const N: usize>(&mut self) -> [i16; N] {
        let mut f = [0i16; N];
        self.fill(&mut f);
        f
    }
}

/// RMS level of `samples` in dBov (-127 for digital silence).
pub fn level_dbov(samples: &[i16]) -> f32 {
    let n = samples.len().max(1) as f64;
    let ms = samples
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum::<f64>()
        / n;
    if ms < 1e-3 {
        return -127.0;
    }
    (10.0 * (ms / (32768.0 * 32768.0)).log10()) as f32
}

/// Level in dBov of the component of `samples` at `freq` Hz (a single-bin DFT), so a test can
/// say which tones are present and how loud they are.
pub fn tone_level_dbov(samples: &[i16], rate_hz: u32, freq: f32) -> f32 {
    let step = 2.0 * std::f64::consts::PI * f64::from(freq) / f64::from(rate_hz);
    let (mut re, mut im) = (0.0f64, 0.0f64);
    for (i, &s) in samples.iter().enumerate() {
        let phase = step * i as f64;
        re += f64::from(s) * phase.cos();
        im -= f64::from(s) * phase.sin();
    }
    let n = samples.len().max(1) as f64;
    let amplitude = 2.0 * (re * re + im * im).sqrt() / n;
    let rms = amplitude / std::f64::consts::SQRT_2;
    if rms < 1e-6 {
        return -127.0;
    }
    (20.0 * (rms / 32768.0).log10()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_what_was_asked() {
        let s = sine(8000, 1000.0, -20.0, 8000);
        assert!((level_dbov(&s) + 20.0).abs() < 0.05);
        assert!((tone_level_dbov(&s, 8000, 1000.0) + 20.0).abs() < 0.05);
        assert!(tone_level_dbov(&s, 8000, 2000.0) < -80.0);
        let mut noise = Noise::new(1, -30.0);
        let mut buf = vec![0i16; 48_000];
        noise.fill(&mut buf);
        assert!((level_dbov(&buf) + 30.0).abs() < 0.2);
    }
}
