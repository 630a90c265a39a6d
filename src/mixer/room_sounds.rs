//! The sounds a conference plays by itself: music on hold for those waiting for the leader, the
//! enter and exit tones (the language-independent prompts, `prompts/sounds/`), and the spoken
//! notice that it is being recorded, in every built-in language. They are held once per process
//! at every mix rate, so that a tick copies samples and resamples nothing: a meeting of phones
//! mixes at 8 kHz and plays the 8 kHz copy.

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
    /// "This conference is being recorded", in the order of [`RoomSounds::languages`] (the
    /// default first): said to everyone as a recording starts, to each who enters while it
    /// goes on, and into the recording itself in the default language.
    pub(crate) notices: Box<[Box<[i16]>]>,
}

impl RateSounds {
    /// The recording notice in the `i`-th language (the default's if there is no such one).
    pub(crate) fn notice(&self, i: usize) -> &[i16] {
        self.notices
            .get(i)
            .or_else(|| self.notices.first())
            .map_or(&[], |n| n)
    }
}

/// The sounds at each mix rate, shared by every conference (about 2.3 MB with the built-in
/// 16 s of music).
#[derive(Debug, Default)]
pub struct RoomSounds {
    /// In the order of [`RATES`].
    by_rate: [RateSounds; 3],
    /// The languages of the notices, the default first.
    languages: Box<[String]>,
}

/// The bridge's default language (`sip.language`), set at start before the first conference:
/// the built-in sounds then say "has joined" and the recording notice to legs without a
/// language of their own, and into recordings, in it rather than in English.
static DEFAULT_LANGUAGE: OnceLock<String> = OnceLock::new();

/// Sets the default language of the built-in sounds; only the first call counts, and only
/// before the mixer threads start (they make the sounds). A language that is not built in
/// leaves English.
pub fn set_default_language(language: &str) {
    let _ = DEFAULT_LANGUAGE.set(language.to_owned());
}

/// A language tag's primary part: `de` of `de-AT`.
fn primary(language: &str) -> &str {
    language.split(['-', '_']).next().unwrap_or("")
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
                notices: Box::default(),
            }),
            languages: Box::default(),
        }
    }

    /// With the recording notice in each of `notices`' languages (48 kHz samples), the
    /// default first. Allocates: at start.
    pub fn noticing(mut self, notices: &[(String, Arc<[i16]>)]) -> Self {
        for (sounds, rate) in self.by_rate.iter_mut().zip(RATES) {
            sounds.notices = notices.iter().map(|(_, n)| from_48k(n, rate)).collect();
        }
        self.languages = notices.iter().map(|(l, _)| l.clone()).collect();
        self
    }

    /// Which notice a leg that hears `language` gets: the exact language, else one with the
    /// same primary tag (`de-AT` hears `de`, ASCII case ignored), else the default (0).
    /// Compares strings only, so the tick may ask.
    pub(crate) fn notice_index(&self, language: Option<&str>) -> usize {
        let Some(language) = language else {
            return 0;
        };
        self.languages
            .iter()
            .position(|l| l == language)
            .or_else(|| {
                self.languages
                    .iter()
                    .position(|l| primary(l).eq_ignore_ascii_case(primary(language)))
            })
            .unwrap_or(0)
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
            match Self::embedded(DEFAULT_LANGUAGE.get().map(String::as_str)) {
                Ok(sounds) => Arc::new(sounds),
                Err(e) => {
                    tracing::error!(error = %e, "built-in sounds unreadable: no music or tones");
                    Arc::new(RoomSounds::default())
                }
            }
        }))
    }

    /// The built-in sounds with `default` (a built-in language, or one of the same primary
    /// tag) first, else English. Allocates and resamples: at start.
    fn embedded(default: Option<&str>) -> Result<Self, crate::sip::prompts::PromptError> {
        use crate::sip::prompts::{LANGUAGES, Prompt, PromptBook};
        let mut languages: Vec<String> = LANGUAGES.iter().map(|l| (*l).to_owned()).collect();
        let first = default.and_then(|d| {
            let d = primary(d);
            languages.iter().position(|l| l.eq_ignore_ascii_case(d))
        });
        if let Some(i) = first {
            let first = languages.remove(i);
            languages.insert(0, first);
        }
        let book = PromptBook::embedded(&languages)?;
        let p = book.get(book.default_language());
        let notices: Vec<(String, Arc<[i16]>)> = book
            .languages()
            .iter()
            .map(|l| (l.clone(), book.get(l).audio(Prompt::BeingRecorded)))
            .collect();
        Ok(RoomSounds::new(
            &p.audio(Prompt::Music),
            &p.audio(Prompt::EnterTone),
            &p.audio(Prompt::ExitTone),
        )
        .announcing(&p.audio(Prompt::HasJoined), &p.audio(Prompt::HasLeft))
        .noticing(&notices))
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
    fn the_recording_notice_is_spoken_in_every_built_in_language() {
        let sounds = RoomSounds::builtin();
        let languages = crate::sip::prompts::LANGUAGES;
        assert_eq!(sounds.languages.len(), languages.len());
        for rate in RATES {
            let s = sounds.at(rate);
            for (i, language) in languages.iter().enumerate() {
                let notice = s.notice(i);
                // Speech: a sentence of 1.2 to 4 s (the tone it replaces was 0.55 s of
                // 1.4 kHz beeps), loud enough to be heard over a conversation.
                let secs = notice.len() as f32 / rate.hz() as f32;
                assert!(
                    (1.2..4.0).contains(&secs),
                    "{language} at {}: {secs} s",
                    rate.hz()
                );
                assert!(level_dbov(notice) > -30.0, "{language}");
                assert!(tone_level_dbov(notice, rate.hz(), 1400.0) < level_dbov(notice) - 10.0);
                // Each language says it in its own words.
                for (other, name) in languages.iter().enumerate().take(i) {
                    assert_ne!(notice, s.notice(other), "{language} vs {name}");
                }
            }
        }
    }

    #[test]
    fn a_leg_gets_the_notice_of_its_language_or_the_default() {
        let sounds = RoomSounds::builtin();
        let at = |l: Option<&str>| sounds.languages[sounds.notice_index(l)].as_str();
        assert_eq!(at(None), "en");
        assert_eq!(at(Some("de")), "de");
        assert_eq!(at(Some("de-AT")), "de");
        assert_eq!(at(Some("FR_ca")), "fr");
        assert_eq!(at(Some("es")), "es");
        assert_eq!(at(Some("nl")), "en");
        assert_eq!(at(Some("")), "en");
        // A bridge whose default is German says it in German to legs without a language (and
        // into recordings); one whose default is not built in keeps English.
        let german = RoomSounds::embedded(Some("de-DE")).unwrap();
        assert_eq!(german.languages[0], "de");
        assert_eq!(german.notice_index(None), 0);
        assert_eq!(german.languages[german.notice_index(Some("en"))], "en");
        let de = sounds
            .at(Rate::Hz8000)
            .notice(sounds.notice_index(Some("de")));
        assert_eq!(german.at(Rate::Hz8000).notice(0), de);
        assert_eq!(RoomSounds::embedded(Some("nl")).unwrap().languages[0], "en");
        // Sounds made without notices play none rather than fail.
        let bare = RoomSounds::new(&[], &[], &[]);
        assert_eq!(bare.notice_index(Some("de")), 0);
        assert!(bare.at(Rate::Hz8000).notice(0).is_empty());
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
