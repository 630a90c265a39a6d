//! Sample-rate conversion between 8, 16 and 48 kHz with rubato's FFT resampler.
//!
//! Everything is allocated in [`Resampler::new`]; [`Resampler::process`] converts whole 10 ms
//! chunks in place of preallocated buffers. The delay is half a chunk (5 ms).

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

use crate::Error;

/// A sample rate Confab converts between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rate {
    /// 8 kHz (G.711, telephony).
    Hz8000,
    /// 16 kHz (G.722).
    Hz16000,
    /// 48 kHz (Opus, the mix).
    Hz48000,
}

impl Rate {
    /// The rate in hertz.
    pub fn hz(self) -> u32 {
        match self {
            Rate::Hz8000 => 8_000,
            Rate::Hz16000 => 16_000,
            Rate::Hz48000 => 48_000,
        }
    }

    /// Samples in `ms` milliseconds at this rate.
    pub fn samples(self, ms: u32) -> usize {
        (self.hz() / 1000 * ms) as usize
    }
}

/// A mono resampler for one direction, converting 10 ms chunks.
pub struct Resampler {
    inner: Fft<f32>,
    input: Vec<f32>,
    output: Vec<f32>,
    chunk_in: usize,
    chunk_out: usize,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("chunk_in", &self.chunk_in)
            .field("chunk_out", &self.chunk_out)
            .finish_non_exhaustive()
    }
}

impl Resampler {
    /// Creates a resampler from `from` to `to`.
    pub fn new(from: Rate, to: Rate) -> Result<Self, Error> {
        let chunk_in = from.samples(10);
        let chunk_out = to.samples(10);
        let inner = Fft::<f32>::new(
            from.hz() as usize,
            to.hz() as usize,
            chunk_in,
            1,
            FixedSync::Both,
        )
        .map_err(|e| Error::Resampler(e.to_string()))?;
        if inner.input_frames_next() != chunk_in || inner.output_frames_next() != chunk_out {
            return Err(Error::Resampler(format!(
                "unexpected chunk sizes {}->{}",
                inner.input_frames_next(),
                inner.output_frames_next()
            )));
        }
        Ok(Resampler {
            inner,
            input: vec![0.0; chunk_in],
            output: vec![0.0; chunk_out],
            chunk_in,
            chunk_out,
        })
    }

    /// Delay in output samples.
    pub fn delay(&self) -> usize {
        self.inner.output_delay()
    }

    /// Converts `input` (a whole number of 10 ms chunks) into `output`; returns the samples
    /// written. `output` must hold the converted length.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<usize, Error> {
        if !input.len().is_multiple_of(self.chunk_in) {
            return Err(Error::FrameSize {
                expected: self.chunk_in,
                got: input.len(),
            });
        }
        let chunks = input.len() / self.chunk_in;
        if output.len() < chunks * self.chunk_out {
            return Err(Error::FrameSize {
                expected: chunks * self.chunk_out,
                got: output.len(),
            });
        }
        for (inp, out) in input
            .chunks_exact(self.chunk_in)
            .zip(output.chunks_exact_mut(self.chunk_out))
        {
            for (f, &s) in self.input.iter_mut().zip(inp) {
                *f = f32::from(s) * (1.0 / 32768.0);
            }
            let adapter_in = InterleavedSlice::new(&self.input, 1, self.chunk_in)
                .map_err(|e| Error::Resampler(e.to_string()))?;
            let mut adapter_out = InterleavedSlice::new_mut(&mut self.output, 1, self.chunk_out)
                .map_err(|e| Error::Resampler(e.to_string()))?;
            self.inner
                .process_into_buffer(&adapter_in, &mut adapter_out, None)
                .map_err(|e| Error::Resampler(e.to_string()))?;
            for (o, &f) in out.iter_mut().zip(&self.output) {
                *o = (f * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
            }
        }
        Ok(chunks * self.chunk_out)
    }

    /// Forgets all history (a new stream).
    pub fn reset(&mut self) {
        self.inner.reset();
    }
}
