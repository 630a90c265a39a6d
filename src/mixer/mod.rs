//! The mixer threads. Each owns a set of conferences outright and wakes on absolute 20 ms
//! deadlines; commands arrive on a bounded queue drained at the start of a tick, events leave on
//! a bounded queue (dropped and counted when full), and those signalling acts on also on the
//! control stream, which does not drop (see `control_events`). No lock is held across a tick. Each has a
//! helper thread that takes half of a large conference's per-leg work (see `helper`).

mod command;
pub mod conference;
pub(crate) mod control_events;
pub mod helper;
pub mod realtime;
pub mod room_sounds;
pub mod stats;

#[cfg(test)]
#[path = "containment_tests.rs"]
mod containment_tests;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use conference::{ConferenceEvent, ConferenceId, ConferenceMedia};

/// The tick period.
pub const TICK: Duration = Duration::from_millis(20);
/// Commands handled per tick at most.
const MAX_COMMANDS_PER_TICK: usize = 64;

pub use command::{Command, CommandError, Control, LegOp, Reply, Voices};

/// Counters of one mixer thread.
#[derive(Debug, Default)]
pub struct MixerCounters {
    pub ticks: AtomicU64,
    /// Ticks skipped because the thread fell behind (it never bursts to catch up).
    pub late_ticks: AtomicU64,
    /// Work time of the last tick, in microseconds.
    pub last_tick_us: AtomicU64,
    /// Events dropped because the event queue was full.
    pub events_dropped: AtomicU64,
    /// Control events dropped because their consumer took none for a whole backlog.
    pub control_events_dropped: AtomicU64,
    /// How long ticks take.
    pub tick_time: stats::TickHistogram,
    /// How late ticks start after their deadline.
    pub start_delay: stats::StartDelayHistogram,
    /// Legs' interarrival jitter, a look a second.
    pub jitter: stats::JitterHistogram,
    /// The thread and its helper run under real-time scheduling.
    pub realtime: AtomicBool,
    /// Times the thread gave real-time scheduling back because it was overloaded.
    pub demotions: AtomicU64,
    /// Work time over tick period, smoothed over about a second (f64 bits).
    pub load_ratio_bits: AtomicU64,
    /// Panics contained: a conference's tick or a command's handling (each a bug).
    pub panics: AtomicU64,
}

impl MixerCounters {
    /// The smoothed load ratio.
    pub fn load_ratio(&self) -> f64 {
        f64::from_bits(self.load_ratio_bits.load(Ordering::Relaxed))
    }
}

/// Where a mixer thread's events go.
#[derive(Clone)]
pub struct EventSinks {
    /// Every event, for the API's streams; dropped and counted when full.
    pub ui: SyncSender<ConferenceEvent>,
    /// The events signalling acts on, again; held back rather than dropped when full.
    pub control: SyncSender<ConferenceEvent>,
    /// Whether anyone takes the control stream (nobody: it is not fed).
    pub control_wanted: Arc<std::sync::atomic::AtomicBool>,
    /// Webhooks' events, again (sessions too); dropped and counted when full, and not fed
    /// while no webhook is configured.
    pub(crate) webhooks: crate::webhooks::WebhookTap,
}

/// A running mixer thread.
pub struct MixerHandle {
    pub commands: SyncSender<Command>,
    pub counters: Arc<MixerCounters>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MixerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixerHandle").finish_non_exhaustive()
    }
}

