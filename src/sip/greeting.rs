//! What a caller hears on entering a meeting: "you are the first participant" when nobody else
//! is there, or "the leader has not yet arrived" when the meeting waits for its leader (the
//! music on hold the mixer plays to waiting legs goes on after it). In the caller's language.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{LOBBY, Shell};
use crate::conference::{ParticipantId, Role, State};
use crate::engine::Engine;
use crate::sip::prompts::Prompt;

/// Time for a new call's phone to start playing our media (after the 200 and its ACK).
pub(crate) const AFTER_ANSWER: Duration = Duration::from_millis(800);
/// Time for a moved leg to be taken into the meeting's mix (its media is already flowing).
pub(crate) const AFTER_MOVE: Duration = Duration::from_millis(300);

/// What a participant of `meeting` is told on entry, from the meeting's roster and policy:
/// waiting for the leader, the only one there, or nothing.
pub(crate) async fn greeting_for(
    engine: &Engine,
    meeting: &str,
    participant: ParticipantId,
) -> Option<Prompt> {
    let roster = engine.roster(meeting).await.ok()?;
    let me = roster.iter().find(|p| p.id == participant)?;
    let policy = engine.policy(meeting).await.ok()?;
    let leader_here = roster
        .iter()
        .any(|p| p.role == Role::Leader && p.state == State::Connected);
    if me.state == State::Connecting && policy.wait_for_leader && !leader_here {
        return Some(Prompt::WaitingForLeader);
    }
    let others = roster
        .iter()
        .filter(|p| p.id != participant && p.state == State::Connected)
        .count();
    (me.state == State::Connected && others == 0).then_some(Prompt::FirstParticipant)
}

/// A greeting waiting for its time.
#[derive(Debug)]
pub(crate) struct Due {
    at: Instant,
    participant: ParticipantId,
    meeting: String,
}

impl Shell {
    /// Greets `participant`, which has just entered `meeting` (dialled directly, or moved there
    /// by the attendant), once `after` has passed, unless it keys something first (what it
    /// keyed is answered by a prompt the greeting must not cut off).
    pub(crate) fn greet(&mut self, participant: ParticipantId, meeting: String, after: Duration) {
        if meeting == LOBBY {
            return;
        }
        self.greetings.push(Due {
            at: Instant::now() + after,
            participant,
            meeting,
        });
    }

    /// A key from `participant`: no greeting for it any more.
    pub(crate) fn forget_greeting(&mut self, participant: ParticipantId) {
        self.greetings.retain(|d| d.participant != participant);
    }

    /// Plays the greetings that are due.
    pub(crate) fn tick_greetings(&mut self, now: Instant) {
        if self.greetings.iter().all(|d| d.at > now) {
            return;
        }
        let (due, later) = std::mem::take(&mut self.greetings)
            .into_iter()
            .partition(|d| d.at <= now);
        self.greetings = later;
        for Due {
            participant,
            meeting,
            ..
        } in due
        {
            let language = self.language_of(participant);
            let prompts = self.config.prompts_in(&language);
            let (waiting, first) = (
                prompts.audio(Prompt::WaitingForLeader),
                prompts.audio(Prompt::FirstParticipant),
            );
            let engine: Arc<Engine> = Arc::clone(&self.engine);
            tokio::spawn(async move {
                let Some(prompt) = greeting_for(&engine, &meeting, participant).await else {
                    return;
                };
                let audio = match prompt {
                    Prompt::WaitingForLeader => waiting,
                    _ => first,
                };
                if let Err(e) = engine.play(&meeting, participant, Some(audio)).await {
                    debug!(error = %e, "sip: the greeting could not be played");
                }
            });
        }
    }
}
