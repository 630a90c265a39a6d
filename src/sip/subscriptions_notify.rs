//! Our NOTIFYs: which users the next document lists (all of them after a SUBSCRIBE or a
//! refresh, else those that changed since the subscriber was last told), the request in the
//! subscription's dialog (RFC 6665 4.2.2), and its transaction (one in flight per
//! subscription, retransmitted over UDP as RFC 3261 17.1.2 does).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::{Output, Pending, Subscriptions, T1, TIMEOUT};
use crate::sip::conference_event::{self, ConferenceState, Entry, UserView};
use crate::sip::message::{Message, Method, StartLine};

/// The bytes of users one document lists at most (by [`UserView::max_len`]): a bigger roster
/// goes out over several NOTIFYs (the rest are "changed" for the next one), so that no NOTIFY
/// outgrows a SIP message (16 KiB here, and for many phones).
pub(super) const MAX_LISTED_BYTES: usize = 12_000;

impl Subscriptions {
    /// Sends subscription `id` its next NOTIFY, if one is due and none is in flight.
    pub(super) fn flush(&mut self, now: Instant, id: u64) {
        let branch = format!("z9hG4bK{}", self.token(8));
        let Some(s) = self.subs.get_mut(&id) else {
            return;
        };
        if s.pending.is_some() {
            return;
        }
        let view = self.views.get(&s.meeting);
        let mut body = None;
        let with_state = s.ending.is_none_or(|e| e.with_state);
        if with_state {
            // The roster has not been read yet: the first NOTIFY waits for it.
            let Some(view) = view else { return };
            let full = s.full_due;
            if full {
                s.seen.clear();
            }
            let entries = changes(&mut s.seen, view);
            if entries.is_empty() && !full && s.ending.is_none() {
                return;
            }
            s.full_due = false;
            s.version += 1;
            let state = ConferenceState {
                user_count: view.iter().filter(|u| u.present()).count(),
            };
            let doc = conference_event::document(&s.entity, s.version, full, state, &entries);
            body = Some(doc);
        } else if s.ending.is_none() {
            return;
        }
        let subscription_state = match s.ending {
            Some(end) => format!("terminated;reason={}", end.reason),
            None => {
                let left = s.expires_at.saturating_duration_since(now).as_secs();
                format!("active;expires={left}")
            }
        };
        s.cseq += 1;
        let mut m = Message {
            start: StartLine::Request {
                method: Method::Notify,
                uri: s.target.clone(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        m.push_header(
            "Via",
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                s.peer.via_transport(),
                s.local
            ),
        );
        m.push_header("Max-Forwards", "70");
        for route in &s.routes {
            m.push_header("Route", route.clone());
        }
        m.push_header("From", format!("{};tag={}", s.to, s.local_tag));
        m.push_header("To", s.from.clone());
        m.push_header("Call-ID", s.call_id.clone());
        m.push_header("CSeq", format!("{} NOTIFY", s.cseq));
        m.push_header("Contact", s.contact.clone());
        m.push_header(
            "Event",
            match &s.event_id {
                Some(id) => format!("{};id={id}", super::PACKAGE),
                None => super::PACKAGE.to_owned(),
            },
        );
        m.push_header("Subscription-State", subscription_state);
        m.push_header("User-Agent", "confab");
        if let Some(doc) = body {
            m.push_header("Content-Type", conference_event::CONTENT_TYPE);
            m.body = doc.into_bytes();
        }
        let bytes = m.to_bytes();
        let reliable = s.peer.connection.is_some();
        s.pending = Some(Pending {
            branch: branch.clone(),
            bytes: bytes.clone(),
            retransmit_at: (!reliable).then_some(now + T1),
            interval: T1,
            deadline: now + TIMEOUT,
            last: s.ending.is_some(),
        });
        let to = s.peer;
        self.by_branch.insert(branch, id);
        self.out.push_back(Output::Send { to, bytes });
    }
}

/// The entries of the next document for a subscriber that knows `seen`, which is brought up
/// to date with what they say. Past [`MAX_LISTED_BYTES`] the rest wait for the next
/// document (one user is always listed).
fn changes<'a>(
    seen: &mut HashMap<crate::conference::ParticipantId, u64>,
    view: &'a [UserView],
) -> Vec<Entry<'a>> {
    let mut entries = Vec::new();
    let mut budget = MAX_LISTED_BYTES;
    for u in view {
        let size = u.max_len();
        if size > budget && !entries.is_empty() {
            return entries;
        }
        let print = u.fingerprint();
        if u.present() {
            if seen.get(&u.id) != Some(&print) {
                seen.insert(u.id, print);
                entries.push(Entry::User(u));
                budget = budget.saturating_sub(size);
            }
        } else if seen.remove(&u.id).is_some() {
            // Told once that it left, then forgotten (full documents list those present).
            entries.push(Entry::User(u));
            budget = budget.saturating_sub(size);
        }
    }
    let listed: HashSet<_> = view.iter().map(|u| u.id).collect();
    let gone: Vec<_> = seen
        .keys()
        .filter(|id| !listed.contains(*id))
        .copied()
        .collect();
    for id in gone {
        // A deleted user takes a line.
        if budget < 100 {
            return entries;
        }
        budget -= 100;
        seen.remove(&id);
        entries.push(Entry::Deleted(id));
    }
    entries
}
