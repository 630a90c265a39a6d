//! The call core's part in the conference event package: a SUBSCRIBE goes on to the
//! subscriptions core (`sip::subscriptions`, driven by the shell, which knows the
//! conferences) with what only the call core knows: whether its source is trusted, which
//! calls come from that address, and our address and Contact as that peer sees them. Answers
//! to our NOTIFYs go the same way. A SUBSCRIBE passes before the check of untrusted sources:
//! a participant's phone outside `sip.trusted` may watch its own conference, and the
//! subscriptions core refuses everyone else.

use super::{Action, CallState, Peer, Uas};
use crate::sip::message::{Message, Method};
use crate::sip::subscriptions::SubscribeRequest;

/// Participants named for one subscriber's address at most (a gateway has many calls).
const MAX_NAMED: usize = 64;

impl Uas {
    pub(super) fn subscribe(&mut self, peer: Peer, msg: &Message) {
        let ip = peer.addr.ip().to_canonical();
        let participants = self
            .calls
            .values()
            .filter(|c| matches!(c.state, CallState::Answered | CallState::Confirmed))
            .filter(|c| c.peer.addr.ip().to_canonical() == ip)
            .filter_map(|c| c.participant)
            .take(MAX_NAMED)
            .collect();
        let request = SubscribeRequest {
            peer,
            msg: msg.clone(),
            local: self.settings.sip_addr(&peer),
            contact: self.settings.contact(&peer, msg.is_sips()),
            trusted: self.trusted(peer.addr.ip()),
            participants,
        };
        self.actions.push_back(Action::Subscribe(Box::new(request)));
    }

    /// An answer to one of our NOTIFYs (the only requests of that method we send) goes to
    /// the subscriptions core; false for any other response.
    pub(super) fn notify_response(&mut self, msg: &Message) -> bool {
        if !msg.cseq().is_some_and(|(_, m)| m == Method::Notify) {
            return false;
        }
        self.actions
            .push_back(Action::NotifyAnswered(Box::new(msg.clone())));
        true
    }

    /// An answer to one of our PUBLISHes (presence, the only requests of that method we
    /// send) goes to the presence publisher, which checks where it came from; false for any
    /// other response.
    pub(super) fn publish_response(&mut self, peer: Peer, msg: &Message) -> bool {
        if !msg.cseq().is_some_and(|(_, m)| m == Method::Publish) {
            return false;
        }
        self.actions.push_back(Action::PublishAnswered {
            from: peer.addr,
            msg: Box::new(msg.clone()),
        });
        true
    }
}

#[cfg(test)]
#[path = "uas_subscribe_tests.rs"]
mod tests;
