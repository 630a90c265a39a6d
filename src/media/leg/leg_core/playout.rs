//! This tick's audio from the leg: the jitter buffer's packets decoded (losses concealed),
//! speech and in-band DTMF detection on it, and prompts played to the leg instead of the mix.

use std::sync::Arc;
use std::time::Duration;

use confab_dsp::dtmf::DtmfEvent;
use confab_dsp::resample::{Rate, Resampler};

use super::{LegCore, SILENT};
use crate::media::codec::{MIX_FRAME, WIDEST_MIX};
use crate::media::jitter::{Playout, Pressure};
use crate::media::telephone_event::Dtmf;

/// RFC 6464 level (-dBov) from which a frame counts as silence for the jitter buffer.
const QUIET_LEVEL: u8 = 50;
/// Frames without audio before a leg is treated as idle (the decoder's tail has played out).
const IDLE_AFTER_FRAMES: u32 = 3;
/// Packets taken from the jitter buffer per tick at most (10 ms packets need two).
const MAX_POPS_PER_TICK: usize = 8;
/// Samples in the in-band DTMF detector's 20 ms (8 kHz).
const DTMF_FRAME: usize = 160;

/// A prompt playing to a leg: 48 kHz audio, how far it is, and the resampler to a narrower mix.
pub(super) struct Prompt {
    audio: Arc<[i16]>,
    at: usize,
    resampler: Option<Resampler>,
}

impl Prompt {
    pub(super) fn new(audio: Arc<[i16]>, mix: Rate) -> Self {
        Prompt {
            audio,
            at: 0,
            resampler: prompt_resampler(mix),
        }
    }

    pub(super) fn set_mix_rate(&mut self, mix: Rate) {
        self.resampler = prompt_resampler(mix);
    }
}

/// The resampler from prompts' 48 kHz to `mix` (none at 48 kHz; none either if it cannot be
/// made, and then the prompt plays as silence).
fn prompt_resampler(mix: Rate) -> Option<Resampler> {
    if mix == WIDEST_MIX {
        return None;
    }
    Resampler::new(WIDEST_MIX, mix).ok()
}

impl LegCore {
    /// The prompt's next 20 ms into `out` at the mix rate (the rest silence); false when none
    /// plays. The prompt ends by itself after its last frame.
    pub fn prompt_frame(&mut self, out: &mut [i16]) -> bool {
        let Some(prompt) = &mut self.prompt else {
            return false;
        };
        let mut wide = [0i16; MIX_FRAME];
        let n = MIX_FRAME.min(prompt.audio.len().saturating_sub(prompt.at));
        wide[..n].copy_from_slice(&prompt.audio[prompt.at..prompt.at + n]);
        let converted = match &mut prompt.resampler {
            Some(r) => r.process(&wide, out).is_ok(),
            None if out.len() == MIX_FRAME => {
                out.copy_from_slice(&wide);
                true
            }
            None => false,
        };
        if !converted {
            out.fill(0);
        }
        prompt.at += MIX_FRAME;
        if prompt.at >= prompt.audio.len() {
            self.prompt = None;
        }
        true
    }

    /// Takes the next thing the jitter buffer plays into the decoder; false when it waits.
    fn play_next(&mut self, silent: bool) -> bool {
        self.jitter.set_held(self.decoder.held_ticks());
        match self.jitter.pop(silent) {
            Playout::Waiting => return false,
            Playout::Packet { payload, .. } => {
                self.decoder.decode(payload);
            }
            Playout::Lost => match self.jitter.peek_next() {
                Some(next) => self.decoder.recover(next),
                None => self.decoder.conceal(),
            },
            Playout::Stretch => self.decoder.conceal(),
        }
        true
    }

    /// Drift while audio plays: the decoded audio is shortened or lengthened by a pitch period
    /// where that cannot be heard, instead of a packet skipped or a frame held (clicks in
    /// speech, music and tones). A stretch needs 30 ms decoded: the next packet is taken early
    /// when it is here (it only moves from the buffer to the decoder; the depth counts both).
    fn stretch_to_depth(&mut self) {
        let shed = match self.jitter.pressure() {
            Pressure::Steady => return,
            Pressure::Shed => true,
            Pressure::Build => false,
        };
        if !self.decoder.can_stretch() {
            if self.jitter.peek_next().is_none() || !self.play_next(false) {
                return;
            }
            if !self.decoder.can_stretch() {
                return;
            }
        }
        let done = if shed {
            self.decoder.accelerate()
        } else {
            self.decoder.expand()
        };
        if done {
            self.jitter.stretched_audio(shed);
        }
    }

    /// Decodes this tick's 20 ms (concealing losses) and runs speech detection on it. A leg with
    /// nothing to play (no packets, or the sender stopped) costs almost nothing: its frame is
    /// silence and no decoder, resampler or detector runs.
    pub fn produce_frame(&mut self) {
        // Drift correction may only drop or insert audio nobody would hear: judged by level,
        // not by the speech detector (a steady tone is not speech, but it is not silence).
        let silent = self.activity.level >= QUIET_LEVEL;
        let mut audio = self.decoder.has_frame();
        for _ in 0..MAX_POPS_PER_TICK {
            if self.decoder.has_frame() || !self.play_next(silent) {
                break;
            }
            audio = true;
        }
        if audio && !silent {
            self.stretch_to_depth();
        }
        if !audio {
            if self.idle_frames < IDLE_AFTER_FRAMES {
                self.idle_frames += 1;
            } else {
                if self.activity != SILENT {
                    self.frame.fill(0);
                    self.frame_is_zero = true;
                    self.activity = SILENT;
                }
                return;
            }
        } else {
            self.idle_frames = 0;
        }
        // (Digital silence skips the resampler; the speech and digit detectors still see it:
        // pauses are part of what tells speech from a steady sound, and end digits.)
        // A frame known to be zeros is neither written again nor scanned again.
        let zeros = self.decoder.frame(&mut self.frame, self.frame_is_zero);
        self.frame_is_zero = zeros;
        // Before the automatic gain, so that noise is taken out before any gain is put on it;
        // only decoded audio (prompts never pass here). A frame it refuses stays as it was.
        if !zeros && let Some(d) = &mut self.denoiser {
            let _ = d.process(&mut self.frame);
        }
        // Speech is judged at the codec's rate: the same audio, a sixth of the samples for a
        // phone.
        let native = self.decoder.native_frame();
        self.activity = if zeros {
            self.speech.process_silence(native)
        } else {
            self.speech.process(native)
        };
        if let Some(detector) = &mut self.inband {
            // The codec's rate to the detector's 8 kHz: the mean of each `step` samples (a
            // boxcar low-pass is enough below 1.7 kHz, and no DTMF energy lies above).
            let step = (native.len() / DTMF_FRAME).max(1);
            let mut narrow = [0i16; DTMF_FRAME];
            for (n, chunk) in narrow.iter_mut().zip(native.chunks_exact(step)) {
                *n = (chunk.iter().map(|&s| i32::from(s)).sum::<i32>() / step as i32) as i16;
            }
            let mut found = None;
            detector.process(&narrow, |e| {
                if let DtmfEvent::Released { digit, duration_ms } = e {
                    found = Some(Dtmf {
                        digit,
                        duration: Duration::from_millis(u64::from(duration_ms)),
                    });
                }
            });
            if let Some(d) = found {
                self.queue_dtmf(d);
            }
        }
        self.follow_auto_gain();
    }
}
