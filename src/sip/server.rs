//! The SIP shell: UDP and TCP listeners on `sip.listen`, one task that owns the dial-in state
//! machine ([`Uas`]) and the attendants, drives them with what arrives, and makes the engine
//! calls their actions ask for (on blocking threads: the engine answers within a tick). The
//! bridge's own hang-ups (eject, media timeout, conference end) and RFC 4733 / in-band digits
//! come from the engine's event stream.
//!
//! Callers of the access user, and of meetings with a passcode, first join the lobby (a
//! conference of its own where everyone waits, hearing only prompts); the attendant collects
//! their digits, and their leg moves into the meeting once they got them right.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, info, warn};

use super::attendant::{Attendant, AttendantSettings, Directory, Outcome};
use super::message::{MAX_MESSAGE, StreamFramer};
use super::prompts::Prompts;
use super::uas::{Action, CallRef, JoinRequest, JoinResult, Peer, Uas, UasSettings};
use crate::conference::limiter::{FailureLimiter, LimitSettings, Transport, caller_key, source_of};
use crate::conference::{
    Admission, DisconnectReason, Event, JoinError, ParticipantId, Policy, Role, State,
};
use crate::engine::{Engine, EngineError, Joiner};
use crate::mixer::conference::ConferenceEvent;
use crate::mixer::{CommandError, Control};

/// Concurrent TCP connections at most.
const MAX_CONNECTIONS: usize = 1024;
/// Concurrent TCP connections from one source address at most (one source cannot take all).
const MAX_CONNECTIONS_PER_SOURCE: usize = 32;
/// A TCP connection must bring its first complete message within this...
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(32);
/// ...and each further one within this of the last (otherwise it is closed).
const IDLE_TIMEOUT: Duration = Duration::from_secs(900);
/// How often the state machine's timers are looked at.
const TICK: Duration = Duration::from_millis(20);
/// The conference where callers wait for the attendant (not a meeting ID: those are digits).
pub const LOBBY: &str = "attendant";

/// What the attendant says and how it counts.
#[derive(Clone, Debug)]
pub struct AttendantConfig {
    pub prompts: Arc<Prompts>,
    pub settings: AttendantSettings,
    /// Wrong entries (meeting ID, passcode, leader PIN) per caller in ten minutes before the
    /// caller is locked out (see [`crate::conference::limiter`]).
    pub max_failures_per_source: u32,
}

impl AttendantConfig {
    /// The failure limits these settings ask for.
    pub fn limits(&self) -> LimitSettings {
        LimitSettings {
            per_caller: self.max_failures_per_source.max(1),
            ..LimitSettings::default()
        }
    }
}

/// The failure limiter SIP and WHIP share.
pub type SharedLimiter = Arc<Mutex<FailureLimiter>>;

/// SIP requests received by method and responses sent by code, for the metrics.
#[derive(Debug, Default)]
pub struct SipMetrics {
    /// By method: one of [`METHODS`] or `other`. Bound: `METHODS.len() + 1` keys.
    pub requests: Mutex<std::collections::BTreeMap<String, u64>>,
    /// By the method of the request answered (from CSeq; one of [`METHODS`] or `other`) and
    /// the code (ours: a few dozen). Bound: `(METHODS.len() + 1)` times the codes we send.
    pub responses: Mutex<std::collections::BTreeMap<(String, u16), u64>>,
    /// Failed credential attempts and lockouts (shared with WHIP).
    pub auth: Arc<crate::conference::limiter::LimitCounters>,
    /// Panics contained in the call core (each a bug; the message that caused it is lost),
    /// and in the SIP task itself.
    pub panics: std::sync::atomic::AtomicU64,
    /// Times the SIP task was started again after a panic.
    pub restarts: std::sync::atomic::AtomicU64,
}

/// Runs one input of the call core with a panic in it contained: that input is lost (nobody
/// answers it), every call goes on, and the panic is counted.
fn contained(metrics: &SipMetrics, what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        metrics
            .panics
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(input = what, "sip: the call core panicked");
    }
}

/// The methods counted under their own name; any other is `other`, so a stranger inventing
/// method names cannot grow the metrics.
pub const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "NOTIFY",
    "REGISTER",
    "SUBSCRIBE",
    "REFER",
    "MESSAGE",
    "PRACK",
    "PUBLISH",
];

/// A method's label: its name when it is one of [`METHODS`], else `other`.
fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

