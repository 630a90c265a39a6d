//! The SIP shell: UDP and TCP listeners on `sip.listen`, one task that owns the dial-in state
//! machine ([`Uas`]) and the attendants, drives them with what arrives, and makes the engine
//! calls their actions ask for (sent at once; their replies, due within a tick, are awaited by
//! tasks of their own so the loop never waits for a mixer thread). The
//! bridge's own hang-ups (eject, media timeout, conference end) and RFC 4733 / in-band digits
//! come from the engine's control stream, which loses none of them (unlike the UI's events).
//!
//! Callers of the access user, and of meetings with a passcode, first join the lobby (a
//! conference of its own where everyone waits, hearing only prompts); the attendant collects
//! their digits, and their leg moves into the meeting once they got them right.
//!
//! This file holds the server's handle and the serving loop; beside it: `shell` (what the
//! loop's actions do), `tcp` (the TCP
//! listener and what a connection may hold), `dial` (dial-out), `lobby` (callers at the
//! attendant), `supervisor` (panics, and the restart of the serving task) and `metrics`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use super::message::MAX_MESSAGE;
use super::presence::PresenceSettings;
use super::uas::{Action, CallRef, JoinRequest, JoinResult, Peer, Uas, UasSettings};
use crate::conference::limiter::FailureLimiter;
use crate::conference::{
    Admission, DisconnectReason, Event, JoinError, ParticipantId, Policy, Role, State,
};
use crate::engine::{Engine, EngineError, Joiner};
use crate::mixer::conference::ConferenceEvent;
use crate::mixer::{CommandError, Control};

#[path = "attendant_config.rs"]
mod attendant_config;
#[path = "control_backlog.rs"]
mod control_backlog;
#[path = "dial.rs"]
mod dial;
#[path = "greeting.rs"]
mod greeting;
#[path = "keys.rs"]
mod keys;
#[path = "listeners.rs"]
mod listeners;
#[path = "lobby.rs"]
mod lobby;
#[path = "metrics.rs"]
mod metrics;
#[path = "participants.rs"]
mod participants;
#[path = "random.rs"]
mod random;
#[path = "refusal.rs"]
mod refusal;
#[path = "shell.rs"]
mod shell;
#[path = "supervisor.rs"]
mod supervisor;
#[path = "tcp.rs"]
mod tcp;
pub use attendant_config::AttendantConfig;
pub use dial::DialError;
pub(crate) use dial::dial_target;
use dial::{DialCommand, Dials, Started};
pub(crate) use listeners::Listeners;
pub use metrics::{METHODS, SipMetrics};
use random::os_random;
use shell::{Caller, Shell};
#[cfg(test)]
use supervisor::PANIC_FOR_TEST;
use supervisor::{AbortOnDrop, contained, supervise};
use tcp::{Connections, Connector, TcpLimits, accept_loop};

/// How often the state machine's timers are looked at.
const TICK: Duration = Duration::from_millis(20);
/// The conference where callers wait for the attendant (not a meeting ID: those are digits).
pub const LOBBY: &str = "attendant";

/// The engine's control stream, held by the serving task (a restarted one takes it again).
pub(crate) type ControlEvents = Arc<tokio::sync::Mutex<mpsc::Receiver<ConferenceEvent>>>;

/// The failure limiter SIP and WHIP share.
pub type SharedLimiter = Arc<Mutex<FailureLimiter>>;

/// A running SIP server.
#[derive(Debug)]
pub struct SipServer {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// SIP over TLS, when it is on.
    pub tls: Option<SocketAddr>,
    pub metrics: Arc<SipMetrics>,
    /// Failed credential attempts per caller and conference (WHIP uses it too).
    pub limiter: SharedLimiter,
    /// Conferences' own SRTP policies, set through the API (see `conference_srtp.rs`).
    pub conference_srtp: crate::sip::conference_srtp::ConferenceSrtp,
    stop: watch::Sender<bool>,
    draining: watch::Sender<bool>,
    dials: mpsc::Sender<DialCommand>,
    task: tokio::task::JoinHandle<()>,
}

