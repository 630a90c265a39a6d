//! A conference's tick, phase by phase: read every leg and make its frame, follow speech and
//! the dominant speaker, pick the talkers and mix, encode once per group of listeners, serve the
//! legs that need their own encode, then send every other listener its group's packets. The two
//! per-leg phases are split with the mixer thread's helper for a large conference.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use confab_dsp::mix::Gain;

use super::sounds::{music_frame, render_without, say_notice};
use super::{ConferenceEvent, ConferenceMedia, MAX_GROUPS, NON_SPEECH_GATE};
use crate::conference::talkers::Candidate;
use crate::conference::{DisconnectReason, Event, State};
use crate::mixer::helper::{
    self, Job, LegHelper, MAX_GROUP_PACKETS, NO_GROUP, PARALLEL_LEGS, Phase,
};
use crate::mixer::stats::codec_index;

impl ConferenceMedia {
    /// One 20 ms tick. Events from the roster go to `emit`.
    pub fn tick(&mut self, now: Instant, emit: impl FnMut(ConferenceEvent)) {
        self.tick_with(now, None, emit);
    }

    /// One 20 ms tick, with the mixer thread's helper for a large conference's per-leg work.
    /// A recording gets the roster's events and then the tick's mix (what a listener who is
    /// not talking hears), copied into its queue.
    pub fn tick_with(
        &mut self,
        now: Instant,
        helper: Option<&mut LegHelper>,
        mut emit: impl FnMut(ConferenceEvent),
    ) {
        let Some(mut tap) = self.recording.take() else {
            return self.tick_mixing(now, helper, emit);
        };
        self.tick_mixing(now, helper, |e: ConferenceEvent| {
            tap.event(&e.event);
            emit(e);
        });
        if self.legs.is_empty() {
            tap.silence();
        } else {
            let rate = self.rate.hz();
            tap.frame(rate, self.recorded_frame());
        }
        self.recording = Some(tap);
    }

