//! A new call: the INVITE server transaction. INVITE -> 100 Trying, the offer negotiated
//! and a join asked of the engine; the join's result -> 200 with the answer (retransmitted
//! until ACK, RFC 3261 13.3.1.4) or the refusal's status (retransmitted until ACK, 17.2.1);
//! CANCEL while the engine decides -> 487. What is refused before a join: a flood from one
//! source, a full or draining bridge, extensions and offers we cannot take.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{
    ALLOW, Action, Call, CallRef, CallState, JoinRequest, JoinResult, MAX_FLOOD_CALLERS,
    MAX_FLOOD_SOURCES, MAX_SE, MAX_URI, MIN_SE, Peer, T1, TIMEOUT, TransactionKey, Uas,
};
use crate::conference::clean_text;
use crate::conference::limiter::source_of;
use crate::media::codec::Codec;
use crate::sip::message::{self, Message};
use crate::sip::sdp::{self, Negotiated};

/// Whether a count begun at `since` is over (each counts one second).
pub(super) fn counted_out(now: Instant, since: Instant) -> bool {
    now.saturating_duration_since(since) >= Duration::from_secs(1)
}

/// The INVITEs counted for `key` in its current second.
fn current<K: Hash + Eq>(map: &HashMap<K, (Instant, u32)>, key: &K, now: Instant) -> u32 {
    map.get(key)
        .filter(|(since, _)| !counted_out(now, *since))
        .map_or(0, |(_, n)| *n)
}

/// Counts one INVITE of `key`; its count this second, or none when the map is full of others
/// counting (those whose second is over are pruned first).
fn count<K: Hash + Eq>(
    map: &mut HashMap<K, (Instant, u32)>,
    key: K,
    now: Instant,
    bound: usize,
) -> Option<u32> {
    if !map.contains_key(&key) && map.len() >= bound {
        map.retain(|_, (since, _)| !counted_out(now, *since));
        if map.len() >= bound {
            return None;
        }
    }
    let entry = map.entry(key).or_insert((now, 0));
    if counted_out(now, entry.0) {
        *entry = (now, 0);
    }
    entry.1 += 1;
    Some(entry.1)
}

impl Uas {
    /// Whether a new INVITE from `ip` is one too many this second. `caller` (a trusted
    /// source's caller, see [`super::caller_of`]) has `invites_per_second` of its own and its
    /// source [`super::GATEWAY_FACTOR`] times that; any other source `invites_per_second`.
    /// Behind a trusted source, callers let into a meeting lately (`known_callers`) draw on a
    /// budget of the source's apart from everyone else's: a flood under ever new From headers
    /// cannot shut them out, and callers made known cannot take more than that second budget.
    /// INVITEs refused here do not count against the source.
    pub(super) fn flooding(&mut self, now: Instant, ip: IpAddr, caller: Option<String>) -> bool {
        let rate = self.settings.invites_per_second;
        let known = caller
            .as_deref()
            .is_some_and(|c| self.known_callers.knows(now, c));
        let source = (source_of(ip), known);
        let source_rate = match caller {
            Some(_) => rate.saturating_mul(super::GATEWAY_FACTOR),
            None => rate,
        };
        if current(&self.flood_sources, &source, now) >= source_rate {
            return true;
        }
        if let Some(caller) = caller
            && count(&mut self.flood_callers, caller, now, MAX_FLOOD_CALLERS)
                .is_some_and(|n| n > rate)
        {
            return true;
        }
        count(&mut self.flood_sources, source, now, MAX_FLOOD_SOURCES).is_none()
    }

