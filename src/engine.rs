//! The media engine: mixer threads, the RTP port pool, and a handle to them for signalling and
//! the API. Each conference lives on one mixer thread (placed round-robin); every call is a
//! command to that thread answered within a tick, by a one-shot reply ([`Pending`]) that async
//! code awaits and plain threads wait for.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::conference::{Admission, Joining, Participant, ParticipantId, Policy, Role};
use crate::media::leg::{LegSpec, LegStats, LegTimers, RtpLeg};
use crate::media::ports::PortPool;
use crate::mixer::conference::{ConferenceCounters, ConferenceEvent, ConferenceId};
use crate::mixer::{Command, CommandError, Control, EventSinks, LegOp, MixerCounters, MixerHandle};

#[path = "engine_legs.rs"]
mod legs;
#[path = "engine_pending.rs"]
mod pending;
#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

pub use pending::Pending;

/// Settings of the media engine.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Mixer threads; 0 means one per core.
    pub mixer_threads: usize,
    pub max_talkers: usize,
    pub media_bind: IpAddr,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    pub media_timeout: Duration,
    pub leg_timers: LegTimers,
    /// Where call records go (the storage writer); none keeps no records.
    pub records: Option<std::sync::mpsc::Sender<crate::store::RecordEvent>>,
}

impl EngineSettings {
    pub fn from_config(c: &crate::config::Config) -> Self {
        EngineSettings {
            mixer_threads: c.mixer.threads,
            max_talkers: c.mixer.max_talkers,
            media_bind: c.media.bind,
            rtp_port_min: c.media.rtp_port_min,
            rtp_port_max: c.media.rtp_port_max,
            media_timeout: Duration::from_secs(c.media.timeout_secs),
            leg_timers: LegTimers {
                relatch_after: Duration::from_millis(c.media.relatch_after_ms),
                latch_any_source: c.media.latch_any_source,
                auto_gain: c.media.auto_gain,
                noise_suppression: c.media.noise_suppression == crate::config::NoiseSuppression::On,
                ..LegTimers::default()
            },
            records: None,
        }
    }
}

#[cfg(test)]
impl EngineSettings {
    /// What the unit tests run an engine on: media on 127.0.0.1 from `port_min` (eleven
    /// ports), three talkers, a 30 s media timeout, default leg timers and no records.
    pub(crate) fn loopback(mixer_threads: usize, port_min: u16) -> Self {
        EngineSettings {
            mixer_threads,
            max_talkers: 3,
            media_bind: IpAddr::from([127, 0, 0, 1]),
            rtp_port_min: port_min,
            rtp_port_max: port_min + 10,
            media_timeout: Duration::from_secs(30),
            leg_timers: LegTimers::default(),
            records: None,
        }
    }
}

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("no free RTP port")]
    PortsExhausted,
    #[error("the media engine is not running")]
    Stopped,
    /// The mixer thread's command queue is full: it is far behind, so the call is refused
    /// rather than queued (or blocking its caller) without end.
    #[error("the mixer thread is overloaded")]
    Busy,
    #[error("the mixer thread did not answer in time")]
    NoReply,
    #[error("leg set-up failed: {0}")]
    Leg(std::io::Error),
}

/// Who joins with a leg.
#[derive(Clone, Debug)]
pub struct Joiner {
    pub display_name: String,
    pub uri: String,
    pub role: Role,
    /// Who a trusted party says this is (see `Participant::identity`); none when nobody
    /// vouches for the caller.
    pub identity: Option<String>,
}

impl Joiner {
    /// The roster's entry for this joiner as participant `id`.
    pub(crate) fn joining(self, id: ParticipantId) -> Joining {
        Joining {
            id,
            display_name: self.display_name,
            uri: self.uri,
            role: self.role,
            identity: self.identity,
        }
    }
}

/// Ports held for a dial-out until it is answered (they go back to the pool when dropped).
#[derive(Debug)]
pub struct ReservedPorts {
    /// The RTP address the offer names (RTCP is on the port above).
    pub local: SocketAddr,
    /// Where the call goes and who answered, for its record (the leg takes it).
    pub origin: crate::store::Origin,
    sockets: (std::net::UdpSocket, Option<std::net::UdpSocket>),
    lease: crate::media::ports::PortLease,
}

