//! One conference as its mixer thread holds it: the roster, the legs, and the tick that mixes.
//!
//! Per tick: read every leg, decode 20 ms from each, detect speech on each (muted legs too),
//! update the dominant speaker, pick the top-K talkers, mix. Every talker gets the sum minus
//! itself from its own encoder; every other listener gets the shared sum, encoded once per
//! (codec, packet time) group and sent with the leg's own header. Deaf participants and those
//! still waiting get comfort noise (or silence) from their own encoder; with nobody talking the
//! shared sum is comfort noise, so carriers do not drop a quiet call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use confab_dsp::cng::ComfortNoise;
use confab_dsp::dominant::DominantSpeaker;
use confab_dsp::mix::{Gain, Mixer};
use confab_dsp::opus::OpusSettings;

use crate::conference::talkers::{Candidate, Talkers};
use crate::conference::{
    DisconnectReason, Event, Joining, ParticipantId, Policy, Role, Roster, State,
};
use crate::media::codec::{Codec, LegEncoder, MIX_FRAME, MIX_RATE};
use crate::media::leg::{LegStats, RtpLeg};
use crate::media::rtp::MAX_PACKET;
use crate::mixer::stats::{ConferenceSnapshot, LegTotals, MixerSnapshot, codec_index};
use crate::store::{Record, RecordEvent};

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
}

/// An event of a conference, for the API's event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConferenceEvent {
    pub conference: ConferenceId,
    pub event: Event,
}

/// Loudest RFC 6464 level (-dBov) at which a leg that is not speech may still be mixed.
const NON_SPEECH_GATE: u8 = 45;

/// Distinct (codec, packet time) groups per conference: 4 codecs × 6 packet times.
const MAX_GROUPS: usize = 24;

/// Packets a group made this tick (10 ms packets give two per tick).
const MAX_GROUP_PACKETS: usize = 2;

/// Listeners sharing one encode: same codec and packet time.
struct Group {
    codec: Codec,
    ptime_ms: u32,
    encoder: LegEncoder,
    packets: [([u8; MAX_PACKET], usize); MAX_GROUP_PACKETS],
    count: usize,
}

