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
use crate::sip::uas::DialAnswer;

/// Why a dial-out could not start.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("`{0}` is not a SIP URI with a reachable host")]
    BadTarget(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the SIP server is not running")]
    Stopped,
    #[error("cannot reach {0}")]
    Unreachable(String),
    /// The SRTP policy asks for keys the dial-out's signalling may not carry.
    #[error(
        "{0}: SRTP is required (media.srtp = required) and SDES keys travel only over SIP on TLS: \
         dial a sips: or ;transport=tls URI"
    )]
    SrtpNeedsTls(String),
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
    /// The TLS connection opened for it (none: UDP).
    pub(crate) connection: Option<u64>,
    /// Plain RTP/AVP: the call core adds SRTP as `srtp` allows on the transport.
    pub(crate) offer: String,
    pub(crate) srtp: crate::config::SrtpPolicy,
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
        let next_hop = match &self.outbound_proxy {
            Some(proxy) => dial_target(proxy),
            None => dial_target(&target),
        };
        let Some(next_hop) = next_hop.filter(|_| crate::sip::uas::safe_uri(&target)) else {
            let _ = reply.send(Err(DialError::BadTarget(target)));
            return;
        };
        // Refused before any participant exists when the policy wants keys that this
        // signalling may not carry.
        let srtp = self.conference_srtp.policy(&meeting, self.srtp);
        let rule = crate::sip::sdp::SrtpRule {
            policy: srtp,
            keys_may_travel: next_hop.tls || self.sdes_over_cleartext,
        };
        if crate::sip::uas::dial_offer_kind(rule).is_err() {
            let _ = reply.send(Err(DialError::SrtpNeedsTls(target)));
            return;
        }
        let tls = match (next_hop.tls, &self.tls_client) {
            (false, _) => None,
            (true, Some(client)) => Some(Arc::clone(client)),
            (true, None) => {
                let _ = reply.send(Err(DialError::Unreachable(format!(
                    "{target}: dialling over TLS needs sip.tls_cert, sip.tls_key and a CA bundle"
                ))));
                return;
            }
        };
        let connector = self.connector.clone();
        let engine = Arc::clone(&self.engine);
        let started = self.started.clone();
        let codecs = self.codecs.clone();
        let media_advertise = self.media_advertise;
        tokio::spawn(async move {
            let Ok(Some(to)) = tokio::net::lookup_host(next_hop.host_port.as_str())
                .await
                .map(|mut a| a.next())
            else {
                let _ = reply.send(Err(DialError::BadTarget(target)));
                return;
            };
            // Over TLS the connection comes first: a peer whose certificate does not check
            // out is an error of the request, before any participant exists.
            let connection = match tls {
                None => None,
                Some(client) => match connector.open_tls(to, &next_hop.host, client).await {
                    Ok(id) => Some(id),
                    Err(e) => {
                        let _ = reply.send(Err(DialError::Unreachable(format!(
                            "{} over TLS: {e}",
                            next_hop.host_port
                        ))));
                        return;
                    }
                },
            };
            let origin = crate::store::Origin::new(None, Some(to));
            match engine.invite_to(&meeting, joiner, origin).await {
                Ok((participant, ports)) => {
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
                        connection,
                        offer,
                        srtp,
                    };
                    let _ = started.send(ready).await;
                    let _ = reply.send(Ok(participant));
                }
                Err(e) => {
                    let _ = reply.send(Err(DialError::Engine(e)));
                }
            }
        });
    }

    /// A dial-out's answer, already checked by the call core (codecs, the SRTP policy).
    pub(crate) fn answered(&mut self, participant: ParticipantId, answer: &DialAnswer) {
        let Some((meeting, pending)) = self.participants.answered(participant) else {
            return;
        };
        let spec = answer.negotiated.leg_spec(answer.local_key);
        let user_agent = answer.user_agent.clone();
        self.control(participant, Control::SipStatus(participant, 200));
        let mut ports = pending.ports;
        ports.origin = ports.origin.answered_by(user_agent.as_deref());
        let joined = self.engine.answered(&meeting, participant, ports, spec);
        let moves = self.moves.clone();
        tokio::spawn(async move {
            if let Err(e) = joined.await {
                debug!(error = %e, "dial-out answered but its leg could not join");
                let _ = moves.send((participant, super::shell::MoveEnd::Lost)).await;
            }
        });
    }
}

/// Where a dial-out goes: `host:port` to look up, the host as a certificate must name it, and
/// whether over TLS.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DialTarget {
    pub(crate) host_port: String,
    pub(crate) host: String,
    pub(crate) tls: bool,
}

/// The target of a SIP URI (`sip:user@host:port;params`): over TLS for `sips:` or
/// `transport=tls`, on port 5061 then (5060 otherwise) when none is given.
pub(crate) fn dial_target(uri: &str) -> Option<DialTarget> {
    let (scheme, rest) = uri.split_once(':')?;
    let sips = scheme.eq_ignore_ascii_case("sips");
    if !sips && !scheme.eq_ignore_ascii_case("sip") {
        return None;
    }
    let after_user = rest.rsplit('@').next()?;
    let mut parts = after_user.split([';', '?']);
    let host_port = parts.next()?;
    let tls = sips
        || parts.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("transport") && v.trim().eq_ignore_ascii_case("tls")
            })
        });
    let (host, port) = match host_port.rsplit_once(':') {
        // `[v6]` alone has colons but no port; `[v6]:port` and `host:port` have one.
        Some((h, p)) if !host_port.ends_with(']') => (h, Some(p.parse::<u16>().ok()?)),
        _ => (host_port, None),
    };
    if host.is_empty() {
        return None;
    }
    let port = port.unwrap_or(if tls { 5061 } else { 5060 });
    Some(DialTarget {
        host_port: format!("{host}:{port}"),
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_say_where_and_whether_over_tls() {
        let t = |uri: &str| dial_target(uri).map(|d| (d.host_port, d.host, d.tls));
        let owned = |hp: &str, h: &str, tls| Some((hp.to_owned(), h.to_owned(), tls));
        assert_eq!(
            t("sip:ann@192.0.2.1"),
            owned("192.0.2.1:5060", "192.0.2.1", false)
        );
        assert_eq!(
            t("sip:ann@gw.example:5070;user=phone"),
            owned("gw.example:5070", "gw.example", false)
        );
        assert_eq!(
            t("sips:ann@gw.example"),
            owned("gw.example:5061", "gw.example", true)
        );
        assert_eq!(
            t("SIP:ann@gw.example;Transport=TLS"),
            owned("gw.example:5061", "gw.example", true)
        );
        assert_eq!(
            t("sip:ann@[2001:db8::1]"),
            owned("[2001:db8::1]:5060", "2001:db8::1", false)
        );
        assert_eq!(
            t("sip:ann@[2001:db8::1]:5080;transport=tls"),
            owned("[2001:db8::1]:5080", "2001:db8::1", true)
        );
        for bad in [
            "tel:+4930123",
            "sip:ann@",
            "sip:ann@host:99999",
            "sip:ann@host:x",
            "http://x",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }
}
