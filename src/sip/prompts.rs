//! The bridge's prompts: short WAV files per language (prompts/<language>/<name>.wav) and the
//! language-independent sounds (prompts/sounds/<name>.wav: music on hold, tones, the beep), all
//! made by scripts/make-prompts. Every language in [`LANGUAGES`] is embedded in the binary; a
//! folder (`sip.prompts_dir`) can replace them at start. Held at the mixing rate (48 kHz),
//! shared by every leg that plays them.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use confab_dsp::resample::{Rate, Resampler};

use crate::media::codec::MIX_RATE;

/// The languages built into the binary; the first is the default.
pub const LANGUAGES: [&str; 4] = ["en", "de", "fr", "es"];

/// What the bridge can play. Speech is per language; [`Prompt::is_sound`] ones are the same
/// in every language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prompt {
    Welcome,
    Passcode,
    LeaderPin,
    Invalid,
    UnknownMeeting,
    Joining,
    Goodbye,
    /// "For English, press" (each language names itself), followed by a [`Prompt::Number`].
    LanguageSelect,
    /// "one" .. "twenty": make it with [`Prompt::number`]; outside 1..=20 it plays nothing.
    Number(u8),
    Muted,
    Unmuted,
    VolumeDown,
    VolumeUp,
    Help,
    /// "There are" [number or MoreThanTwenty] "participants in this meeting."
    ThereAre,
    Participants,
    MoreThanTwenty,
    OnlyYou,
    Locked,
    Unlocked,
    AllMuted,
    Ended,
    LeadersOnly,
    ConferenceLocked,
    ConferenceFull,
    Restarting,
    FirstParticipant,
    WaitingForLeader,
    SayName,
    /// [recorded name] "has joined the meeting."
    HasJoined,
    HasLeft,
    /// "This conference is being recorded": to everyone as a recording starts, and to each
    /// who enters while it goes on.
    BeingRecorded,
    /// Music on hold: 16 s that loop without a click.
    Music,
    EnterTone,
    ExitTone,
    /// Before recording a name.
    Beep,
}

/// The numbers' file names, `number_1` first.
const NUMBER_NAMES: [&str; 20] = [
    "number_1",
    "number_2",
    "number_3",
    "number_4",
    "number_5",
    "number_6",
    "number_7",
    "number_8",
    "number_9",
    "number_10",
    "number_11",
    "number_12",
    "number_13",
    "number_14",
    "number_15",
    "number_16",
    "number_17",
    "number_18",
    "number_19",
    "number_20",
];

impl Prompt {
    /// Every prompt: the speech of one language, then the sounds.
    pub const ALL: [Prompt; 55] = [
        Prompt::Welcome,
        Prompt::Passcode,
        Prompt::LeaderPin,
        Prompt::Invalid,
        Prompt::UnknownMeeting,
        Prompt::Joining,
        Prompt::Goodbye,
        Prompt::LanguageSelect,
        Prompt::Number(1),
        Prompt::Number(2),
        Prompt::Number(3),
        Prompt::Number(4),
        Prompt::Number(5),
        Prompt::Number(6),
        Prompt::Number(7),
        Prompt::Number(8),
        Prompt::Number(9),
        Prompt::Number(10),
        Prompt::Number(11),
        Prompt::Number(12),
        Prompt::Number(13),
        Prompt::Number(14),
        Prompt::Number(15),
        Prompt::Number(16),
        Prompt::Number(17),
        Prompt::Number(18),
        Prompt::Number(19),
        Prompt::Number(20),
        Prompt::Muted,
        Prompt::Unmuted,
        Prompt::VolumeDown,
        Prompt::VolumeUp,
        Prompt::Help,
        Prompt::ThereAre,
        Prompt::Participants,
        Prompt::MoreThanTwenty,
        Prompt::OnlyYou,
        Prompt::Locked,
        Prompt::Unlocked,
        Prompt::AllMuted,
        Prompt::Ended,
        Prompt::LeadersOnly,
        Prompt::ConferenceLocked,
        Prompt::ConferenceFull,
        Prompt::Restarting,
        Prompt::FirstParticipant,
        Prompt::WaitingForLeader,
        Prompt::SayName,
        Prompt::HasJoined,
        Prompt::HasLeft,
        Prompt::BeingRecorded,
        Prompt::Music,
        Prompt::EnterTone,
        Prompt::ExitTone,
        Prompt::Beep,
    ];

    /// The highest number there is a prompt for.
    pub const MAX_NUMBER: usize = 20;

    /// `n` spoken, for 1..=20.
    pub fn number(n: usize) -> Option<Prompt> {
        u8::try_from(n)
            .ok()
            .filter(|n| (1..=20).contains(n))
            .map(Prompt::Number)
    }

