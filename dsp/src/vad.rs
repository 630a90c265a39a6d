//! Speech activity per leg: an RFC 6464 level and a talking decision.
//!
//! Fed one decoded frame at a time (any rate, any fixed frame length). The level is the frame's
//! RMS in dBov on the 0..=127 scale of RFC 6464 (0 is the loudest). The talking decision compares
//! the energy above ~200 Hz (so mains hum does not count) with an adaptive noise floor:
//! a frame is *active* when it is clearly above the floor; talking starts after two active frames
//! and ends after `release_ms` without one. The floor falls at once to quieter frames, creeps up
//! slowly during speech, and catches up fast with a level that stays steady (noise, hum, comfort
//! noise), which speech never does.
//!
//! This is a detector only: it reads audio and never changes it.

/// Settings of the speech detector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpeechSettings {
    /// How far above the noise floor a frame must be to count as speech, in dB.
    pub onset_margin_db: f32,
    /// Frames below this level (dBov) never count as speech.
    pub min_level_dbov: f32,
    /// Silence after which talking is over, in milliseconds.
    pub release_ms: u32,
}

impl Default for SpeechSettings {
    fn default() -> Self {
        SpeechSettings {
            onset_margin_db: 9.0,
            min_level_dbov: -55.0,
            release_ms: 500,
        }
    }
}

/// What the detector concluded from one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activity {
    /// RFC 6464 level: -dBov, 0 (loudest) ..= 127 (silence).
    pub level: u8,
    /// This frame on its own looks like speech.
    pub active: bool,
    /// The participant is talking (onset confirmed, release not yet reached).
    pub talking: bool,
}

/// Frames of steady level after which the floor catches up quickly.
const STEADY_FRAMES: u32 = 15;
/// Level changes smaller than this (dB, frame to frame) count as steady.
const STEADY_DB: f32 = 1.5;

/// The speech detector of one leg.
#[derive(Clone, Debug)]
pub struct SpeechDetector {
    settings: SpeechSettings,
    highpass: Biquad,
    frame_ms: u32,
    floor_db: Option<f32>,
    last_db: f32,
    steady_frames: u32,
    active_run: u32,
    silent_ms: u32,
    talking: bool,
}

impl SpeechDetector {
    /// A detector for audio at `rate_hz` in frames of `frame_ms` milliseconds.
    pub fn new(rate_hz: u32, frame_ms: u32, settings: SpeechSettings) -> Self {
        SpeechDetector {
            settings,
            highpass: Biquad::highpass(rate_hz as f32, 200.0),
            frame_ms: frame_ms.max(1),
            floor_db: None,
            last_db: -127.0,
            steady_frames: 0,
            active_run: 0,
            silent_ms: 0,
            talking: false,
        }
    }

    /// Whether the participant is talking after the last frame.
    pub fn talking(&self) -> bool {
        self.talking
    }

    /// The current noise floor in dBov, once a frame has been seen.
    pub fn noise_floor_dbov(&self) -> Option<f32> {
        self.floor_db
    }

    /// Analyses one frame.
    pub fn process(&mut self, frame: &[i16]) -> Activity {
        self.process_frame(frame, false)
    }

    /// [`SpeechDetector::process`] for a frame the caller knows is digital silence (it need
    /// not be scanned again); the decisions are the same.
    pub fn process_silence(&mut self, frame: &[i16]) -> Activity {
        self.process_frame(frame, true)
    }

