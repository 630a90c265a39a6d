//! Automatic gain control for one talker: brings a participant's active speech level to a
//! target (-26 dBov by default, the level ITU-T P.56 measurements of telephone speech aim at), so
//! a quiet phone and a loud laptop meet in the mix at about the same loudness.
//!
//! It reads the speech detector's verdict for each frame and learns only from frames that are
//! speech ([`Activity::active`] while [`Activity::talking`]): noise, hum, music and the pauses
//! between words never move the gain, so it never turns up a quiet line's noise to speech level.
//! A steady tone counts as speech only for its first few hundred milliseconds (the detector's
//! floor then catches up), so the gain starts moving only after `learn_frames` frames of speech:
//! a beep or a test tone leaves it at unity.
//!
//! The level is the power mean of the speech frames' levels over about `time_constant_ms`; the
//! gain moves toward `target - level` at most `rise_db_per_s` up and `fall_db_per_s` down, and
//! only on speech frames, so it follows a talker over seconds and never pumps within a word.
//! Pure and allocation-free: one `update` per frame, a few float operations.

use crate::vad::Activity;

/// Settings of the gain control.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AutoGainSettings {
    /// The active speech level aimed at, in dBov.
    pub target_dbov: f32,
    /// The most the gain may add, in dB.
    pub max_boost_db: f32,
    /// The most the gain may take away, in dB.
    pub max_cut_db: f32,
    /// How fast the gain may rise, in dB per second of speech.
    pub rise_db_per_s: f32,
    /// How fast the gain may fall, in dB per second of speech (faster than it rises: a loud
    /// talker is brought down before a quiet one is brought up).
    pub fall_db_per_s: f32,
    /// Speech frames heard before the gain moves at all.
    pub learn_frames: u32,
    /// Over how much speech the level is averaged, in milliseconds.
    pub time_constant_ms: u32,
}

impl Default for AutoGainSettings {
    fn default() -> Self {
        AutoGainSettings {
            target_dbov: -26.0,
            max_boost_db: 18.0,
            max_cut_db: 18.0,
            rise_db_per_s: 3.0,
            fall_db_per_s: 6.0,
            learn_frames: 50,
            time_constant_ms: 2000,
        }
    }
}

/// The gain control of one talker.
#[derive(Clone, Debug)]
pub struct AutoGain {
    settings: AutoGainSettings,
    frame_ms: u32,
    /// Mean power of the speech frames, relative to full scale (None before the first).
    power: Option<f32>,
    speech_frames: u32,
    gain_db: f32,
}

impl AutoGain {
    /// A gain control fed one frame every `frame_ms` milliseconds; it starts at 0 dB.
    pub fn new(frame_ms: u32, settings: AutoGainSettings) -> Self {
        AutoGain {
            settings,
            frame_ms: frame_ms.max(1),
            power: None,
            speech_frames: 0,
            gain_db: 0.0,
        }
    }

    /// The gain now, in dB.
    pub fn gain_db(&self) -> f32 {
        self.gain_db
    }

    /// The talker's active speech level as learnt so far, in dBov.
    pub fn speech_level_dbov(&self) -> Option<f32> {
        self.power.map(|p| 10.0 * p.max(1e-13).log10())
    }

    /// Learns from one frame's verdict; returns the gain in dB to apply to the frame.
    pub fn update(&mut self, activity: Activity) -> f32 {
        if !(activity.active && activity.talking) || activity.level >= 127 {
            return self.gain_db;
        }
        let s = self.settings;
        let level_db = -f32::from(activity.level);
        let frame_power = 10f32.powf(level_db / 10.0);
        let alpha = (self.frame_ms as f32 / s.time_constant_ms.max(1) as f32).min(1.0);
        let power = match self.power {
            None => frame_power,
            Some(p) => p + (frame_power - p) * alpha,
        };
        self.power = Some(power);
        self.speech_frames = self.speech_frames.saturating_add(1);
        if self.speech_frames < s.learn_frames {
            return self.gain_db;
        }
        let level = 10.0 * power.max(1e-13).log10();
        let want = (s.target_dbov - level).clamp(-s.max_cut_db.abs(), s.max_boost_db.abs());
        let seconds = self.frame_ms as f32 / 1000.0;
        let step = if want > self.gain_db {
            (want - self.gain_db).min(s.rise_db_per_s.abs() * seconds)
        } else {
            (want - self.gain_db).max(-s.fall_db_per_s.abs() * seconds)
        };
        if step.is_finite() {
            self.gain_db += step;
        }
        self.gain_db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speech(level: u8) -> Activity {
        Activity {
            level,
            active: true,
            talking: true,
        }
    }

    const PAUSE: Activity = Activity {
        level: 70,
        active: false,
        talking: true,
    };

    #[test]
    fn a_quiet_and_a_loud_talker_end_near_the_target() {
        for level in [40u8, 10] {
            let mut agc = AutoGain::new(20, AutoGainSettings::default());
            let mut gain = 0.0;
            for _ in 0..(30 * 50) {
                gain = agc.update(speech(level));
            }
            let out = -f32::from(level) + gain;
            assert!((out + 26.0).abs() < 0.5, "{level}: {gain} dB -> {out} dBov");
        }
    }

    #[test]
    fn the_gain_moves_no_faster_than_its_rates() {
        let s = AutoGainSettings::default();
        let mut agc = AutoGain::new(20, s);
        let mut last = 0.0;
        for _ in 0..(10 * 50) {
            let g = agc.update(speech(45));
            assert!(g - last <= s.rise_db_per_s * 0.02 + 1e-4, "{last} -> {g}");
            last = g;
        }
        assert!(last <= s.max_boost_db);
        let mut agc = AutoGain::new(20, s);
        let mut last = 0.0;
        for _ in 0..(10 * 50) {
            let g = agc.update(speech(3));
            assert!(last - g <= s.fall_db_per_s * 0.02 + 1e-4, "{last} -> {g}");
            last = g;
        }
        assert!(last >= -s.max_cut_db);
    }

    #[test]
    fn noise_pauses_and_a_short_tone_leave_the_gain_alone() {
        let mut agc = AutoGain::new(20, AutoGainSettings::default());
        // A minute of a quiet line's noise and of pauses between words.
        for _ in 0..3000 {
            let noise = Activity {
                level: 60,
                active: false,
                talking: false,
            };
            assert_eq!(agc.update(noise), 0.0);
            assert_eq!(agc.update(PAUSE), 0.0);
        }
        // A tone's onset is speech to the detector for fewer frames than the gain waits for.
        for _ in 0..20 {
            assert_eq!(agc.update(speech(6)), 0.0);
        }
        assert_eq!(agc.speech_level_dbov().map(|l| l.round()), Some(-6.0));
    }

    #[test]
    fn the_boost_and_the_cut_are_bounded() {
        let s = AutoGainSettings::default();
        let mut quiet = AutoGain::new(20, s);
        let mut loud = AutoGain::new(20, s);
        for _ in 0..(60 * 50) {
            quiet.update(speech(126));
            loud.update(speech(0));
        }
        assert_eq!(quiet.gain_db(), s.max_boost_db);
        assert_eq!(loud.gain_db(), -s.max_cut_db);
    }
}
