//! confab-dsp: Confab's pure signal processing.
//!
//! Codecs (G.711, G.722, Opus), resampling between 8, 16 and 48 kHz, mix-minus with a soft
//! limiter, speech activity and dominant speaker detection, DTMF detection and generation,
//! packet loss concealment and comfort noise, and time-stretching by whole pitch periods for the
//! playout (NetEQ-style accelerate and preemptive expand). No I/O, no async, no clocks: every
//! function takes audio and state and returns audio and decisions. Everything that runs per
//! 20 ms frame works in buffers allocated up front.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agc;
pub mod cng;
pub mod denoise;
pub mod dominant;
pub mod dtmf;
pub mod g711;
pub mod g722;
pub mod mix;
pub mod opus;
pub mod plc;
pub mod resample;
pub mod signal;
pub mod stretch;
pub mod tone;
pub mod vad;

/// Errors of the signal processing layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// libopus refused an operation (a malformed packet, a bad frame size, ...).
    #[error("opus: {0}")]
    Opus(#[from] ::opus::Error),
    /// An empty packet was given where audio was expected.
    #[error("empty packet")]
    EmptyPacket,
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidSetting(&'static str),
    /// A buffer has the wrong length.
    #[error("frame size: expected a multiple of {expected} samples, got {got}")]
    FrameSize {
        /// What was expected.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// The resampler could not be built or run.
    #[error("resampler: {0}")]
    Resampler(String),
    /// Not a DTMF digit.
    #[error("not a DTMF digit: {0:?}")]
    InvalidDigit(char),
}