    fn process_frame(&mut self, frame: &[i16], known_zero: bool) -> Activity {
        let mut raw = 0.0f64;
        let mut filtered = 0.0f64;
        // Digital silence into a filter at rest leaves it at rest and sums to zero: the loop
        // would change nothing (a muted phone, a listener that only listens).
        let idle = self.highpass.at_rest() && (known_zero || frame.iter().all(|&s| s == 0));
        if !idle {
            for &s in frame {
                let x = f32::from(s);
                raw += f64::from(x * x);
                let y = self.highpass.run(x);
                filtered += f64::from(y * y);
            }
        }
        let n = frame.len().max(1) as f64;
        let level = rfc6464_level(raw / n);
        let db = power_dbov(filtered / n);

        let floor = *self.floor_db.get_or_insert(db);
        if (db - self.last_db).abs() < STEADY_DB {
            self.steady_frames = self.steady_frames.saturating_add(1);
        } else {
            self.steady_frames = 0;
        }
        self.last_db = db;

        let active = db >= self.settings.min_level_dbov
            && db >= floor + self.settings.onset_margin_db
            && self.steady_frames < STEADY_FRAMES;

        // Noise floor: down at once, up slowly, up fast when the level holds steady.
        let new_floor = if db < floor {
            db
        } else if self.steady_frames >= STEADY_FRAMES {
            floor + (db - floor) * 0.3
        } else if self.talking {
            floor + 0.01 * self.frame_ms as f32
        } else {
            floor + 0.05 * self.frame_ms as f32
        };
        self.floor_db = Some(new_floor.min(db.max(floor)));

        if active {
            self.active_run += 1;
            self.silent_ms = 0;
            if self.active_run >= 2 {
                self.talking = true;
            }
        } else {
            self.active_run = 0;
            self.silent_ms = self.silent_ms.saturating_add(self.frame_ms);
            if self.silent_ms >= self.settings.release_ms {
                self.talking = false;
            }
        }
        Activity {
            level,
            active,
            talking: self.talking,
        }
    }
}

/// dBov of a mean square power of 16-bit samples (0 dBov = full-scale square wave).
fn power_dbov(mean_square: f64) -> f32 {
    if mean_square < 1e-3 {
        return -127.0;
    }
    (10.0 * (mean_square / (32768.0 * 32768.0)).log10()).max(-127.0) as f32
}

/// The RFC 6464 level (-dBov, 0..=127) of a mean square power.
pub fn rfc6464_level(mean_square: f64) -> u8 {
    (-power_dbov(mean_square)).round().clamp(0.0, 127.0) as u8
}

/// A second-order IIR section (direct form I).
#[derive(Clone, Debug)]
struct Biquad {
    b: [f32; 3],
    a: [f32; 2],
    x: [f32; 2],
    y: [f32; 2],
}

impl Biquad {
    /// Butterworth high-pass at `cutoff` Hz (RBJ cookbook, Q = 1/sqrt(2)).
    fn highpass(rate: f32, cutoff: f32) -> Self {
        let w0 = 2.0 * std::f32::consts::PI * cutoff / rate;
        let alpha = w0.sin() / (2.0 * std::f32::consts::FRAC_1_SQRT_2);
        let cos = w0.cos();
        let a0 = 1.0 + alpha;
        Biquad {
            b: [
                (1.0 + cos) / 2.0 / a0,
                -(1.0 + cos) / a0,
                (1.0 + cos) / 2.0 / a0,
            ],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            x: [0.0; 2],
            y: [0.0; 2],
        }
    }

    /// Whether the delay line is (or is now set) at rest: zeros in give zeros out. A state
    /// below 1e-6 is cleared: in f32 it can circle round tiny values for ever (a limit
    /// cycle), and what it would add to a frame's power is far below the -127 dBov floor, so
    /// no decision changes.
    fn at_rest(&mut self) -> bool {
        let tiny = |v: &[f32; 2]| v.iter().all(|s| s.abs() < 1e-6);
        if tiny(&self.x) && tiny(&self.y) {
            self.x = [0.0; 2];
            self.y = [0.0; 2];
            true
        } else {
            false
        }
    }

