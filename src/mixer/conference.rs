//! One conference as its mixer thread holds it: the roster, the legs, and the tick that mixes.
//!
//! Per tick: read every leg, decode 20 ms from each, detect speech on each (muted legs too),
//! update the dominant speaker, pick the top-K talkers, mix. Every talker gets the sum minus
//! itself from its own encoder; every other listener gets the shared sum, encoded once per
//! (codec, packet time) group and sent with the leg's own header. Deaf participants and those
//! still waiting get comfort noise (or silence) from their own encoder; with nobody talking the
//! shared sum is comfort noise, so carriers do not drop a quiet call.
//!
//! The mix runs at the highest rate among the legs' codecs, as Asterisk's ConfBridge does: a
//! meeting of phones mixes 160 samples a tick at 8 kHz and resamples nothing; once a G.722 or
//! Opus leg joins, every leg's resamplers follow the wider mix (between ticks, at the join),
//! and when the last wideband leg has left the mix narrows again.

mod groups;
mod names;
mod opus_paths;
mod records;
#[cfg(test)]
mod sim_control_tests;
#[cfg(test)]
mod sim_fec_tests;
#[cfg(test)]
mod sim_gain_tests;
#[cfg(test)]
mod sim_mix_tests;
#[cfg(test)]
mod sim_names_tests;
#[cfg(test)]
mod sim_network_tests;
#[cfg(test)]
mod sim_noise_tests;
#[cfg(test)]
mod sim_notice_tests;
#[cfg(test)]
mod sim_signal_tests;
#[cfg(test)]
mod sim_sound_tests;
#[cfg(test)]
mod sim_tests;
mod sounds;
mod tick;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use confab_dsp::cng::ComfortNoise;
use confab_dsp::dominant::DominantSpeaker;
use confab_dsp::mix::Mixer;
use confab_dsp::resample::Rate;

use crate::conference::talkers::Talkers;
use crate::conference::{DisconnectReason, Event, Joining, ParticipantId, Policy, Roster, State};
use crate::media::codec::WIDEST_MIX;
use crate::media::leg::{LegStats, RtpLeg};
use crate::mixer::helper::Outbound;
use crate::mixer::room_sounds::RoomSounds;
use crate::mixer::stats::{ConferenceSnapshot, LegTotals, MixerSnapshot};
use crate::store::RecordEvent;
use groups::Group;
pub use groups::Tier;

/// A conference id (the meeting ID); cheap to clone into events.
pub type ConferenceId = Arc<str>;

/// Counters a conference shares with the outside (read without locks).
#[derive(Debug, Default)]
pub struct ConferenceCounters {
    pub ticks: AtomicU64,
    /// Encodes of the shared mix (once per group and packet).
    pub encodes_shared: AtomicU64,
    /// Encodes for one leg alone (talkers' mix-minus, comfort noise for deaf legs).
    pub encodes_own: AtomicU64,
    /// The same by codec (see `mixer::stats::codec_index`).
    pub shared_by_codec: [AtomicU64; 4],
    pub own_by_codec: [AtomicU64; 4],
    /// Ticks whose per-leg work was split with the mixer thread's helper.
    pub split_ticks: AtomicU64,
    /// Test-only: the next tick panics (the mixer thread must contain it).
    #[cfg(test)]
    pub panic_next_tick: std::sync::atomic::AtomicBool,
}

/// An event of a conference, for the API's event stream.
#[derive(Clone, Debug, PartialEq)]
pub struct ConferenceEvent {
    pub conference: ConferenceId,
    pub event: Event,
}

/// Loudest RFC 6464 level (-dBov) at which a leg that is not speech may still be mixed.
const NON_SPEECH_GATE: u8 = 45;

/// Shared-encode groups per conference: 3 codecs × 6 packet times, and Opus × 6 packet times
/// × 3 tiers (see `groups`).
const MAX_GROUPS: usize = 36;