    /// A new INVITE from a trusted source, or from a `[[sip.users]]` account that `signed_in`.
    pub(crate) fn invite(
        &mut self,
        now: Instant,
        peer: Peer,
        msg: &Message,
        signed_in: Option<String>,
    ) {
        let Some(transaction) = TransactionKey::of(msg, peer) else {
            return self.reply(now, peer, msg, 400, "Bad Request (no branch)");
        };
        if let Some(id) = self.transaction_of(msg, peer) {
            // A retransmission: the last answer again (or Trying while we decide).
            let resend = self.calls.get(&id).and_then(|c| c.final_response.clone());
            match resend {
                Some(bytes) => self.actions.push_back(Action::Send { to: peer, bytes }),
                None => {
                    let trying = msg.response(100, "Trying", None);
                    self.send(peer, &trying);
                }
            }
            return;
        }
        let from = msg.header("From").unwrap_or_default();
        let uri = clean_text(message::addr_uri(from), MAX_URI);
        // A signed-in caller is who its account says, whatever it asserts; a trusted
        // gateway's assertion counts, but an empty or user-less one asserts nobody.
        let asserted_identity = match signed_in {
            Some(user) => Some(clean_text(
                &format!("sip:{user}@{}", self.settings.auth.realm),
                MAX_URI,
            )),
            None => msg
                .header("P-Asserted-Identity")
                .map(|v| clean_text(message::addr_uri(v), MAX_URI))
                .filter(|uri| {
                    let rest = uri.split_once(':').map_or(uri.as_str(), |(_, r)| r);
                    !rest.is_empty() && !rest.starts_with('@')
                }),
        };
        // Behind a trusted source, each caller is limited on its own; elsewhere the address.
        let caller = self
            .trusted(peer.addr.ip())
            .then(|| super::caller_of(peer.addr.ip(), asserted_identity.as_deref(), &uri));
        if self.flooding(now, peer.addr.ip(), caller) {
            self.stats.flood += 1;
            return self.reply(
                now,
                peer,
                msg,
                503,
                "Service Unavailable (too many calls from this source)",
            );
        }
        if self.draining
            && !msg
                .request_user()
                .is_some_and(|m| self.settings.kept_while_draining.keeps(m))
        {
            return self.reply(now, peer, msg, 503, "Draining");
        }
        if self.calls.len() >= self.settings.max_calls {
            return self.reply(now, peer, msg, 503, "Service Unavailable (call limit)");
        }
        let unsupported: Vec<&str> = msg
            .header_values("Require")
            .filter(|o| !o.eq_ignore_ascii_case("timer"))
            .collect();
        if !unsupported.is_empty() {
            let mut r = msg.response(420, "Bad Extension", Some("confab"));
            r.push_header("Unsupported", unsupported.join(", "));
            self.send(peer, &r);
            return;
        }
        let session = match msg.header("Session-Expires") {
            None => None,
            Some(v) => match v
                .split(';')
                .next()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                Some(s) if s < MIN_SE => {
                    let mut r = msg.response(422, "Session Interval Too Small", Some("confab"));
                    r.push_header("Min-SE", MIN_SE.to_string());
                    self.send(peer, &r);
                    return;
                }
                Some(s) => Some(Duration::from_secs(u64::from(s.min(MAX_SE)))),
                None => return self.reply(now, peer, msg, 400, "Bad Request (Session-Expires)"),
            },
        };
        let Some(meeting) = msg.request_user().map(str::to_owned) else {
            return self.reply(now, peer, msg, 404, "Not Found");
        };
        // An INVITE without an offer: ours goes in the 200, the answer comes in the ACK.
        let offerless = msg.body.is_empty();
        let first_choice = self.settings.codecs.first().copied().unwrap_or(Codec::Pcmu);
        let negotiated = match sdp::negotiate(
            &msg.body,
            &self.settings.codecs,
            self.settings.srtp_rule(&peer, &meeting, msg),
        ) {
            _ if offerless => Negotiated::unanswered(first_choice),
            Ok(mut n) => {
                n.through_nat(Self::lone_via_host(msg), peer.addr.ip());
                n
            }
            Err(e) => {
                let (code, warning) = e.status();
                let reason = if code == 400 {
                    "Bad Request"
                } else {
                    "Not Acceptable Here"
                };
                let mut r = msg.response(code, reason, Some("confab"));
                r.push_header("Warning", format!("{warning} confab \"{e}\""));
                self.send(peer, &r);
                return;
            }
        };
        let trying = msg.response(100, "Trying", None);
        self.send(peer, &trying);
        let id = self.next_call;
        self.next_call += 1;
        let local_key = negotiated.srtp.map(|_| {
            let mut k = [0u8; 30];
            (self.random)(&mut k);
            k
        });
        // Both land in the roster and the records: no control characters, a bounded length.
        let display_name = clean_text(
            message::display_name(from).unwrap_or_default(),
            crate::conference::MAX_NAME,
        );
        let call = Call {
            negotiated: Some(negotiated.clone()),
            local_key,
            session_expires: session.map(|d| (d, now + d)),
            on_hold: negotiated.direction.is_hold(),
            offerless,
            ..Call::new(
                msg.call_id().to_owned(),
                self.token(8),
                msg.clone(),
                Some(transaction.clone()),
                peer,
                CallState::Admitting,
                now,
            )
        };
        if peer.connection.is_none() {
            self.by_host_branch
                .entry(transaction.any_port())
                .or_insert(id);
        }
        self.by_branch.insert(transaction, id);
        self.by_dialog
            .insert((call.call_id.clone(), call.local_tag.clone()), id);
        self.calls.insert(id, call);
        self.actions.push_back(Action::Join(Box::new(JoinRequest {
            call: CallRef(id),
            meeting,
            display_name,
            uri,
            negotiated,
            local_key,
            source: peer.addr.ip(),
            asserted_identity,
            origin: crate::store::Origin::new(msg.header("User-Agent"), Some(peer.addr)),
            pass: msg
                .request_uri_param(crate::sip::hand_off::PARAM)
                .filter(|p| p.len() <= crate::sip::hand_off::MAX_PASS)
                .map(str::to_owned),
        })));
    }

    /// The engine answered a join.
    pub fn joined(&mut self, now: Instant, call: CallRef, result: JoinResult) {
        let admitting = self
            .calls
            .get(&call.0)
            .is_some_and(|c| matches!(c.state, CallState::Admitting));
        if !admitting {
            // The caller gave up meanwhile (CANCEL, timeout): the participant goes again.
            if let JoinResult::Joined { participant, .. } = result {
                self.actions.push_back(Action::Leave { participant });
            }
            return;
        }
        // A meeting this node does not have goes to the dispatcher, unless the call came
        // from there (it hashed the meeting to us: no loop).
        let redirect = self.settings.dispatcher.filter(|d| {
            self.calls
                .get(&call.0)
                .is_some_and(|c| c.peer.addr.ip() != d.ip())
        });
        let Some(c) = self.calls.get_mut(&call.0) else {
            return;
        };
        let mut moved_to = None;
        let (code, reason) = match result {
            JoinResult::Joined { participant, local } => {
                c.participant = Some(participant);
                c.local_media = Some(local);
                self.by_participant.insert(participant, call.0);
                if c.on_hold {
                    self.actions.push_back(Action::Hold {
                        participant,
                        on: true,
                    });
                }
                (200, "OK")
            }
            JoinResult::NoConference if redirect.is_some() => (302, "Moved Temporarily"),
            JoinResult::NoConference => (404, "Not Found (no such conference)"),
            JoinResult::Locked => (403, "Conference Locked"),
            JoinResult::Full => (486, "Busy Here (conference full)"),
            JoinResult::Ended => (404, "Not Found (conference ended)"),
            JoinResult::Unavailable => (503, "Service Unavailable"),
            JoinResult::Forbidden => (403, "Forbidden (too many failed attempts)"),
            JoinResult::NotAllowed => (403, "Forbidden (not admitted to this conference)"),
            JoinResult::Moved { ref to } => {
                moved_to = Some(to.clone());
                (302, "Moved Temporarily")
            }
        };
        let Some(c) = self.calls.get_mut(&call.0) else {
            return;
        };
        let mut r = c.invite.response(code, reason, Some(&c.local_tag));
        r.push_header("Server", "confab");
        if code == 200 {
            r.push_header(
                "Contact",
                self.settings.contact(&c.peer, c.invite.is_sips()),
            );
            r.push_header("Allow", ALLOW);
            if let Some((d, _)) = c.session_expires {
                r.push_header("Session-Expires", format!("{};refresher=uac", d.as_secs()));
                r.push_header("Require", "timer");
            }
            if let (Some(n), Some(local)) = (&c.negotiated, c.local_media) {
                let local = self.settings.media_addr(local, n.remote, c.peer.addr.ip());
                r.push_header("Content-Type", "application/sdp");
                r.body = if c.offerless {
                    sdp::offer(local, &self.settings.codecs, call.0)
                } else {
                    sdp::answer(n, local, c.local_key.as_ref(), call.0, c.sdp_version)
                }
                .into_bytes();
            }
            c.state = CallState::Answered;
        } else {
            if code == 503 {
                r.push_header("Retry-After", "30");
            }
            let to = moved_to.or_else(|| redirect.map(|d| d.to_string()));
            if let (302, Some(to), Some(user)) = (code, to, c.invite.request_user()) {
                r.push_header("Contact", format!("<sip:{user}@{to}>"));
            }
            c.state = CallState::Rejected;
        }
        let bytes = r.to_bytes();
        let reliable = c.peer.reliable();
        c.final_response = Some(bytes.clone());
        c.retransmit_at = (!reliable).then_some(now + T1);
        c.interval = T1;
        c.deadline = now + TIMEOUT;
        let to = c.peer;
        self.actions.push_back(Action::Send { to, bytes });
    }

    pub(crate) fn ack(&mut self, now: Instant, peer: Peer, msg: &Message) {
        let id = self
            .dialog_of(msg)
            .or_else(|| self.transaction_of(msg, peer));
        let Some(id) = id else { return };
        let codecs = self.settings.codecs.clone();
        let srtp = self.call_srtp_rule(&peer, id, msg);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        match c.state {
            CallState::Answered => {
                c.state = CallState::Confirmed;
                c.retransmit_at = None;
                if !c.offerless {
                    return;
                }
                c.offerless = false;
                let Some(participant) = c.participant else {
                    return;
                };
                match sdp::negotiate(&msg.body, &codecs, srtp) {
                    Ok(mut n) => {
                        n.through_nat(Self::lone_via_host(msg), peer.addr.ip());
                        let spec = n.leg_spec(None);
                        c.on_hold = n.direction.is_hold();
                        c.negotiated = Some(n);
                        self.actions.push_back(Action::Renegotiated {
                            participant,
                            spec: Box::new(spec),
                        });
                    }
                    // No usable answer where one was due (RFC 3264 5): end the call.
                    Err(_) => {
                        self.actions.push_back(Action::Leave { participant });
                        self.hangup(now, participant);
                    }
                }
            }
            CallState::Rejected => self.remove(id),
            _ => {}
        }
    }

    pub(crate) fn cancel(&mut self, now: Instant, peer: Peer, msg: &Message) {
        let found = match self.transaction_of(msg, peer) {
            Some(id) => Some(id),
            // From another UDP port of the caller's host: the INVITE's source keeps its answers.
            None if peer.connection.is_none() => TransactionKey::of(msg, peer)
                .and_then(|key| self.by_host_branch.get(&key.any_port()).copied()),
            None => None,
        };
        let Some(id) = found else {
            return self.reply(now, peer, msg, 481, "Call/Transaction Does Not Exist");
        };
        self.reply(now, peer, msg, 200, "OK");
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if !matches!(c.state, CallState::Admitting) {
            // A final answer went out already: CANCEL has no effect (RFC 3261 9.2).
            return;
        }
        let mut r = c
            .invite
            .response(487, "Request Terminated", Some(&c.local_tag));
        r.push_header("Server", "confab");
        let bytes = r.to_bytes();
        c.final_response = Some(bytes.clone());
        c.state = CallState::Rejected;
        c.retransmit_at = (!c.peer.reliable()).then_some(now + T1);
        c.deadline = now + TIMEOUT;
        let to = c.peer;
        self.actions.push_back(Action::Send { to, bytes });
        // A join still under way is undone when its result comes (see `joined`).
    }
}
