//! Noise suppression of one talker's audio by RNNoise (the pure-Rust `nnnoiseless`).
//!
//! RNNoise works on 10 ms frames of 480 samples at 48 kHz. A narrower stream (8 or 16 kHz) is
//! brought up to 48 kHz by the polyphase resampler of [`crate::resample`], denoised, and brought
//! back down; a 48 kHz stream goes straight through. Every buffer, both resamplers and the
//! network's state are made in [`Denoiser::new`] (or [`Denoiser::set_rate`]); [`Denoiser::process`]
//! allocates nothing of its own. (The FFT library keeps one scratch buffer per thread, made the
//! first time a thread denoises.)
//!
//! The output lags the input by 10 ms (RNNoise's overlap-add), plus the resamplers' delay at 8
//! and 16 kHz.

use nnnoiseless::DenoiseState;

use crate::Error;
use crate::resample::{Rate, Resampler};

/// RNNoise's frame: 10 ms at 48 kHz.
const FRAME: usize = DenoiseState::FRAME_SIZE;

/// One stream's noise suppressor.
pub struct Denoiser {
    rate: Rate,
    state: Box<DenoiseState<'static>>,
    /// To and from 48 kHz; none at 48 kHz.
    up: Option<Resampler>,
    down: Option<Resampler>,
    /// One 10 ms chunk at 48 kHz, as integers (for the resamplers) and as floats (for RNNoise).
    wide: [i16; FRAME],
    input: [f32; FRAME],
    output: [f32; FRAME],
    /// RNNoise's speech probability of the last chunk.
    speech: f32,
}

impl std::fmt::Debug for Denoiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Denoiser")
            .field("rate", &self.rate)
            .field("speech", &self.speech)
            .finish_non_exhaustive()
    }
}

impl Denoiser {
    /// A denoiser for audio at `rate`. Allocates (about 100 kB): not in a tick.
    pub fn new(rate: Rate) -> Result<Self, Error> {
        let (up, down) = resamplers(rate)?;
        Ok(Denoiser {
            rate,
            state: DenoiseState::new(),
            up,
            down,
            wide: [0; FRAME],
            input: [0.0; FRAME],
            output: [0.0; FRAME],
            speech: 0.0,
        })
    }

    /// The rate it takes.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes audio at `rate` from now on (a new stream: the history is forgotten). Allocates.
    pub fn set_rate(&mut self, rate: Rate) -> Result<(), Error> {
        if rate == self.rate {
            return Ok(());
        }
        *self = Denoiser::new(rate)?;
        Ok(())
    }

    /// RNNoise's probability (0..1) that the last 10 ms held speech.
    pub fn speech_probability(&self) -> f32 {
        self.speech
    }

    /// Denoises `frame` (a whole number of 10 ms chunks at the rate) in place.
    pub fn process(&mut self, frame: &mut [i16]) -> Result<(), Error> {
        let chunk = self.rate.samples(10);
        if frame.is_empty() || !frame.len().is_multiple_of(chunk) {
            return Err(Error::FrameSize {
                expected: chunk,
                got: frame.len(),
            });
        }
        for part in frame.chunks_exact_mut(chunk) {
            self.chunk(part)?;
        }
        Ok(())
    }

    /// One 10 ms chunk at the rate.
    fn chunk(&mut self, part: &mut [i16]) -> Result<(), Error> {
        match &mut self.up {
            Some(up) => {
                up.process(part, &mut self.wide)?;
            }
            None => self.wide.copy_from_slice(part),
        }
        for (f, &s) in self.input.iter_mut().zip(&self.wide) {
            *f = f32::from(s);
        }
        self.speech = self.state.process_frame(&mut self.output, &self.input);
        for (s, &f) in self.wide.iter_mut().zip(&self.output) {
            // Saturating conversion: RNNoise's output may overshoot full scale slightly.
            *s = f.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
        }
        match &mut self.down {
            Some(down) => {
                down.process(&self.wide, part)?;
            }
            None => part.copy_from_slice(&self.wide),
        }
        Ok(())
    }
}

type Pair = (Option<Resampler>, Option<Resampler>);

fn resamplers(rate: Rate) -> Result<Pair, Error> {
    if rate == Rate::Hz48000 {
        return Ok((None, None));
    }
    Ok((
        Some(Resampler::new(rate, Rate::Hz48000)?),
        Some(Resampler::new(Rate::Hz48000, rate)?),
    ))
}

#[cfg(test)]
#[path = "denoise_tests.rs"]
mod tests;
