//! `LegCore`: everything a leg does with media, without a socket, a clock or a thread.
//!
//! The I/O layer hands it what arrived ([`LegCore::handle_datagram`] for the RTP port,
//! [`LegCore::handle_rtcp_datagram`] for a separate RTCP port, [`LegCore::handle_relayed`] for
//! a packet the WebRTC driver has already parsed), asks it for this tick's audio
//! ([`LegCore::produce_frame`]), gives it what to send ([`LegCore::encode_own`],
//! [`LegCore::queue_payload`]) and lets it keep time ([`LegCore::handle_timeout`] when
//! [`LegCore::poll_timeout`] says). What the leg sends waits in a small outbox that the I/O
//! layer drains with [`LegCore::poll_transmit`]. Every method takes `now`; nothing here reads a
//! clock, so the core runs as well in a simulated network's stepped time as on a mixer thread.
//!
//! Inside: latching ([`super::latch`]), SRTP ([`super::secure`]), RTCP, the jitter buffer,
//! decoding, speech and in-band DTMF detection, prompts and the leg's own encoder.

mod playout;
mod receive;
mod send;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use confab_dsp::agc::{AutoGain, AutoGainSettings};
use confab_dsp::denoise::Denoiser;
use confab_dsp::dtmf::DtmfDetector;
use confab_dsp::mix::Gain;
use confab_dsp::opus::OpusSettings;
use confab_dsp::resample::Rate;
use confab_dsp::vad::{Activity, SpeechDetector, SpeechSettings};

use super::latch::Latch;
use super::secure::Secure;
use super::{LegSpec, LegStats, LegTimers};
use crate::media::codec::{Codec, LegDecoder, LegEncoder, MIX_FRAME, WIDEST_MIX};
use crate::media::jitter::{JitterBuffer, JitterSettings, JitterStats};
use crate::media::opus_path::{Adaptation, PathLoss, Receivers};
use crate::media::quality;
use crate::media::rtcp::{NtpClock, Rtcp};
use crate::media::telephone_event::{Dtmf, TelephoneEvents};

use playout::Prompt;
use send::Outbox;
pub use send::Transmit;

/// What an idle leg reports.
const SILENT: Activity = Activity {
    level: 127,
    active: false,
    talking: false,
};
/// Digits held for the mixer to take (it takes them every tick).
const DTMF_QUEUE: usize = 4;

/// How a leg's packets travel, which decides what the core does itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Its own sockets: the core latches, secures (SDES-SRTP) and writes RTCP. With
    /// `separate_rtcp`, RTCP has a port of its own (no rtcp-mux).
    Direct { separate_rtcp: bool },
    /// Through the WebRTC driver, which does ICE, DTLS-SRTP and RTCP for it and hands over
    /// parsed packets from the peer it has checked.
    Relayed,
}

/// A leg's media, sans I/O.
pub struct LegCore {
    spec: LegSpec,
    route: Route,
    timers: LegTimers,
    latch: Latch,
    rtp_seen: bool,
    created: Instant,
    rtcp: Rtcp,
    cname: String,
    telephone_events: Option<TelephoneEvents>,
    dtmf: [Option<Dtmf>; DTMF_QUEUE],
    /// In-band DTMF detection on the decoded audio (attendant legs only: it costs).
    inband: Option<Box<DtmfDetector>>,
    /// A prompt being played to this leg instead of the mix.
    prompt: Option<Prompt>,
    /// How loud the participant hears the conference (its own keypad volume).
    listen_gain: Gain,
    /// How loud the others hear the participant (the gain its frame enters the mix at): the
    /// gain set for it (API, keypad) times its automatic gain.
    talk_gain: Gain,
    /// The gain set for the participant, before the automatic gain.
    set_gain: Gain,
    /// Automatic gain control of the participant's speech (`media.auto_gain`).
    auto_gain: Option<AutoGain>,
    /// The automatic gain `talk_gain` holds, in dB.
    auto_gain_db: f32,
    /// Noise suppression of the decoded audio, at the mix rate (`media.noise_suppression`, or
    /// switched per participant); boxed: RNNoise's state is about 100 kB.
    denoiser: Option<Box<Denoiser>>,
    /// The conference's mix rate (the widest until the conference says): `frame` and what
    /// `encode_own` takes come at it.
    mix: Rate,
    jitter: JitterBuffer,
    decoder: LegDecoder,
    speech: SpeechDetector,
    own: LegEncoder,
    /// The receiver's loss of our stream, smoothed, and what the own encoder does about it.
    path: PathLoss,
    own_adaptation: Adaptation,
    secure: Secure,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    /// This tick's decoded audio at the mix rate.
    frame: Vec<i16>,
    /// `frame` holds digital silence (so it need not be zeroed or scanned again).
    frame_is_zero: bool,
    activity: Activity,
    idle_frames: u32,
    stats: LegStats,
    outbox: Outbox,
}

