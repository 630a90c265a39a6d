//! The media engine: mixer threads, the RTP port pool, and a blocking handle to them for
//! signalling and the API. Each conference lives on one mixer thread (placed round-robin);
//! every call is a command to that thread answered within a tick.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::conference::{Admission, Joining, Participant, ParticipantId, Policy, Role};
use crate::media::leg::{LegSpec, LegStats, LegTimers, RtpLeg};
use crate::media::ports::PortPool;
use crate::mixer::conference::{ConferenceCounters, ConferenceEvent, ConferenceId};
use crate::mixer::{Command, CommandError, Control, EventSinks, LegOp, MixerCounters, MixerHandle};

#[path = "engine_legs.rs"]
mod legs;

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

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("no free RTP port")]
    PortsExhausted,
    #[error("the media engine is not running")]
    Stopped,
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
    /// Each conference's mixer thread and admission rules.
    placement: Mutex<HashMap<ConferenceId, (usize, Arc<Admission>)>>,
    next_mixer: AtomicUsize,
    next_participant: AtomicU64,
    events: Mutex<Option<Receiver<ConferenceEvent>>>,
    /// The control stream's queue from the mixer threads, until its consumer takes it.
    control: Mutex<Option<Receiver<ConferenceEvent>>>,
    control_wanted: Arc<AtomicBool>,
    /// The webhooks' tap and its queue, until the webhook task takes them.
    webhooks: Mutex<Option<WebhookEvents>>,
}

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
            placement: Mutex::new(HashMap::new()),
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

    fn call<T>(
        &self,
        mixer: usize,
        make: impl FnOnce(SyncSender<Result<T, CommandError>>) -> Command,
    ) -> Result<T, EngineError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let m = self.mixers.get(mixer).ok_or(EngineError::Stopped)?;
        m.commands
            .send(make(tx))
            .map_err(|_| EngineError::Stopped)?;
        Ok(rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| EngineError::Stopped)??)
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
    pub fn create_conference(
        &self,
        id: &str,
        policy: Policy,
    ) -> Result<Arc<ConferenceCounters>, EngineError> {
        self.create_conference_with(id, policy, Admission::default())
    }

    /// Creates a conference whose callers key a passcode or leader PIN.
    pub fn create_conference_with(
        &self,
        id: &str,
        policy: Policy,
        admission: Admission,
    ) -> Result<Arc<ConferenceCounters>, EngineError> {
        self.create_conference_full(id, policy, admission, None)
    }

    /// Creates a conference with its own number of talkers (`None`: the configured one).
    pub fn create_conference_full(
        &self,
        id: &str,
        policy: Policy,
        admission: Admission,
        max_talkers: Option<usize>,
    ) -> Result<Arc<ConferenceCounters>, EngineError> {
        let id: ConferenceId = Arc::from(id);
        {
            let placement = self.placement.lock().map_err(|_| EngineError::Stopped)?;
            if placement.contains_key(&id) {
                return Err(CommandError::ConferenceExists.into());
            }
        }
        // Round-robin over the threads that still run: a thread that ended (by a bug its
        // containment missed) takes no new conference.
        let n = self.mixers.len().max(1);
        let first = self.next_mixer.fetch_add(1, Ordering::Relaxed);
        let mixer = (0..n)
            .map(|k| (first + k) % n)
            .find(|&i| self.mixers.get(i).is_some_and(MixerHandle::alive))
            .ok_or(EngineError::Stopped)?;
        let counters = self.call(mixer, |reply| Command::CreateConference {
            id: Arc::clone(&id),
            policy,
            max_talkers: max_talkers.unwrap_or(self.settings.max_talkers),
            media_timeout: self.settings.media_timeout,
            reply,
        })?;
        self.placement
            .lock()
            .map_err(|_| EngineError::Stopped)?
            .insert(id, (mixer, Arc::new(admission)));
        Ok(counters)
    }

    /// Plays a prompt (48 kHz) to a participant instead of the mix; `None` stops it.
    pub fn play(
        &self,
        conference: &str,
        participant: ParticipantId,
        audio: Option<Arc<[i16]>>,
    ) -> Result<(), EngineError> {
        self.leg_op(conference, participant, LegOp::Play(audio))
            .map(drop)
    }

    /// New leg settings from signalling (a re-INVITE's codec change, an offerless answer).
    pub fn respec(
        &self,
        conference: &str,
        participant: ParticipantId,
        spec: LegSpec,
    ) -> Result<(), EngineError> {
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
    ) -> Result<(), EngineError> {
        self.leg_op(conference, participant, LegOp::RecordName(length))
            .map(drop)
    }

    /// In-band DTMF detection on a participant's audio, on or off.
    pub fn detect_dtmf(
        &self,
        conference: &str,
        participant: ParticipantId,
        on: bool,
    ) -> Result<(), EngineError> {
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
    ) -> Result<(), EngineError> {
        let (mixer, id) = self.mixer_of(to)?;
        let leg = self
            .leg_op(from, participant, LegOp::Take)?
            .ok_or(EngineError::Command(CommandError::NoParticipant))?;
        let joining = joiner.joining(participant);
        self.call(mixer, |reply| Command::AddLeg {
            conference: id,
            joining,
            leg,
            reply,
        })
    }

    /// Attaches a recording's tap to `conference` (`None` detaches it); answers the tap it
    /// replaced (see `recording::Recorder`, which makes the taps).
    pub fn set_recording(
        &self,
        conference: &str,
        tap: Option<crate::recording::RecordingTap>,
    ) -> Result<Option<crate::recording::RecordingTap>, EngineError> {
        let (mixer, id) = self.mixer_of(conference)?;
        self.call(mixer, |reply| Command::Record {
            conference: id,
            tap,
            reply,
        })
    }

    pub fn control(&self, conference: &str, control: Control) -> Result<(), EngineError> {
        let (mixer, id) = self.mixer_of(conference)?;
        let r = self.call(mixer, |reply| Command::Control {
            conference: id,
            control,
            reply,
        });
        if control == Control::End
            && let Ok(mut p) = self.placement.lock()
        {
            p.remove(conference);
        }
        r
    }

    /// The roster with each present participant's media figures.
    pub fn roster_with_media(
        &self,
        conference: &str,
    ) -> Result<Vec<(Participant, Option<LegStats>)>, EngineError> {
        let (mixer, id) = self.mixer_of(conference)?;
        self.call(mixer, |reply| Command::RosterWithMedia {
            conference: id,
            reply,
        })
    }

    /// Who may join the conference now: its lock and limits as the mixer has them.
    pub fn policy(&self, conference: &str) -> Result<Policy, EngineError> {
        let (mixer, id) = self.mixer_of(conference)?;
        self.call(mixer, |reply| Command::Policy {
            conference: id,
            reply,
        })
    }

    pub fn roster(&self, conference: &str) -> Result<Vec<Participant>, EngineError> {
        let (mixer, id) = self.mixer_of(conference)?;
        self.call(mixer, |reply| Command::Roster {
            conference: id,
            reply,
        })
    }

    /// Who a participant is (see `Participant::identity`), and whether it is still present.
    pub fn identity(
        &self,
        conference: &str,
        participant: ParticipantId,
    ) -> Result<(Option<String>, bool), EngineError> {
        let (mixer, id) = self.mixer_of(conference)?;
        self.call(mixer, |reply| Command::Identity {
            conference: id,
            participant,
            reply,
        })
    }

    pub fn leg_stats(
        &self,
        conference: &str,
        participant: ParticipantId,
    ) -> Result<LegStats, EngineError> {
        let (mixer, id) = self.mixer_of(conference)?;
        self.call(mixer, |reply| Command::LegStats {
            conference: id,
            participant,
            reply,
        })
    }

    /// Every mixer thread's figures for the metrics.
    pub fn snapshots(&self) -> Vec<crate::mixer::stats::MixerSnapshot> {
        (0..self.mixers.len())
            .filter_map(|i| self.call(i, |reply| Command::Metrics { reply }).ok())
            .collect()
    }

    /// Stops every mixer thread.
    pub fn shutdown(&mut self) {
        for m in &mut self.mixers {
            m.stop();
        }
    }
}

/// An SSRC that differs per participant and per run.
fn random_ssrc(participant: ParticipantId) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(participant.0);
    h.finish() as u32
}
