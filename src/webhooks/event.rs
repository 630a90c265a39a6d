//! What webhooks are told: the events by name, the tap the mixer threads and the recorder
//! tell them through, and the JSON body each becomes.
//!
//! The tap never blocks: it `try_send`s into a bounded queue made once (no allocation for
//! the mixer's events), and an event that finds it full is dropped and counted
//! (`confab_webhook_events_dropped_total`): the webhook task is stuck, and the mixer must not
//! be. Nothing is sent while no webhook is configured.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use serde_json::{Value, json};

use crate::conference::{Event, State};
use crate::mixer::conference::{ConferenceEvent, ConferenceId};

/// Events waiting between the mixer threads (and the recorder) and the webhook task.
pub(crate) const TAP_QUEUE: usize = 4096;

/// Events dropped before they became deliveries: the tap's queue was full, or a mute came while
/// the delivery queue was half full (see `Shell::take`).
pub(crate) static TAP_DROPPED: AtomicU64 = AtomicU64::new(0);

/// An event a webhook can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum EventKind {
    /// A conference started on this node (created, loaded at start, or taken over).
    ConferenceStarted,
    /// It ended here (deleted or ended, its last leg gone).
    ConferenceEnded,
    /// A participant is in the mix (`connected`).
    ParticipantJoined,
    /// A participant is `disconnected`, with the reason (also one that never got in: refused,
    /// no answer).
    ParticipantLeft,
    /// A participant was muted or unmuted.
    ParticipantMuted,
    /// A recording's files are complete.
    RecordingReady,
}

impl EventKind {
    pub(crate) const ALL: [EventKind; 6] = [
        EventKind::ConferenceStarted,
        EventKind::ConferenceEnded,
        EventKind::ParticipantJoined,
        EventKind::ParticipantLeft,
        EventKind::ParticipantMuted,
        EventKind::RecordingReady,
    ];

    /// The name in the configuration and in the body's `type`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            EventKind::ConferenceStarted => "conference.started",
            EventKind::ConferenceEnded => "conference.ended",
            EventKind::ParticipantJoined => "participant.joined",
            EventKind::ParticipantLeft => "participant.left",
            EventKind::ParticipantMuted => "participant.muted",
            EventKind::RecordingReady => "recording.ready",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Every name, for error messages.
    pub(crate) fn names() -> String {
        EventKind::ALL.map(EventKind::name).join(", ")
    }
}

/// What happened, as its source tells it.
#[derive(Clone, Debug)]
pub(crate) enum Happening {
    /// A roster event of a mixer thread (only those a webhook may want travel).
    Roster(ConferenceEvent),
    /// A conference started or ended on this node.
    Session {
        conference: ConferenceId,
        started: bool,
        peak_participants: usize,
    },
    /// A recording's files were closed.
    Recording {
        conference: String,
        recording: String,
        duration_ms: u64,
    },
}

/// A happening and when (ms since the Unix epoch).
#[derive(Clone, Debug)]
pub(crate) struct Occurrence {
    pub at_ms: i64,
    pub what: Happening,
}

/// Where the mixer threads and the recorder tell the webhook task what happened.
#[derive(Clone, Debug)]
pub(crate) struct WebhookTap {
    queue: SyncSender<Occurrence>,
    /// Whether the webhook task runs (it does only with webhooks configured).
    wanted: Arc<AtomicBool>,
}

impl WebhookTap {
    /// A tap and its queue's other end; nothing is sent until [`WebhookTap::open`].
    pub(crate) fn channel() -> (WebhookTap, Receiver<Occurrence>) {
        let (queue, rx) = std::sync::mpsc::sync_channel(TAP_QUEUE);
        let tap = WebhookTap {
            queue,
            wanted: Arc::new(AtomicBool::new(false)),
        };
        (tap, rx)
    }

    /// From now on, events are sent (the webhook task takes them).
    pub(crate) fn open(&self) {
        self.wanted.store(true, Ordering::Relaxed);
    }

    /// A mixer thread's event: kept if a webhook may want it.
    pub(crate) fn offer(&self, event: &ConferenceEvent) {
        let wanted = match event.event {
            Event::State { state, .. } => {
                matches!(state, State::Connected | State::Disconnected(_))
            }
            Event::Muted { .. } => true,
            _ => false,
        };
        if wanted {
            self.send(Happening::Roster(event.clone()));
        }
    }

    /// A conference started (`started`) or ended on this node.
    pub(crate) fn session(&self, conference: &ConferenceId, started: bool, peak: usize) {
        self.send(Happening::Session {
            conference: Arc::clone(conference),
            started,
            peak_participants: peak,
        });
    }