    /// The file's name (without `.wav`).
    pub fn name(self) -> &'static str {
        match self {
            Prompt::Welcome => "welcome",
            Prompt::Passcode => "passcode",
            Prompt::LeaderPin => "leader_pin",
            Prompt::Invalid => "invalid",
            Prompt::UnknownMeeting => "unknown_meeting",
            Prompt::Joining => "joining",
            Prompt::Goodbye => "goodbye",
            Prompt::LanguageSelect => "language_select",
            Prompt::Number(n) => usize::from(n)
                .checked_sub(1)
                .and_then(|i| NUMBER_NAMES.get(i))
                .copied()
                .unwrap_or("number_out_of_range"),
            Prompt::Muted => "muted",
            Prompt::Unmuted => "unmuted",
            Prompt::VolumeDown => "volume_down",
            Prompt::VolumeUp => "volume_up",
            Prompt::Help => "help",
            Prompt::ThereAre => "there_are",
            Prompt::Participants => "participants",
            Prompt::MoreThanTwenty => "more_than_twenty",
            Prompt::OnlyYou => "only_you",
            Prompt::Locked => "locked",
            Prompt::Unlocked => "unlocked",
            Prompt::AllMuted => "all_muted",
            Prompt::Ended => "ended",
            Prompt::LeadersOnly => "leaders_only",
            Prompt::ConferenceLocked => "conference_locked",
            Prompt::ConferenceFull => "conference_full",
            Prompt::Restarting => "restarting",
            Prompt::FirstParticipant => "first_participant",
            Prompt::WaitingForLeader => "waiting_for_leader",
            Prompt::SayName => "say_name",
            Prompt::HasJoined => "has_joined",
            Prompt::HasLeft => "has_left",
            Prompt::BeingRecorded => "being_recorded",
            Prompt::Music => "music",
            Prompt::EnterTone => "enter_tone",
            Prompt::ExitTone => "exit_tone",
            Prompt::Beep => "beep",
        }
    }

    /// The same in every language (prompts/sounds/).
    pub fn is_sound(self) -> bool {
        matches!(
            self,
            Prompt::Music | Prompt::EnterTone | Prompt::ExitTone | Prompt::Beep
        )
    }

    /// Where it is in [`Prompt::ALL`]; None for a number out of range.
    fn index(self) -> Option<usize> {
        Prompt::ALL.iter().position(|p| *p == self)
    }
}

/// Why prompts could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: not a 16-bit PCM mono WAV at 8, 16 or 48 kHz")]
    Format(String),
    #[error("no built-in prompts for language {0:?} (built in: en, de, fr, es)")]
    UnknownLanguage(String),
    #[error("{0:?} is not a language name (letters, digits, '-' and '_' only)")]
    BadLanguage(String),
    #[error("no prompt language given")]
    NoLanguages,
}

/// One WAV file as embedded: its name (without `.wav`) and bytes.
type Files = [(&'static str, &'static [u8])];

/// `prompts/<dir>/<name>.wav` for each name, embedded.
macro_rules! embed {
    ($dir:literal: $($name:literal),* $(,)?) => {
        &[$((
            $name,
            include_bytes!(concat!("../../prompts/", $dir, "/", $name, ".wav")) as &[u8],
        )),*]
    };
}

/// Every speech prompt of one language, embedded (the names of [`Prompt::name`]).
macro_rules! embed_speech {
    ($lang:literal) => {
        embed!($lang:
            "welcome", "passcode", "leader_pin", "invalid", "unknown_meeting", "joining",
            "goodbye", "language_select",
            "number_1", "number_2", "number_3", "number_4", "number_5", "number_6", "number_7",
            "number_8", "number_9", "number_10", "number_11", "number_12", "number_13",
            "number_14", "number_15", "number_16", "number_17", "number_18", "number_19",
            "number_20",
            "muted", "unmuted", "volume_down", "volume_up", "help", "there_are", "participants",
            "more_than_twenty", "only_you", "locked", "unlocked", "all_muted", "ended",
            "leaders_only", "conference_locked", "conference_full", "restarting",
            "first_participant", "waiting_for_leader", "say_name", "has_joined", "has_left",
            "being_recorded",
        )
    };
}

/// The built-in speech, per language of [`LANGUAGES`].
const EMBEDDED: [(&str, &Files); 4] = [
    ("en", embed_speech!("en")),
    ("de", embed_speech!("de")),
    ("fr", embed_speech!("fr")),
    ("es", embed_speech!("es")),
];

/// The built-in sounds.
const EMBEDDED_SOUNDS: &Files = embed!("sounds": "music", "enter_tone", "exit_tone", "beep");