impl std::fmt::Debug for LegCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegCore")
            .field("spec", &self.spec)
            .field("route", &self.route)
            .field("latched", &self.latch.latched())
            .finish_non_exhaustive()
    }
}

/// `set` with `auto_db` of automatic gain on top.
fn with_auto_gain(set: Gain, auto_db: f32) -> Gain {
    if auto_db == 0.0 {
        return set;
    }
    Gain::from_linear(set.linear() * 10f32.powf(auto_db / 20.0))
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidInput, e.to_string())
}

impl LegCore {
    /// A leg for `spec`, made at `now` (`wall` is the same instant on the wall clock, for
    /// RTCP's NTP timestamps), sending with `ssrc`. A relayed leg keeps no SRTP of its own.
    /// Fails for keys or a codec set-up the libraries refuse.
    pub fn new(
        spec: LegSpec,
        route: Route,
        now: Instant,
        wall: SystemTime,
        ssrc: u32,
        timers: LegTimers,
    ) -> std::io::Result<Self> {
        let spec = match route {
            Route::Relayed => LegSpec { srtp: None, ..spec },
            Route::Direct { .. } => spec,
        };
        let secure = Secure::new(spec.srtp.as_ref()).map_err(invalid)?;
        let opus = OpusSettings::default();
        Ok(LegCore {
            latch: Latch::new(
                spec.remote,
                spec.latch_any_source || timers.latch_any_source,
                timers.relatch_after,
            ),
            route,
            timers,
            rtp_seen: false,
            created: now,
            rtcp: Rtcp::new(
                ssrc,
                spec.codec.clock_rate(),
                NtpClock::new(now, wall),
                timers.rtcp_interval,
            ),
            cname: format!("confab-{ssrc:08x}"),
            telephone_events: spec
                .telephone_event
                .map(|t| TelephoneEvents::new(t.clock_rate)),
            dtmf: [None; DTMF_QUEUE],
            inband: None,
            prompt: None,
            listen_gain: Gain::UNITY,
            talk_gain: Gain::UNITY,
            set_gain: Gain::UNITY,
            auto_gain: timers
                .auto_gain
                .then(|| AutoGain::new(20, AutoGainSettings::default())),
            auto_gain_db: 0.0,
            denoiser: if timers.noise_suppression {
                Some(Box::new(Denoiser::new(WIDEST_MIX).map_err(invalid)?))
            } else {
                None
            },
            mix: WIDEST_MIX,
            jitter: JitterBuffer::new(JitterSettings::new(spec.codec.clock_rate())),
            decoder: LegDecoder::new(spec.codec, WIDEST_MIX).map_err(invalid)?,
            speech: speech_detector(spec.codec),
            own: LegEncoder::new(spec.codec, spec.ptime_ms, opus, WIDEST_MIX).map_err(invalid)?,
            path: PathLoss::default(),
            own_adaptation: Adaptation::default(),
            secure,
            ssrc,
            sequence: (ssrc >> 16) as u16,
            timestamp: ssrc.rotate_left(11),
            frame: vec![0; MIX_FRAME],
            frame_is_zero: true,
            activity: SILENT,
            idle_frames: 0,
            stats: LegStats::default(),
            outbox: Outbox::new(route),
            spec,
        })
    }

    /// The peer was taken off hold: it may come back with a new stream (many phones start a
    /// new SSRC on resume), so the next source after a quiet spell may bring any SSRC.
    pub fn forget_ssrc(&mut self) {
        self.latch.forget_ssrc();
    }

    pub fn spec(&self) -> &LegSpec {
        &self.spec
    }

    pub fn route(&self) -> Route {
        self.route
    }

