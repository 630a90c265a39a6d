//! Requests from outside `sip.trusted`. Two kinds get in: requests inside a call we already
//! have with that very address (the far end of a dial-out, or of a call that signed in), and
//! new INVITEs that answer a digest challenge with the credentials of a `[[sip.users]]`
//! account. Everything else gets 403 (ACKs nothing), never cached.

use std::time::Instant;

use super::{Peer, TransactionKey, Uas};
use crate::sip::auth::Verdict;
use crate::sip::message::{Message, Method};

/// What becomes of a request from an untrusted address.
pub(super) enum Untrusted {
    /// Answered (403, 401 or 503) or dropped.
    Refused,
    /// Part of a call with this address: handled as any other.
    InDialog,
    /// A new INVITE from this `[[sip.users]]` account.
    SignedIn(String),
}

impl Uas {
    pub(super) fn untrusted(
        &mut self,
        now: Instant,
        peer: Peer,
        msg: &Message,
        method: &Method,
    ) -> Untrusted {
        let ip = peer.addr.ip();
        let known = match msg.to_tag() {
            Some(_) => self
                .dialog_of(msg)
                .and_then(|id| self.calls.get(&id))
                .is_some_and(|c| c.peer.addr.ip() == ip),
            // A retransmitted INVITE or its CANCEL: the transaction is keyed by the address.
            None => TransactionKey::of(msg, peer).is_some_and(|k| self.by_branch.contains_key(&k)),
        };
        if known {
            return Untrusted::InDialog;
        }
        let new_invite = *method == Method::Invite && msg.to_tag().is_none();
        if !new_invite || !self.auth.enabled() {
            self.stats.untrusted += 1;
            if *method != Method::Ack {
                self.refuse(peer, msg, 403, "Forbidden", &[]);
            }
            return Untrusted::Refused;
        }
        let uri = match &msg.start {
            crate::sip::message::StartLine::Request { uri, .. } => uri.as_str(),
            _ => "",
        };
        let authorizations = msg
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Authorization"))
            .map(|(_, v)| v.as_str());
        let verdict = self.auth.check(now, ip, "INVITE", uri, authorizations);
        self.stats.auth_failures = self.auth.failed;
        match verdict {
            Verdict::Authenticated(user) => return Untrusted::SignedIn(user),
            Verdict::Challenge { stale } => {
                let challenges = self.auth.challenges(now, ip, stale);
                let headers: Vec<(&str, &str)> = challenges
                    .iter()
                    .map(|c| ("WWW-Authenticate", c.as_str()))
                    .collect();
                self.refuse(peer, msg, 401, "Unauthorized", &headers);
            }
            Verdict::LockedOut => {
                self.stats.untrusted += 1;
                self.refuse(peer, msg, 403, "Forbidden (too many failed attempts)", &[]);
            }
            Verdict::Busy => {
                self.refuse(
                    peer,
                    msg,
                    503,
                    "Service Unavailable (too many failed sign-ins)",
                    &[("Retry-After", "60")],
                );
            }
        }
        Untrusted::Refused
    }

    /// A final answer that is never cached: a stranger's retransmission is simply answered
    /// again (a challenge with a fresh nonce).
    fn refuse(
        &mut self,
        peer: Peer,
        msg: &Message,
        code: u16,
        reason: &str,
        headers: &[(&str, &str)],
    ) {
        let mut r = msg.response(code, reason, Some("confab"));
        r.push_header("Server", "confab");
        for (name, value) in headers {
            r.push_header(name, *value);
        }
        self.send(peer, &r);
    }
}
