//! The shell's side of presence: it tells the publisher who connected and who left (from
//! the control stream; the attendant's lobby is no conference), reads each connected
//! participant's identity from the engine off the serving loop, hands over the presence
//! server's answers and sends what the publisher wants sent.

use std::time::Instant;

use tokio::sync::mpsc;

use super::{LOBBY, Shell};
use crate::conference::{Event, ParticipantId, State};
use crate::mixer::conference::ConferenceEvent;
use crate::sip::presence::{Presence, PresenceSettings};

/// An identity read: the participant, and its identity if it is still present.
pub(in crate::sip::server) type IdentityRead = (ParticipantId, Option<String>);

/// The publisher and where identity reads come back.
pub(in crate::sip::server) struct PresenceLink {
    pub(in crate::sip::server) core: Presence,
    identities: mpsc::Sender<IdentityRead>,
}

impl PresenceLink {
    pub(in crate::sip::server) fn new(
        settings: PresenceSettings,
        identities: mpsc::Sender<IdentityRead>,
        random: fn(&mut [u8]),
    ) -> PresenceLink {
        PresenceLink {
            core: Presence::new(settings, random),
            identities,
        }
    }
}

impl Shell {
    /// A roster change the publisher hears about: a participant of a meeting connected or
    /// left.
    pub(in crate::sip::server) fn presence_event(&mut self, event: &ConferenceEvent) {
        let Some(link) = &mut self.presence else {
            return;
        };
        if &*event.conference == LOBBY {
            return;
        }
        match event.event {
            Event::State {
                participant,
                state: State::Connected,
            } => {
                link.core.connected(participant);
                let read = self.engine.identity(&event.conference, participant);
                let identities = link.identities.clone();
                tokio::spawn(async move {
                    let identity = match read.await {
                        Ok((identity, true)) => identity,
                        _ => None,
                    };
                    let _ = identities.send((participant, identity)).await;
                });
            }
            Event::State {
                participant,
                state: State::Disconnected(_),
            } => link.core.left(Instant::now(), participant),
            _ => {}
        }
    }

    /// An identity read came back.
    pub(in crate::sip::server) fn identified(&mut self, (participant, identity): IdentityRead) {
        if let Some(link) = &mut self.presence {
            link.core
                .identified(Instant::now(), participant, identity.as_deref());
        }
    }

    /// Sends the publisher's PUBLISHes to the presence server.
    pub(in crate::sip::server) async fn flush_presence(&mut self) {
        let Some(link) = &mut self.presence else {
            return;
        };
        let server = link.core.server();
        while let Some(bytes) = link.core.poll() {
            tracing::trace!(target: "confab::sip::wire", to = %server, sip = ?String::from_utf8_lossy(&bytes), "sent");
            if let Err(e) = self.udp.send_to(&bytes, server).await {
                tracing::debug!(error = %e, "presence: send");
            }
        }
    }
}