    /// The source media is latched to, once a packet was accepted.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latch.latched()
    }

    /// The leg's counters with its quality figures (RTCP, MOS) filled in.
    pub fn stats(&self) -> LegStats {
        let mut s = self.stats;
        s.decodes_skipped += self.decoder.skipped();
        s.packets_lost = self.rtcp.packets_lost();
        s.packets_expected = self.rtcp.packets_expected();
        s.jitter_ms = self.rtcp.jitter().as_secs_f64() * 1000.0;
        let remote = self.rtcp.remote_report();
        s.remote_loss_percent = remote.map(|b| f64::from(b.fraction_lost) * 100.0 / 256.0);
        s.remote_jitter_ms = self.rtcp.remote_jitter().map(|j| j.as_secs_f64() * 1000.0);
        s.rtt_ms = self.rtcp.round_trip().map(|r| r.as_secs_f64() * 1000.0);
        // The worse direction's loss; one-way delay from half the round trip, the jitter
        // buffer's depth and a packet time.
        let local_loss = if s.packets_expected == 0 {
            0.0
        } else {
            s.packets_lost.max(0) as f64 * 100.0 / s.packets_expected as f64
        };
        let loss = local_loss.max(s.remote_loss_percent.unwrap_or(0.0));
        let delay = self.rtcp.round_trip().unwrap_or_default() / 2
            + self.jitter.depth()
            + Duration::from_millis(u64::from(self.spec.ptime_ms));
        s.mos = quality::mos(self.spec.codec, loss, delay);
        s.codec = Some(self.spec.codec);
        s.telephone_event_rate = self.spec.telephone_event.map(|t| t.clock_rate);
        s.webrtc = self.route == Route::Relayed;
        s.srtp = self.secure.is_secured() || s.webrtc;
        s.ssrc = self.ssrc;
        s
    }

    /// The jitter buffer's depth (what playout waits for).
    pub fn jitter_depth(&self) -> Duration {
        self.jitter.depth()
    }

    /// What the jitter buffer did: stored, late, lost, drift corrections.
    pub fn jitter_stats(&self) -> JitterStats {
        self.jitter.stats()
    }

    /// Signalling agreed something else (a re-INVITE changed the codec, an offerless call's
    /// answer came): the codecs, jitter buffer and keys follow `spec`; the route stays.
    /// Allocates: between ticks.
    pub fn respec(&mut self, spec: LegSpec) -> std::io::Result<()> {
        let spec = match self.route {
            Route::Relayed => LegSpec { srtp: None, ..spec },
            Route::Direct { .. } => spec,
        };
        let decoder = LegDecoder::new(spec.codec, self.mix).map_err(invalid)?;
        let own = LegEncoder::new(spec.codec, spec.ptime_ms, OpusSettings::default(), self.mix)
            .map_err(invalid)?;
        if spec.srtp != self.spec.srtp {
            self.secure = Secure::new(spec.srtp.as_ref()).map_err(invalid)?;
        }
        if spec.codec != self.spec.codec {
            self.jitter = JitterBuffer::new(JitterSettings::new(spec.codec.clock_rate()));
        }
        if spec.codec.rate() != self.spec.codec.rate() {
            self.speech = speech_detector(spec.codec);
        }
        self.latch.respec(
            spec.remote,
            spec.latch_any_source || self.timers.latch_any_source,
        );
        self.stats.decodes_skipped += self.decoder.skipped();
        self.decoder = decoder;
        self.own = own;
        self.telephone_events = spec
            .telephone_event
            .map(|t| TelephoneEvents::new(t.clock_rate));
        self.spec = spec;
        Ok(())
    }

    /// The conference mixes at `mix` from now on: the frame, the resamplers around the codecs
    /// and a playing prompt's follow; the codecs' own state and what is buffered stay.
    /// Allocates: between ticks. Fails only for a rate pair the resampler lacks (none of ours).
    pub fn set_mix_rate(&mut self, mix: Rate) -> std::io::Result<()> {
        if mix == self.mix {
            return Ok(());
        }
        self.decoder.set_mix_rate(mix).map_err(invalid)?;
        self.own.set_mix_rate(mix).map_err(invalid)?;
        if let Some(d) = &mut self.denoiser {
            d.set_rate(mix).map_err(invalid)?;
        }
        if let Some(prompt) = &mut self.prompt {
            prompt.set_mix_rate(mix);
        }
        self.mix = mix;
        self.frame = vec![0; mix.samples(20)];
        self.frame_is_zero = true;
        Ok(())
    }

    /// Plays `audio` (48 kHz) to the leg instead of the mix, or stops the prompt playing.
    /// Allocates (a resampler to a narrower mix): between ticks.
    pub fn play(&mut self, audio: Option<Arc<[i16]>>) {
        self.prompt = audio.map(|audio| Prompt::new(audio, self.mix));
    }

    /// How loud the participant hears the conference.
    pub fn listen_gain(&self) -> Gain {
        self.listen_gain
    }

    pub fn set_listen_gain(&mut self, gain: Gain) {
        self.listen_gain = gain;
    }

    /// How loud the others hear the participant.
    pub fn talk_gain(&self) -> Gain {
        self.talk_gain
    }

    pub fn set_talk_gain(&mut self, gain: Gain) {
        self.set_gain = gain;
        self.talk_gain = with_auto_gain(gain, self.auto_gain_db);
    }

    /// Whether the participant's audio is denoised.
    pub fn noise_suppression(&self) -> bool {
        self.denoiser.is_some()
    }

    /// Switches noise suppression of the participant's audio on or off. Switching it on
    /// allocates RNNoise's state: between ticks.
    pub fn set_noise_suppression(&mut self, on: bool) -> std::io::Result<()> {
        match (on, self.denoiser.is_some()) {
            (true, false) => {
                self.denoiser = Some(Box::new(Denoiser::new(self.mix).map_err(invalid)?));
            }
            (false, true) => self.denoiser = None,
            _ => {}
        }
        Ok(())
    }

    /// The automatic gain now, in dB (0 when it is off).
    pub fn auto_gain_db(&self) -> f32 {
        self.auto_gain_db
    }

    /// Lets the automatic gain learn from this tick's speech verdict.
    fn follow_auto_gain(&mut self) {
        let Some(agc) = &mut self.auto_gain else {
            return;
        };
        let db = agc.update(self.activity);
        // A twentieth of a dB is below hearing; recomputing the factor only past it keeps the
        // power function off most ticks.
        if (db - self.auto_gain_db).abs() >= 0.05 {
            self.auto_gain_db = db;
            self.talk_gain = with_auto_gain(self.set_gain, db);
        }
    }

    /// The loss (percent) the receiver last reported of our stream in its RTCP, if it did.
    /// A relayed (WebRTC) leg's RTCP is read by the driver: see `RtpLeg::path_report`.
    pub fn reported_loss(&self) -> Option<f32> {
        self.rtcp
            .remote_report()
            .map(|b| f32::from(b.fraction_lost) * 100.0 / 256.0)
    }

    /// Takes another look at the receiver's last report of our stream (`reported`, percent;
    /// the conference calls it about once a second, `opus_path::ADAPT_EVERY`): the loss is
    /// smoothed, and the leg's own Opus encoder (mix-minus, prompts) follows it and the
    /// receiver's fmtp. Returns the smoothed loss, for the group encode the leg shares.
    pub fn follow_path(&mut self, reported: Option<f32>) -> f32 {
        let loss = self.path.observe(reported);
        if self.spec.codec == Codec::Opus {
            let mut receivers = Receivers::NONE;
            receivers.add(loss, &self.spec.opus);
            let target = self
                .own_adaptation
                .decide(&receivers, &OpusSettings::default());
            if let Err(e) = self.own.adapt(&target) {
                // Values from `decide` are in range: only a libopus refusal gets here.
                tracing::debug!(error = %e, "own opus encoder kept its settings");
            }
        }
        loss
    }

    /// The leg's own Opus encoder's settings now (`None` for the other codecs).
    pub fn own_opus_settings(&self) -> Option<OpusSettings> {
        self.own.opus_settings()
    }

    /// Whether a prompt is playing.
    pub fn playing(&self) -> bool {
        self.prompt.is_some()
    }

    /// Turns in-band DTMF detection on the decoded audio on or off (allocates: between ticks).
    pub fn detect_inband_dtmf(&mut self, on: bool) {
        self.inband = on.then(|| Box::new(DtmfDetector::new()));
    }

    /// The next DTMF digit received, oldest first.
    pub fn take_dtmf(&mut self) -> Option<Dtmf> {
        let first = self.dtmf[0].take();
        self.dtmf.rotate_left(1);
        first
    }

    fn queue_dtmf(&mut self, d: Dtmf) {
        self.stats.dtmf_in += 1;
        if let Some(slot) = self.dtmf.iter_mut().find(|s| s.is_none()) {
            *slot = Some(d);
        }
    }

    /// This tick's decoded audio at the mix rate.
    pub fn frame(&self) -> &[i16] {
        &self.frame
    }

    pub fn activity(&self) -> Activity {
        self.activity
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Whether RTP arrived at all.
    pub fn media_seen(&self) -> bool {
        self.rtp_seen
    }

    /// Time since the last packet from the peer (or since the leg was made).
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.latch.last_rx().unwrap_or(self.created))
    }

    /// When [`LegCore::handle_timeout`] has something to do: our next RTCP report, or a DTMF
    /// digit whose end packets never came.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let rtcp = match self.route {
            Route::Direct { .. } => Some(self.rtcp.next_report()),
            Route::Relayed => None,
        };
        let dtmf = self.telephone_events.as_ref().and_then(|t| t.deadline());
        match (rtcp, dtmf) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The speech detector of a leg, at its codec's own rate.
fn speech_detector(codec: Codec) -> SpeechDetector {
    SpeechDetector::new(codec.rate().hz(), 20, SpeechSettings::default())
}

#[cfg(test)]
mod latch_tests;
#[cfg(test)]
mod stretch_tests;
#[cfg(test)]
mod tests;
