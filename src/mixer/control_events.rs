//! The control stream: the events signalling acts on (a participant's state changes, digits,
//! a conference's end) leave a mixer thread on a queue of their own, apart from the UI stream
//! that may drop. A SIP call whose participant was ejected must get its BYE even while an event
//! page lags behind the speaking indicators.
//!
//! The mixer never blocks: when the queue is full, events wait in the thread's backlog (sized
//! once, so the tick allocates nothing) and go first at the next tick, in order. Only when the
//! consumer has stopped taking for so long that the backlog too is full is an event dropped,
//! and counted (`control_events_dropped`): that consumer is stuck, not slow.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};

use super::MixerCounters;
use super::conference::ConferenceEvent;
use crate::conference::Event;

/// Events held by one mixer thread while the control queue is full. Bound: this many; beyond
/// it, dropped and counted. Pruned: sent in order at every tick.
pub(crate) const BACKLOG: usize = 8192;

/// The control queue's capacity between the mixer threads and the consumer's forwarder.
pub(crate) const QUEUE: usize = 4096;

/// Whether signalling acts on this event (it travels on the control stream as well). Mute
/// and role changes are few and go to SIP subscribers of the roster (RFC 4575).
pub(crate) fn is_control(event: &Event) -> bool {
    matches!(
        event,
        Event::State { .. }
            | Event::Dtmf { .. }
            | Event::Ended
            | Event::Locked { .. }
            | Event::Muted { .. }
            | Event::Role { .. }
    )
}

/// One mixer thread's end of the control stream.
pub(crate) struct ControlOutbox {
    queue: SyncSender<ConferenceEvent>,
    /// Whether anyone takes the stream; nobody: it is not fed at all.
    wanted: Arc<AtomicBool>,
    backlog: VecDeque<ConferenceEvent>,
}

impl ControlOutbox {
    pub(crate) fn new(queue: SyncSender<ConferenceEvent>, wanted: Arc<AtomicBool>) -> Self {
        ControlOutbox {
            queue,
            wanted,
            backlog: VecDeque::with_capacity(BACKLOG),
        }
    }

    /// Sends what waits from earlier ticks, in order, as far as the queue takes it.
    pub(crate) fn flush(&mut self) {
        while let Some(event) = self.backlog.pop_front() {
            match self.queue.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.backlog.push_front(event);
                    return;
                }
                // The consumer is gone (the bridge is stopping): nothing to keep.
                Err(TrySendError::Disconnected(_)) => {
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    /// Sends `event` if it is one signalling acts on, after anything still waiting.
    pub(crate) fn offer(&mut self, event: &ConferenceEvent, counters: &MixerCounters) {
        if !is_control(&event.event) || !self.wanted.load(Ordering::Relaxed) {
            return;
        }
        if self.backlog.is_empty() {
            match self.queue.try_send(event.clone()) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(_)) => {}
            }
        }
        // Digits are shed first: a caller keying as fast as RFC 4733 allows must not crowd
        // out a hang-up. They may fill half the backlog; state changes and ends the rest.
        let digit = matches!(event.event, Event::Dtmf { .. });
        let room = if digit { BACKLOG / 2 } else { BACKLOG };
        if self.backlog.len() < room {
            self.backlog.push_back(event.clone());
        } else {
            counters
                .control_events_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events waiting for room in the queue.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.backlog.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conference::{DisconnectReason, ParticipantId, State};

    fn hangup(p: u64) -> ConferenceEvent {
        ConferenceEvent {
            conference: Arc::from("c"),
            event: Event::State {
                participant: ParticipantId(p),
                state: State::Disconnected(DisconnectReason::Hangup),
            },
        }
    }

    #[test]
    fn a_full_queue_holds_events_back_in_order_and_loses_none() {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let counters = MixerCounters::default();
        let mut outbox = ControlOutbox::new(tx, Arc::new(AtomicBool::new(true)));
        for p in 0..10 {
            outbox.offer(&hangup(p), &counters);
        }
        // UI-only events do not travel here.
        let speaking = ConferenceEvent {
            conference: Arc::from("c"),
            event: Event::Speaking {
                participant: ParticipantId(1),
                speaking: true,
            },
        };
        outbox.offer(&speaking, &counters);
        assert_eq!(outbox.waiting(), 8);
        let mut got = Vec::new();
        while got.len() < 10 {
            while let Ok(e) = rx.try_recv() {
                got.push(e);
            }
            outbox.flush();
        }
        let order: Vec<u64> = got
            .iter()
            .map(|e| match e.event {
                Event::State { participant, .. } => participant.0,
                _ => u64::MAX,
            })
            .collect();
        assert_eq!(order, (0..10).collect::<Vec<_>>());
        assert_eq!(counters.control_events_dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_stuck_consumer_costs_a_bounded_backlog_and_counts_the_loss() {
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        let counters = MixerCounters::default();
        let mut outbox = ControlOutbox::new(tx, Arc::new(AtomicBool::new(true)));
        let n = BACKLOG as u64 + 10;
        for p in 0..n {
            outbox.offer(&hangup(p), &counters);
        }
        assert_eq!(outbox.waiting(), BACKLOG);
        assert_eq!(counters.control_events_dropped.load(Ordering::Relaxed), 9);
    }

    #[test]
    fn a_flood_of_digits_leaves_room_for_hang_ups() {
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        let counters = MixerCounters::default();
        let mut outbox = ControlOutbox::new(tx, Arc::new(AtomicBool::new(true)));
        let digit = ConferenceEvent {
            conference: Arc::from("c"),
            event: Event::Dtmf {
                participant: ParticipantId(7),
                digit: '5',
                duration_ms: 100,
            },
        };
        for _ in 0..BACKLOG * 2 {
            outbox.offer(&digit, &counters);
        }
        let shed = counters.control_events_dropped.load(Ordering::Relaxed);
        assert_eq!(outbox.waiting(), BACKLOG / 2);
        for p in 0..(BACKLOG / 2) as u64 {
            outbox.offer(&hangup(p), &counters);
        }
        assert_eq!(outbox.waiting(), BACKLOG);
        assert_eq!(
            counters.control_events_dropped.load(Ordering::Relaxed),
            shed
        );
    }

    #[test]
    fn nobody_listening_feeds_nothing() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let counters = MixerCounters::default();
        let mut outbox = ControlOutbox::new(tx, Arc::new(AtomicBool::new(false)));
        outbox.offer(&hangup(1), &counters);
        assert!(rx.try_recv().is_err());
        assert_eq!(outbox.waiting(), 0);
    }
}