/// The running media engine.
pub struct Engine {
    mixers: Vec<MixerHandle>,
    settings: EngineSettings,
    ports: PortPool,
    /// Each conference's mixer thread and admission rules (shared with replies that change it).
    placement: Arc<Mutex<Placement>>,
    next_mixer: AtomicUsize,
    next_participant: AtomicU64,
    events: Mutex<Option<Receiver<ConferenceEvent>>>,
    /// The control stream's queue from the mixer threads, until its consumer takes it.
    control: Mutex<Option<Receiver<ConferenceEvent>>>,
    control_wanted: Arc<AtomicBool>,
    /// The webhooks' tap and its queue, until the webhook task takes them.
    webhooks: Mutex<Option<WebhookEvents>>,
}

/// Each conference's mixer thread and admission rules.
type Placement = HashMap<ConferenceId, (usize, Arc<Admission>)>;

/// The tap the mixer threads tell webhooks' events through, and its queue's other end.
pub(crate) type WebhookEvents = (
    crate::webhooks::WebhookTap,
    std::sync::mpsc::Receiver<crate::webhooks::Occurrence>,
);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("mixers", &self.mixers.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts the mixer threads.
    pub fn start(settings: EngineSettings) -> std::io::Result<Self> {
        let threads = match settings.mixer_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(4096);
        let (control_tx, control_rx) =
            std::sync::mpsc::sync_channel(crate::mixer::control_events::QUEUE);
        let control_wanted = Arc::new(AtomicBool::new(false));
        let (webhook_tap, webhook_rx) = crate::webhooks::WebhookTap::channel();
        let sinks = EventSinks {
            ui: tx,
            control: control_tx,
            control_wanted: Arc::clone(&control_wanted),
            webhooks: webhook_tap.clone(),
        };
        let mixers = (0..threads)
            .map(|i| MixerHandle::spawn(i, sinks.clone(), settings.records.clone()))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Engine {
            mixers,
            ports: PortPool::new(
                settings.media_bind,
                settings.rtp_port_min,
                settings.rtp_port_max,
            ),
            settings,
            placement: Arc::new(Mutex::new(HashMap::new())),
            next_mixer: AtomicUsize::new(0),
            next_participant: AtomicU64::new(1),
            events: Mutex::new(Some(rx)),
            control: Mutex::new(Some(control_rx)),
            control_wanted,
            webhooks: Mutex::new(Some((webhook_tap, webhook_rx))),
        })
    }

    /// The event stream (state changes, speaking, dominant speaker, …); taken once.
    pub fn take_events(&self) -> Option<Receiver<ConferenceEvent>> {
        self.events.lock().ok()?.take()
    }

    /// Forwards the event stream to a broadcast channel that any number of consumers (SIP,
    /// the API's event streams) subscribe to; a slow consumer loses events, never the mixer.
    /// Taken once, like [`Engine::take_events`].
    pub fn broadcast_events(&self) -> Option<tokio::sync::broadcast::Sender<ConferenceEvent>> {
        let rx = self.take_events()?;
        let (tx, _) = tokio::sync::broadcast::channel(4096);
        let forward = tx.clone();
        std::thread::Builder::new()
            .name("confab-events".into())
            .spawn(move || {
                // Ends when the engine (the sending side) is gone.
                while let Ok(event) = rx.recv() {
                    let _ = forward.send(event);
                }
            })
            .ok()?;
        Some(tx)
    }

    /// The control stream: the events signalling acts on (participants' state changes, digits,
    /// locks, ends), in order, none dropped while this is read (the mixers hold them back
    /// instead). Taken once; the stream is fed only from then on.
    pub fn control_events(&self) -> Option<tokio::sync::mpsc::Receiver<ConferenceEvent>> {
        let rx = self.control.lock().ok()?.take()?;
        let (tx, out) = tokio::sync::mpsc::channel(1024);
        std::thread::Builder::new()
            .name("confab-control-events".into())
            .spawn(move || {
                // Waits for room rather than dropping: back-pressure reaches the mixers'
                // backlogs. Ends when the engine or the consumer is gone.
                while let Ok(event) = rx.recv() {
                    if tx.blocking_send(event).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        self.control_wanted.store(true, Ordering::Relaxed);
        Some(out)
    }

    /// The webhooks' tap (for the recorder too) and the events it takes; taken once. Nothing
    /// is sent before the taker opens the tap.
    pub(crate) fn take_webhook_events(&self) -> Option<WebhookEvents> {
        self.webhooks.lock().ok()?.take()
    }

    /// Counters of each mixer thread.
    pub fn mixer_counters(&self) -> Vec<Arc<MixerCounters>> {
        self.mixers
            .iter()
            .map(|m| Arc::clone(&m.counters))
            .collect()
    }

    /// Sends the command `make` builds to mixer thread `mixer`; its reply is to come.
    fn call<T: Send + 'static>(
        &self,
        mixer: usize,
        make: impl FnOnce(crate::mixer::Reply<T>) -> Command,
    ) -> Pending<T> {
        send(self.mixers.get(mixer).map(|m| &m.commands), make)
    }

    /// Sends the command `make` builds to the mixer thread of `conference`.
    fn call_in<T: Send + 'static>(
        &self,
        conference: &str,
        make: impl FnOnce(ConferenceId, crate::mixer::Reply<T>) -> Command,
    ) -> Pending<T> {
        match self.mixer_of(conference) {
            Ok((mixer, id)) => self.call(mixer, |reply| make(id, reply)),
            Err(e) => Pending::failed(e),
        }
    }

    fn mixer_of(&self, conference: &str) -> Result<(usize, ConferenceId), EngineError> {
        let placement = self.placement.lock().map_err(|_| EngineError::Stopped)?;
        placement
            .get_key_value(conference)
            .map(|(k, (mixer, _))| (*mixer, Arc::clone(k)))
            .ok_or(EngineError::Command(CommandError::NoConference))
    }

    /// Changes what callers must key to enter `conference`.
    pub fn set_admission(&self, conference: &str, admission: Admission) -> Result<(), EngineError> {
        let mut placement = self.placement.lock().map_err(|_| EngineError::Stopped)?;
        let entry = placement
            .get_mut(conference)
            .ok_or(EngineError::Command(CommandError::NoConference))?;
        entry.1 = Arc::new(admission);
        Ok(())
    }

    /// Whether every mixer thread runs (`/readyz` is not ready while one is down).
    pub fn mixers_alive(&self) -> bool {
        self.mixers.iter().all(MixerHandle::alive)
    }

    /// Test-only: ends mixer thread `index` as a bug its containment missed would.
    #[cfg(test)]
    pub(crate) fn end_mixer_thread(&self, index: usize) {
        if let Some(m) = self.mixers.get(index) {
            let _ = m.commands.send(Command::Shutdown);
        }
    }

    /// Test-only: mixer thread `index` sleeps for `length`, as one far behind would.
    #[cfg(test)]
    pub(crate) fn stall_mixer(&self, index: usize, length: Duration) {
        if let Some(m) = self.mixers.get(index) {
            let _ = m.commands.send(Command::Stall(length));
        }
    }

    /// Panics contained by the mixer threads (each a bug; the conference it hit was restarted).
    pub fn mixer_panics(&self) -> u64 {
        self.mixers
            .iter()
            .map(|m| m.counters.panics.load(Ordering::Relaxed))
            .sum()
    }

    /// The running conferences' ids.
    pub fn conference_ids(&self) -> Vec<String> {
        self.placement
            .lock()
            .map(|p| p.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default()
    }

    /// What callers must key to enter `conference` (none when it does not exist).
    pub fn admission(&self, conference: &str) -> Option<Arc<Admission>> {
        let placement = self.placement.lock().ok()?;
        placement.get(conference).map(|(_, a)| Arc::clone(a))
    }

    /// Creates a conference on the next mixer thread.
    pub fn create_conference(&self, id: &str, policy: Policy) -> Pending<Arc<ConferenceCounters>> {
        self.create_conference_with(id, policy, Admission::default())
    }

    /// Creates a conference whose callers key a passcode or leader PIN.
    pub fn create_conference_with(
        &self,
        id: &str,
        policy: Policy,
        admission: Admission,
    ) -> Pending<Arc<ConferenceCounters>> {
        self.create_conference_full(id, policy, admission, None)
    }

    /// Creates a conference with its own number of talkers (`None`: the configured one).
    pub fn create_conference_full(
        &self,
        id: &str,
        policy: Policy,
        admission: Admission,
        max_talkers: Option<usize>,
    ) -> Pending<Arc<ConferenceCounters>> {
        let id: ConferenceId = Arc::from(id);
        // Round-robin over the threads that still run: a thread that ended (by a bug its
        // containment missed) takes no new conference.
        let n = self.mixers.len().max(1);
        let first = self.next_mixer.fetch_add(1, Ordering::Relaxed);
        let Some(mixer) = (0..n)
            .map(|k| (first + k) % n)
            .find(|&i| self.mixers.get(i).is_some_and(MixerHandle::alive))
        else {
            return Pending::failed(EngineError::Stopped);
        };
        // Placed before the thread is asked, under one lock with the check, so that two
        // creations of one id cannot both pass it; taken back if the thread refuses.
        match self.placement.lock() {
            Err(_) => return Pending::failed(EngineError::Stopped),
            Ok(p) if p.contains_key(&id) => {
                return Pending::failed(CommandError::ConferenceExists.into());
            }
            Ok(mut p) => {
                p.insert(Arc::clone(&id), (mixer, Arc::new(admission)));
            }
        }
        let placement = Arc::clone(&self.placement);
        let placed = Arc::clone(&id);
        self.call(mixer, |reply| Command::CreateConference {
            id,
            policy,
            max_talkers: max_talkers.unwrap_or(self.settings.max_talkers),
            media_timeout: self.settings.media_timeout,
            reply,
        })
        .and_check(move |created| {
            if created.is_err()
                && let Ok(mut p) = placement.lock()
            {
                p.remove(&placed);
            }
            created
        })
    }

    /// Plays a prompt (48 kHz) to a participant instead of the mix; `None` stops it.
    pub fn play(
        &self,
        conference: &str,
        participant: ParticipantId,
        audio: Option<Arc<[i16]>>,
    ) -> Pending<()> {
        self.leg_op(conference, participant, LegOp::Play(audio))
            .map(drop)
    }

    /// Plays a prompt to a participant in the language it hears (the one it chose at the
    /// attendant; the default's otherwise) instead of the mix.
    pub fn play_in_language(
        &self,
        conference: &str,
        participant: ParticipantId,
        voices: crate::mixer::Voices,
    ) -> Pending<()> {
        self.leg_op(conference, participant, LegOp::PlayIn(voices))
            .map(drop)
    }

    /// New leg settings from signalling (a re-INVITE's codec change, an offerless answer).
    pub fn respec(
        &self,
        conference: &str,
        participant: ParticipantId,
        spec: LegSpec,
    ) -> Pending<()> {
        self.leg_op(conference, participant, LegOp::Respec(spec))
            .map(drop)
    }

    /// Records a participant's name from now, `length` at most; it goes with the leg into
    /// the meeting, which says it on entry and exit (`entry_exit: names`).
    pub fn record_name(
        &self,
        conference: &str,
        participant: ParticipantId,
        length: Duration,
    ) -> Pending<()> {
        self.leg_op(conference, participant, LegOp::RecordName(length))
            .map(drop)
    }

    /// In-band DTMF detection on a participant's audio, on or off.
    pub fn detect_dtmf(
        &self,
        conference: &str,
        participant: ParticipantId,
        on: bool,
    ) -> Pending<()> {
        self.leg_op(conference, participant, LegOp::DetectDtmf(on))
            .map(drop)
    }

    /// Moves a participant's leg (socket, codecs, keys) into another conference, where it
    /// joins as `joiner` under the same participant id. If the other conference refuses it,
    /// the leg is dropped and the error returned.
    pub fn move_leg(
        &self,
        from: &str,
        participant: ParticipantId,
        to: &str,
        joiner: Joiner,
    ) -> Pending<()> {
        let (mixer, id) = match self.mixer_of(to) {
            Ok(found) => found,
            Err(e) => return Pending::failed(e),
        };
        let commands = self.mixers.get(mixer).map(|m| m.commands.clone());
        // Two steps: the leg is given to `to` only when this call is awaited or waited for
        // (dropped before that, the leg ends with the call).
        self.leg_op(from, participant, LegOp::Take)
            .and_then(move |leg| {
                let Some(leg) = leg else {
                    return Pending::failed(EngineError::Command(CommandError::NoParticipant));
                };
                let joining = joiner.joining(participant);
                send(commands.as_ref(), |reply| Command::AddLeg {
                    conference: id,
                    joining,
                    leg,
                    reply,
                })
            })
    }

    /// Attaches a recording's tap to `conference` (`None` detaches it); answers the tap it
    /// replaced (see `recording::Recorder`, which makes the taps).
    pub fn set_recording(
        &self,
        conference: &str,
        tap: Option<crate::recording::RecordingTap>,
    ) -> Pending<Option<crate::recording::RecordingTap>> {
        self.call_in(conference, |conference, reply| Command::Record {
            conference,
            tap,
            reply,
        })
    }

    pub fn control(&self, conference: &str, control: Control) -> Pending<()> {
        self.try_control(conference, control)
            .unwrap_or_else(|(e, _)| Pending::failed(e))
    }

    /// [`Engine::control`], with the control handed back when its thread's queue is full
    /// (`Busy`), so that a caller that must not lose it (a hang-up) can keep it and try again.
    pub fn try_control(
        &self,
        conference: &str,
        control: Control,
    ) -> Result<Pending<()>, (EngineError, Option<Control>)> {
        let (mixer, id) = self.mixer_of(conference).map_err(|e| (e, None))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let command = Command::Control {
            conference: id,
            control,
            reply: tx,
        };
        let sent = match self.mixers.get(mixer) {
            None => Err((EngineError::Stopped, None)),
            Some(m) => match m.commands.try_send(command) {
                Ok(()) => Ok(Pending::reply(rx)),
                Err(TrySendError::Full(Command::Control { control, .. })) => {
                    return Err((EngineError::Busy, Some(control)));
                }
                Err(TrySendError::Full(_)) => return Err((EngineError::Busy, None)),
                Err(TrySendError::Disconnected(_)) => Err((EngineError::Stopped, None)),
            },
        };
        // An ended conference is no longer placed once its end is on its way (or its thread
        // is gone), whatever the thread answers; a refused end leaves it placed and running.
        if control == Control::End
            && let Ok(mut p) = self.placement.lock()
        {
            p.remove(conference);
        }
        sent
    }

    /// The roster with each present participant's media figures.
    pub fn roster_with_media(
        &self,
        conference: &str,
    ) -> Pending<Vec<(Participant, Option<LegStats>)>> {
        self.call_in(conference, |conference, reply| Command::RosterWithMedia {
            conference,
            reply,
        })
    }

    /// Who may join the conference now: its lock and limits as the mixer has them.
    pub fn policy(&self, conference: &str) -> Pending<Policy> {
        self.call_in(conference, |conference, reply| Command::Policy {
            conference,
            reply,
        })
    }

    pub fn roster(&self, conference: &str) -> Pending<Vec<Participant>> {
        self.call_in(conference, |conference, reply| Command::Roster {
            conference,
            reply,
        })
    }

    /// Who a participant is (see `Participant::identity`), and whether it is still present.
    pub fn identity(
        &self,
        conference: &str,
        participant: ParticipantId,
    ) -> Pending<(Option<String>, bool)> {
        self.call_in(conference, |conference, reply| Command::Identity {
            conference,
            participant,
            reply,
        })
    }

    pub fn leg_stats(&self, conference: &str, participant: ParticipantId) -> Pending<LegStats> {
        self.call_in(conference, |conference, reply| Command::LegStats {
            conference,
            participant,
            reply,
        })
    }

    /// Every mixer thread's figures for the metrics.
    pub fn snapshots(&self) -> Pending<Vec<crate::mixer::stats::MixerSnapshot>> {
        Pending::answered(
            (0..self.mixers.len())
                .map(|i| self.call(i, |reply| Command::Metrics { reply }))
                .collect(),
        )
    }

    /// Stops every mixer thread.
    pub fn shutdown(&mut self) {
        for m in &mut self.mixers {
            m.stop();
        }
    }
}

/// Sends the command `make` builds on a mixer thread's queue (none: the thread is gone).
fn send<T: Send + 'static>(
    commands: Option<&SyncSender<Command>>,
    make: impl FnOnce(crate::mixer::Reply<T>) -> Command,
) -> Pending<T> {
    let Some(commands) = commands else {
        return Pending::failed(EngineError::Stopped);
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Never blocks: a caller on the async runtime must not wait for room in the queue.
    match commands.try_send(make(tx)) {
        Ok(()) => Pending::reply(rx),
        Err(TrySendError::Full(_)) => Pending::failed(EngineError::Busy),
        Err(TrySendError::Disconnected(_)) => Pending::failed(EngineError::Stopped),
    }
}

/// An SSRC that differs per participant and per run.
fn random_ssrc(participant: ParticipantId) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(participant.0);
    h.finish() as u32
}