impl SipMetrics {
    /// Counts a received message if its first line parses as a request line
    /// (`METHOD Request-URI SIP/2.0`).
    fn received(&self, bytes: &[u8]) {
        let line_end = bytes
            .iter()
            .take(1024)
            .position(|b| *b == b'\r' || *b == b'\n')
            .unwrap_or(bytes.len().min(1024));
        let Ok(line) = std::str::from_utf8(&bytes[..line_end]) else {
            return;
        };
        let mut parts = line.split(' ');
        let (Some(method), Some(uri), Some("SIP/2.0"), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if method.is_empty() || uri.is_empty() {
            return;
        }
        if let Ok(mut map) = self.requests.lock() {
            *map.entry(method_label(method).to_owned()).or_default() += 1;
        }
    }

    /// Counts a sent message if it is a response.
    fn sent(&self, bytes: &[u8]) {
        let code = bytes
            .strip_prefix(b"SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u16>().ok());
        let Some(code) = code else { return };
        let method = std::str::from_utf8(&bytes[..bytes.len().min(2048)])
            .ok()
            .and_then(|text| {
                text.split("\r\n")
                    .find_map(|l| l.strip_prefix("CSeq: "))
                    .and_then(|v| v.split_whitespace().nth(1))
                    .map(|m| method_label(m).to_owned())
            })
            .unwrap_or_else(|| "other".to_owned());
        if let Ok(mut map) = self.responses.lock() {
            *map.entry((method, code)).or_default() += 1;
        }
    }
}

/// A running SIP server.
#[derive(Debug)]
pub struct SipServer {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub metrics: Arc<SipMetrics>,
    /// Failed credential attempts per caller and conference (WHIP uses it too).
    pub limiter: SharedLimiter,
    stop: watch::Sender<bool>,
    draining: watch::Sender<bool>,
    dials: mpsc::Sender<DialCommand>,
    task: tokio::task::JoinHandle<()>,
}

/// Why a dial-out could not start.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("`{0}` is not a SIP URI with a reachable host")]
    BadTarget(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the SIP server is not running")]
    Stopped,
}

/// A dial-out asked of the serving task.
#[derive(Debug)]
struct DialCommand {
    meeting: String,
    target: String,
    joiner: Joiner,
    reply: tokio::sync::oneshot::Sender<Result<ParticipantId, DialError>>,
}

/// A dial-out whose leg waits for the answer.
struct PendingDial {
    ports: crate::engine::ReservedPorts,
}

impl SipServer {
    /// Binds UDP and TCP on `settings.local` (port 0 picks one, the same for both where it can)
    /// and starts serving.
    pub async fn start(
        mut settings: UasSettings,
        attendant: AttendantConfig,
        engine: Arc<Engine>,
        events: broadcast::Receiver<ConferenceEvent>,
    ) -> std::io::Result<SipServer> {
        let lobby = Policy {
            wait_for_leader: true,
            ..Policy::default()
        };
        match engine.create_conference(LOBBY, lobby) {
            Ok(_) | Err(EngineError::Command(CommandError::ConferenceExists)) => {}
            Err(e) => return Err(std::io::Error::other(format!("attendant lobby: {e}"))),
        }
        let udp = UdpSocket::bind(settings.local).await?;
        let udp_addr = udp.local_addr()?;
        let tcp = match TcpListener::bind(udp_addr).await {
            Ok(l) => l,
            Err(_) if settings.local.port() == 0 => {
                TcpListener::bind(SocketAddr::new(udp_addr.ip(), 0)).await?
            }
            Err(e) => return Err(e),
        };
        let tcp_addr = tcp.local_addr()?;
        settings.local = udp_addr;
        let (stop, stop_rx) = watch::channel(false);
        let (draining, draining_rx) = watch::channel(false);
        let (dials, dials_rx) = mpsc::channel(256);
        let limiter = FailureLimiter::new(attendant.limits());
        let metrics = Arc::new(SipMetrics {
            auth: Arc::clone(&limiter.counters),
            ..SipMetrics::default()
        });
        let limiter = Arc::new(Mutex::new(limiter));
        let task = tokio::spawn(supervise(
            settings,
            attendant,
            engine,
            events,
            (Arc::new(udp), Arc::new(tcp)),
            (
                Arc::new(tokio::sync::Mutex::new(dials_rx)),
                Arc::clone(&metrics),
                Arc::clone(&limiter),
            ),
            (stop_rx, draining_rx),
        ));
        Ok(SipServer {
            udp: udp_addr,
            tcp: tcp_addr,
            metrics,
            limiter,
            stop,
            draining,
            dials,
            task,
        })
    }

    /// Calls `target` (a SIP URI) into `meeting` through the outbound proxy, or directly. The
    /// participant is `inviting` at once; the call's progress shows in the roster.
    pub async fn dial(
        &self,
        meeting: &str,
        target: &str,
        joiner: Joiner,
    ) -> Result<ParticipantId, DialError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.dials
            .send(DialCommand {
                meeting: meeting.to_owned(),
                target: target.to_owned(),
                joiner,
                reply,
            })
            .await
            .map_err(|_| DialError::Stopped)?;
        answer.await.map_err(|_| DialError::Stopped)?
    }

    /// Whether the SIP task runs (`/readyz` is not ready once it has ended).
    pub fn running(&self) -> bool {
        !self.task.is_finished()
    }

    /// While draining, new calls and OPTIONS get 503; calls in progress go on.
    pub fn set_draining(&self, on: bool) {
        let _ = self.draining.send(on);
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Open TCP connections by our id. Bound: `MAX_CONNECTIONS` (more are closed at accept), at
/// most `MAX_CONNECTIONS_PER_SOURCE` of one address; an entry goes when its connection closes.
type Connections = Arc<Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>>;

/// A join's outcome as the shell needs it.
struct Joined {
    call: CallRef,
    result: JoinResult,
    conference: String,
    /// The caller goes through the attendant (for this meeting, if it is known).
    attendant: Option<Option<(String, Arc<Admission>)>>,
    caller: Caller,
}

#[derive(Clone, Debug)]
struct Caller {
    /// Whose failures these are (see [`caller_key`]).
    key: String,
    display_name: String,
    uri: String,
    asserted_identity: Option<String>,
}

struct Shell {
    engine: Arc<Engine>,
    udp: Arc<UdpSocket>,
    connections: Connections,
    joins: mpsc::Sender<Joined>,
    /// Moves out of the lobby that finished: into which meeting, or failed.
    moves: mpsc::Sender<(ParticipantId, Option<String>)>,
    /// Which conference each SIP participant is in. Bound: one per call the Uas holds (itself
    /// capped by `sip.max_calls`) or dial-out; removed when the participant is disconnected.
    meetings: HashMap<ParticipantId, String>,
    access_user: String,
    config: AttendantConfig,
    /// Callers at the attendant. Bound: calls admitted to the lobby (capped by `sip.max_calls`);
    /// removed when they join, are hung up (after at most `max_tries` entries of 10 s) or leave.
    attendants: HashMap<ParticipantId, (Attendant, Caller)>,
    limiter: SharedLimiter,
    codecs: Vec<crate::media::codec::Codec>,
    outbound_proxy: Option<String>,
    dialing: HashMap<ParticipantId, PendingDial>,
    /// Dial-outs whose participant and ports are ready: their INVITE is to be sent.
    started: mpsc::Sender<Started>,
    dispatcher: Option<SocketAddr>,
    /// Callers to send elsewhere (REFER), taken by the serving loop.
    refers: Vec<(ParticipantId, String)>,
    /// Controls for the engine, applied in the order they were made by one thread (a 180
    /// then a 486 then the removal of a busy callee must not overtake each other).
    controls: Option<std::sync::mpsc::Sender<(String, Control)>>,
}

/// A dial-out ready to be sent.
struct Started {
    participant: ParticipantId,
    meeting: String,
    pending: PendingDial,
    target: String,
    to: SocketAddr,
    offer: String,
}

type Dials = Arc<tokio::sync::Mutex<mpsc::Receiver<DialCommand>>>;

/// Test-only: a datagram that panics the SIP task outside the call core's containment.
#[cfg(test)]
const PANIC_FOR_TEST: &[u8] = b"confab-test: panic the sip task";

/// Runs the SIP task, and runs it again on the same sockets if it panics outside the parts
/// that contain their own panics (a bug in the shell): the calls it knew are lost (their media
/// times out, their records close), new calls are taken at once, and the restart is counted.
/// `SipServer::running` stays true; a panic loop is slowed to one restart a second.
#[allow(clippy::too_many_arguments)]
async fn supervise(
    settings: UasSettings,
    config: AttendantConfig,
    engine: Arc<Engine>,
    events: broadcast::Receiver<ConferenceEvent>,
    (udp, tcp): (Arc<UdpSocket>, Arc<TcpListener>),
    (dials, metrics, limiter): (Dials, Arc<SipMetrics>, SharedLimiter),
    (stop, draining): (watch::Receiver<bool>, watch::Receiver<bool>),
) {
    loop {
        let run = tokio::spawn(serve(
            settings.clone(),
            config.clone(),
            Arc::clone(&engine),
            events.resubscribe(),
            (Arc::clone(&udp), Arc::clone(&tcp)),
            (
                Arc::clone(&dials),
                Arc::clone(&metrics),
                Arc::clone(&limiter),
            ),
            (stop.clone(), draining.clone()),
        ));
        match run.await {
            Err(e) if e.is_panic() => {
                metrics
                    .panics
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics
                    .restarts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(
                    "sip: the SIP task panicked; starting it again (its calls are lost)"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => return,
        }
    }
}

/// Aborts a task when dropped (also while a panic unwinds the task that owns it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve(
    settings: UasSettings,
    config: AttendantConfig,
    engine: Arc<Engine>,
    mut events: broadcast::Receiver<ConferenceEvent>,
    (udp, tcp): (Arc<UdpSocket>, Arc<TcpListener>),
    (dials, metrics, limiter): (Dials, Arc<SipMetrics>, SharedLimiter),
    (mut stop, mut draining): (watch::Receiver<bool>, watch::Receiver<bool>),
) {
    if *stop.borrow() {
        return;
    }
    // Held for the task's life; a panic drops it and a restarted task takes it again.
    let mut dials = dials.lock().await;
    info!(local = %settings.local, "sip listening (udp, tcp)");
    let access_user = settings.access_user.clone();
    let codecs = settings.codecs.clone();
    let outbound_proxy = settings.outbound_proxy.clone();
    let dispatcher = settings.dispatcher;
    let trusted = settings.trusted.clone();
    let mut uas = Uas::new(settings, os_random);
    uas.set_draining(*draining.borrow());
    let connections: Connections = Arc::default();
    let (frames_tx, mut frames) = mpsc::channel::<(Peer, Vec<u8>)>(1024);
    let _accept = AbortOnDrop(tokio::spawn(accept_loop(
        tcp,
        frames_tx,
        Arc::clone(&connections),
        TcpLimits {
            trusted: Some(trusted),
            ..TcpLimits::default()
        },
    )));
    let (joins_tx, mut joins) = mpsc::channel(1024);
    let (moves_tx, mut moves) = mpsc::channel(1024);
    let (started_tx, mut started) = mpsc::channel(256);
    let controls = {
        let engine = Arc::clone(&engine);
        let (tx, rx) = std::sync::mpsc::channel::<(String, Control)>();
        std::thread::Builder::new()
            .name("confab-sip-controls".into())
            .spawn(move || {
                // Ends when the shell (the only sender) is dropped.
                while let Ok((meeting, control)) = rx.recv() {
                    if let Err(e) = engine.control(&meeting, control) {
                        debug!(error = %e, "sip: engine control");
                    }
                }
            })
            .inspect_err(|e| warn!(error = %e, "sip: no control thread, controls run unordered"))
            .ok()
            .map(|_| tx)
    };
    let mut shell = Shell {
        engine,
        udp: Arc::clone(&udp),
        connections,
        joins: joins_tx,
        moves: moves_tx,
        meetings: HashMap::new(),
        access_user,
        config,
        attendants: HashMap::new(),
        limiter,
        codecs,
        outbound_proxy,
        dialing: HashMap::new(),
        started: started_tx,
        dispatcher,
        refers: Vec::new(),
        controls,
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    let mut next_prune = Instant::now();
    loop {
        let mut hang_up = Vec::new();
        tokio::select! {
            r = udp.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    #[cfg(test)]
                    if buf[..n] == *PANIC_FOR_TEST {
                        panic!("injected by a test");
                    }
                    metrics.received(&buf[..n]);
                    contained(&metrics, "udp", || {
                        uas.handle(Instant::now(), Peer { addr: from, connection: None }, &buf[..n]);
                    });
                }
                Err(e) => debug!(error = %e, "sip udp receive"),
            },
            Some((peer, frame)) = frames.recv() => {
                metrics.received(&frame);
                contained(&metrics, "tcp", || uas.handle(Instant::now(), peer, &frame));
            }
            Some(joined) = joins.recv() => {
                let (call, result) = (joined.call, joined.result.clone());
                shell.joined(joined);
                uas.joined(Instant::now(), call, result);
            }
            Some(command) = dials.recv() => shell.dial(command),
            Some(s) = started.recv() => {
                shell.meetings.insert(s.participant, s.meeting);
                shell.dialing.insert(s.participant, s.pending);
                uas.dial(Instant::now(), s.participant, &s.target, Peer { addr: s.to, connection: None }, s.offer);
            }
            Some((participant, meeting)) = moves.recv() => match meeting {
                Some(m) => { shell.meetings.insert(participant, m); }
                None => hang_up.push(participant),
            },
            event = events.recv() => match event {
                Ok(ConferenceEvent { event: Event::State { participant, state: State::Disconnected(reason) }, .. }) => {
                    shell.attendants.remove(&participant);
                    shell.dialing.remove(&participant);
                    // A move out of the lobby is not the end of the call.
                    if reason != DisconnectReason::Transferred
                        && shell.meetings.remove(&participant).is_some()
                        && reason != DisconnectReason::Hangup
                    {
                        hang_up.push(participant);
                    }
                }
                Ok(ConferenceEvent { event: Event::Dtmf { participant, digit, .. }, .. }) => {
                    shell.digit(participant, digit);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => warn!(lost = n, "sip fell behind the engine's events"),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                contained(&metrics, "tick", || uas.tick(now));
                shell.tick_attendants(now);
                if now >= next_prune {
                    next_prune = now + Duration::from_secs(1);
                    if let Ok(mut l) = shell.limiter.lock() {
                        l.prune(now);
                    }
                }
            }
            _ = draining.changed() => uas.set_draining(*draining.borrow()),
            _ = stop.changed() => break,
        }
        for p in hang_up {
            uas.hangup(Instant::now(), p);
        }
        for (p, target) in shell.refers.drain(..) {
            uas.refer(Instant::now(), p, &target);
        }
        while let Some(action) = uas.poll() {
            if let Action::Send { bytes, .. } = &action {
                metrics.sent(bytes);
            }
            shell.act(action).await;
        }
    }
}

impl Shell {
    async fn act(&mut self, action: Action) {
        match action {
            Action::Send { to, bytes } => match to.connection {
                None => {
                    if let Err(e) = self.udp.send_to(&bytes, to.addr).await {
                        debug!(error = %e, "sip udp send");
                    }
                }
                Some(id) => {
                    let tx = self
                        .connections
                        .lock()
                        .ok()
                        .and_then(|c| c.get(&id).cloned());
                    if let Some(tx) = tx {
                        let _ = tx.try_send(bytes);
                    }
                }
            },
            Action::Join(request) => self.join(*request),
            Action::Leave { participant } => {
                self.control(participant, Control::Hangup(participant))
            }
            Action::Hold { participant, on } => {
                self.control(participant, Control::Hold(participant, on))
            }
            Action::Dtmf { participant, digit } => self.digit(participant, digit),
            Action::Progress { participant, code } => {
                self.control(participant, Control::SipStatus(participant, code));
            }
            Action::Answered {
                participant,
                answer,
            } => self.answered(participant, &answer),
            Action::Renegotiated { participant, spec } => {
                let Some(meeting) = self.meetings.get(&participant).cloned() else {
                    return;
                };
                let engine = Arc::clone(&self.engine);
                let moves = self.moves.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = engine.respec(&meeting, participant, *spec) {
                        debug!(error = %e, "sip: the leg could not take the new settings");
                        let _ = moves.blocking_send((participant, None));
                    }
                });
            }
            Action::Failed { participant, code } => {
                self.dialing.remove(&participant);
                let reason = match code {
                    486 | 600 => DisconnectReason::Busy,
                    408 | 480 | 487 => DisconnectReason::NoAnswer,
                    603 => DisconnectReason::Declined,
                    _ => DisconnectReason::Rejected,
                };
                self.control(participant, Control::SipStatus(participant, code));
                self.control(participant, Control::Remove(participant, reason));
                // The call is over on both sides: no BYE when the roster says so.
                self.meetings.remove(&participant);
            }
        }
    }

    fn join(&mut self, request: JoinRequest) {
        let attendant = if request.meeting == self.access_user {
            Some(None)
        } else {
            match self.engine.admission(&request.meeting) {
                Some(a) if a.passcode.is_some() => Some(Some((request.meeting.clone(), a))),
                _ => None,
            }
        };
        // Every SIP request that gets here came from a trusted source (a gateway or proxy):
        // the caller is who it says is calling (the asserted identity, else From).
        let identity = request
            .asserted_identity
            .as_deref()
            .or(Some(request.uri.as_str()));
        let caller = Caller {
            key: caller_key(request.source, identity),
            display_name: request.display_name.clone(),
            uri: request.uri.clone(),
            asserted_identity: request.asserted_identity.clone(),
        };
        let gate_refuses = attendant.is_none()
            && self
                .engine
                .admission(&request.meeting)
                .is_some_and(|a| !a.gate.admits(caller.asserted_identity.as_deref()));
        if gate_refuses {
            let _ = self.joins.try_send(Joined {
                call: request.call,
                result: JoinResult::NotAllowed,
                conference: request.meeting.clone(),
                attendant: None,
                caller,
            });
            return;
        }
        let conference = match attendant {
            Some(_) => LOBBY.to_owned(),
            None => request.meeting.clone(),
        };
        // A caller (or a meeting) with too many failed entries is refused before the attendant.
        let meeting = attendant
            .as_ref()
            .and_then(|a| a.as_ref().map(|(m, _)| m.as_str()));
        let locked_out = attendant.is_some()
            && self.limiter.lock().map_or(true, |l| {
                l.locked(Instant::now(), &caller.key, meeting).is_some()
            });
        if locked_out {
            let _ = self.joins.try_send(Joined {
                call: request.call,
                result: JoinResult::Forbidden,
                conference,
                attendant: None,
                caller,
            });
            return;
        }
        let engine = Arc::clone(&self.engine);
        let joins = self.joins.clone();
        tokio::task::spawn_blocking(move || {
            let spec = request.negotiated.leg_spec(request.local_key);
            let joiner = Joiner {
                display_name: request.display_name,
                uri: request.uri,
                role: Role::Attendee,
            };
            let result = match engine.add_rtp_leg(&conference, joiner, spec) {
                Ok((participant, local)) => {
                    if attendant.is_some() {
                        // Gateways often send digits as tones in the audio.
                        let _ = engine.detect_dtmf(&conference, participant, true);
                    }
                    JoinResult::Joined { participant, local }
                }
                Err(EngineError::Command(CommandError::NoConference)) => JoinResult::NoConference,
                Err(EngineError::Command(CommandError::Join(JoinError::Locked))) => {
                    JoinResult::Locked
                }
                Err(EngineError::Command(CommandError::Join(JoinError::Full))) => JoinResult::Full,
                Err(EngineError::Command(CommandError::Join(JoinError::Ended))) => {
                    JoinResult::Ended
                }
                Err(_) => JoinResult::Unavailable,
            };
            let _ = joins.blocking_send(Joined {
                call: request.call,
                result,
                conference,
                attendant,
                caller,
            });
        });
    }

    fn joined(&mut self, joined: Joined) {
        let JoinResult::Joined { participant, .. } = joined.result else {
            return;
        };
        self.meetings.insert(participant, joined.conference);
        if let Some(meeting) = joined.attendant {
            let (attendant, first) = Attendant::new(Instant::now(), self.config.settings, meeting);
            self.attendants
                .insert(participant, (attendant, joined.caller));
            self.carry_out(participant, first);
        }
    }

    fn dial(&mut self, command: DialCommand) {
        let DialCommand {
            meeting,
            target,
            joiner,
            reply,
        } = command;
        let host = match &self.outbound_proxy {
            Some(proxy) => sip_host(proxy),
            None => sip_host(&target),
        };
        let Some(host) = host.filter(|_| super::uas::safe_uri(&target)) else {
            let _ = reply.send(Err(DialError::BadTarget(target)));
            return;
        };
        let engine = Arc::clone(&self.engine);
        let started = self.started.clone();
        let codecs = self.codecs.clone();
        tokio::spawn(async move {
            let Ok(Some(to)) = tokio::net::lookup_host(host.as_str())
                .await
                .map(|mut a| a.next())
            else {
                let _ = reply.send(Err(DialError::BadTarget(target)));
                return;
            };
            let m = meeting.clone();
            let invited = tokio::task::spawn_blocking(move || engine.invite(&m, joiner)).await;
            match invited {
                Ok(Ok((participant, ports))) => {
                    let offer = super::sdp::offer(ports.local, &codecs, participant.0);
                    let ready = Started {
                        participant,
                        meeting,
                        pending: PendingDial { ports },
                        target,
                        to,
                        offer,
                    };
                    let _ = started.send(ready).await;
                    let _ = reply.send(Ok(participant));
                }
                Ok(Err(e)) => {
                    let _ = reply.send(Err(DialError::Engine(e)));
                }
                Err(_) => {
                    let _ = reply.send(Err(DialError::Stopped));
                }
            }
        });
    }

    fn answered(&mut self, participant: ParticipantId, answer: &[u8]) {
        let Some(pending) = self.dialing.remove(&participant) else {
            return;
        };
        let Some(meeting) = self.meetings.get(&participant).cloned() else {
            return;
        };
        let spec = match super::sdp::negotiate(answer, &self.codecs) {
            Ok(n) => n.leg_spec(None),
            Err(e) => {
                debug!(error = %e, "dial-out answer not usable");
                let _ = self.moves.try_send((participant, None));
                return;
            }
        };
        self.control(participant, Control::SipStatus(participant, 200));
        let engine = Arc::clone(&self.engine);
        let moves = self.moves.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = engine.answered(&meeting, participant, pending.ports, spec) {
                debug!(error = %e, "dial-out answered but its leg could not join");
                let _ = moves.blocking_send((participant, None));
            }
        });
    }

