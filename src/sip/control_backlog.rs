//! Controls a mixer thread's full queue refused, kept in order until it has room: a hang-up
//! or the removal of a failed callee must not be lost to a busy moment, and must not overtake
//! what was made before it (a 180, then a 486, then the removal).

use std::collections::VecDeque;

use crate::mixer::Control;

/// Controls that wait for room, at most (each a few dozen bytes).
pub(crate) const MAX_WAITING: usize = 65_536;

/// Bound: [`MAX_WAITING`]; beyond it a control is dropped (and the caller logs it). Pruning:
/// each is sent again at every tick of the serving loop until its thread takes it.
#[derive(Default)]
pub(crate) struct ControlBacklog {
    waiting: VecDeque<(String, Control)>,
}

impl ControlBacklog {
    /// Sends `control` to `meeting` through `send` (which hands a control back when the
    /// thread's queue is full), unless others wait already: then it waits behind them. False
    /// when it had to be dropped.
    pub(crate) fn send(
        &mut self,
        meeting: String,
        control: Control,
        send: impl FnOnce(&str, Control) -> Option<Control>,
    ) -> bool {
        if !self.waiting.is_empty() {
            return self.wait(meeting, control);
        }
        match send(&meeting, control) {
            None => true,
            Some(control) => self.wait(meeting, control),
        }
    }

    /// Sends the waiting controls again, in order, until one is handed back again.
    pub(crate) fn retry(&mut self, mut send: impl FnMut(&str, Control) -> Option<Control>) {
        while let Some((meeting, control)) = self.waiting.pop_front() {
            if let Some(control) = send(&meeting, control) {
                self.waiting.push_front((meeting, control));
                return;
            }
        }
    }

    fn wait(&mut self, meeting: String, control: Control) -> bool {
        if self.waiting.len() >= MAX_WAITING {
            return false;
        }
        self.waiting.push_back((meeting, control));
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conference::{DisconnectReason, ParticipantId};

    #[test]
    fn refused_controls_keep_their_order_and_go_out_once_there_is_room() {
        let p = ParticipantId(3);
        let made = [
            Control::SipStatus(p, 180),
            Control::SipStatus(p, 486),
            Control::Remove(p, DisconnectReason::Busy),
        ];
        let mut backlog = ControlBacklog::default();
        let mut delivered = Vec::new();
        // The queue is full: the first is handed back, the others wait behind it unasked.
        let mut asked = 0;
        for control in made {
            assert!(backlog.send("4242".into(), control, |_, c| {
                asked += 1;
                Some(c)
            }));
        }
        assert_eq!(asked, 1);
        assert_eq!(backlog.len(), 3);
        // Room for one: one goes, the rest wait.
        let mut room = 1;
        backlog.retry(|m, c| {
            if room == 0 {
                return Some(c);
            }
            room -= 1;
            delivered.push((m.to_owned(), c));
            None
        });
        assert_eq!(backlog.len(), 2);
        // Room for all.
        backlog.retry(|m, c| {
            delivered.push((m.to_owned(), c));
            None
        });
        assert_eq!(backlog.len(), 0);
        let order: Vec<Control> = delivered.iter().map(|(_, c)| *c).collect();
        assert_eq!(order, made);
        // Nothing waits: the next goes at once.
        let mut sent = false;
        assert!(backlog.send("4242".into(), Control::Hangup(p), |_, _| {
            sent = true;
            None
        }));
        assert!(sent && backlog.len() == 0);
    }

    #[test]
    fn the_backlog_is_bounded() {
        let mut backlog = ControlBacklog::default();
        let p = ParticipantId(1);
        for _ in 0..MAX_WAITING {
            assert!(backlog.send("4242".into(), Control::Hangup(p), |_, c| Some(c)));
        }
        assert!(!backlog.send("4242".into(), Control::Hangup(p), |_, c| Some(c)));
        assert_eq!(backlog.len(), MAX_WAITING);
    }
}
