//! The dial-in core's clock: retransmitting unacknowledged answers and our BYEs, ending calls
//! whose 200 was never acknowledged or whose session nobody refreshed (RFC 4028), refusing
//! joins the engine never answered, and pruning what is held for a while (the response cache,
//! flood counts, sign-in state, dial-outs, transfers).

use std::time::Instant;

use super::{Action, CallRef, CallState, JoinResult, T2, Uas};

impl Uas {
    /// Retransmissions, timeouts and expiry; call it every few tens of milliseconds.
    pub fn tick(&mut self, now: Instant) {
        self.tick_dials(now);
        self.auth.prune(now);
        self.tick_transfers(now);
        self.cache.retain(|_, (_, expires)| *expires > now);
        self.flood_sources
            .retain(|_, (since, _)| !super::invite::counted_out(now, *since));
        self.flood_callers
            .retain(|_, (since, _)| !super::invite::counted_out(now, *since));
        self.known_callers.tick(now);
        let mut expired = Vec::new();
        let mut stale_sessions = Vec::new();
        for (&id, c) in &mut self.calls {
            if let Some((_, expiry)) = c.session_expires
                && now >= expiry
                && matches!(c.state, CallState::Confirmed)
            {
                stale_sessions.push(id);
                continue;
            }
            let waiting = matches!(
                c.state,
                CallState::Answered | CallState::Rejected | CallState::Closing
            );
            if !waiting {
                continue;
            }
            if now >= c.deadline {
                expired.push(id);
                continue;
            }
            if let Some(at) = c.retransmit_at
                && now >= at
            {
                let bytes = match c.state {
                    CallState::Closing => c.bye.as_ref().map(|(_, b)| b.clone()),
                    _ => c.final_response.clone(),
                };
                if let Some(bytes) = bytes {
                    self.actions.push_back(Action::Send { to: c.peer, bytes });
                }
                c.interval = (c.interval * 2).min(T2);
                c.retransmit_at = Some(now + c.interval);
            }
        }
        for id in stale_sessions {
            // Nobody refreshed the session (RFC 4028 10): end it.
            if let Some(p) = self.calls.get(&id).and_then(|c| c.participant) {
                self.actions.push_back(Action::Leave { participant: p });
                self.hangup(now, p);
            }
        }
        for id in expired {
            let Some(c) = self.calls.get(&id) else {
                continue;
            };
            if matches!(c.state, CallState::Answered) {
                // The 200 was never acknowledged (RFC 3261 13.3.1.4): end the call.
                if let Some(p) = c.participant {
                    self.actions.push_back(Action::Leave { participant: p });
                    self.hangup(now, p);
                    continue;
                }
            }
            self.remove(id);
        }
        // A call still admitting for too long (the engine did not answer) is refused.
        let stuck: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| matches!(c.state, CallState::Admitting) && now >= c.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in stuck {
            self.joined(now, CallRef(id), JoinResult::Unavailable);
        }
    }
}
