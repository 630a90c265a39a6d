//! What a conference tells the record writer: its legs joining and leaving, and its own start
//! and end. Sends only (the channel never blocks); the writer makes the rows.

use std::time::Instant;

use super::ConferenceMedia;
use crate::conference::{ParticipantId, State};
use crate::media::leg::RtpLeg;
use crate::store::{ConferenceFacts, LegFacts, RecordEvent};

impl ConferenceMedia {
    /// Sends call records to `records` from now on.
    pub fn set_records(&mut self, records: Option<std::sync::mpsc::Sender<RecordEvent>>) {
        self.records = records;
    }

    /// What is known of `participant`'s leg at `now` (its figures when it ends).
    pub(super) fn facts_of(
        &self,
        participant: ParticipantId,
        leg: Option<&RtpLeg>,
        now: Instant,
    ) -> Option<LegFacts> {
        let p = self.roster.participant(participant)?;
        Some(LegFacts {
            conference: self.id.to_string(),
            display_name: p.display_name.clone(),
            uri: p.uri.clone(),
            role: p.role,
            stats: leg.map(|l| l.stats()),
            reason: match p.state {
                State::Disconnected(r) => Some(r),
                _ => None,
            },
            sip_status: p.sip_status,
            at: now,
            origin: leg.and_then(|l| l.origin.clone()),
        })
    }

    /// Tells the record writer a leg joined (`open`) or left.
    pub(super) fn send_record(
        &self,
        open: bool,
        participant: ParticipantId,
        leg: Option<&RtpLeg>,
        now: Instant,
    ) {
        let Some(records) = &self.records else { return };
        let Some(facts) = self.facts_of(participant, leg, now) else {
            return;
        };
        let _ = records.send(RecordEvent::Leg {
            participant,
            open,
            facts: Box::new(facts),
        });
    }

    /// The most legs it had at once.
    pub(crate) fn peak_legs(&self) -> usize {
        self.peak_legs
    }

    /// Tells the record writer the conference started (`started`) or ended here.
    pub fn send_session(&self, started: bool, now: Instant) {
        let Some(records) = &self.records else { return };
        let _ = records.send(RecordEvent::Conference(Box::new(ConferenceFacts {
            conference: self.id.to_string(),
            started,
            peak_participants: self.peak_legs,
            at: now,
        })));
    }
}
