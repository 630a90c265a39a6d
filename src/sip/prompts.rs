//! The attendant's prompts: short WAV files per language (prompts/<language>/<name>.wav, made
//! by scripts/make-prompts), English embedded in the binary, any language loaded from a
//! folder at start. Held at the mixing rate (48 kHz), shared by every leg that plays them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use confab_dsp::resample::{Rate, Resampler};

use crate::media::codec::MIX_RATE;

/// What the attendant can say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prompt {
    Welcome,
    Passcode,
    LeaderPin,
    Invalid,
    UnknownMeeting,
    Joining,
    Goodbye,
}

impl Prompt {
    pub const ALL: [Prompt; 7] = [
        Prompt::Welcome,
        Prompt::Passcode,
        Prompt::LeaderPin,
        Prompt::Invalid,
        Prompt::UnknownMeeting,
        Prompt::Joining,
        Prompt::Goodbye,
    ];

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
        }
    }

    fn index(self) -> usize {
        Prompt::ALL.iter().position(|p| *p == self).unwrap_or(0)
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
}

/// Every prompt of one language.
#[derive(Clone, Debug)]
pub struct Prompts {
    audio: Vec<Arc<[i16]>>,
}

const EMBEDDED: [(&str, &[u8]); 7] = [
    ("welcome", include_bytes!("../../prompts/en/welcome.wav")),
    ("passcode", include_bytes!("../../prompts/en/passcode.wav")),
    (
        "leader_pin",
        include_bytes!("../../prompts/en/leader_pin.wav"),
    ),
    ("invalid", include_bytes!("../../prompts/en/invalid.wav")),
    (
        "unknown_meeting",
        include_bytes!("../../prompts/en/unknown_meeting.wav"),
    ),
    ("joining", include_bytes!("../../prompts/en/joining.wav")),
    ("goodbye", include_bytes!("../../prompts/en/goodbye.wav")),
];

impl Prompts {
    /// The English prompts built into the binary.
    pub fn embedded() -> Result<Self, PromptError> {
        let audio = Prompt::ALL
            .iter()
            .map(|p| {
                let bytes = EMBEDDED
                    .iter()
                    .find(|(n, _)| *n == p.name())
                    .map(|(_, b)| *b)
                    .unwrap_or_default();
                to_mix_rate(bytes, p.name())
            })
            .collect::<Result<_, _>>()?;
        Ok(Prompts { audio })
    }

    /// The prompts of `language` from `dir/<language>/<name>.wav`.
    pub fn load(dir: &Path, language: &str) -> Result<Self, PromptError> {
        let audio = Prompt::ALL
            .iter()
            .map(|p| {
                let path = dir.join(language).join(format!("{}.wav", p.name()));
                let bytes = std::fs::read(&path).map_err(|source| PromptError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                to_mix_rate(&bytes, &path.display().to_string())
            })
            .collect::<Result<_, _>>()?;
        Ok(Prompts { audio })
    }

    pub fn audio(&self, p: Prompt) -> Arc<[i16]> {
        Arc::clone(&self.audio[p.index()])
    }

    pub fn duration(&self, p: Prompt) -> Duration {
        Duration::from_micros(self.audio[p.index()].len() as u64 * 1_000_000 / u64::from(MIX_RATE))
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
mod tests {
    use super::*;

    #[test]
    fn embedded_prompts_load_and_are_speech_length() {
        let p = Prompts::embedded().unwrap();
        for prompt in Prompt::ALL {
            let d = p.duration(prompt);
            assert!(
                (Duration::from_millis(800)..Duration::from_secs(10)).contains(&d),
                "{prompt:?}: {d:?}"
            );
            let audio = p.audio(prompt);
            let loud = confab_dsp::signal::level_dbov(&audio);
            assert!(loud > -30.0, "{prompt:?} is nearly silent: {loud} dBov");
        }
    }

    #[test]
    fn another_language_is_a_folder_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let fr = dir.path().join("fr");
        std::fs::create_dir_all(&fr).unwrap();
        for (name, bytes) in EMBEDDED {
            std::fs::write(fr.join(format!("{name}.wav")), bytes).unwrap();
        }
        assert!(Prompts::load(dir.path(), "fr").is_ok());
        std::fs::write(fr.join("goodbye.wav"), b"RIFF....WAVEjunk").unwrap();
        let e = Prompts::load(dir.path(), "fr").unwrap_err().to_string();
        assert!(e.contains("goodbye.wav"), "{e}");
        std::fs::remove_file(fr.join("goodbye.wav")).unwrap();
        let e = Prompts::load(dir.path(), "fr").unwrap_err().to_string();
        assert!(e.contains("goodbye.wav"), "{e}");
        assert!(Prompts::load(dir.path(), "de").is_err());
    }
}