/// A conference's media state, owned by one mixer thread.
pub struct ConferenceMedia {
    pub id: ConferenceId,
    pub roster: Roster,
    /// Boxed, so that half of them can move to the mixer thread's helper and back cheaply
    /// (a pointer each, not a leg's kilobytes).
    #[allow(clippy::vec_box)]
    legs: Vec<Box<RtpLeg>>,
    /// For each leg, the index of its group.
    leg_groups: Vec<usize>,
    /// For each leg, its part in the conference's own sounds (music, tones).
    leg_sounds: Vec<sounds::LegSound>,
    /// Music on hold and the enter and exit tones, at every mix rate (shared).
    sounds: Arc<RoomSounds>,
    /// The enter and exit tones playing.
    chimes: sounds::Chimes,
    /// Recorded names to say, one after another (`entry_exit: names`).
    announcements: names::Announcements,
    groups: Vec<Group>,
    /// This tick's shared packets, shared with the helper while it sends.
    outbound: Arc<Outbound>,
    /// For each leg, the group whose packets it is sent this tick (or `NO_GROUP`).
    send_plan: Vec<usize>,
    /// Kept between ticks for their capacity: the half of the legs that goes to the helper,
    /// and their send plan.
    #[allow(clippy::vec_box)]
    away_legs: Vec<Box<RtpLeg>>,
    away_plan: Vec<usize>,
    /// Legs that left in a tick, with when, kept until [`ConferenceMedia::settle`]: freeing a
    /// leg (its buffers, codec state, socket) and writing its record are the allocator's and the
    /// kernel's work, which the tick does not do. Room for every leg is reserved as legs come,
    /// so the push in the tick never allocates; emptied after every tick.
    #[allow(clippy::vec_box)]
    departed: Vec<(Box<RtpLeg>, Instant)>,
    talkers: Talkers,
    dominant: DominantSpeaker<ParticipantId>,
    /// The mix rate: the highest of the legs' codec rates.
    rate: Rate,
    /// A leg left during a tick: the mix may narrow, between ticks.
    rate_stale: bool,
    /// The mixer and the frames of one tick, at `rate`.
    mix: MixFrames,
    media_timeout: Duration,
    /// When the Opus encoders next follow what receivers report of their paths.
    next_path_look: Option<Instant>,
    pub counters: Arc<ConferenceCounters>,
    /// Where call records go (the storage writer), if anywhere.
    records: Option<std::sync::mpsc::Sender<RecordEvent>>,
    /// Counters of the legs that have left.
    closed: LegTotals,
    /// The most legs it has had at once (for its conference record).
    peak_legs: usize,
    /// The recording of the mix, if one is on (it gets every tick's frame).
    recording: Option<crate::recording::RecordingTap>,
}

impl std::fmt::Debug for ConferenceMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConferenceMedia")
            .field("id", &self.id)
            .field("legs", &self.legs.len())
            .finish_non_exhaustive()
    }
}

impl ConferenceMedia {
    pub fn new(
        id: ConferenceId,
        policy: Policy,
        max_talkers: usize,
        media_timeout: Duration,
    ) -> Self {
        ConferenceMedia {
            id,
            roster: Roster::new(policy),
            legs: Vec::new(),
            leg_groups: Vec::new(),
            leg_sounds: Vec::new(),
            sounds: RoomSounds::builtin(),
            chimes: sounds::Chimes::default(),
            announcements: names::Announcements::default(),
            groups: Vec::new(),
            outbound: Arc::new(Outbound::default()),
            send_plan: Vec::new(),
            away_legs: Vec::new(),
            away_plan: Vec::new(),
            departed: Vec::new(),
            talkers: Talkers::new(max_talkers),
            dominant: DominantSpeaker::new(),
            rate: WIDEST_MIX,
            rate_stale: false,
            mix: MixFrames::new(WIDEST_MIX),
            media_timeout,
            next_path_look: None,
            counters: Arc::new(ConferenceCounters::default()),
            records: None,
            closed: LegTotals::default(),
            peak_legs: 0,
            recording: None,
        }
    }

    /// Records the mix into `tap` from the next tick (`None` stops); answers the tap before.
    pub fn set_recording(
        &mut self,
        tap: Option<crate::recording::RecordingTap>,
    ) -> Option<crate::recording::RecordingTap> {
        if tap.is_some() && self.recording.is_none() {
            // Everyone hears that the conference is being recorded (and so does the recording).
            self.start_notices();
        }
        self.chimes.recording_on = tap.is_some();
        std::mem::replace(&mut self.recording, tap)
    }