    fn tick_mixing(
        &mut self,
        now: Instant,
        mut helper: Option<&mut LegHelper>,
        mut emit: impl FnMut(ConferenceEvent),
    ) {
        self.counters.ticks.fetch_add(1, Ordering::Relaxed);
        #[cfg(test)]
        if self.counters.panic_next_tick.swap(false, Ordering::Relaxed) {
            panic!("injected by a test");
        }
        if self.legs.is_empty() {
            // Nobody to hear or be heard: no comfort noise, no mix, no encode. Roster events
            // (a lock, an invite) still go out. An idle conference costs this branch alone.
            self.silence_chimes();
            while let Some(event) = self.roster.poll_event() {
                emit(ConferenceEvent {
                    conference: self.id.clone(),
                    event,
                });
            }
            return;
        }
        self.per_leg(Phase::Receive, now, helper.as_deref_mut());
        for leg in &mut self.legs {
            leg.record_name(self.rate);
        }
        self.follow_paths(now);
        for leg in &mut self.legs {
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

        self.follow_presence();
        self.mix();
        self.encode_shared();
        self.send_own();
        self.per_leg(Phase::Send, now, helper);

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
        self.prune(now);
    }

    /// Picks the talkers and sums them into `shared`; the talkers named go to `outbound`.
    fn mix(&mut self) {
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
        self.mix.mixer.clear();
        // The talkers in the mix, named in every packet (RFC 6465) with their levels.
        let Some(out) = Arc::get_mut(&mut self.outbound) else {
            return;
        };
        out.csrc_count = 0;
        for t in self.talkers.current().iter().take(16) {
            let leg = &self.legs[t.slot];
            self.mix.mixer.add(leg.frame(), leg.talk_gain());
            out.csrcs[out.csrc_count] = leg.ssrc();
            out.levels[out.csrc_count] = leg.activity().level;
            out.csrc_count += 1;
        }
        self.mix_chimes();
        self.mix_announcements();
        if self.mix.mixer.inputs() == 0 {
            self.mix.comfort.fill(&mut self.mix.shared);
        } else {
            self.mix.mixer.render(&mut self.mix.shared);
        }
    }

    /// Shared encodes: once per group that has a listener this tick (one pass over the legs).
    fn encode_shared(&mut self) {
        let mut listening = [false; MAX_GROUPS];
        let enter_on = self.mix.enter_on;
        for (slot, leg) in self.legs.iter().enumerate() {
            let g = self.leg_groups[slot];
            let sound = self.leg_sounds.get(slot);
            let skips_enter = enter_on && sound.is_some_and(|s| s.skip_enter);
            let noticed = sound.is_some_and(|s| s.notice.is_some());
            if g < MAX_GROUPS
                && !self.talkers.contains(slot)
                && !skips_enter
                && !noticed
                && leg.listen_gain() == Gain::UNITY
                && self.roster.hears(leg.participant)
            {
                listening[g] = true;
            }
        }
        let Some(out) = Arc::get_mut(&mut self.outbound) else {
            return;
        };
        for (g, (group, packets)) in self.groups.iter_mut().zip(&mut out.groups).enumerate() {
            packets.count = 0;
            if !listening.get(g).copied().unwrap_or(false) {
                // Idle: what it held of a 40 or 60 ms packet is old by the time anyone
                // listens again (up to 40 ms of it, before what they should hear).
                group.encoder.discard_partial();
                continue;
            }
            group.encoder.push_frame(&self.mix.shared);
            while packets.count < MAX_GROUP_PACKETS {
                let (buf, len) = &mut packets.packets[packets.count];
                match group.encoder.pull_packet(buf) {
                    Some(n) => {
                        *len = n;
                        packets.count += 1;
                        self.counters.encodes_shared.fetch_add(1, Ordering::Relaxed);
                        self.counters.shared_by_codec[codec_index(group.codec)]
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    None => break,
                }
            }
        }
    }

    /// Legs served on their own this tick (prompts, deaf and waiting legs, talkers' mix-minus);
    /// every other listener is planned to get its group's packets.
    fn send_own(&mut self) {
        self.send_plan.clear();
        let out = &*self.outbound;
        let csrcs = &out.csrcs[..out.csrc_count];
        let levels = &out.levels[..out.csrc_count];
        let sounds = self.sounds.at(self.rate);
        let policy = self.roster.policy();
        // Only the enter tone in the sum: one who does not hear it hears comfort noise.
        let only_enter = self.mix.enter_on && self.mix.mixer.inputs() == 1;
        for (slot, leg) in self.legs.iter_mut().enumerate() {
            let id = leg.participant;
            let mut plan = NO_GROUP;
            let skips_enter =
                self.mix.enter_on && self.leg_sounds.get(slot).is_some_and(|s| s.skip_enter);
            // Told the recording notice: its own encode of its mix with the notice over it.
            let noticed = self
                .leg_sounds
                .get(slot)
                .is_some_and(|s| s.notice.is_some());
            let own = match self.roster.participant(id) {
                None => 0,
                Some(p) if matches!(p.state, State::Disconnected(_)) => 0,
                // On hold (its last offer was sendonly or inactive, answered recvonly or
                // inactive): it is sent no RTP until it resumes (RFC 3264 5.1); RTCP goes on.
                Some(p) if p.on_hold => 0,
                Some(_) if leg.prompt_frame(&mut self.mix.scratch) => {
                    // The attendant speaks: a prompt instead of the mix.
                    leg.send_own(&self.mix.scratch, &[], &[])
                }
                Some(p) if !self.roster.hears(id) => {
                    if p.deaf && p.state == State::Connected {
                        // Deaf: nothing but comfort noise.
                        self.mix.comfort.fill(&mut self.mix.scratch);
                        leg.send_own(&self.mix.scratch, &[], &[])
                    } else if policy.hold_music
                        && p.state == State::Connecting
                        && p.media_ready
                        && !p.on_hold
                        && !p.deaf
                        && let Some(s) = self.leg_sounds.get_mut(slot)
                    {
                        // Waiting for the leader (media up, yet held in `connecting`): music on
                        // hold from where this leg left it. A prompt above takes its place and
                        // the music goes on after, where it stopped.
                        music_frame(&sounds.music, &mut s.music_at, &mut self.mix.scratch);
                        scale(&mut self.mix.scratch, leg.listen_gain());
                        leg.send_own(&self.mix.scratch, &[], &[])
                    } else {
                        // Still connecting (no media yet, or waiting without music): silence.
                        leg.send_own(&self.mix.silence, &[], &[])
                    }
                }
                Some(_) if self.talkers.contains(slot) => {
                    // Its own voice comes out at the gain it went in at.
                    let talk = leg.talk_gain();
                    if skips_enter && talk == Gain::UNITY {
                        render_without(
                            &self.mix.mixer,
                            leg.frame(),
                            &self.mix.enter,
                            &mut self.mix.scratch,
                        );
                    } else if skips_enter {
                        render_without_at(
                            &self.mix.mixer,
                            leg.frame(),
                            talk,
                            &self.mix.enter,
                            &mut self.mix.scratch,
                        );
                    } else {
                        self.mix
                            .mixer
                            .render_minus(leg.frame(), talk, &mut self.mix.scratch);
                    }
                    scale(&mut self.mix.scratch, leg.listen_gain());
                    say_notice(sounds, self.leg_sounds.get_mut(slot), &mut self.mix.scratch);
                    let mut others = [0u32; 16];
                    let mut other_levels = [0u8; 16];
                    let mut n = 0;
                    for (&c, &l) in csrcs.iter().zip(levels).filter(|(c, _)| **c != leg.ssrc()) {
                        others[n] = c;
                        other_levels[n] = l;
                        n += 1;
                    }
                    leg.send_own(&self.mix.scratch, &others[..n], &other_levels[..n])
                }
                Some(_) if leg.listen_gain() != Gain::UNITY || skips_enter || noticed => {
                    // Its own listening volume, or it has just entered and does not hear the
                    // tone that says so, or it is told that the conference is being recorded:
                    // its own encode.
                    if !skips_enter {
                        self.mix.scratch.copy_from_slice(&self.mix.shared);
                    } else if only_enter {
                        self.mix.comfort.fill(&mut self.mix.scratch);
                    } else {
                        self.mix.mixer.render_minus(
                            &self.mix.enter,
                            Gain::UNITY,
                            &mut self.mix.scratch,
                        );
                    }
                    scale(&mut self.mix.scratch, leg.listen_gain());
                    say_notice(sounds, self.leg_sounds.get_mut(slot), &mut self.mix.scratch);
                    leg.send_own(&self.mix.scratch, csrcs, levels)
                }
                Some(_) => {
                    let group = self.leg_groups[slot];
                    if group < self.groups.len() {
                        plan = group;
                        0
                    } else {
                        leg.send_own(&self.mix.shared, csrcs, levels)
                    }
                }
            };
            self.send_plan.push(plan);
            if own > 0 {
                self.counters
                    .encodes_own
                    .fetch_add(u64::from(own), Ordering::Relaxed);
                self.counters.own_by_codec[codec_index(leg.spec().codec)]
                    .fetch_add(u64::from(own), Ordering::Relaxed);
            }
        }
    }

    /// A phase's per-leg work: with the helper for the second half of a large conference's
    /// legs, alone otherwise (or if the helper is gone).
    fn per_leg(&mut self, phase: Phase, now: Instant, helper: Option<&mut LegHelper>) {
        let n = self.legs.len();
        let helper = helper.filter(|h| n >= PARALLEL_LEGS && h.available());
        let Some(helper) = helper else {
            self.per_leg_here(phase, now, 0..n);
            return;
        };
        let half = n / 2;
        let mut legs = std::mem::take(&mut self.away_legs);
        let mut plan = std::mem::take(&mut self.away_plan);
        legs.extend(self.legs.drain(half..));
        plan.clear();
        if phase == Phase::Send {
            plan.extend_from_slice(&self.send_plan[half..]);
        }
        let job = Job {
            phase,
            legs,
            groups: plan,
            now,
            outbound: Arc::clone(&self.outbound),
        };
        match helper.start(job) {
            Ok(()) => {
                if phase == Phase::Receive {
                    self.counters.split_ticks.fetch_add(1, Ordering::Relaxed);
                }
                self.per_leg_here(phase, now, 0..half);
                match helper.finish() {
                    Some(mut done) => {
                        self.legs.append(&mut done.legs);
                        self.away_legs = done.legs;
                        self.away_plan = done.groups;
                        if let Some(panic) = done.panic {
                            // The helper's half panicked: this conference's tick did.
                            std::panic::resume_unwind(panic);
                        }
                    }
                    None => self.lost_with_helper(),
                }
            }
            Err(mut job) => {
                // The helper is gone: the legs come back and this thread does them all.
                self.legs.append(&mut job.legs);
                self.away_legs = job.legs;
                self.away_plan = job.groups;
                self.per_leg_here(phase, now, 0..n);
            }
        }
    }

    fn per_leg_here(&mut self, phase: Phase, now: Instant, slots: std::ops::Range<usize>) {
        let plan = match phase {
            Phase::Receive => &[][..],
            Phase::Send => &self.send_plan[slots.clone()],
        };
        helper::work(phase, &mut self.legs[slots], plan, now, &self.outbound);
    }

    /// The helper died (a panic) holding legs: the participants left without a leg (present
    /// and past inviting) are disconnected and the conference goes on with the legs it has.
    /// Allocates; it cannot happen but by a bug.
    fn lost_with_helper(&mut self) {
        let n = self.legs.len();
        self.leg_groups.truncate(n);
        self.leg_sounds.truncate(n);
        self.send_plan.truncate(n);
        let lost: Vec<_> = self
            .roster
            .participants()
            .iter()
            .filter(|p| matches!(p.state, State::Connecting | State::Connected))
            .map(|p| p.id)
            .filter(|id| !self.legs.iter().any(|l| l.participant == *id))
            .collect();
        for id in lost {
            let _ = self.roster.disconnect(id, DisconnectReason::MediaTimeout);
            self.dominant.remove(id);
        }
        self.away_legs = Vec::with_capacity(n);
        self.away_plan = Vec::with_capacity(n);
    }
}

/// The mix without `own` (at `gain`, as it went in) and without `tone`.
fn render_without_at(
    mixer: &confab_dsp::mix::Mixer,
    own: &[i16],
    gain: Gain,
    tone: &[i16],
    out: &mut [i16],
) {
    for (i, (o, &s)) in out.iter_mut().zip(mixer.sum()).enumerate() {
        let a = own.get(i).map_or(0, |&x| gain.apply(x));
        let b = tone.get(i).map_or(0, |&x| i32::from(x));
        *o = confab_dsp::mix::soft_limit(s - a - b);
    }
}

/// `frame` at `gain` (unity leaves it as it is).
fn scale(frame: &mut [i16], gain: Gain) {
    if gain != Gain::UNITY {
        for s in frame.iter_mut() {
            *s = confab_dsp::mix::soft_limit(gain.apply(*s));
        }
    }
}

impl ConferenceMedia {
    /// Each leg's interarrival jitter into `into` (a look the mixer thread takes once a
    /// second). Legs that received nothing have no jitter to tell.
    pub fn sample_jitter(&self, into: &crate::mixer::stats::JitterHistogram) {
        for leg in &self.legs {
            let s = leg.stats();
            if s.packets_in > 0 {
                into.observe((s.jitter_ms * 1000.0) as u64);
            }
        }
    }
}
