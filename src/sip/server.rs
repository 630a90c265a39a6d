//! The SIP shell: UDP and TCP listeners on `sip.listen`, one task that owns the dial-in state
//! machine ([`Uas`]) and drives it with what arrives, and the engine calls its actions ask for
//! (run on blocking threads: the engine answers within a tick). The bridge's own hang-ups
//! (eject, media timeout, conference end) come from the engine's event stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, info, warn};

use super::message::{MAX_MESSAGE, StreamFramer};
use super::uas::{Action, CallRef, JoinRequest, JoinResult, Peer, Uas, UasSettings};
use crate::conference::{DisconnectReason, Event, JoinError, ParticipantId, Role, State};
use crate::engine::{Engine, EngineError, Joiner};
use crate::mixer::conference::ConferenceEvent;
use crate::mixer::{CommandError, Control};

/// Concurrent TCP connections at most.
const MAX_CONNECTIONS: usize = 1024;
/// How often the state machine's timers are looked at.
const TICK: Duration = Duration::from_millis(20);

/// A running SIP server.
#[derive(Debug)]
pub struct SipServer {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    stop: watch::Sender<bool>,
    draining: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SipServer {
    /// Binds UDP and TCP on `settings.local` (port 0 picks one, the same for both where it can)
    /// and starts serving.
    pub async fn start(
        mut settings: UasSettings,
        engine: Arc<Engine>,
        events: broadcast::Receiver<ConferenceEvent>,
    ) -> std::io::Result<SipServer> {
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
        let task = tokio::spawn(serve(
            settings,
            engine,
            events,
            udp,
            tcp,
            stop_rx,
            draining_rx,
        ));
        Ok(SipServer {
            udp: udp_addr,
            tcp: tcp_addr,
            stop,
            draining,
            task,
        })
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

type Connections = Arc<Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>>;

struct Shell {
    engine: Arc<Engine>,
    udp: Arc<UdpSocket>,
    connections: Connections,
    joins: mpsc::Sender<(CallRef, JoinResult, String)>,
    /// Which conference each SIP participant is in.
    meetings: HashMap<ParticipantId, String>,
}

async fn serve(
    settings: UasSettings,
    engine: Arc<Engine>,
    mut events: broadcast::Receiver<ConferenceEvent>,
    udp: UdpSocket,
    tcp: TcpListener,
    mut stop: watch::Receiver<bool>,
    mut draining: watch::Receiver<bool>,
) {
    info!(local = %settings.local, "sip listening (udp, tcp)");
    let mut uas = Uas::new(settings, os_random);
    let udp = Arc::new(udp);
    let connections: Connections = Arc::default();
    let (frames_tx, mut frames) = mpsc::channel::<(Peer, Vec<u8>)>(1024);
    let accept = tokio::spawn(accept_loop(tcp, frames_tx, Arc::clone(&connections)));
    let (joins_tx, mut joins) = mpsc::channel(1024);
    let mut shell = Shell {
        engine,
        udp: Arc::clone(&udp),
        connections,
        joins: joins_tx,
        meetings: HashMap::new(),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        tokio::select! {
            r = udp.recv_from(&mut buf) => match r {
                Ok((n, from)) => uas.handle(Instant::now(), Peer { addr: from, connection: None }, &buf[..n]),
                Err(e) => debug!(error = %e, "sip udp receive"),
            },
            Some((peer, frame)) = frames.recv() => uas.handle(Instant::now(), peer, &frame),
            Some((call, result, meeting)) = joins.recv() => {
                if let JoinResult::Joined { participant, .. } = &result {
                    shell.meetings.insert(*participant, meeting);
                }
                uas.joined(Instant::now(), call, result);
            }
            event = events.recv() => match event {
                Ok(ConferenceEvent { event: Event::State { participant, state: State::Disconnected(reason) }, .. }) => {
                    if shell.meetings.remove(&participant).is_some() && reason != DisconnectReason::Hangup {
                        uas.hangup(Instant::now(), participant);
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => warn!(lost = n, "sip fell behind the engine's events"),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = tick.tick() => uas.tick(Instant::now()),
            _ = draining.changed() => uas.set_draining(*draining.borrow()),
            _ = stop.changed() => break,
        }
        while let Some(action) = uas.poll() {
            shell.act(action).await;
        }
    }
    accept.abort();
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
            Action::Dtmf { participant, digit } => {
                debug!(%participant, %digit, "sip info dtmf");
            }
        }
    }

    fn join(&mut self, request: JoinRequest) {
        let engine = Arc::clone(&self.engine);
        let joins = self.joins.clone();
        tokio::task::spawn_blocking(move || {
            let spec = request.negotiated.leg_spec(request.local_key);
            let joiner = Joiner {
                display_name: request.display_name,
                uri: request.uri,
                role: Role::Attendee,
            };
            let result = match engine.add_rtp_leg(&request.meeting, joiner, spec) {
                Ok((participant, local)) => JoinResult::Joined { participant, local },
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
            let _ = joins.blocking_send((request.call, result, request.meeting));
        });
    }

    fn control(&mut self, participant: ParticipantId, control: Control) {
        let Some(meeting) = self.meetings.get(&participant).cloned() else {
            return;
        };
        let engine = Arc::clone(&self.engine);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = engine.control(&meeting, control) {
                debug!(error = %e, "sip: engine control");
            }
        });
    }
}

async fn accept_loop(
    listener: TcpListener,
    frames: mpsc::Sender<(Peer, Vec<u8>)>,
    connections: Connections,
) {
    let mut next_id = 1u64;
    loop {
        let Ok((stream, addr)) = listener.accept().await else {
            continue;
        };
        let full = connections
            .lock()
            .map_or(true, |c| c.len() >= MAX_CONNECTIONS);
        if full {
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
            'read: loop {
                let n = match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                framer.push(&buf[..n]);
                loop {
                    match framer.next_message() {
                        Ok(Some(frame)) => {
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
            writer.abort();
        });
    }
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
