//! Refusals explained: a caller the meeting turns away (locked, full) is answered in the lobby,
//! told why in its language, and hung up once the prompt has been heard, instead of getting a
//! bare SIP error its phone shows as "call failed".

use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use super::{LOBBY, Shell};
use crate::call::playing_time;
use crate::conference::{DisconnectReason, JoinError, ParticipantId, Role};
use crate::engine::Engine;
use crate::mixer::Control;
use crate::sip::prompts::{Prompt, Prompts};

/// Time given to the caller's phone to start playing our media (after the 200 and its ACK)
/// before the prompt's own length is counted.
const ANSWER_MARGIN: Duration = Duration::from_millis(800);

/// Why a caller is turned away after being answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Locked,
    Full,
}

impl Refusal {
    /// The refusals that are explained; others keep their SIP status.
    pub(crate) fn of(error: JoinError) -> Option<Refusal> {
        match error {
            JoinError::Locked => Some(Refusal::Locked),
            JoinError::Full => Some(Refusal::Full),
            _ => None,
        }
    }

    fn prompt(self) -> Prompt {
        match self {
            Refusal::Locked => Prompt::ConferenceLocked,
            Refusal::Full => Prompt::ConferenceFull,
        }
    }

    fn reason(self) -> DisconnectReason {
        match self {
            Refusal::Locked => DisconnectReason::Locked,
            Refusal::Full => DisconnectReason::Full,
        }
    }
}

/// Whether `meeting` would turn away a joiner with `role` now (the mixer decides for good; a
/// join that races a lock is still refused there, unexplained).
pub(crate) async fn would_refuse(engine: &Engine, meeting: &str, role: Role) -> Option<Refusal> {
    let policy = engine.policy(meeting).await.ok()?;
    if policy.locked && role != Role::Leader {
        return Some(Refusal::Locked);
    }
    if policy.max_participants > 0 {
        let present = engine
            .roster(meeting)
            .await
            .ok()?
            .iter()
            .filter(|p| p.state.is_present())
            .count();
        if present >= policy.max_participants {
            return Some(Refusal::Full);
        }
    }
    None
}

impl Shell {
    /// Tells `participant`, a caller in the lobby, why it is refused, and hangs up after.
    pub(crate) fn refuse(&mut self, participant: ParticipantId, refusal: Refusal) {
        let language = self.language_of(participant);
        self.participants.refused(participant);
        let prompts: &Prompts = self.config.prompts_in(&language);
        let audio = prompts.audio(refusal.prompt());
        let after = ANSWER_MARGIN + playing_time(audio.len());
        let played = self.engine.play(LOBBY, participant, Some(audio));
        let engine = Arc::clone(&self.engine);
        tokio::spawn(async move {
            if let Err(e) = played.await {
                debug!(error = %e, "sip: the refusal could not be played");
            }
            tokio::time::sleep(after).await;
            let _ = engine
                .control(LOBBY, Control::Remove(participant, refusal.reason()))
                .await;
        });
    }
}
