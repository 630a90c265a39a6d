//! Packet loss concealment for G.711 and G.722, in the spirit of G.711 Appendix I.
//!
//! On a loss the last pitch period (found by autocorrelation) is repeated. After 10 ms the
//! repetition spans two periods, after 20 ms three, so it does not buzz; from 10 ms on it fades
//! by 20 % per 10 ms and is silent after 60 ms. When audio returns, the synthetic signal is
//! cross-faded into the first good frame (4 ms, plus 4 ms per further 10 ms lost, at most 10 ms).
//! Unlike Appendix I we do not delay the output, so the last good samples are not modified.
//!
//! Works at 8, 16 and 48 kHz; the pitch search runs on an 8 kHz view of the history.
//! All buffers are allocated in [`Concealer::new`].

/// Pitch range at 8 kHz: 5 to 15 ms (66 to 200 Hz) as in Appendix I.
const PITCH_MIN_8K: usize = 40;
const PITCH_MAX_8K: usize = 120;
/// Correlation window at 8 kHz (20 ms).
const WINDOW_8K: usize = 160;
/// History kept: 3 maximum pitch periods plus the window margin (48.75 ms at 8 kHz).
const HISTORY_8K: usize = 390;

/// Concealment state of one decoded stream.
#[derive(Clone, Debug)]
pub struct Concealer {
    /// Samples per 8 kHz sample (1, 2 or 6).
    factor: usize,
    history: Vec<i16>,
    /// The last three pitch periods at the loss, as the source of repetition.
    source: Vec<f32>,
    pitch: usize,
    /// Samples concealed in the current loss (0 when not in a loss).
    lost: usize,
    /// Position in the repeated segment.
    position: usize,
}

impl Concealer {
    /// A concealer for `rate_hz` (8000, 16000 or 48000; other rates are treated as 8000's
    /// nearest multiple).
    pub fn new(rate_hz: u32) -> Self {
        let factor = ((rate_hz / 8000) as usize).max(1);
        Concealer {
            factor,
            history: vec![0; HISTORY_8K * factor],
            source: vec![0.0; 3 * PITCH_MAX_8K * factor],
            pitch: PITCH_MIN_8K * factor,
            lost: 0,
            position: 0,
        }
    }

    /// Whether the last frame was concealed.
    pub fn concealing(&self) -> bool {
        self.lost > 0
    }

    /// Takes a good frame. After a loss its start is cross-faded from the concealment.
    pub fn good(&mut self, frame: &mut [i16]) {
        if self.lost > 0 {
            let ms10 = 80 * self.factor;
            let extra = (self.lost.saturating_sub(1) / ms10) * 32 * self.factor;
            let ola = (32 * self.factor + extra).min(ms10).min(frame.len());
            for (i, s) in frame[..ola].iter_mut().enumerate() {
                let synthetic = self.next_synthetic();
                let w = (i + 1) as f32 / (ola + 1) as f32;
                *s = (synthetic * (1.0 - w) + f32::from(*s) * w).round() as i16;
            }
            self.lost = 0;
        }
        self.remember(frame);
    }

    /// Writes one concealed frame into `out`.
    pub fn conceal(&mut self, out: &mut [i16]) {
        if self.lost == 0 {
            self.start_loss();
        }
        for o in out.iter_mut() {
            *o = self.next_synthetic().round() as i16;
        }
        // Concealed output joins the history too, as in Appendix I.
        self.remember(out);
    }

    fn start_loss(&mut self) {
        self.pitch = self.find_pitch();
        let len = 3 * self.pitch;
        let start = self.history.len() - len;
        for (d, &s) in self.source.iter_mut().zip(&self.history[start..]) {
            *d = f32::from(s);
        }
        // Begin one period back from the end so the repetition continues the waveform.
        self.position = 2 * self.pitch;
    }

    /// The next synthetic sample, advancing the loss clock.
    fn next_synthetic(&mut self) -> f32 {
        let ms10 = 80 * self.factor;
        let periods = (1 + self.lost / ms10).min(3);
        let span = periods * self.pitch;
        let first = 3 * self.pitch - span;
        if self.position < first || self.position >= 3 * self.pitch {
            self.position = first;
        }
        let sample = self.source[self.position];
        self.position += 1;
        let gain = if self.lost < ms10 {
            1.0
        } else {
            (1.0 - 0.2 * (self.lost - ms10) as f32 / ms10 as f32).max(0.0)
        };
        self.lost += 1;
        sample * gain
    }

    fn remember(&mut self, frame: &[i16]) {
        let n = frame.len().min(self.history.len());
        self.history.copy_within(n.., 0);
        let keep = self.history.len() - n;
        self.history[keep..].copy_from_slice(&frame[frame.len() - n..]);
    }

    /// The pitch period (in samples at the stream rate) maximising the normalised
    /// autocorrelation of the last 20 ms against earlier history.
    fn find_pitch(&self) -> usize {
        let f = self.factor;
        let len8 = self.history.len() / f;
        let at = |i: usize| f32::from(self.history[i * f]);
        let end = len8;
        let mut best = (PITCH_MIN_8K, f32::MIN);
        for lag in PITCH_MIN_8K..=PITCH_MAX_8K {
            let (mut cross, mut energy) = (0f32, 0f32);
            for i in end - WINDOW_8K..end {
                let earlier = at(i - lag);
                cross += at(i) * earlier;
                energy += earlier * earlier;
            }
            let score = if energy > 0.0 {
                cross / energy.sqrt()
            } else {
                0.0
            };
            if score > best.1 {
                best = (lag, score);
            }
        }
        best.0 * f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{level_dbov, sine, tone_level_dbov};

    #[test]
    fn conceals_a_voiced_sound_then_fades() {
        for rate in [8000u32, 16000, 48000] {
            let frame = (rate / 50) as usize;
            let voice = sine(rate, 200.0, -20.0, frame * 20);
            let mut plc = Concealer::new(rate);
            for f in voice.chunks(frame).take(10) {
                let mut f = f.to_vec();
                plc.good(&mut f);
            }
            let mut lost = vec![0i16; frame];
            plc.conceal(&mut lost);
            // The first concealed frame continues the 200 Hz tone at about its level.
            let level = tone_level_dbov(&lost[..frame / 2], rate, 200.0);
            assert!((level + 20.0).abs() < 2.0, "{rate}: {level}");
            assert!(plc.concealing());
            for _ in 0..3 {
                plc.conceal(&mut lost);
            }
            // After 80 ms the concealment is silent.
            assert!(level_dbov(&lost[frame / 2..]) < -90.0, "{rate}");
            let mut back = voice[frame * 14..frame * 15].to_vec();
            plc.good(&mut back);
            assert!(!plc.concealing());
        }
    }

    #[test]
    fn cross_fade_has_no_jump() {
        let rate = 8000;
        let voice = sine(rate, 250.0, -10.0, 160 * 12);
        let mut plc = Concealer::new(rate);
        for f in voice.chunks(160).take(5) {
            plc.good(&mut f.to_vec());
        }
        let mut lost = vec![0i16; 160];
        plc.conceal(&mut lost);
        let mut next = voice[160 * 6..160 * 7].to_vec();
        plc.good(&mut next);
        let steps = lost.iter().chain(&next).collect::<Vec<_>>();
        let max_step = steps
            .windows(2)
            .map(|w| (i32::from(*w[1]) - i32::from(*w[0])).abs())
            .max();
        // A 250 Hz sine at -10 dBov changes by at most ~2900 per sample; allow a little more.
        assert!(max_step.unwrap_or(0) < 4500, "{max_step:?}");
    }
}
