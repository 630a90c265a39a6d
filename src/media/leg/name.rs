//! A caller's name, recorded at the attendant ("after the tone, say your name") from the
//! leg's own frames as the lobby mixes them, and carried with the leg into its meeting, which
//! announces it on entry and exit (`entry_exit: names`).
//!
//! The recording's buffer is sized when it starts (between ticks); the tick only copies frames
//! into it. Ending it (trimming the silence around the name, sharing it) allocates, so it is
//! done as the leg enters its meeting, a command between ticks.

use std::sync::Arc;
use std::time::Duration;

use confab_dsp::resample::Rate;

/// The longest recording a caller is given.
pub const MAX_NAME: Duration = Duration::from_secs(3);
/// Blocks quieter than this (dBov, as RMS over 10 ms) are silence around the name.
const SILENCE_DBOV: f32 = -45.0;
/// The loudest a name is said: -12 dBov peak.
const MAX_PEAK: i32 = 8_231;
/// Kept before the first and after the last loud block, so that soft word ends stay.
const MARGIN_MS: u32 = 60;

/// A recorded name, at the rate it was recorded at.
#[derive(Clone, Debug)]
pub struct NameClip {
    pub samples: Arc<[i16]>,
    pub rate: Rate,
}

/// The leg's name: being recorded, recorded, or neither.
#[derive(Debug, Default)]
pub struct LegName {
    recording: Option<Recording>,
    clip: Option<NameClip>,
}

#[derive(Debug)]
struct Recording {
    samples: Vec<i16>,
    rate: Rate,
    /// How long it may be (`MAX_NAME` at most).
    length: Duration,
}

impl Recording {
    /// The samples it holds when full, at its rate.
    fn limit(&self) -> usize {
        samples_in(self.length, self.rate)
    }
}

fn samples_in(length: Duration, rate: Rate) -> usize {
    (u128::from(rate.hz()) * length.as_millis() / 1000) as usize
}

impl LegName {
    /// Starts a recording of up to `length` (at most [`MAX_NAME`]) at the mix rate `rate`.
    /// Allocates: between ticks.
    pub fn start(&mut self, rate: Rate, length: Duration) {
        let length = length.min(MAX_NAME);
        self.recording = Some(Recording {
            samples: Vec::with_capacity(samples_in(length, rate)),
            rate,
            length,
        });
        self.clip = None;
    }

    /// Whether a recording takes frames.
    pub fn recording(&self) -> bool {
        self.recording
            .as_ref()
            .is_some_and(|r| r.samples.len() < r.limit())
    }

    /// In the tick: the leg's frame at mix rate `rate`. Never grows the buffer: what does not
    /// fit is not kept, nor a frame at another rate than the recording's (`rescale` brings the
    /// recording to a new mix rate between ticks).
    pub fn record(&mut self, frame: &[i16], rate: Rate) {
        let Some(r) = &mut self.recording else {
            return;
        };
        let room = r.limit().saturating_sub(r.samples.len());
        if r.rate == rate && room <= r.samples.capacity() - r.samples.len() {
            r.samples.extend_from_slice(&frame[..frame.len().min(room)]);
        }
    }

    /// Between ticks: the mix rate became `to` (a wideband caller entered or left the lobby);
    /// what was recorded is brought to it and the recording goes on at it. Allocates.
    pub fn rescale(&mut self, to: Rate) {
        let Some(r) = &mut self.recording else {
            return;
        };
        if r.rate == to {
            return;
        }
        let mut samples = Vec::with_capacity(samples_in(r.length, to));
        let n = r.samples.len() * to.hz() as usize / r.rate.hz() as usize;
        samples.extend((0..n).map(|i| sample_at(&r.samples, r.rate, to, i)));
        r.samples = samples;
        r.rate = to;
    }

    /// Ends a recording into the clip, without the silence around the name; a recording with
    /// nothing above silence leaves no clip (the meeting plays its tone instead). Allocates:
    /// between ticks.
    pub fn finish(&mut self) {
        let Some(Recording {
            mut samples, rate, ..
        }) = self.recording.take()
        else {
            return;
        };
        // Said to everyone at unity: no louder than a loud talker, whatever the caller sent.
        let peak = samples
            .iter()
            .map(|&s| i32::from(s).abs())
            .max()
            .unwrap_or(0);
        if peak > MAX_PEAK {
            for s in &mut samples {
                *s = (i32::from(*s) * MAX_PEAK / peak) as i16;
            }
        }
        self.clip = voiced(&samples, rate).map(|part| {
            if rate == Rate::Hz48000 {
                // A name needs no more than wideband: a third of the memory a clip holds for
                // as long as its caller stays (averaged in threes, a plain low-pass).
                let samples: Vec<i16> = part
                    .chunks(3)
                    .map(|c| (c.iter().map(|&x| i32::from(x)).sum::<i32>() / c.len() as i32) as i16)
                    .collect();
                return NameClip {
                    samples: samples.into(),
                    rate: Rate::Hz16000,
                };
            }
            NameClip {
                samples: part.into(),
                rate,
            }
        });
    }

    /// Test-only: a name recorded elsewhere.
    #[cfg(test)]
    pub(crate) fn recorded(clip: NameClip) -> Self {
        LegName {
            recording: None,
            clip: Some(clip),
        }
    }

    /// The recorded name, once finished.
    pub fn clip(&self) -> Option<&NameClip> {
        self.clip.as_ref()
    }
}

