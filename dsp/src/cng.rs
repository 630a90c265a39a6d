//! Comfort noise: soft, slightly low-passed noise at a configured level, so silence on a
//! concealed or muted stream sounds like a line rather than a dead call.

use crate::signal::Noise;

/// A comfort noise generator.
#[derive(Clone, Debug)]
pub struct ComfortNoise {
    noise: Noise,
    smooth: f32,
    coefficient: f32,
    gain: f32,
}

impl ComfortNoise {
    /// Noise at `rate_hz` with level `level` in -dBov (the RFC 3389 / RFC 6464 scale: 0..=127).
    pub fn new(rate_hz: u32, level: u8, seed: u64) -> Self {
        // One-pole low-pass at ~2 kHz; gain compensates for the power it removes.
        let coefficient = (-2.0 * std::f32::consts::PI * 2000.0 / rate_hz as f32).exp();
        let gain = ((1.0 + coefficient) / (1.0 - coefficient)).sqrt();
        let mut cng = ComfortNoise {
            noise: Noise::new(seed, -127.0),
            smooth: 0.0,
            coefficient,
            gain,
        };
        cng.set_level(level);
        cng
    }

    /// Changes the level (-dBov, 0..=127).
    pub fn set_level(&mut self, level: u8) {
        self.noise.set_level(-f32::from(level.min(127)));
    }

    /// Fills `out` with comfort noise.
    pub fn fill(&mut self, out: &mut [i16]) {
        for o in out {
            let x = f32::from(self.noise.sample());
            self.smooth = self.coefficient * self.smooth + (1.0 - self.coefficient) * x;
            *o = (self.smooth * self.gain).clamp(-32768.0, 32767.0) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::level_dbov;

    #[test]
    fn level_is_as_configured() {
        for (rate, level) in [(8000, 40u8), (16000, 60), (48000, 30)] {
            let mut cng = ComfortNoise::new(rate, level, 9);
            let mut buf = vec![0i16; rate as usize * 2];
            cng.fill(&mut buf);
            let got = level_dbov(&buf);
            assert!(
                (got + f32::from(level)).abs() < 1.0,
                "{rate}: {got} dBov, wanted -{level}"
            );
        }
    }
}