/// Where prompts come from.
#[derive(Clone, Copy)]
enum Source<'a> {
    Embedded,
    Dir(&'a Path),
}

/// The sounds, in the order of [`Prompt::ALL`]: from `dir/sounds/` when a folder is given and
/// has a `sounds` folder, else the built-in ones.
fn load_sounds(source: Source<'_>) -> Result<Vec<Arc<[i16]>>, PromptError> {
    let source = match source {
        Source::Dir(dir) if dir.join("sounds").is_dir() => source,
        _ => Source::Embedded,
    };
    Prompt::ALL
        .iter()
        .filter(|p| p.is_sound())
        .map(|p| load_one(source, "sounds", *p))
        .collect()
}

/// One prompt's samples at 48 kHz; `folder` is the language or `sounds`.
fn load_one(source: Source<'_>, folder: &str, p: Prompt) -> Result<Arc<[i16]>, PromptError> {
    match source {
        Source::Embedded => {
            let files = if p.is_sound() {
                Some(EMBEDDED_SOUNDS)
            } else {
                EMBEDDED
                    .iter()
                    .find(|(l, _)| *l == folder)
                    .map(|(_, files)| *files)
            };
            let name = format!("prompts/{folder}/{}.wav (built in)", p.name());
            let bytes = files
                .and_then(|files| files.iter().find(|(n, _)| *n == p.name()))
                .map(|(_, b)| *b)
                .ok_or_else(|| PromptError::Format(name.clone()))?;
            to_mix_rate(bytes, &name)
        }
        Source::Dir(dir) => {
            let path = dir.join(folder).join(format!("{}.wav", p.name()));
            let bytes = std::fs::read(&path).map_err(|source| PromptError::Read {
                path: path.display().to_string(),
                source,
            })?;
            to_mix_rate(&bytes, &path.display().to_string())
        }
    }
}

/// Every prompt of one language, with the sounds.
#[derive(Clone)]
pub struct Prompts {
    language: String,
    /// In the order of [`Prompt::ALL`].
    audio: Vec<Arc<[i16]>>,
}

impl fmt::Debug for Prompts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let samples: usize = self.audio.iter().map(|a| a.len()).sum();
        f.debug_struct("Prompts")
            .field("language", &self.language)
            .field("prompts", &self.audio.len())
            .field("samples", &samples)
            .finish()
    }
}

impl Prompts {
    /// The English prompts built into the binary.
    pub fn embedded() -> Result<Self, PromptError> {
        Self::embedded_language(LANGUAGES[0])
    }

    /// The built-in prompts of `language`, one of [`LANGUAGES`].
    pub fn embedded_language(language: &str) -> Result<Self, PromptError> {
        Self::from_source(Source::Embedded, language, &load_sounds(Source::Embedded)?)
    }

    /// The prompts of `language` from `dir/<language>/<name>.wav`, with the sounds from
    /// `dir/sounds/<name>.wav` if there is a `dir/sounds` folder, else the built-in sounds.
    pub fn load(dir: &Path, language: &str) -> Result<Self, PromptError> {
        Self::from_source(Source::Dir(dir), language, &load_sounds(Source::Dir(dir))?)
    }

    fn from_source(
        source: Source<'_>,
        language: &str,
        sounds: &[Arc<[i16]>],
    ) -> Result<Self, PromptError> {
        let valid = !language.is_empty()
            && language
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(PromptError::BadLanguage(language.to_owned()));
        }
        if matches!(source, Source::Embedded) && !LANGUAGES.contains(&language) {
            return Err(PromptError::UnknownLanguage(language.to_owned()));
        }
        let mut sounds = sounds.iter();
        let audio = Prompt::ALL
            .iter()
            .map(|p| {
                if p.is_sound() {
                    sounds
                        .next()
                        .map(Arc::clone)
                        .ok_or_else(|| PromptError::Format(format!("sounds/{}.wav", p.name())))
                } else {
                    load_one(source, language, *p)
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Prompts {
            language: language.to_owned(),
            audio,
        })
    }

    /// Its language (the folder's name).
    pub fn language(&self) -> &str {
        &self.language
    }

    /// The samples at 48 kHz (none for a number out of range).
    pub fn audio(&self, p: Prompt) -> Arc<[i16]> {
        match p.index().and_then(|i| self.audio.get(i)) {
            Some(audio) => Arc::clone(audio),
            None => Arc::from(Vec::new()),
        }
    }

    pub fn duration(&self, p: Prompt) -> Duration {
        let len = p
            .index()
            .and_then(|i| self.audio.get(i))
            .map_or(0, |a| a.len());
        Duration::from_micros(len as u64 * 1_000_000 / u64::from(MIX_RATE))
    }
}

/// The prompts of several languages; the first is the default. The sounds are loaded once and
/// shared.
#[derive(Clone, Debug)]
pub struct PromptBook {
    languages: Vec<String>,
    /// The first language's.
    default: Prompts,
    /// The others', in the order of `languages`.
    others: Vec<Prompts>,
}

impl PromptBook {
    /// The built-in prompts of `languages` (each one of [`LANGUAGES`]), only those.
    pub fn embedded(languages: &[String]) -> Result<Self, PromptError> {
        Self::from_source(Source::Embedded, languages)
    }

