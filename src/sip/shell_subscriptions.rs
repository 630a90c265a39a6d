//! The shell's side of the conference event package: it tells the subscriptions core who a
//! subscriber is (trusted, a participant of the conference, admitted by its gate), reads a
//! watched conference's roster from the engine when the control stream says it changed
//! (state, mute, role) and hands it over, ends subscriptions with their conference, and
//! sends what the core wants sent.

use std::time::Instant;

use tokio::sync::mpsc;

use super::{Action, LOBBY, Shell};
use crate::conference::Event;
use crate::mixer::conference::ConferenceEvent;
use crate::sip::conference_event::UserView;
use crate::sip::subscriptions::{Access, Output, SubscribeRequest, Subscriptions};

/// A roster read: the conference, and its users (none when it is gone).
pub(in crate::sip::server) type RosterRead = (String, Option<Vec<UserView>>);

/// Where a new subscription's meeting runs, read from the shared database: the request, what
/// the shell knew of the subscriber, and the owner's SIP address (none: here).
pub(in crate::sip::server) type PlacementRead = (Box<SubscribeRequest>, Access, Option<String>);

/// Placement reads under way at most: each is a database read on the blocking pool, which
/// joins need too. More new subscriptions to meetings this node does not hold get 503.
const MAX_PLACING: usize = 32;

/// The subscriptions core and where its roster and placement reads come back.
pub(in crate::sip::server) struct Package {
    pub(in crate::sip::server) core: Subscriptions,
    rosters: mpsc::Sender<RosterRead>,
    placements: mpsc::Sender<PlacementRead>,
    /// Placement reads under way. Bound: [`MAX_PLACING`]; each ends with its answer.
    placing: usize,
}

impl Package {
    pub(in crate::sip::server) fn new(
        (rosters, placements): (mpsc::Sender<RosterRead>, mpsc::Sender<PlacementRead>),
        random: fn(&mut [u8]),
    ) -> Package {
        Package {
            core: Subscriptions::new(random),
            rosters,
            placements,
            placing: 0,
        }
    }
}

impl Shell {
    /// A SUBSCRIBE, with what the engine and the shell know of its conference. With several
    /// nodes, a new subscription to a meeting this node does not hold waits for where it
    /// runs (a database read, off the serving loop): another node's is redirected there.
    pub(in crate::sip::server) fn subscribe(&mut self, request: Box<SubscribeRequest>) {
        let meeting = request.msg.request_user().unwrap_or_default();
        let admission = (meeting != LOBBY && meeting != self.access_user)
            .then(|| self.engine.admission(meeting))
            .flatten();
        let asserted = request
            .msg
            .header("P-Asserted-Identity")
            .filter(|_| request.trusted);
        let access = Access {
            exists: admission.is_some(),
            trusted: request.trusted,
            admitted: admission.as_ref().is_some_and(|a| a.gate.admits(asserted)),
            participant: request
                .participants
                .iter()
                .any(|p| self.participants.is_in(*p, meeting)),
        };
        let placement = self.config.placement.clone().filter(|p| {
            access.allows() && access.exists && request.msg.to_tag().is_none() && !p.holds(meeting)
        });
        if let Some(placement) = placement {
            if self.package.placing >= MAX_PLACING {
                return self.package.core.busy(&request);
            }
            self.package.placing += 1;
            let meeting = meeting.to_owned();
            let placements = self.package.placements.clone();
            tokio::task::spawn_blocking(move || {
                // Read, not claimed: a meeting no node runs is watched here, empty.
                let owner = match placement.runs_elsewhere(&meeting) {
                    Ok(owner) => owner.map(|o| o.sip),
                    Err(e) => {
                        // Served here: the roster may be empty, but the subscriber is told.
                        tracing::warn!(error = %e, %meeting, "placement unavailable");
                        None
                    }
                };
                let _ = placements.blocking_send((request, access, owner));
            });
            return;
        }
        self.package
            .core
            .subscribe(Instant::now(), &request, access);
    }

    /// Where a new subscription's meeting runs came back: served here, or redirected.
    pub(in crate::sip::server) fn placed(&mut self, (request, access, owner): PlacementRead) {
        self.package.placing = self.package.placing.saturating_sub(1);
        match owner {
            Some(to) => self.package.core.redirect(&request, &to),
            None => self
                .package
                .core
                .subscribe(Instant::now(), &request, access),
        }
    }

    /// An event from the control stream that subscribers of its conference hear about.
    pub(in crate::sip::server) fn roster_event(&mut self, event: &ConferenceEvent) {
        match event.event {
            Event::State { .. } | Event::Muted { .. } | Event::Role { .. } => {
                self.package.core.changed(&event.conference)
            }
            Event::Ended => self.package.core.ended(Instant::now(), &event.conference),
            _ => {}
        }
    }

    /// Sends what the subscriptions core wants sent, and starts the roster reads it asks for.
    pub(in crate::sip::server) async fn flush_subscriptions(&mut self) {
        while let Some(output) = self.package.core.poll() {
            match output {
                Output::Send { to, bytes } => {
                    // Logged as the call core's messages are (see `server::serve`).
                    tracing::trace!(target: "confab::sip::wire", local = ?self.udp.local_addr().ok(), to = %to.addr, sip = ?String::from_utf8_lossy(&bytes), "sent");
                    self.act(Action::Send { to, bytes }).await
                }
                Output::FetchRoster(meeting) => {
                    let read = self.engine.roster_with_media(&meeting);
                    let rosters = self.package.rosters.clone();
                    tokio::spawn(async move {
                        let users = read.await.ok().map(|r| {
                            r.iter()
                                .map(|(p, stats)| UserView::of(p, stats.as_ref()))
                                .collect()
                        });
                        let _ = rosters.send((meeting, users)).await;
                    });
                }
            }
        }
    }
}