impl MixerHandle {
    /// Starts mixer thread `index`, sending events to `events`.
    pub fn spawn(
        index: usize,
        events: EventSinks,
        records: Option<std::sync::mpsc::Sender<crate::store::RecordEvent>>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1024);
        // Made once per process, here rather than in the thread's first conference's creation,
        // which would hold up its ticks.
        let _ = room_sounds::RoomSounds::builtin();
        let counters = Arc::new(MixerCounters::default());
        let c = Arc::clone(&counters);
        let (ready_tx, ready) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("confab-mixer-{index}"))
            .spawn(move || run(index, rx, events, records, c, ready_tx))?;
        // The thread says how it is scheduled before its first tick; `required` and refused
        // ends it, and the engine does not start.
        let refused = match ready.recv() {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why),
            Err(_) => Some("the mixer thread ended as it started".to_owned()),
        };
        if let Some(why) = refused {
            let _ = thread.join();
            return Err(std::io::Error::other(why));
        }
        Ok(MixerHandle {
            commands: tx,
            counters,
            thread: Some(thread),
        })
    }

    /// Whether the thread still runs (it ends only on shutdown, or by a bug its containment
    /// missed).
    pub fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MixerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    index: usize,
    commands: Receiver<Command>,
    EventSinks {
        ui: events,
        control,
        control_wanted,
        webhooks,
    }: EventSinks,
    records: Option<std::sync::mpsc::Sender<crate::store::RecordEvent>>,
    counters: Arc<MixerCounters>,
    ready: SyncSender<Result<(), String>>,
) {
    let policy = realtime::policy();
    let scheduling = realtime::ask(policy, realtime::request_current_thread);
    let mut control = control_events::ControlOutbox::new(control, control_wanted);
    let mut conferences: HashMap<ConferenceId, ConferenceMedia> = HashMap::new();
    // What conferences that are gone left in the counters.
    let mut retired = stats::MixerSnapshot::default();
    let mut load = 0.0f64;
    // Without a helper (the thread could not start), large conferences are done alone.
    let mut helper = helper::LegHelper::spawn(index)
        .inspect_err(|e| tracing::warn!(error = %e, "mixer helper thread not started"))
        .ok();
    let scheduling = match &helper {
        Some(h) => scheduling.and(h.scheduling().clone()),
        None => scheduling,
    };
    realtime::report(index, &scheduling);
    counters
        .realtime
        .store(scheduling.is_realtime(), Ordering::Relaxed);
    let checked = scheduling.check(policy);
    let refused = checked.is_err();
    let _ = ready.send(checked);
    if refused {
        return;
    }
    // Only a thread that got real-time scheduling has it to give back.
    let mut overload = scheduling.is_realtime().then(realtime::Overload::default);
    let mut deadline = Instant::now() + TICK;
    loop {
        // The deadline this tick was due at (the first is due now).
        let due = deadline - TICK;
        let delay_us = Instant::now().saturating_duration_since(due).as_micros() as u64;
        counters.start_delay.observe(delay_us);
        for _ in 0..MAX_COMMANDS_PER_TICK {
            match commands.try_recv() {
                Ok(Command::Shutdown) | Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                Ok(Command::Metrics { reply }) => {
                    let _ = reply.send(Ok(snapshot(&conferences, &retired)));
                }
                Ok(command) => {
                    handle_contained(command, &mut conferences, &records, &webhooks, &counters)
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
            }
        }
        let start = Instant::now();
        control.flush();
        let mut emit = |event: ConferenceEvent| {
            control.offer(&event, &counters);
            webhooks.offer(&event);
            if let Err(TrySendError::Full(_)) = events.try_send(event) {
                counters.events_dropped.fetch_add(1, Ordering::Relaxed);
            }
        };
        for conference in conferences.values_mut() {
            // No panic crosses a conference's boundary: the one whose tick panicked ends its
            // calls and starts anew; the thread goes on with the others.
            let ticked = catch_unwind(AssertUnwindSafe(|| {
                conference.tick_with(start, helper.as_mut(), &mut emit);
            }));
            if ticked.is_err() {
                counters.panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(conference = %conference.id, "a conference's tick panicked: its calls end as internal-error");
                if let Some(h) = helper.as_mut() {
                    h.settle();
                }
                conference.recover(start, &mut emit);
            }
        }
        if counters
            .ticks
            .load(Ordering::Relaxed)
            .is_multiple_of(stats::JITTER_SAMPLE_TICKS)
        {
            for conference in conferences.values() {
                conference.sample_jitter(&counters.jitter);
            }
        }
        // An ended conference with no legs left is gone; the others do what their tick left
        // for between ticks.
        conferences.retain(|_, c| {
            c.settle();
            let gone = c.roster.ended() && c.leg_count() == 0;
            if gone {
                c.retire(&mut retired);
                c.send_session(false, start);
                webhooks.session(&c.id, false, c.peak_legs());
            }
            !gone
        });
        let end = Instant::now();
        let work_us = end.duration_since(start).as_micros() as u64;
        counters.ticks.fetch_add(1, Ordering::Relaxed);
        counters.last_tick_us.store(work_us, Ordering::Relaxed);
        counters.tick_time.observe(work_us);
        // About a second of ticks (alpha 1/50).
        load += (work_us as f64 / TICK.as_micros() as f64 - load) / 50.0;
        counters
            .load_ratio_bits
            .store(load.to_bits(), Ordering::Relaxed);
        if let Some(o) = overload.as_mut()
            && let Some(shift) = o.after_tick(end, load)
            && !realtime::shift(index, shift, load, helper.as_ref(), &counters)
        {
            o.refused(end);
        }

        // Absolute deadlines: no drift. After a stall, skip the missed ticks (counted).
        if end > deadline + TICK {
            let behind = end.duration_since(deadline).as_micros() / TICK.as_micros();
            counters
                .late_ticks
                .fetch_add(behind as u64, Ordering::Relaxed);
            deadline += TICK * behind as u32;
        }
        // Until the next deadline, answer commands as they come (a join need not wait a tick).
        let mut handled = 0;
        while let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            if handled >= MAX_COMMANDS_PER_TICK {
                std::thread::sleep(wait);
                break;
            }
            match commands.recv_timeout(wait) {
                Ok(Command::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Command::Metrics { reply }) => {
                    let _ = reply.send(Ok(snapshot(&conferences, &retired)));
                    handled += 1;
                }
                Ok(command) => {
                    handle_contained(command, &mut conferences, &records, &webhooks, &counters);
                    handled += 1;
                }
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        deadline += TICK;
    }
}

/// The thread's figures: its conferences now, plus what the ones that are gone left.
fn snapshot(
    conferences: &HashMap<ConferenceId, ConferenceMedia>,
    retired: &stats::MixerSnapshot,
) -> stats::MixerSnapshot {
    let mut s = stats::MixerSnapshot {
        conferences: Vec::with_capacity(conferences.len()),
        legs: retired.legs,
        encodes_shared: retired.encodes_shared,
        encodes_own: retired.encodes_own,
    };
    for c in conferences.values() {
        c.snapshot(&mut s);
    }
    s
}

/// A command, with a panic in its handling contained: its reply is dropped (the caller hears
/// the engine failed) and the thread goes on.
fn handle_contained(
    command: Command,
    conferences: &mut HashMap<ConferenceId, ConferenceMedia>,
    records: &Option<std::sync::mpsc::Sender<crate::store::RecordEvent>>,
    webhooks: &crate::webhooks::WebhookTap,
    counters: &MixerCounters,
) {
    if catch_unwind(AssertUnwindSafe(|| {
        handle(command, conferences, records, webhooks)
    }))
    .is_err()
    {
        counters.panics.fetch_add(1, Ordering::Relaxed);
        tracing::error!("a mixer command panicked");
    }
}

fn handle(
    command: Command,
    conferences: &mut HashMap<ConferenceId, ConferenceMedia>,
    records: &Option<std::sync::mpsc::Sender<crate::store::RecordEvent>>,
    webhooks: &crate::webhooks::WebhookTap,
) {
    match command {
        Command::CreateConference {
            id,
            policy,
            max_talkers,
            media_timeout,
            reply,
        } => {
            let result = match conferences.entry(Arc::clone(&id)) {
                std::collections::hash_map::Entry::Occupied(_) => {
                    Err(CommandError::ConferenceExists)
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    let media =
                        slot.insert(ConferenceMedia::new(id, policy, max_talkers, media_timeout));
                    media.set_records(records.clone());
                    media.send_session(true, Instant::now());
                    webhooks.session(&media.id, true, 0);
                    Ok(Arc::clone(&media.counters))
                }
            };
            let _ = reply.send(result);
        }
        Command::AddLeg {
            conference,
            joining,
            leg,
            reply,
        } => {
            let result = match conferences.get_mut(&conference) {
                None => Err(CommandError::NoConference),
                Some(c) => c
                    .add_leg(joining, *leg, Instant::now())
                    .map_err(CommandError::from),
            };
            let _ = reply.send(result);
        }
        Command::Invite {
            conference,
            joining,
            reply,
        } => {
            let result = match conferences.get_mut(&conference) {
                None => Err(CommandError::NoConference),
                Some(c) => c.roster.invite(joining).map_err(CommandError::from),
            };
            let _ = reply.send(result);
        }
        Command::Answered {
            conference,
            leg,
            reply,
        } => {
            let result = match conferences.get_mut(&conference) {
                None => Err(CommandError::NoConference),
                Some(c) => c.attach_leg(*leg, Instant::now()),
            };
            let _ = reply.send(result);
        }
        Command::Control {
            conference,
            control,
            reply,
        } => {
            let result = match conferences.get_mut(&conference) {
                None => Err(CommandError::NoConference),
                Some(c) => apply(c, control),
            };
            let _ = reply.send(result);
        }
        Command::Roster { conference, reply } => {
            let result = conferences
                .get(&conference)
                .map(|c| c.roster.participants().to_vec())
                .ok_or(CommandError::NoConference);
            let _ = reply.send(result);
        }
        Command::Record {
            conference,
            tap,
            reply,
        } => {
            let result = match conferences.get_mut(&conference) {
                None => Err(CommandError::NoConference),
                Some(c) => Ok(c.set_recording(tap)),
            };
            let _ = reply.send(result);
        }
        Command::Policy { conference, reply } => {
            let result = conferences
                .get(&conference)
                .map(|c| c.roster.policy())
                .ok_or(CommandError::NoConference);
            let _ = reply.send(result);
        }
        Command::RosterWithMedia { conference, reply } => {
            let result = conferences
                .get(&conference)
                .map(|c| {
                    c.roster
                        .participants()
                        .iter()
                        .map(|p| (p.clone(), c.leg_stats(p.id)))
                        .collect()
                })
                .ok_or(CommandError::NoConference);
            let _ = reply.send(result);
        }
        Command::Identity {
            conference,
            participant,
            reply,
        } => {
            let result = match conferences.get(&conference) {
                None => Err(CommandError::NoConference),
                Some(c) => c
                    .roster
                    .participant(participant)
                    .map(|p| (p.identity.clone(), p.state.is_present()))
                    .ok_or(CommandError::NoParticipant),
            };
            let _ = reply.send(result);
        }
        Command::LegStats {
            conference,
            participant,
            reply,
        } => {
            let result = match conferences.get(&conference) {
                None => Err(CommandError::NoConference),
                Some(c) => c.leg_stats(participant).ok_or(CommandError::NoParticipant),
            };
            let _ = reply.send(result);
        }
        Command::Leg {
            conference,
            participant,
            op,
            reply,
        } => {
            let result = match conferences.get_mut(&conference) {
                None => Err(CommandError::NoConference),
                Some(c) => match op {
                    LegOp::Take => c
                        .take_leg(participant, Instant::now())
                        .map(|l| Some(Box::new(l)))
                        .ok_or(CommandError::NoParticipant),
                    LegOp::Play(audio) => c
                        .leg_mut(participant)
                        .map(|l| {
                            l.play(audio);
                            None
                        })
                        .ok_or(CommandError::NoParticipant),
                    LegOp::PlayIn(voices) => c
                        .leg_mut(participant)
                        .map(|l| {
                            let audio = command::voice_for(&voices, l.language.as_deref());
                            l.play(audio.map(Arc::clone));
                            None
                        })
                        .ok_or(CommandError::NoParticipant),
                    LegOp::Respec(spec) => c.respec_leg(participant, spec).map(|()| None),
                    LegOp::RecordName(length) => c.record_name(participant, length).map(|()| None),
                    LegOp::Language(language) => c
                        .leg_mut(participant)
                        .map(|l| {
                            l.language = Some(language);
                            None
                        })
                        .ok_or(CommandError::NoParticipant),
                    LegOp::DetectDtmf(on) => c
                        .leg_mut(participant)
                        .map(|l| {
                            l.detect_inband_dtmf(on);
                            None
                        })
                        .ok_or(CommandError::NoParticipant),
                },
            };
            let _ = reply.send(result);
        }
        Command::Metrics { .. } | Command::Shutdown => {}
        #[cfg(test)]
        Command::Stall(length) => std::thread::sleep(length),
    }
}

fn apply(c: &mut ConferenceMedia, control: Control) -> Result<(), CommandError> {
    let r = &mut c.roster;
    let unknown = |_| CommandError::NoParticipant;
    match control {
        Control::Mute(p, on) => r.set_muted(p, on).map_err(unknown),
        Control::Deaf(p, on) => r.set_deaf(p, on).map_err(unknown),
        Control::Hold(p, on) => {
            r.set_hold(p, on).map_err(unknown)?;
            if !on && let Some(leg) = c.leg_mut(p) {
                leg.forget_ssrc();
            }
            Ok(())
        }
        Control::Keyed(p, action, done) => r.keyed(p, action, done).map_err(unknown),
        Control::ListenGain(p, gain) => {
            r.set_gains(p, None, Some(gain)).map_err(unknown)?;
            // A dial-out not answered yet has no leg: it gets the gain with it.
            if let Some(leg) = c.leg_mut(p) {
                leg.set_listen_gain(gain);
            }
            Ok(())
        }
        Control::TalkGain(p, gain) => {
            r.set_gains(p, Some(gain), None).map_err(unknown)?;
            if let Some(leg) = c.leg_mut(p) {
                leg.set_talk_gain(gain);
            }
            Ok(())
        }
        Control::NoiseSuppression(p, on) => {
            if r.participant(p).is_none() {
                return Err(CommandError::NoParticipant);
            }
            // A dial-out not answered yet has no leg: it starts with the configured default.
            if let Some(leg) = c.leg_mut(p)
                && leg.set_noise_suppression(on).is_err()
            {
                return Err(CommandError::NoParticipant);
            }
            Ok(())
        }
        Control::SetRole(p, role) => r.set_role(p, role).map_err(unknown),
        Control::SipStatus(p, code) => r.set_sip_status(p, code).map_err(unknown),
        Control::Eject(p) => r.eject(p).map_err(unknown),
        Control::Hangup(p) => r
            .disconnect(p, crate::conference::DisconnectReason::Hangup)
            .map_err(unknown),
        Control::Remove(p, reason) => r.disconnect(p, reason).map_err(unknown),
        Control::MuteAll => {
            r.mute_all();
            Ok(())
        }
        Control::Limits {
            max_participants,
            wait_for_leader,
        } => {
            r.set_limits(max_participants, wait_for_leader);
            Ok(())
        }
        Control::EntryExit(e) => {
            r.set_entry_exit(e);
            Ok(())
        }
        Control::Lock(on) => {
            r.set_locked(on);
            Ok(())
        }
        Control::End => {
            r.end();
            Ok(())
        }
    }
}
