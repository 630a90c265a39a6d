//! The sounds a conference plays by itself: music on hold for those waiting for the leader, and
//! the enter and exit tones. They are the language-independent prompts (`prompts/sounds/`),
//! held once per process at every mix rate, so that a tick copies samples and resamples nothing:
//! a meeting of phones mixes at 8 kHz and plays the 8 kHz copy.

use std::sync::{Arc, OnceLock};

use confab_dsp::resample::{Rate, Resampler};

/// Music, enter and exit tones at one mix rate.
#[derive(Debug, Default)]
pub(crate) struct RateSounds {
    /// Loops: its ends are silent, so the wrap does not click.
    pub(crate) music: Box<[i16]>,
    pub(crate) enter: Box<[i16]>,
    pub(crate) exit: Box<[i16]>,
    /// Said after a recorded name (`entry_exit: names`): "has joined the conference", "has
    /// left the conference", in the bridge's default language.
    pub(crate) has_joined: Box<[i16]>,
    pub(crate) has_left: Box<[i16]>,
    /// Played to everyone as a recording starts (`recording::notice_tone`).
    pub(crate) recording: Box<[i16]>,
}

/// The sounds at each mix rate, shared by every conference (about 2.3 MB with the built-in
/// 16 s of music).
#[derive(Debug, Default)]
pub struct RoomSounds {
    /// In the order of [`RATES`].
    by_rate: [RateSounds; 3],
}

/// The mix rates, in the order `RoomSounds` holds them.
const RATES: [Rate; 3] = [Rate::Hz8000, Rate::Hz16000, Rate::Hz48000];

impl RoomSounds {
    /// The sounds from 48 kHz samples (as [`crate::sip::prompts::Prompts::audio`] gives them).
    /// Allocates and resamples 16 s of music twice: at start, not in a tick.
    pub fn new(music: &[i16], enter: &[i16], exit: &[i16]) -> Self {
        RoomSounds {
            by_rate: RATES.map(|rate| RateSounds {
                music: from_48k(music, rate),
                enter: from_48k(enter, rate),
                exit: from_48k(exit, rate),
                has_joined: Box::default(),
                has_left: Box::default(),
                recording: from_48k(&crate::recording::notice_tone(), rate),
            }),
        }
    }

    /// With what follows a recorded name (48 kHz samples). Allocates: at start.
    pub fn announcing(mut self, has_joined: &[i16], has_left: &[i16]) -> Self {
        for (sounds, rate) in self.by_rate.iter_mut().zip(RATES) {
            sounds.has_joined = from_48k(has_joined, rate);
            sounds.has_left = from_48k(has_left, rate);
        }
        self
    }

    /// The built-in sounds, made once per process (the first caller pays, at start: the mixer
    /// threads ask before they run). If the built-in prompts cannot be read, which their own
    /// tests rule out, conferences play silence rather than fail.
    pub fn builtin() -> Arc<RoomSounds> {
        static BUILTIN: OnceLock<Arc<RoomSounds>> = OnceLock::new();
        Arc::clone(BUILTIN.get_or_init(|| {
            use crate::sip::prompts::{Prompt, Prompts};
            match Prompts::embedded() {
                Ok(p) => Arc::new(
                    RoomSounds::new(
                        &p.audio(Prompt::Music),
                        &p.audio(Prompt::EnterTone),
                        &p.audio(Prompt::ExitTone),
                    )
                    .announcing(&p.audio(Prompt::HasJoined), &p.audio(Prompt::HasLeft)),
                ),
                Err(e) => {
                    tracing::error!(error = %e, "built-in sounds unreadable: no music or tones");
                    Arc::new(RoomSounds::default())
                }
            }
        }))
    }

    /// The sounds at mix rate `rate`.
    pub(crate) fn at(&self, rate: Rate) -> &RateSounds {
        let i = RATES.iter().position(|r| *r == rate).unwrap_or(2);
        &self.by_rate[i]
    }
}

/// `samples` (48 kHz) at `rate`, aligned (the resampler's delay dropped) and as long as the
/// original in time. Silence if it cannot be converted (no such rate pair exists).
fn from_48k(samples: &[i16], rate: Rate) -> Box<[i16]> {
    if rate == Rate::Hz48000 {
        return samples.into();
    }
    let ratio = (Rate::Hz48000.hz() / rate.hz()) as usize;
    let want = samples.len().div_ceil(ratio);
    let Ok(mut resampler) = Resampler::new(Rate::Hz48000, rate) else {
        return vec![0; want].into();
    };
    let delay = resampler.delay();
    // Whole 10 ms chunks, and enough silence after to flush the filter's delay.
    let chunk = Rate::Hz48000.samples(10);
    let mut input = samples.to_vec();
    input.resize(
        (samples.len() + delay * ratio).div_ceil(chunk) * chunk + chunk,
        0,
    );
    let mut out = vec![0i16; input.len() / ratio];
    if resampler.process(&input, &mut out).is_err() {
        return vec![0; want].into();
    }
    out.drain(..delay.min(out.len()));
    out.truncate(want);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_dsp::signal::{level_dbov, sine, tone_level_dbov};

    #[test]
    fn every_rate_holds_the_same_sound_in_time_and_level() {
        let tone = sine(48_000, 880.0, -12.0, 48_000 / 5);
        let sounds = RoomSounds::new(&tone, &tone, &tone);
        for rate in RATES {
            let s = sounds.at(rate);
            assert_eq!(s.music.len(), rate.samples(200), "{}", rate.hz());
            let level = tone_level_dbov(&s.enter[rate.samples(20)..], rate.hz(), 880.0);
            assert!((level + 12.0).abs() < 0.3, "{} Hz: {level:.2}", rate.hz());
            // Aligned: the resampler's delay is gone, so the first 2 ms are not silent.
            assert!(
                level_dbov(&s.exit[..rate.samples(2)]) > -30.0,
                "{}",
                rate.hz()
            );
        }
    }

    #[test]
    fn the_built_in_music_is_about_minus_20_dbov_at_every_rate() {
        let sounds = RoomSounds::builtin();
        for rate in RATES {
            let s = sounds.at(rate);
            let secs = s.music.len() as f32 / rate.hz() as f32;
            assert!((15.0..17.0).contains(&secs), "{} Hz: {secs} s", rate.hz());
            let level = level_dbov(&s.music);
            assert!(
                (-22.0..-18.0).contains(&level),
                "{} Hz: {level:.2}",
                rate.hz()
            );
            assert!(level_dbov(&s.enter) > -30.0 && level_dbov(&s.exit) > -30.0);
            for said in [&s.has_joined, &s.has_left] {
                let secs = said.len() as f32 / rate.hz() as f32;
                assert!((0.5..4.0).contains(&secs), "{} Hz: {secs} s", rate.hz());
                assert!(level_dbov(said) > -35.0);
            }
        }
    }
}