    /// A digit from a participant: the attendant's, if it is at the attendant.
    fn digit(&mut self, participant: ParticipantId, digit: char) {
        let now = Instant::now();
        let Some((attendant, caller)) = self.attendants.get_mut(&participant) else {
            return;
        };
        let limiter = self.limiter.lock().ok();
        let directory = ShellDirectory {
            engine: &self.engine,
            limiter: limiter.as_deref(),
            caller: &caller.key,
            now,
        };
        let outcomes = attendant.digit(now, digit, &directory);
        drop(limiter);
        self.carry_out(participant, outcomes);
    }

    fn tick_attendants(&mut self, now: Instant) {
        let limiter = self.limiter.lock().ok();
        let mut all = Vec::new();
        for (p, (attendant, caller)) in &mut self.attendants {
            let directory = ShellDirectory {
                engine: &self.engine,
                limiter: limiter.as_deref(),
                caller: &caller.key,
                now,
            };
            let outcomes = attendant.tick(now, &directory);
            if !outcomes.is_empty() {
                all.push((*p, outcomes));
            }
        }
        drop(limiter);
        for (p, outcomes) in all {
            self.carry_out(p, outcomes);
        }
        self.attendants.retain(|_, (a, _)| !a.finished());
    }

    fn carry_out(&mut self, participant: ParticipantId, outcomes: Vec<Outcome>) {
        for outcome in outcomes {
            let engine = Arc::clone(&self.engine);
            match outcome {
                Outcome::Play(prompt) => {
                    let audio = self.config.prompts.audio(prompt);
                    tokio::task::spawn_blocking(move || {
                        let _ = engine.play(LOBBY, participant, Some(audio));
                    });
                }
                Outcome::Join { meeting, role } => {
                    let Some((_, caller)) = self.attendants.get(&participant) else {
                        continue;
                    };
                    let admitted = self
                        .engine
                        .admission(&meeting)
                        .is_some_and(|a| a.gate.admits(caller.asserted_identity.as_deref()));
                    if !admitted {
                        self.control(
                            participant,
                            Control::Remove(participant, DisconnectReason::Rejected),
                        );
                        continue;
                    }
                    let joiner = Joiner {
                        display_name: caller.display_name.clone(),
                        uri: caller.uri.clone(),
                        role,
                    };
                    let moves = self.moves.clone();
                    tokio::task::spawn_blocking(move || {
                        let _ = engine.detect_dtmf(LOBBY, participant, false);
                        let moved = engine.move_leg(LOBBY, participant, &meeting, joiner);
                        if let Err(e) = &moved {
                            debug!(error = %e, %meeting, "attendant: could not move the caller");
                        }
                        let _ = moves.blocking_send((participant, moved.ok().map(|()| meeting)));
                    });
                }
                Outcome::Redirect { meeting } => match self.dispatcher {
                    Some(d) => self
                        .refers
                        .push((participant, format!("sip:{meeting}@{d}"))),
                    None => self.control(
                        participant,
                        Control::Remove(participant, DisconnectReason::AttendantFailed),
                    ),
                },
                Outcome::Failed { meeting } => {
                    // Counted at the entry: hanging up during the goodbye changes nothing.
                    if let (Some((_, caller)), Ok(mut limiter)) =
                        (self.attendants.get(&participant), self.limiter.lock())
                    {
                        limiter.failure(
                            Instant::now(),
                            Transport::Sip,
                            &caller.key,
                            meeting.as_deref(),
                        );
                    }
                }
                Outcome::Hangup => {
                    self.control(
                        participant,
                        Control::Remove(participant, DisconnectReason::AttendantFailed),
                    );
                }
            }
        }
    }