/// Sample `i` of `samples` (at `from`) brought to rate `to`: interpolated linearly up, averaged
/// over the samples it spans down (a plain low-pass against aliasing); past the end, silence.
/// The rates are 8, 16 or 48 kHz, each a whole multiple of the lower ones.
pub fn sample_at(samples: &[i16], from: Rate, to: Rate, i: usize) -> i16 {
    let (from, to) = (from.hz() as usize, to.hz() as usize);
    if from > to {
        let step = from / to;
        let start = i.saturating_mul(step);
        let part = samples
            .get(start..start.saturating_add(step).min(samples.len()))
            .unwrap_or(&[]);
        if part.is_empty() {
            return 0;
        }
        let sum: i64 = part.iter().map(|&x| i64::from(x)).sum();
        return (sum / part.len() as i64) as i16;
    }
    let pos = i.saturating_mul(from);
    let (k, frac) = (pos / to, pos % to);
    // In i64: a full-scale step times a fraction of 48,000 does not fit in i32.
    let a = samples.get(k).copied().map_or(0, i64::from);
    let b = samples.get(k + 1).copied().map_or(a, i64::from);
    (a + (b - a) * frac as i64 / to as i64) as i16
}

/// The part of `samples` from the first to the last 10 ms block above [`SILENCE_DBOV`], with
/// a margin each side; `None` if no block is.
fn voiced(samples: &[i16], rate: Rate) -> Option<&[i16]> {
    let block = rate.samples(10);
    let loud = |b: &[i16]| {
        let energy: f64 = b.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        let rms = (energy / b.len().max(1) as f64).sqrt() / 32768.0;
        20.0 * rms.max(1e-9).log10() > f64::from(SILENCE_DBOV)
    };
    let first = samples.chunks(block).position(loud)?;
    let last = samples.chunks(block).rposition(loud)?;
    let margin = rate.samples(MARGIN_MS);
    let start = (first * block).saturating_sub(margin);
    let end = ((last + 1) * block + margin).min(samples.len());
    samples.get(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, amplitude: f32) -> Vec<i16> {
        (0..n)
            .map(|i| (amplitude * (i as f32 * 0.3).sin()) as i16)
            .collect()
    }

    #[test]
    fn a_name_is_kept_without_the_silence_around_it_and_never_overflows() {
        let mut name = LegName::default();
        assert!(!name.recording());
        name.start(Rate::Hz8000, Duration::from_secs(10));
        assert!(name.recording());
        // 3 s at most (the cap): 150 frames of 20 ms; more frames than that are not kept.
        let quiet = vec![0i16; 160];
        let loud = tone(160, 8000.0);
        for i in 0..200 {
            let frame = if (50..75).contains(&i) { &loud } else { &quiet };
            name.record(frame, Rate::Hz8000);
        }
        assert!(!name.recording());
        name.finish();
        let clip = name.clip().unwrap();
        assert_eq!(clip.rate, Rate::Hz8000);
        // 0.5 s of name and 60 ms each side.
        assert_eq!(clip.samples.len(), 25 * 160 + 2 * 480);
        assert!(clip.samples[480..490].iter().any(|&s| s != 0));
    }

    #[test]
    fn silence_leaves_no_clip_and_a_rate_change_carries_the_recording_on() {
        let mut name = LegName::default();
        name.start(Rate::Hz16000, Duration::from_secs(2));
        for _ in 0..10 {
            name.record(&[3; 320], Rate::Hz16000);
        }
        name.finish();
        assert!(name.clip().is_none());

        // Half a second at 16 kHz, then the lobby mixes at 48 kHz: what was recorded is
        // brought along, a frame at the old rate is not taken, and the rest fills at 48 kHz.
        name.start(Rate::Hz16000, Duration::from_secs(2));
        for _ in 0..25 {
            name.record(&tone(320, 8000.0), Rate::Hz16000);
        }
        name.rescale(Rate::Hz48000);
        name.record(&tone(320, 8000.0), Rate::Hz16000);
        assert!(name.recording());
        for _ in 0..100 {
            name.record(&tone(960, 8000.0), Rate::Hz48000);
        }
        assert!(!name.recording());
        name.finish();
        // Two seconds, all of it loud (nothing trimmed), kept at 16 kHz.
        let clip = name.clip().unwrap();
        assert_eq!((clip.rate, clip.samples.len()), (Rate::Hz16000, 32_000));
        // Finishing twice, or without a recording, changes nothing.
        name.finish();
        assert!(name.clip().is_some());

        // At 48 kHz the clip is kept at 16 kHz, as long in time.
        name.start(Rate::Hz48000, Duration::from_secs(1));
        for _ in 0..50 {
            name.record(&tone(960, 8000.0), Rate::Hz48000);
        }
        name.finish();
        let clip = name.clip().unwrap();
        assert_eq!(clip.rate, Rate::Hz16000);
        assert_eq!(clip.samples.len(), 16_000);

        // A name sent at full scale is said no louder than -12 dBov peak.
        name.start(Rate::Hz8000, Duration::from_secs(1));
        name.record(&[i16::MAX, i16::MIN].repeat(80), Rate::Hz8000);
        name.finish();
        let peak = name
            .clip()
            .unwrap()
            .samples
            .iter()
            .map(|&s| i32::from(s).abs())
            .max();
        assert_eq!(peak, Some(MAX_PEAK));
    }
}