/// A conference's media state, owned by one mixer thread.
pub struct ConferenceMedia {
    pub id: ConferenceId,
    pub roster: Roster,
    legs: Vec<RtpLeg>,
    /// For each leg, the index of its group.
    leg_groups: Vec<usize>,
    groups: Vec<Group>,
    talkers: Talkers,
    dominant: DominantSpeaker<ParticipantId>,
    mixer: Mixer,
    comfort: ComfortNoise,
    shared: Vec<i16>,
    scratch: Vec<i16>,
    silence: Vec<i16>,
    media_timeout: Duration,
    pub counters: Arc<ConferenceCounters>,
    /// Where call records go (the storage writer), if anywhere.
    records: Option<std::sync::mpsc::Sender<RecordEvent>>,
    /// Counters of the legs that have left.
    closed: LegTotals,
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
            groups: Vec::new(),
            talkers: Talkers::new(max_talkers),
            dominant: DominantSpeaker::new(),
            mixer: Mixer::new(MIX_FRAME),
            // -70 dBov: inaudible but not digital silence.
            comfort: ComfortNoise::new(MIX_RATE, 70, 0x5EED),
            shared: vec![0; MIX_FRAME],
            scratch: vec![0; MIX_FRAME],
            silence: vec![0; MIX_FRAME],
            media_timeout,
            counters: Arc::new(ConferenceCounters::default()),
            records: None,
            closed: LegTotals::default(),
        }
    }

    /// Sends call records to `records` from now on.
    pub fn set_records(&mut self, records: Option<std::sync::mpsc::Sender<RecordEvent>>) {
        self.records = records;
    }

    /// A record of `participant`'s leg as it stands (its figures when it ends).
    fn record_of(&self, participant: ParticipantId, leg: Option<&RtpLeg>) -> Option<Record> {
        let p = self.roster.participant(participant)?;
        let stats = leg.map(RtpLeg::stats);
        let srtp = stats.is_some_and(|s| s.srtp);
        Some(Record {
            conference: self.id.to_string(),
            participant: participant.to_string(),
            display_name: p.display_name.clone(),
            uri: p.uri.clone(),
            role: match p.role {
                Role::Leader => "leader".into(),
                Role::Attendee => "attendee".into(),
            },
            transport: match (stats.is_some_and(|s| s.webrtc), srtp) {
                (true, _) => "webrtc",
                (false, true) => "srtp",
                (false, false) => "rtp",
            }
            .into(),
            codec: stats.and_then(|s| s.codec).map(|c| c.name().to_owned()),
            srtp,
            joined_at: crate::store::unix_ms(std::time::SystemTime::now()),
            left_at: None,
            reason: match p.state {
                State::Disconnected(r) => Some(r.as_str().to_owned()),
                _ => None,
            },
            sip_status: p.sip_status,
            packets_in: stats.map_or(0, |s| s.packets_in),
            packets_out: stats.map_or(0, |s| s.packets_out),
            packets_lost: stats.map_or(0, |s| s.packets_lost),
            jitter_ms: stats.map(|s| s.jitter_ms),
            rtt_ms: stats.and_then(|s| s.rtt_ms),
            mos: stats.filter(|s| s.packets_in > 0).map(|s| s.mos),
            id: 0,
        })
    }

    fn send_record(&self, open: bool, participant: ParticipantId, leg: Option<&RtpLeg>) {
        let Some(records) = &self.records else { return };
        let Some(mut record) = self.record_of(participant, leg) else {
            return;
        };
        let event = if open {
            RecordEvent::Open {
                participant,
                record: Box::new(record),
            }
        } else {
            record.left_at = Some(record.joined_at);
            RecordEvent::Close {
                participant,
                record: Box::new(record),
            }
        };
        let _ = records.send(event);
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
        });
        into.legs.merge(&self.closed);
        for leg in &self.legs {
            let s = leg.stats();
            into.legs.add_leg(&s);
            into.jitter_ms_sum += s.jitter_ms;
            into.legs_present += 1;
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

    /// Legs present (not yet removed).
    pub fn leg_count(&self) -> usize {
        self.legs.len()
    }

    pub fn leg_stats(&self, participant: ParticipantId) -> Option<LegStats> {
        self.legs
            .iter()
            .find(|l| l.participant == participant)
            .map(RtpLeg::stats)
    }

    /// Adds a dial-in leg: joins the roster (`connecting`) and takes the leg into the mix.
    /// Allocates (a group encoder for a new codec and packet time): call it between ticks.
    pub fn add_leg(
        &mut self,
        joining: Joining,
        leg: RtpLeg,
    ) -> Result<(), crate::conference::JoinError> {
        let id = joining.id;
        if let Err(e) = self.roster.join(joining) {
            // The refusal is kept as a record too.
            self.send_record(false, id, None);
            return Err(e);
        }
        self.take_in(leg);
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
        self.leg_groups[i] = self.group_for(spec.codec, spec.ptime_ms);
        Ok(())
    }

    /// The leg of an answered dial-out (the participant is in the roster, `inviting`).
    pub fn attach_leg(&mut self, leg: RtpLeg) -> Result<(), crate::mixer::CommandError> {
        self.roster
            .answered(leg.participant)
            .map_err(|_| crate::mixer::CommandError::NoParticipant)?;
        self.take_in(leg);
        Ok(())
    }

    /// Takes a leg into the mix. Allocates (a group encoder for a new codec and packet time).
    fn take_in(&mut self, leg: RtpLeg) {
        let spec = *leg.spec();
        let group = self.group_for(spec.codec, spec.ptime_ms);
        self.send_record(true, leg.participant, Some(&leg));
        self.dominant.add(leg.participant);
        self.legs.push(leg);
        self.leg_groups.push(group);
    }

    /// A leg, to act on it between ticks.
    pub fn leg_mut(&mut self, participant: ParticipantId) -> Option<&mut RtpLeg> {
        self.legs.iter_mut().find(|l| l.participant == participant)
    }

    /// Takes a leg out (to move it to another conference): the participant is disconnected
    /// here as `transferred`, the leg keeps its socket, codecs and SRTP.
    pub fn take_leg(&mut self, participant: ParticipantId) -> Option<RtpLeg> {
        let i = self
            .legs
            .iter()
            .position(|l| l.participant == participant)?;
        let _ = self
            .roster
            .disconnect(participant, DisconnectReason::Transferred);
        self.send_record(false, participant, self.legs.get(i));
        self.closed.add_leg(&self.legs[i].stats());
        self.leg_groups.swap_remove(i);
        self.dominant.remove(participant);
        Some(self.legs.swap_remove(i))
    }

    /// The shared-encode group of a codec and packet time, made when it is the first.
    fn group_for(&mut self, codec: Codec, ptime_ms: u32) -> usize {
        if let Some(i) = self
            .groups
            .iter()
            .position(|g| g.codec == codec && g.ptime_ms == ptime_ms)
        {
            return i;
        }
        // The leg's own encoder was made from the same settings, so this cannot fail where
        // that one succeeded; if it does, the leg gets its own encodes only.
        match LegEncoder::new(codec, ptime_ms, OpusSettings::default()) {
            Ok(encoder) => {
                self.groups.push(Group {
                    codec,
                    ptime_ms,
                    encoder,
                    packets: [([0; MAX_PACKET], 0); MAX_GROUP_PACKETS],
                    count: 0,
                });
                self.groups.len() - 1
            }
            Err(_) => usize::MAX,
        }
    }

    /// Removes legs of participants no longer present (their ports go back to the pool).
    fn prune(&mut self) {
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
                self.send_record(false, id, self.legs.get(i));
                self.closed.add_ended(&self.legs[i].stats());
                self.legs.swap_remove(i);
                self.leg_groups.swap_remove(i);
                self.dominant.remove(id);
            }
        }
    }

    /// One 20 ms tick. Events from the roster go to `emit`.
    pub fn tick(&mut self, now: Instant, mut emit: impl FnMut(ConferenceEvent)) {
        self.counters.ticks.fetch_add(1, Ordering::Relaxed);
        if self.legs.is_empty() {
            // Nobody to hear or be heard: no comfort noise, no mix, no encode. Roster events
            // (a lock, an invite) still go out. An idle conference costs this branch alone.
            while let Some(event) = self.roster.poll_event() {
                emit(ConferenceEvent {
                    conference: self.id.clone(),
                    event,
                });
            }
            return;
        }
        for leg in &mut self.legs {
            leg.receive(now);
            leg.maintain(now);
            while let Some(d) = leg.take_dtmf() {
                emit(ConferenceEvent {
                    conference: self.id.clone(),
                    event: Event::Dtmf {
                        participant: leg.participant,
                        digit: d.digit,
                        duration_ms: d.duration.as_millis() as u32,
                    },
                });
            }
        }
        for leg in &mut self.legs {
            leg.produce_frame();
            let id = leg.participant;
            if leg.media_seen() && self.roster.participant(id).is_some_and(|p| !p.media_ready) {
                let _ = self.roster.media_ready(id);
            }
            if let Some(reason) = leg.closed() {
                // The WebRTC driver let the peer go (DELETE, ICE timeout, DTLS).
                let _ = self.roster.disconnect(id, reason);
                continue;
            }
            if leg.silent_for(now) >= self.media_timeout {
                let _ = self.roster.disconnect(id, DisconnectReason::MediaTimeout);
                continue;
            }
            let activity = leg.activity();
            let _ = self.roster.set_speaking(id, activity.talking);
            self.dominant
                .observe(id, activity.active && self.roster.heard(id));
        }
        if let Some(d) = self.dominant.decide() {
            self.roster.dominant_speaker(d);
        }

        let roster = &self.roster;
        let legs = &self.legs;
        // Talkers rank by level; legs that are loud but not speech (music, a tone) may fill
        // places talkers leave free, ranked below every talker.
        self.talkers
            .select(legs.iter().enumerate().filter_map(|(slot, leg)| {
                let a = leg.activity();
                if !roster.heard(leg.participant) {
                    return None;
                }
                if a.talking {
                    Some(Candidate {
                        slot,
                        level: a.level,
                    })
                } else if a.level <= NON_SPEECH_GATE {
                    Some(Candidate {
                        slot,
                        level: a.level.saturating_add(64).min(126),
                    })
                } else {
                    None
                }
            }));
        self.mixer.clear();
        // The talkers in the mix, named in every packet (RFC 6465) with their levels.
        let mut csrcs = [0u32; 16];
        let mut levels = [0u8; 16];
        let mut csrc_count = 0;
        for t in self.talkers.current().iter().take(16) {
            let leg = &self.legs[t.slot];
            self.mixer.add(leg.frame(), Gain::UNITY);
            csrcs[csrc_count] = leg.ssrc();
            levels[csrc_count] = leg.activity().level;
            csrc_count += 1;
        }
        if self.mixer.inputs() == 0 {
            self.comfort.fill(&mut self.shared);
        } else {
            self.mixer.render(&mut self.shared);
        }
        let csrcs = &csrcs[..csrc_count];
        let levels = &levels[..csrc_count];

        // Shared encodes: once per group that has a listener this tick (one pass over the legs).
        let mut listening = [false; MAX_GROUPS];
        for (slot, leg) in self.legs.iter().enumerate() {
            let g = self.leg_groups[slot];
            if g < MAX_GROUPS && !self.talkers.contains(slot) && roster.hears(leg.participant) {
                listening[g] = true;
            }
        }
        for (g, group) in self.groups.iter_mut().enumerate() {
            group.count = 0;
            if !listening.get(g).copied().unwrap_or(false) {
                continue;
            }
            group.encoder.push_frame(&self.shared);
            while group.count < MAX_GROUP_PACKETS {
                let (buf, len) = &mut group.packets[group.count];
                match group.encoder.pull_packet(buf) {
                    Some(n) => {
                        *len = n;
                        group.count += 1;
                        self.counters.encodes_shared.fetch_add(1, Ordering::Relaxed);
                        self.counters.shared_by_codec[codec_index(group.codec)]
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    None => break,
                }
            }
        }

        for (slot, leg) in self.legs.iter_mut().enumerate() {
            let id = leg.participant;
            let Some(p) = self.roster.participant(id) else {
                continue;
            };
            if matches!(p.state, State::Disconnected(_)) {
                continue;
            }
            let own = if leg.prompt_frame(&mut self.scratch) {
                // The attendant speaks: a prompt instead of the mix.
                leg.send_own(&self.scratch, &[], &[])
            } else if !self.roster.hears(id) {
                if p.deaf && p.state == State::Connected {
                    // Deaf: nothing but comfort noise.
                    self.comfort.fill(&mut self.scratch);
                    leg.send_own(&self.scratch, &[], &[])
                } else {
                    // Still connecting (e.g. waiting for the leader): silence.
                    leg.send_own(&self.silence, &[], &[])
                }
            } else if self.talkers.contains(slot) {
                self.mixer
                    .render_minus(leg.frame(), Gain::UNITY, &mut self.scratch);
                let mut others = [0u32; 16];
                let mut other_levels = [0u8; 16];
                let mut n = 0;
                for (&c, &l) in csrcs.iter().zip(levels).filter(|(c, _)| **c != leg.ssrc()) {
                    others[n] = c;
                    other_levels[n] = l;
                    n += 1;
                }
                leg.send_own(&self.scratch, &others[..n], &other_levels[..n])
            } else {
                let group = self.leg_groups[slot];
                if let Some(g) = self.groups.get(group) {
                    let ticks = g.encoder.packet_ticks();
                    for (buf, len) in &g.packets[..g.count] {
                        leg.send_payload(&buf[..*len], ticks, csrcs, levels);
                    }
                    0
                } else {
                    leg.send_own(&self.shared, csrcs, levels)
                }
            };
            if own > 0 {
                self.counters
                    .encodes_own
                    .fetch_add(u64::from(own), Ordering::Relaxed);
                self.counters.own_by_codec[codec_index(leg.spec().codec)]
                    .fetch_add(u64::from(own), Ordering::Relaxed);
            }
        }

        // One ring tells the WebRTC driver this tick's packets wait (its doorbell is shared).
        if let Some(leg) = self.legs.iter().find(|l| l.is_relayed()) {
            leg.flush();
        }
        while let Some(event) = self.roster.poll_event() {
            emit(ConferenceEvent {
                conference: self.id.clone(),
                event,
            });
        }
        self.prune();
    }
}