    #[inline]
    fn run(&mut self, x: f32) -> f32 {
        let y = self.b[0] * x + self.b[1] * self.x[0] + self.b[2] * self.x[1]
            - self.a[0] * self.y[0]
            - self.a[1] * self.y[1];
        self.x = [x, self.x[0]];
        self.y = [y, self.y[0]];
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{Noise, sine};

    const RATE: u32 = 8000;

    fn detector() -> SpeechDetector {
        SpeechDetector::new(RATE, 20, SpeechSettings::default())
    }

    #[test]
    fn levels_follow_rfc6464() {
        let mut d = detector();
        assert_eq!(d.process(&[0; 160]).level, 127);
        let full_square = [i16::MAX; 160];
        assert_eq!(d.process(&full_square).level, 0);
        // A full-scale sine is 3 dB below a full-scale square.
        assert_eq!(d.process(&sine(RATE, 1000.0, -3.0, 160)).level, 3);
        assert_eq!(d.process(&sine(RATE, 1000.0, -40.0, 160)).level, 40);
    }

    #[test]
    fn silence_after_speech_settles_and_then_skips_the_filter_exactly() {
        // Speech, then digital silence: once the high-pass is at rest the shortcut applies, and
        // what the detector decides is what the full path decides (the same state as a
        // detector fed the same frames by the loop: the filter stays exactly zero).
        let mut d = detector();
        let speech = syllables(-20.0, 40);
        for f in speech.chunks(160) {
            d.process(f);
        }
        assert!(d.talking());
        let mut frames = 0;
        while !d.highpass.at_rest() {
            d.process(&[0; 160]);
            frames += 1;
            assert!(frames < 500, "the filter never settles");
        }
        let before = d.clone();
        let a = d.process(&[0; 160]);
        // The loop on zeros at rest: nothing moves.
        let mut by_hand = before.clone();
        for _ in 0..160 {
            assert_eq!(by_hand.highpass.run(0.0), 0.0);
        }
        assert!(by_hand.highpass.at_rest());
        assert_eq!(a.level, 127);
        assert!(!a.active);
        // Speech comes back at once.
        let again: Vec<Activity> = speech.chunks(160).take(10).map(|f| d.process(f)).collect();
        assert!(again.iter().any(|a| a.talking), "{again:?}");
    }

    /// Syllable-like bursts: a 150 Hz pulse-rich tone gated on and off.
    fn syllables(level_db: f32, frames: usize) -> Vec<i16> {
        let voice = sine(RATE, 310.0, level_db, frames * 160);
        voice
            .iter()
            .enumerate()
            .map(|(i, &s)| if (i / 160) % 8 < 5 { s } else { s / 20 })
            .collect()
    }

    #[test]
    fn onset_within_60ms_and_release_after_500ms() {
        let mut d = detector();
        let mut noise = Noise::new(7, -60.0);
        for _ in 0..50 {
            assert!(!d.process(&noise.frame::<160>()).talking);
        }
        let speech = syllables(-20.0, 50);
        let onset = speech
            .chunks(160)
            .position(|f| d.process(f).talking)
            .expect("speech detected");
        assert!(onset * 20 + 20 <= 60, "onset after {} ms", onset * 20 + 20);
        for f in speech.chunks(160).skip(onset + 1) {
            assert!(d.process(f).talking, "released during speech");
        }
        let mut released_after = None;
        for i in 0..50 {
            if !d.process(&noise.frame::<160>()).talking {
                released_after = Some((i + 1) * 20);
                break;
            }
        }
        let ms = released_after.expect("released");
        assert!((440..=560).contains(&ms), "released after {ms} ms");
    }

    #[test]
    fn steady_white_noise_is_not_speech() {
        for level in [-50.0, -30.0, -10.0] {
            let mut d = detector();
            let mut noise = Noise::new(3, level);
            for _ in 0..500 {
                assert!(
                    !d.process(&noise.frame::<160>()).talking,
                    "noise at {level} dBov"
                );
            }
        }
    }

    #[test]
    fn noise_starting_after_silence_is_not_speech_for_long() {
        let mut d = detector();
        for _ in 0..20 {
            d.process(&[0; 160]);
        }
        let mut noise = Noise::new(5, -35.0);
        let talking = (0..500)
            .filter(|_| d.process(&noise.frame::<160>()).talking)
            .count();
        assert!(
            talking * 20 < 1500,
            "talked for {} ms on noise",
            talking * 20
        );
    }

    #[test]
    fn mains_hum_is_not_speech() {
        for freq in [50.0, 60.0] {
            let mut d = detector();
            let hum = sine(RATE, freq, -6.0, 160 * 500);
            assert!(
                hum.chunks(160).all(|f| !d.process(f).talking),
                "{freq} Hz hum"
            );
        }
    }

    #[test]
    fn comfort_noise_is_not_speech() {
        let mut d = detector();
        let mut cng = crate::cng::ComfortNoise::new(RATE, 40, 1);
        let mut frame = [0i16; 160];
        for _ in 0..500 {
            cng.fill(&mut frame);
            assert!(!d.process(&frame).talking);
        }
    }
}