    /// A recording started or was closed (only the latter is told).
    pub(crate) fn recording(&self, notice: &crate::recording::RecordingNotice) {
        if let Some(duration_ms) = notice.closed_ms {
            self.send(Happening::Recording {
                conference: notice.conference.clone(),
                recording: notice.id.clone(),
                duration_ms,
            });
        }
    }

    fn send(&self, what: Happening) {
        if !self.wanted.load(Ordering::Relaxed) {
            return;
        }
        let at_ms = crate::store::unix_ms(std::time::SystemTime::now());
        match self.queue.try_send(Occurrence { at_ms, what }) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                TAP_DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The event an occurrence is, and its JSON body with event id `id`:
/// `{id, type, conference, participant?, at, data}` (`at` in ms since the Unix epoch).
pub(crate) fn body(o: &Occurrence, id: &str) -> Option<(EventKind, String)> {
    let (kind, conference, participant, data): (_, &str, _, Value) = match &o.what {
        Happening::Roster(e) => match e.event {
            Event::State {
                participant,
                state: State::Connected,
            } => (
                EventKind::ParticipantJoined,
                &*e.conference,
                Some(participant),
                json!({}),
            ),
            Event::State {
                participant,
                state: State::Disconnected(reason),
            } => (
                EventKind::ParticipantLeft,
                &*e.conference,
                Some(participant),
                json!({ "reason": reason.as_str() }),
            ),
            Event::Muted { participant, muted } => (
                EventKind::ParticipantMuted,
                &*e.conference,
                Some(participant),
                json!({ "muted": muted }),
            ),
            _ => return None,
        },
        Happening::Session {
            conference,
            started: true,
            ..
        } => (EventKind::ConferenceStarted, &**conference, None, json!({})),
        Happening::Session {
            conference,
            started: false,
            peak_participants,
        } => (
            EventKind::ConferenceEnded,
            &**conference,
            None,
            json!({ "peak_participants": peak_participants }),
        ),
        Happening::Recording {
            conference,
            recording,
            duration_ms,
        } => (
            EventKind::RecordingReady,
            conference.as_str(),
            None,
            json!({ "recording": recording, "duration_ms": duration_ms }),
        ),
    };
    let mut body = json!({
        "id": id,
        "type": kind.name(),
        "conference": conference,
        "at": o.at_ms,
        "data": data,
    });
    if let (Some(p), Some(map)) = (participant, body.as_object_mut()) {
        map.insert("participant".into(), Value::String(p.to_string()));
    }
    Some((kind, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conference::{DisconnectReason, ParticipantId};

    fn roster(event: Event) -> Occurrence {
        Occurrence {
            at_ms: 1_700_000_000_123,
            what: Happening::Roster(ConferenceEvent {
                conference: Arc::from("4242"),
                event,
            }),
        }
    }

    #[test]
    fn names_parse_back() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.name()), Some(k));
        }
        assert_eq!(EventKind::parse("conference.locked"), None);
    }

    #[test]
    fn bodies_carry_the_event_its_conference_and_participant() {
        let left = roster(Event::State {
            participant: ParticipantId(7),
            state: State::Disconnected(DisconnectReason::Ejected),
        });
        let (kind, text) = body(&left, "ab12").unwrap();
        assert_eq!(kind, EventKind::ParticipantLeft);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({"id": "ab12", "type": "participant.left", "conference": "4242",
                   "participant": "p7", "at": 1_700_000_000_123_i64,
                   "data": {"reason": "ejected"}})
        );
        let ended = Occurrence {
            at_ms: 5,
            what: Happening::Session {
                conference: Arc::from("4242"),
                started: false,
                peak_participants: 3,
            },
        };
        let (kind, text) = body(&ended, "x").unwrap();
        assert_eq!(kind, EventKind::ConferenceEnded);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v.get("participant").is_none());
        assert_eq!(v["data"]["peak_participants"], 3);
        // Speaking is not a webhook's event.
        let speaking = roster(Event::Speaking {
            participant: ParticipantId(1),
            speaking: true,
        });
        assert!(body(&speaking, "y").is_none());
    }

    #[test]
    fn a_closed_tap_sends_nothing_and_a_full_one_counts_what_it_drops() {
        let (tap, rx) = WebhookTap::channel();
        let muted = ConferenceEvent {
            conference: Arc::from("1"),
            event: Event::Muted {
                participant: ParticipantId(1),
                muted: true,
            },
        };
        tap.offer(&muted);
        assert!(rx.try_recv().is_err());
        tap.open();
        let before = TAP_DROPPED.load(Ordering::Relaxed);
        for _ in 0..TAP_QUEUE + 5 {
            tap.offer(&muted);
        }
        assert!(TAP_DROPPED.load(Ordering::Relaxed) >= before + 5);
        assert!(rx.try_recv().is_ok());
    }
}
