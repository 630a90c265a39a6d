//! The shell's side of the attendant: callers in the lobby hear its prompts and key their
//! digits, which reach it here; once they got them right their leg moves into the meeting (or,
//! for a meeting another node has, they are referred to the dispatcher). Wrong entries count
//! in the failure limiter, which also turns away a caller or meeting with too many.

use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use super::refusal::would_refuse;
use super::{LOBBY, Shell};
use crate::conference::limiter::{FailureLimiter, Transport};
use crate::conference::{Admission, DisconnectReason, ParticipantId};
use crate::engine::{Engine, Joiner};
use crate::mixer::Control;
use crate::sip::attendant::{Directory, Outcome};

impl Shell {
    /// A digit from a participant: the attendant's, if it is at the attendant, else a keypad
    /// control's.
    pub(crate) fn digit(&mut self, participant: ParticipantId, digit: char) {
        let now = Instant::now();
        let Some((attendant, caller)) = self.attendants.get_mut(&participant) else {
            self.keypad_digit(now, participant, digit);
            return;
        };
        let limiter = self.limiter.lock().ok();
        let directory = ShellDirectory {
            engine: &self.engine,
            limiter: limiter.as_deref(),
            caller: &caller.key,
            now,
        };
        let outcomes = attendant.digit(now, digit, &directory);
        drop(limiter);
        self.carry_out(participant, outcomes);
    }

    pub(crate) fn tick_attendants(&mut self, now: Instant) {
        let limiter = self.limiter.lock().ok();
        let mut all = Vec::new();
        for (p, (attendant, caller)) in &mut self.attendants {
            let directory = ShellDirectory {
                engine: &self.engine,
                limiter: limiter.as_deref(),
                caller: &caller.key,
                now,
            };
            let outcomes = attendant.tick(now, &directory);
            if !outcomes.is_empty() {
                all.push((*p, outcomes));
            }
        }
        drop(limiter);
        for (p, outcomes) in all {
            self.carry_out(p, outcomes);
        }
        self.attendants.retain(|_, (a, _)| !a.finished());
    }

    pub(crate) fn carry_out(&mut self, participant: ParticipantId, outcomes: Vec<Outcome>) {
        for outcome in outcomes {
            let engine = Arc::clone(&self.engine);
            match outcome {
                Outcome::Play(prompt) => {
                    let audio = self.config.prompts.audio(prompt);
                    tokio::task::spawn_blocking(move || {
                        let _ = engine.play(LOBBY, participant, Some(audio));
                    });
                }
                Outcome::Join { meeting, role } => {
                    let Some((_, caller)) = self.attendants.get(&participant) else {
                        continue;
                    };
                    let admitted = self
                        .engine
                        .admission(&meeting)
                        .is_some_and(|a| a.gate.admits(caller.asserted_identity.as_deref()));
                    if !admitted {
                        self.control(
                            participant,
                            Control::Remove(participant, DisconnectReason::Rejected),
                        );
                        continue;
                    }
                    let joiner = Joiner {
                        display_name: caller.display_name.clone(),
                        uri: caller.uri.clone(),
                        role,
                    };
                    let moves = self.moves.clone();
                    tokio::task::spawn_blocking(move || {
                        // A move the meeting refuses loses the leg: the caller is told first.
                        if let Some(refusal) = would_refuse(&engine, &meeting, role) {
                            let _ = moves.blocking_send((participant, Err(Some(refusal))));
                            return;
                        }
                        let _ = engine.detect_dtmf(LOBBY, participant, false);
                        let moved = engine.move_leg(LOBBY, participant, &meeting, joiner);
                        if let Err(e) = &moved {
                            debug!(error = %e, %meeting, "attendant: could not move the caller");
                        }
                        let _ = moves.blocking_send((
                            participant,
                            moved.map(|()| meeting).map_err(|_| None),
                        ));
                    });
                }
                Outcome::Redirect { meeting } => match self.dispatcher {
                    Some(d) => self
                        .refers
                        .push((participant, format!("sip:{meeting}@{d}"))),
                    None => self.control(
                        participant,
                        Control::Remove(participant, DisconnectReason::AttendantFailed),
                    ),
                },
                Outcome::Failed { meeting } => {
                    // Counted at the entry: hanging up during the goodbye changes nothing.
                    if let (Some((_, caller)), Ok(mut limiter)) =
                        (self.attendants.get(&participant), self.limiter.lock())
                    {
                        limiter.failure(
                            Instant::now(),
                            Transport::Sip,
                            &caller.key,
                            meeting.as_deref(),
                        );
                    }
                }
                Outcome::Hangup => {
                    self.control(
                        participant,
                        Control::Remove(participant, DisconnectReason::AttendantFailed),
                    );
                }
            }
        }
    }
}

/// The attendant's view of the bridge: the engine's meetings (the lobby is none) and the
/// failure limiter, for one caller.
struct ShellDirectory<'a> {
    engine: &'a Engine,
    limiter: Option<&'a FailureLimiter>,
    caller: &'a str,
    now: Instant,
}

impl Directory for ShellDirectory<'_> {
    fn admission(&self, meeting: &str) -> Option<Arc<Admission>> {
        // The lobby is no meeting; neither is the access user.
        if meeting == LOBBY {
            None
        } else {
            self.engine.admission(meeting)
        }
    }

    fn locked_out(&self, meeting: Option<&str>) -> bool {
        // Without the limiter (a poisoned lock) nothing is let through unchecked.
        self.limiter
            .is_none_or(|l| l.locked(self.now, self.caller, meeting).is_some())
    }
}
