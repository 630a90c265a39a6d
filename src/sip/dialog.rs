//! In a dialog: BYE both ways, re-INVITE and UPDATE (hold, a new codec or address, session
//! refresh), INFO with DTMF, and the requests of ours that travel in it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Action, Call, CallState, MAX_SE, MIN_SE, Peer, T1, TIMEOUT, Uas};
use crate::conference::ParticipantId;
use crate::sip::message::{self, Message, Method, StartLine};
use crate::sip::sdp;

impl Uas {
    pub(super) fn bye(&mut self, now: Instant, peer: Peer, msg: &Message) {
        let Some(id) = self.dialog_of(msg) else {
            return self.reply(now, peer, msg, 481, "Call/Transaction Does Not Exist");
        };
        self.reply(now, peer, msg, 200, "OK");
        if let Some(p) = self.calls.get(&id).and_then(|c| c.participant) {
            self.actions.push_back(Action::Leave { participant: p });
        }
        self.remove(id);
    }

    pub(super) fn reinvite(&mut self, now: Instant, peer: Peer, msg: &Message) {
        let Some(id) = self.dialog_of(msg) else {
            return self.reply(now, peer, msg, 481, "Call/Transaction Does Not Exist");
        };
        let negotiated = if msg.body.is_empty() {
            None
        } else {
            match sdp::negotiate(
                &msg.body,
                &self.settings.codecs,
                self.call_srtp_rule(&peer, id, msg),
            ) {
                Ok(mut n) => {
                    n.through_nat(Self::lone_via_host(msg), peer.addr.ip());
                    Some(n)
                }
                Err(e) => {
                    let (code, warning) = e.status();
                    let mut r = msg.response(code, "Not Acceptable Here", None);
                    r.push_header("Warning", format!("{warning} confab \"{e}\""));
                    self.send(peer, &r);
                    return;
                }
            }
        };
        self.refresh_session(now, id, msg);
        let fresh_key = {
            let mut k = [0u8; 30];
            (self.random)(&mut k);
            k
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let mut hold_change = None;
        let mut respec = None;
        if let Some(n) = negotiated {
            let hold = n.direction.is_hold();
            if hold != c.on_hold {
                c.on_hold = hold;
                hold_change = c.participant.map(|p| (p, hold));
            }
            if n.srtp.is_some() && c.local_key.is_none() {
                c.local_key = Some(fresh_key);
            }
            // A new codec, address or keys: the leg follows (hold alone changes nothing).
            let spec = n.leg_spec(c.local_key);
            let old_spec = c.negotiated.as_ref().map(|o| o.leg_spec(c.local_key));
            if old_spec != Some(spec) {
                respec = c.participant.map(|p| (p, spec));
            }
            c.negotiated = Some(n);
        }
        c.sdp_version += 1;
        let mut r = msg.response(200, "OK", None);
        r.push_header("Contact", self.settings.contact(&peer, msg.is_sips()));
        if let Some((d, _)) = c.session_expires {
            r.push_header("Session-Expires", format!("{};refresher=uac", d.as_secs()));
        }
        if let (Some(n), Some(local)) = (&c.negotiated, c.local_media) {
            let local = self.settings.media_addr(local, n.remote, peer.addr.ip());
            r.push_header("Content-Type", "application/sdp");
            r.body = sdp::answer(n, local, c.local_key.as_ref(), id, c.sdp_version).into_bytes();
        }
        self.send(peer, &r);
        if let Some((participant, spec)) = respec {
            self.actions.push_back(Action::Renegotiated {
                participant,
                spec: Box::new(spec),
            });
        }
        if let Some((participant, on)) = hold_change {
            self.actions.push_back(Action::Hold { participant, on });
        }
    }

    pub(super) fn refresh_session(&mut self, now: Instant, id: u64, msg: &Message) {
        if let Some(c) = self.calls.get_mut(&id) {
            // Any digits the peer sends, up to u64::MAX: kept within [MIN_SE, MAX_SE] so the
            // expiry below cannot overflow.
            let asked = msg
                .header("Session-Expires")
                .and_then(|v| v.split(';').next()?.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(u64::from(MAX_SE))));
            if let Some((d, expiry)) = &mut c.session_expires {
                if let Some(a) = asked.filter(|a| a.as_secs() >= u64::from(MIN_SE)) {
                    *d = a;
                }
                *expiry = now + *d;
            }
        }
    }