impl SipServer {
    /// Binds UDP and TCP on `settings.local` (port 0 picks one, the same for both where it can)
    /// and starts serving.
    pub async fn start(
        mut settings: UasSettings,
        attendant: AttendantConfig,
        engine: Arc<Engine>,
    ) -> std::io::Result<SipServer> {
        let control = engine
            .control_events()
            .ok_or_else(|| std::io::Error::other("the engine's control stream is taken"))?;
        let control: ControlEvents = Arc::new(tokio::sync::Mutex::new(control));
        let lobby = Policy {
            wait_for_leader: true,
            ..Policy::default()
        };
        match engine.create_conference(LOBBY, lobby).await {
            Ok(_) | Err(EngineError::Command(CommandError::ConferenceExists)) => {}
            Err(e) => return Err(std::io::Error::other(format!("attendant lobby: {e}"))),
        }
        let listeners = Listeners::bind(&mut settings).await?;
        let (udp_addr, tcp_addr) = (listeners.udp.local_addr()?, listeners.tcp.local_addr()?);
        let tls_addr = settings.tls.as_ref().map(|t| t.listen);
        let conference_srtp = settings.conference_srtp.clone();
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
            control,
            listeners,
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
            tls: tls_addr,
            metrics,
            limiter,
            conference_srtp,
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

async fn serve(
    settings: UasSettings,
    config: AttendantConfig,
    engine: Arc<Engine>,
    control: ControlEvents,
    Listeners { udp, tcp, tls }: Listeners,
    (dials, metrics, limiter): (Dials, Arc<SipMetrics>, SharedLimiter),
    (mut stop, mut draining): (watch::Receiver<bool>, watch::Receiver<bool>),
) {
    if *stop.borrow() {
        return;
    }
    // Held for the task's life; a panic drops them and a restarted task takes them again.
    let mut dials = dials.lock().await;
    let mut control = control.lock().await;
    match &settings.tls {
        Some(t) => info!(local = %settings.local, tls = %t.listen, "sip listening (udp, tcp, tls)"),
        None => info!(local = %settings.local, "sip listening (udp, tcp)"),
    }
    let access_user = settings.access_user.clone();
    let codecs = settings.codecs.clone();
    let outbound_proxy = settings.outbound_proxy.clone();
    let dispatcher = settings.dispatcher;
    let media_advertise = settings.media_advertise;
    let (srtp, sdes_over_cleartext) = (settings.srtp, settings.sdes_over_cleartext);
    let conference_srtp = settings.conference_srtp.clone();
    let trusted = settings.trusted.clone();
    let tls_client = settings.tls.as_ref().and_then(|t| t.client.clone());
    // PUBLISHes leave from the SIP socket, with our address as the server sees it.
    let presence = settings.presence.map(|p| PresenceSettings {
        local: settings.sip_addr(&Peer {
            addr: p.server,
            connection: None,
        }),
        ..p
    });
    let mut uas = Uas::new(settings, os_random);
    uas.set_draining(*draining.borrow());
    let connections: Connections = Arc::default();
    let (frames_tx, mut frames) = mpsc::channel::<(Peer, Vec<u8>)>(1024);
    let limits = TcpLimits {
        trusted: Some(trusted),
        ..TcpLimits::default()
    };
    let connector = Connector::new(frames_tx.clone(), Arc::clone(&connections), limits.clone());
    let _accept_tls = tls.map(|(listener, acceptor)| {
        AbortOnDrop(tokio::spawn(accept_loop(
            listener,
            Some(acceptor),
            frames_tx.clone(),
            Arc::clone(&connections),
            limits.clone(),
        )))
    });
    let _accept = AbortOnDrop(tokio::spawn(accept_loop(
        tcp,
        None,
        frames_tx,
        Arc::clone(&connections),
        limits,
    )));
    let (joins_tx, mut joins) = mpsc::channel(1024);
    let (moves_tx, mut moves) = mpsc::channel(1024);
    let (started_tx, mut started) = mpsc::channel(256);
    let (rosters_tx, mut rosters) = mpsc::channel::<shell::RosterRead>(256);
    let (identities_tx, mut identities) = mpsc::channel::<shell::IdentityRead>(256);
    let (placements_tx, mut placements) = mpsc::channel::<shell::PlacementRead>(256);
    let mut shell = Shell {
        engine,
        udp: Arc::clone(&udp),
        connections,
        joins: joins_tx,
        moves: moves_tx,
        participants: Default::default(),
        greetings: Vec::new(),
        menu_audio: None,
        left_in_move: Vec::new(),
        access_user,
        config,
        limiter,
        codecs,
        outbound_proxy,
        started: started_tx,
        dispatcher,
        refers: Vec::new(),
        admitted: Vec::new(),
        waiting_controls: Default::default(),
        media_advertise,
        srtp,
        sdes_over_cleartext,
        conference_srtp,
        connector,
        tls_client,
        package: shell::Package::new((rosters_tx, placements_tx), os_random),
        presence: presence.map(|p| shell::PresenceLink::new(p, identities_tx, os_random)),
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
                shell.participants.dialing(s.participant, s.meeting, s.pending);
                uas.dial(Instant::now(), s.participant, &s.target, Peer { addr: s.to, connection: s.connection }, s.offer, s.srtp);
            }
            Some((participant, meeting)) = moves.recv() => shell.moved(participant, meeting, &mut hang_up),
            Some((meeting, users)) = rosters.recv() => shell.package.core.roster(Instant::now(), &meeting, users),
            Some(read) = identities.recv() => shell.identified(read),
            Some(read) = placements.recv() => shell.placed(read),
            event = control.recv() => match event {
                Some(event) => shell.control_event(event, &mut hang_up),
                None => break,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                contained(&metrics, "tick", || uas.tick(now));
                shell.retry_controls();
                shell.tick_attendants(now);
                shell.tick_greetings(now);
                shell.package.core.tick(now);
                if let Some(link) = &mut shell.presence {
                    link.core.tick(now);
                }
                if now >= next_prune {
                    next_prune = now + Duration::from_secs(1);
                    if let Ok(mut l) = shell.limiter.lock() {
                        l.prune(now);
                    }
                }
            }
            _ = draining.changed() => uas.set_draining(*draining.borrow()),
            _ = stop.changed() => {
                // Nobody stays "in a conference" at the presence server after we stop.
                if let Some(link) = &mut shell.presence {
                    link.core.shutdown(Instant::now());
                }
                shell.flush_presence().await;
                break;
            }
        }
        for p in hang_up {
            uas.hangup(Instant::now(), p);
        }
        for (p, target) in shell.refers.drain(..) {
            uas.refer(Instant::now(), p, &target);
        }
        for caller in shell.admitted.drain(..) {
            uas.admitted_to_meeting(Instant::now(), &caller);
        }
        while let Some(action) = uas.poll() {
            if let Action::Send { bytes, to } = &action {
                metrics.sent(bytes);
                // Every message we send, whole, for operators and the test suite's address scan
                // (`RUST_LOG=info,confab::sip::wire=trace`); fields are only made when enabled.
                tracing::trace!(target: "confab::sip::wire", local = ?udp.local_addr().ok(), to = %to.addr, sip = ?String::from_utf8_lossy(bytes), "sent");
            }
            shell.act(action).await;
        }
        shell.flush_subscriptions().await;
        shell.flush_presence().await;
        if let Some(link) = &shell.presence {
            metrics.presence.set(link.core.stats(), link.core.held());
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