    fn control(&mut self, participant: ParticipantId, control: Control) {
        let Some(meeting) = self.meetings.get(&participant).cloned() else {
            return;
        };
        let control = match &self.controls {
            Some(tx) => match tx.send((meeting.clone(), control)) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError((_, control))) => control,
            },
            None => control,
        };
        let engine = Arc::clone(&self.engine);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = engine.control(&meeting, control) {
                debug!(error = %e, "sip: engine control");
            }
        });
    }
}

/// The attendant's view of the bridge: the engine's meetings (the lobby is none) and the
/// failure limiter, for one caller.
struct ShellDirectory<'a> {
    engine: &'a Engine,
    limiter: Option<&'a FailureLimiter>,
    caller: &'a str,
    now: Instant,
}

impl Directory for ShellDirectory<'_> {
    fn admission(&self, meeting: &str) -> Option<Arc<Admission>> {
        // The lobby is no meeting; neither is the access user.
        if meeting == LOBBY {
            None
        } else {
            self.engine.admission(meeting)
        }
    }

    fn locked_out(&self, meeting: Option<&str>) -> bool {
        // Without the limiter (a poisoned lock) nothing is let through unchecked.
        self.limiter
            .is_none_or(|l| l.locked(self.now, self.caller, meeting).is_some())
    }
}