    /// Plays `sounds` (music on hold, tones) from now on instead of the built-in ones.
    pub fn set_sounds(&mut self, sounds: Arc<RoomSounds>) {
        self.sounds = sounds;
    }

    /// Adds this conference's figures to a mixer thread's snapshot.
    pub fn snapshot(&self, into: &mut MixerSnapshot) {
        let mut participants = [0usize; 3];
        for p in self.roster.participants() {
            match p.state {
                State::Inviting => participants[0] += 1,
                State::Connecting => participants[1] += 1,
                State::Connected => participants[2] += 1,
                State::Disconnected(_) => {}
            }
        }
        into.conferences.push(ConferenceSnapshot {
            id: self.id.to_string(),
            participants,
            mix_rate_hz: self.rate.hz(),
        });
        into.legs.merge(&self.closed);
        for leg in &self.legs {
            let s = leg.stats();
            into.legs.add_leg(&s);
        }
        self.add_encodes(into);
    }

    /// What a conference leaves behind when it is gone: its legs' counters and encodes.
    pub fn retire(&self, into: &mut MixerSnapshot) {
        into.legs.merge(&self.closed);
        for leg in &self.legs {
            into.legs.add_ended(&leg.stats());
        }
        self.add_encodes(into);
    }

    fn add_encodes(&self, into: &mut MixerSnapshot) {
        for i in 0..4 {
            into.encodes_shared[i] += self.counters.shared_by_codec[i].load(Ordering::Relaxed);
            into.encodes_own[i] += self.counters.own_by_codec[i].load(Ordering::Relaxed);
        }
    }

