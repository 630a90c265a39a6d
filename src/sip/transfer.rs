//! Sending a caller elsewhere: 302 for a call not yet answered (a meeting this node does not
//! have, when a dispatcher is configured), REFER (RFC 3515) for an answered one (a meeting
//! ID keyed at the attendant). After a REFER the caller's NOTIFY tells how its new call went;
//! once it succeeded, or failed, or nothing came for 64*T1, the bridge hangs up its own call.

use std::time::Instant;

use super::{Action, CallState, TIMEOUT, Uas, in_dialog_request};
use crate::conference::ParticipantId;
use crate::sip::message::{Message, Method};

impl Uas {
    /// Asks a caller (REFER) to call `target` instead; the bridge's call ends afterwards.
    pub fn refer(&mut self, now: Instant, participant: ParticipantId, target: &str) {
        let Some(&id) = self.by_participant.get(&participant) else {
            return;
        };
        let branch = format!("z9hG4bK{}", self.token(8));
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let local = self.settings.sip_addr(&c.peer);
        if !matches!(c.state, CallState::Answered | CallState::Confirmed) {
            return;
        }
        let mut refer = in_dialog_request(c, Method::Refer, local, &branch);
        refer.push_header("Refer-To", format!("<{target}>"));
        refer.push_header("Referred-By", format!("<sip:confab@{local}>"));
        refer.push_header(
            "Contact",
            self.settings.contact(&c.peer, c.invite.is_sips()),
        );
        let bytes = refer.to_bytes();
        c.refer = Some((branch, now + TIMEOUT));
        let to = c.peer;
        self.actions.push_back(Action::Send { to, bytes });
    }

    /// A response to our REFER; false if it was none.
    pub(super) fn refer_response(&mut self, now: Instant, msg: &Message) -> bool {
        let (Some(branch), Some(code)) = (msg.branch(), msg.status()) else {
            return false;
        };
        let found = self
            .calls
            .iter()
            .find(|(_, c)| c.refer.as_ref().is_some_and(|(b, _)| b == branch))
            .map(|(id, c)| (*id, c.participant));
        let Some((_, participant)) = found else {
            return false;
        };
        if code >= 300
            && let Some(p) = participant
        {
            // The caller will not go: end its call here.
            self.transferred(now, p);
        }
        true
    }

    /// A NOTIFY in a dialog: the progress of the call a REFER asked for.
    pub(super) fn notify(&mut self, now: Instant, peer: super::Peer, msg: &Message) {
        let Some(id) = self.dialog_of(msg) else {
            return self.reply(now, peer, msg, 481, "Call/Transaction Does Not Exist");
        };
        self.reply(now, peer, msg, 200, "OK");
        let Some(c) = self.calls.get(&id) else { return };
        let Some(p) = c.participant.filter(|_| c.refer.is_some()) else {
            return;
        };
        // message/sipfrag: `SIP/2.0 200 OK` once the new call is up; a final error ends it too.
        let frag = String::from_utf8_lossy(&msg.body);
        let status: Option<u16> = frag
            .trim()
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok());
        if status.is_some_and(|s| s >= 200) {
            self.transferred(now, p);
        }
    }

    /// The caller went elsewhere (or could not): the participant leaves, the call is BYEd.
    fn transferred(&mut self, now: Instant, participant: ParticipantId) {
        if let Some(&id) = self.by_participant.get(&participant)
            && let Some(c) = self.calls.get_mut(&id)
        {
            c.refer = None;
        }
        self.actions.push_back(Action::Leave { participant });
        self.hangup(now, participant);
    }

    /// REFERs that were never followed up.
    pub(super) fn tick_transfers(&mut self, now: Instant) {
        let stale: Vec<ParticipantId> = self
            .calls
            .values()
            .filter(|c| c.refer.as_ref().is_some_and(|(_, until)| now >= *until))
            .filter_map(|c| c.participant)
            .collect();
        for p in stale {
            self.transferred(now, p);
        }
    }
}