/// What a TCP connection may hold.
#[derive(Clone, Debug)]
struct TcpLimits {
    total: usize,
    per_source: usize,
    first_message: Duration,
    idle: Duration,
    /// Where connections may come from (`sip.trusted`; none: anywhere). Every request from
    /// elsewhere is refused 403 anyway; a stranger's connection would only hold a slot.
    trusted: Option<Vec<crate::config::Network>>,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            total: MAX_CONNECTIONS,
            per_source: MAX_CONNECTIONS_PER_SOURCE,
            first_message: FIRST_MESSAGE_TIMEOUT,
            idle: IDLE_TIMEOUT,
            trusted: None,
        }
    }
}

async fn accept_loop(
    listener: Arc<TcpListener>,
    frames: mpsc::Sender<(Peer, Vec<u8>)>,
    connections: Connections,
    limits: TcpLimits,
) {
    let mut next_id = 1u64;
    // Open connections per source address. Bound: `limits.total` keys (a connection is counted
    // only once accepted under the caps); a key goes when its last connection closes.
    let per_source: Arc<Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
    let mut backoff = Duration::ZERO;
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(e) => {
                // Out of descriptors (EMFILE) and the like: wait before trying again instead
                // of spinning, longer each time it fails in a row (up to a second).
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "sip tcp accept");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let stranger = limits
            .trusted
            .as_ref()
            .is_some_and(|t| !t.iter().any(|n| n.contains(addr.ip())));
        let full = connections.lock().map_or(true, |c| c.len() >= limits.total);
        let admitted = !stranger
            && !full
            && per_source.lock().is_ok_and(|mut m| {
                let n = m.entry(source_of(addr.ip())).or_insert(0);
                if *n >= limits.per_source {
                    false
                } else {
                    *n += 1;
                    true
                }
            });
        if !admitted {
            debug!(%addr, stranger, "sip tcp connection refused (untrusted source or connection limit)");
            drop(stream);
            continue;
        }
        let id = next_id;
        next_id += 1;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
        if let Ok(mut c) = connections.lock() {
            c.insert(id, tx);
        }
        let frames = frames.clone();
        let connections = Arc::clone(&connections);
        let per_source = Arc::clone(&per_source);
        tokio::spawn(async move {
            let (mut read, mut write) = stream.into_split();
            let writer = tokio::spawn(async move {
                while let Some(bytes) = rx.recv().await {
                    if write.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
            });
            let peer = Peer {
                addr,
                connection: Some(id),
            };
            let mut framer = StreamFramer::default();
            let mut buf = vec![0u8; 8192];
            // A complete message is due by then: the first soon, each further one within
            // the idle timeout (keep-alives and partial messages do not count).
            let mut deadline = tokio::time::Instant::now() + limits.first_message;
            'read: loop {
                let n = match tokio::time::timeout_at(deadline, read.read(&mut buf)).await {
                    Err(_) => {
                        debug!(%addr, "sip tcp connection closed: no complete message in time");
                        break;
                    }
                    Ok(Ok(0) | Err(_)) => break,
                    Ok(Ok(n)) => n,
                };
                framer.push(&buf[..n]);
                loop {
                    match framer.next_message() {
                        Ok(Some(frame)) => {
                            deadline = tokio::time::Instant::now() + limits.idle;
                            if frames.send((peer, frame)).await.is_err() {
                                break 'read;
                            }
                        }
                        Ok(None) => break,
                        // The stream cannot be framed any more: close it.
                        Err(_) => break 'read,
                    }
                }
            }
            if let Ok(mut c) = connections.lock() {
                c.remove(&id);
            }
            if let Ok(mut m) = per_source.lock()
                && let Some(n) = m.get_mut(&source_of(addr.ip()))
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&source_of(addr.ip()));
                }
            }
            writer.abort();
        });
    }
}

/// `host:port` of a SIP URI (`sip:user@host:port;params`), port 5060 when none is given.
fn sip_host(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("sip:")?;
    let host_port = rest.rsplit('@').next()?.split([';', '?']).next()?;
    if host_port.is_empty() {
        return None;
    }
    Some(if host_port.contains(':') && !host_port.ends_with(']') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5060")
    })
}

/// Unpredictable bytes from the operating system. Should it fail (it does not on Linux), a
/// per-process keyed hash of a counter and the time still gives distinct values.
fn os_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_ok() {
        return;
    }
    use std::hash::{BuildHasher, Hasher};
    static STATE: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let state = STATE.get_or_init(std::collections::hash_map::RandomState::new);
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
