//! The shell's side of dial-out. The API's request reaches the serving task as a
//! [`DialCommand`]; the target's host is looked up and the engine makes the participant and
//! reserves its ports away from the serving task, which then has the call core send the
//! INVITE ([`Started`]); the answer's SDP sets up the leg. The SIP transaction itself is the
//! call core's (`uas` and its `dialout`).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::debug;

use super::Shell;
use crate::conference::ParticipantId;
use crate::engine::{EngineError, Joiner};
use crate::mixer::Control;

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
pub(crate) struct DialCommand {
    pub(crate) meeting: String,
    pub(crate) target: String,
    pub(crate) joiner: Joiner,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<ParticipantId, DialError>>,
}

/// A dial-out whose leg waits for the answer.
pub(crate) struct PendingDial {
    ports: crate::engine::ReservedPorts,
}

/// A dial-out ready to be sent.
pub(crate) struct Started {
    pub(crate) participant: ParticipantId,
    pub(crate) meeting: String,
    pub(crate) pending: PendingDial,
    pub(crate) target: String,
    pub(crate) to: SocketAddr,
    pub(crate) offer: String,
}

/// The serving task's end of the dial-out commands, taken again by a restarted task.
pub(crate) type Dials = Arc<tokio::sync::Mutex<mpsc::Receiver<DialCommand>>>;

impl Shell {
    pub(crate) fn dial(&mut self, command: DialCommand) {
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
        let Some(host) = host.filter(|_| crate::sip::uas::safe_uri(&target)) else {
            let _ = reply.send(Err(DialError::BadTarget(target)));
            return;
        };
        let engine = Arc::clone(&self.engine);
        let started = self.started.clone();
        let codecs = self.codecs.clone();
        let media_advertise = self.media_advertise;
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
                    // Our media address as the callee will see it (never a wildcard bind).
                    let local = crate::addr::Advertise::new(media_advertise, ports.local.ip())
                        .socket_for_peer(ports.local, to.ip());
                    let offer = crate::sip::sdp::offer(local, &codecs, participant.0);
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

    pub(crate) fn answered(&mut self, participant: ParticipantId, answer: &[u8]) {
        let Some(pending) = self.dialing.remove(&participant) else {
            return;
        };
        let Some(meeting) = self.meetings.get(&participant).cloned() else {
            return;
        };
        let spec = match crate::sip::sdp::negotiate(
            answer,
            &self.codecs,
            crate::sip::sdp::SrtpRule::IF_OFFERED,
        ) {
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