    pub(super) fn info(&mut self, now: Instant, peer: Peer, msg: &Message) {
        let Some(id) = self.dialog_of(msg) else {
            return self.reply(now, peer, msg, 481, "Call/Transaction Does Not Exist");
        };
        let body = String::from_utf8_lossy(&msg.body);
        let kind = msg
            .header("Content-Type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let digit = if kind.starts_with("application/dtmf-relay") {
            body.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("signal")
                    .then(|| v.trim().chars().next())?
            })
        } else if kind.starts_with("application/dtmf") {
            body.trim().chars().next()
        } else {
            return self.reply(now, peer, msg, 415, "Unsupported Media Type");
        };
        let digit = digit
            .map(|d| d.to_ascii_uppercase())
            .filter(|d| d.is_ascii_digit() || matches!(d, '*' | '#' | 'A' | 'B' | 'C' | 'D'));
        let Some(digit) = digit else {
            return self.reply(now, peer, msg, 400, "Bad Request (no DTMF signal)");
        };
        self.reply(now, peer, msg, 200, "OK");
        if let Some(p) = self.calls.get(&id).and_then(|c| c.participant) {
            self.actions.push_back(Action::Dtmf {
                participant: p,
                digit,
            });
        }
    }

    /// The SRTP rule for an offer or answer in `request` of call `id`. A dial-out's policy is
    /// the one it was dialled under, and its keys travel on our own hop to the callee; a
    /// dial-in's is that of the meeting its INVITE named (its Request-URI's user), and its
    /// keys only where every hop of the request was secure (a proxy that took the caller's
    /// request over UDP would hand our key back to it in the clear).
    pub(super) fn call_srtp_rule(
        &self,
        peer: &Peer,
        id: u64,
        request: &Message,
    ) -> crate::sip::sdp::SrtpRule {
        let call = self.calls.get(&id);
        match call.and_then(|c| c.srtp_policy) {
            Some(policy) => self.settings.srtp_rule_under(peer.secure(), policy),
            None => {
                let meeting = call
                    .and_then(|c| c.invite.request_user())
                    .unwrap_or_default();
                self.settings.srtp_rule(peer, meeting, request)
            }
        }
    }

    /// The bridge ended a participant's call (ejected, media timeout, conference ended):
    /// BYE the caller.
    pub fn hangup(&mut self, now: Instant, participant: ParticipantId) {
        self.hangup_because(now, participant, None);
    }

    /// [`Uas::hangup`], the BYE carrying `reason` as its Reason header (RFC 3326) if given.
    pub(super) fn hangup_because(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        reason: Option<&str>,
    ) {
        if self.cancel_dial(participant) {
            return;
        }
        let Some(&id) = self.by_participant.get(&participant) else {
            return;
        };
        let branch = format!("z9hG4bK{}", self.token(8));
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let local = self.settings.sip_addr(&c.peer);
        match c.state {
            CallState::Answered | CallState::Confirmed => {}
            _ => return,
        }
        let mut bye = in_dialog_request(c, Method::Bye, local, &branch);
        if let Some(reason) = reason {
            bye.push_header("Reason", reason);
        }
        let bytes = bye.to_bytes();
        c.bye = Some((branch, bytes.clone()));
        c.state = CallState::Closing;
        c.retransmit_at = (!c.peer.reliable()).then_some(now + T1);
        c.interval = T1;
        c.deadline = now + TIMEOUT;
        c.participant = None;
        let to = c.peer;
        self.by_participant.remove(&participant);
        self.actions.push_back(Action::Send { to, bytes });
    }
}

/// A request of ours in a call's dialog (BYE, REFER): to the far end's Contact, along its
/// route, with our tag and the next CSeq.
pub(super) fn in_dialog_request(
    c: &mut Call,
    method: Method,
    local: SocketAddr,
    branch: &str,
) -> Message {
    let inv = &c.invite;
    let target = inv
        .header("Contact")
        .map(message::addr_uri)
        .unwrap_or_else(|| message::addr_uri(inv.header("From").unwrap_or_default()))
        .to_owned();
    let to = inv.header("From").unwrap_or_default().to_owned();
    let from = format!(
        "{};tag={}",
        inv.header("To").unwrap_or_default(),
        c.local_tag
    );
    c.local_cseq += 1;
    let transport = c.peer.via_transport();
    let cseq = format!("{} {}", c.local_cseq, method.as_str());
    let mut m = Message {
        start: StartLine::Request {
            method,
            uri: target,
        },
        headers: Vec::new(),
        body: Vec::new(),
    };
    m.push_header(
        "Via",
        format!("SIP/2.0/{transport} {local};branch={branch};rport"),
    );
    m.push_header("Max-Forwards", "70");
    for route in inv.header_values("Record-Route") {
        m.push_header("Route", route);
    }
    m.push_header("From", from);
    m.push_header("To", to);
    m.push_header("Call-ID", c.call_id.clone());
    m.push_header("CSeq", cseq);
    m.push_header("User-Agent", "confab");
    m
}