    /// The prompts of `languages` from `dir` (see [`Prompts::load`]), or the built-in ones
    /// when `dir` is None.
    pub fn load(dir: Option<&Path>, languages: &[String]) -> Result<Self, PromptError> {
        match dir {
            Some(dir) => Self::from_source(Source::Dir(dir), languages),
            None => Self::embedded(languages),
        }
    }

    fn from_source(source: Source<'_>, languages: &[String]) -> Result<Self, PromptError> {
        let mut unique: Vec<String> = Vec::with_capacity(languages.len());
        for l in languages {
            if !unique.contains(l) {
                unique.push(l.clone());
            }
        }
        let sounds = load_sounds(source)?;
        let mut loaded = unique
            .iter()
            .map(|l| Prompts::from_source(source, l, &sounds))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let default = loaded.next().ok_or(PromptError::NoLanguages)?;
        Ok(PromptBook {
            languages: unique,
            default,
            others: loaded.collect(),
        })
    }

    /// The prompts of `language`: an exact match, else one with the same primary tag (`de-AT`
    /// finds `de`, ASCII case ignored), else the default language's.
    pub fn get(&self, language: &str) -> &Prompts {
        let all = || std::iter::once(&self.default).chain(&self.others);
        let primary = |l: &str| {
            l.split(['-', '_'])
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
        };
        all()
            .find(|p| p.language == language)
            .or_else(|| all().find(|p| primary(&p.language) == primary(language)))
            .unwrap_or(&self.default)
    }

    /// The languages held, the default first.
    pub fn languages(&self) -> &[String] {
        &self.languages
    }

    pub fn default_language(&self) -> &str {
        &self.default.language
    }

    /// `prompt` in every language of the book, the default's first, for a leg to be told it
    /// in the language it hears.
    pub fn voices(&self, prompt: Prompt) -> crate::mixer::Voices {
        self.languages
            .iter()
            .map(|l| (std::sync::Arc::from(l.as_str()), self.get(l).audio(prompt)))
            .collect()
    }
}

/// A WAV's samples at 48 kHz.
fn to_mix_rate(bytes: &[u8], name: &str) -> Result<Arc<[i16]>, PromptError> {
    let bad = || PromptError::Format(name.to_owned());
    let (rate, samples) = parse_wav(bytes).ok_or_else(bad)?;
    let from = match rate {
        8000 => Rate::Hz8000,
        16000 => Rate::Hz16000,
        48000 => return Ok(samples.into()),
        _ => return Err(bad()),
    };
    let mut resampler = Resampler::new(from, Rate::Hz48000).map_err(|_| bad())?;
    // Whole 10 ms chunks, with a little silence after so the resampler's delay is flushed.
    let chunk = from.samples(10);
    let mut input = samples;
    input.resize(input.len().div_ceil(chunk) * chunk + 2 * chunk, 0);
    let mut out = vec![0i16; input.len() / chunk * Rate::Hz48000.samples(10)];
    resampler.process(&input, &mut out).map_err(|_| bad())?;
    Ok(out.into())
}

/// A 16-bit PCM mono WAV: its rate and samples.
fn parse_wav(bytes: &[u8]) -> Option<(u32, Vec<i16>)> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut at = 12;
    let mut format = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        let body = bytes.get(at + 8..at + 8 + len)?;
        if id == b"fmt " && body.len() >= 16 {
            let tag = u16::from_le_bytes([body[0], body[1]]);
            let channels = u16::from_le_bytes([body[2], body[3]]);
            let rate = u32::from_le_bytes(body[4..8].try_into().ok()?);
            let bits = u16::from_le_bytes([body[14], body[15]]);
            // PCM, or WAVE_FORMAT_EXTENSIBLE (which sox may write) holding PCM.
            if !(tag == 1 || tag == 0xFFFE) || channels != 1 || bits != 16 {
                return None;
            }
            format = Some(rate);
        } else if id == b"data" {
            let rate = format?;
            let samples = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Some((rate, samples));
        }
        at += 8 + len + (len % 2);
    }
    None
}

#[cfg(test)]
#[path = "prompts_tests.rs"]
mod tests;