    /// After a panic in this conference's tick (a bug): every participant present is
    /// disconnected as `internal-error`, with its record closed and its events emitted (SIP
    /// hangs up, WebRTC peers are let go), and the media state starts anew, empty. The roster
    /// stays as history, and the meeting can be joined again. Allocates: it happens only by a
    /// bug, between ticks.
    pub fn recover(&mut self, now: Instant, mut emit: impl FnMut(ConferenceEvent)) {
        let mut fresh = ConferenceMedia::new(
            Arc::clone(&self.id),
            self.roster.policy(),
            self.talkers.limit(),
            self.media_timeout,
        );
        fresh.counters = Arc::clone(&self.counters);
        fresh.records = self.records.clone();
        fresh.peak_legs = self.peak_legs;
        fresh.sounds = Arc::clone(&self.sounds);
        let mut old = std::mem::replace(self, fresh);
        // The old state may be what broke: if ending its calls panics too, the roster is
        // given up and the legs are dropped all the same (their sockets close).
        let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let present: Vec<ParticipantId> = old
                .roster
                .participants()
                .iter()
                .filter(|p| p.state.is_present())
                .map(|p| p.id)
                .collect();
            for id in present {
                let _ = old.roster.disconnect(id, DisconnectReason::InternalError);
                old.dominant.remove(id);
                let leg = old.legs.iter().find(|l| l.participant == id).map(|l| &**l);
                old.send_record(false, id, leg, now);
            }
            while let Some(event) = old.roster.poll_event() {
                emit(ConferenceEvent {
                    conference: old.id.clone(),
                    event,
                });
            }
            for leg in &old.legs {
                old.closed.add_ended(&leg.stats());
            }
        }));
        if ended.is_ok() {
            self.roster = std::mem::take(&mut old.roster);
        } else {
            // Ending them properly panicked too: say at least that they are gone, so that
            // signalling hangs up (read-only, and given up if even that panics).
            let present = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                old.roster
                    .participants()
                    .iter()
                    .filter(|p| p.state.is_present())
                    .map(|p| p.id)
                    .collect::<Vec<_>>()
            }))
            .unwrap_or_default();
            for participant in present {
                emit(ConferenceEvent {
                    conference: Arc::clone(&self.id),
                    event: Event::State {
                        participant,
                        state: State::Disconnected(DisconnectReason::InternalError),
                    },
                });
            }
        }
        self.closed.merge(&old.closed);
    }

    /// Legs present (not yet removed).
    pub fn leg_count(&self) -> usize {
        self.legs.len()
    }

    /// The rate the conference mixes at.
    pub fn mix_rate(&self) -> Rate {
        self.rate
    }

    /// What a tick leaves to do between ticks: the records of the legs that left, and freeing
    /// them; after a leg left, the mix may narrow. Allocates and frees.
    pub fn settle(&mut self) {
        for (leg, at) in &self.departed {
            self.send_record(false, leg.participant, Some(leg), *at);
        }
        self.departed.clear();
        self.announcements.release();
        if std::mem::take(&mut self.rate_stale) {
            self.fit_rate();
        }
    }

    /// Mixes at the highest rate among the legs' codecs (unchanged with no legs), and brings
    /// every leg and group encoder to it. Allocates when the rate changes: between ticks.
    fn fit_rate(&mut self) {
        let wanted = self
            .legs
            .iter()
            .map(|l| l.spec().codec.rate())
            .max_by_key(|r| r.hz())
            .unwrap_or(self.rate);
        if wanted != self.rate {
            tracing::debug!(conference = %self.id, from = self.rate.hz(), to = wanted.hz(), "mix rate");
            // The music and tones go on from the same moment in the copy at the new rate.
            for s in &mut self.leg_sounds {
                s.music_at = sounds::rescale(s.music_at, self.rate, wanted);
                if let Some((_, at)) = &mut s.notice {
                    *at = sounds::rescale(*at, self.rate, wanted);
                }
            }
            self.chimes.rescale(self.rate, wanted);
            self.announcements.rescale(self.rate, wanted);
            for leg in &mut self.legs {
                leg.name.rescale(wanted);
            }
            self.rate = wanted;
            self.mix = MixFrames::new(wanted);
            for group in &mut self.groups {
                if let Err(e) = group.encoder.set_mix_rate(wanted) {
                    tracing::warn!(error = %e, codec = group.codec.name(), "group encoder kept its rate");
                }
            }
        }
        for leg in &mut self.legs {
            if let Err(e) = leg.set_mix_rate(wanted) {
                tracing::warn!(error = %e, participant = %leg.participant, "leg kept its mix rate");
            }
        }
    }

    pub fn leg_stats(&self, participant: ParticipantId) -> Option<LegStats> {
        self.legs
            .iter()
            .find(|l| l.participant == participant)
            .map(|l| l.stats())
    }

    /// Adds a dial-in leg: joins the roster (`connecting`) and takes the leg into the mix.
    /// Allocates (a group encoder for a new codec and packet time): call it between ticks.
    pub fn add_leg(
        &mut self,
        joining: Joining,
        leg: RtpLeg,
        now: Instant,
    ) -> Result<(), crate::conference::JoinError> {
        let id = joining.id;
        if let Err(e) = self.roster.join(joining) {
            // The refusal is kept as a record too.
            self.send_record(false, id, None, now);
            return Err(e);
        }
        self.take_in(leg, now);
        Ok(())
    }

    /// A leg's new settings from signalling; it moves to the group of its new codec.
    pub fn respec_leg(
        &mut self,
        participant: ParticipantId,
        spec: crate::media::leg::LegSpec,
    ) -> Result<(), crate::mixer::CommandError> {
        let i = self
            .legs
            .iter()
            .position(|l| l.participant == participant)
            .ok_or(crate::mixer::CommandError::NoParticipant)?;
        self.legs[i]
            .respec(spec)
            .map_err(|_| crate::mixer::CommandError::NoParticipant)?;
        self.leg_groups[i] =
            self.group_for(spec.codec, spec.ptime_ms, Tier::of(spec.codec, &spec.opus));
        self.fit_rate();
        Ok(())
    }

    /// The leg of an answered dial-out (the participant is in the roster, `inviting`).
    pub fn attach_leg(
        &mut self,
        leg: RtpLeg,
        now: Instant,
    ) -> Result<(), crate::mixer::CommandError> {
        self.roster
            .answered(leg.participant)
            .map_err(|_| crate::mixer::CommandError::NoParticipant)?;
        let mut leg = leg;
        if let Some(p) = self.roster.participant(leg.participant) {
            // Gains set while it was ringing.
            leg.set_talk_gain(confab_dsp::mix::Gain::from_db(p.input_gain_db));
            leg.set_listen_gain(confab_dsp::mix::Gain::from_db(p.output_gain_db));
        }
        self.take_in(leg, now);
        Ok(())
    }

    /// Takes a leg into the mix. Allocates (a group encoder for a new codec and packet time).
    fn take_in(&mut self, mut leg: RtpLeg, now: Instant) {
        // A name recorded in the lobby is ended here, between ticks (it allocates).
        leg.name.finish();
        let spec = *leg.spec();
        let group = self.group_for(spec.codec, spec.ptime_ms, Tier::of(spec.codec, &spec.opus));
        self.send_record(true, leg.participant, Some(&leg), now);
        self.dominant.add(leg.participant);
        self.legs.push(Box::new(leg));
        self.peak_legs = self.peak_legs.max(self.legs.len());
        self.leg_groups.push(group);
        self.leg_sounds.push(sounds::LegSound::default());
        // Room for every leg in the tick's own vectors, so that the tick never allocates.
        let n = self.legs.len();
        self.send_plan.reserve(n);
        self.away_plan.reserve(n);
        self.away_legs.reserve(n);
        self.departed.reserve(n);
        self.fit_rate();
    }

    /// A leg, to act on it between ticks.
    pub fn leg_mut(&mut self, participant: ParticipantId) -> Option<&mut RtpLeg> {
        self.legs
            .iter_mut()
            .find(|l| l.participant == participant)
            .map(|l| &mut **l)
    }

    /// Takes a leg out (to move it to another conference): the participant is disconnected
    /// here as `transferred`, the leg keeps its socket, codecs and SRTP.
    pub fn take_leg(&mut self, participant: ParticipantId, now: Instant) -> Option<RtpLeg> {
        let i = self
            .legs
            .iter()
            .position(|l| l.participant == participant)?;
        let _ = self
            .roster
            .disconnect(participant, DisconnectReason::Transferred);
        self.send_record(false, participant, self.legs.get(i).map(|l| &**l), now);
        self.closed.add_leg(&self.legs[i].stats());
        self.leg_groups.swap_remove(i);
        self.forget_leg_sound(i);
        self.dominant.remove(participant);
        let leg = *self.legs.swap_remove(i);
        self.fit_rate();
        Some(leg)
    }

    /// Removes legs of participants no longer present (their ports go back to the pool).
    fn prune(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.legs.len() {
            let id = self.legs[i].participant;
            let present = self
                .roster
                .participant(id)
                .is_some_and(|p| !matches!(p.state, State::Disconnected(_)));
            if present {
                i += 1;
            } else {
                self.closed.add_ended(&self.legs[i].stats());
                self.forget_leg_sound(i);
                let leg = self.legs.swap_remove(i);
                self.departed.push((leg, now));
                self.leg_groups.swap_remove(i);
                self.dominant.remove(id);
                self.rate_stale = true;
            }
        }
    }
}

/// What the tick mixes with, sized for one 20 ms frame at the mix rate.
struct MixFrames {
    mixer: Mixer,
    comfort: ComfortNoise,
    /// The sum every listener hears.
    shared: Vec<i16>,
    /// A talker's mix-minus, a prompt, a deaf leg's comfort noise, music on hold.
    scratch: Vec<i16>,
    silence: Vec<i16>,
    /// This tick's frame of the enter tone, and whether it plays (it is in the sum).
    enter: Vec<i16>,
    enter_on: bool,
    /// This tick's frame of the announcement playing.
    announce: Vec<i16>,
    /// The recording's frame while it opens with the notice (the sum and the notice).
    recorded: Vec<i16>,
}

impl MixFrames {
    fn new(rate: Rate) -> Self {
        let n = rate.samples(20);
        MixFrames {
            mixer: Mixer::new(n),
            // -70 dBov: inaudible but not digital silence.
            comfort: ComfortNoise::new(rate.hz(), 70, 0x5EED),
            shared: vec![0; n],
            scratch: vec![0; n],
            silence: vec![0; n],
            enter: vec![0; n],
            enter_on: false,
            announce: vec![0; n],
            recorded: vec![0; n],
        }
    }
}
