//! The shell's side of keypad controls: a digit from a caller in a meeting goes to its
//! [`KeyEntry`]; a finished sequence is decided by [`decide`] on the roster as the mixer has it,
//! carried out through the engine, announced to the caller and published as an event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_dsp::mix::Gain;
use tracing::debug;

use super::Shell;
use crate::call::keypad::{Effect, KeyAction, KeyEntry, Situation, VOLUME_STEP_DB, decide};
use crate::conference::ParticipantId;
use crate::engine::{Engine, EngineError};
use crate::mixer::Control;
use crate::sip::prompts::{Prompt, Prompts};

/// A caller in a meeting, as the keypad knows it: part of its entry in the shell's
/// participants (`participants::Phase`), and gone with it.
#[derive(Debug, Default)]
pub(crate) struct InMeeting {
    keys: KeyEntry,
    /// The language it hears (empty: the default).
    language: String,
}

impl InMeeting {
    /// The language it hears (empty: the default).
    pub(crate) fn language(&self) -> &str {
        &self.language
    }

    /// A caller who hears `language`.
    pub(crate) fn speaking(language: String) -> Self {
        InMeeting {
            language,
            ..InMeeting::default()
        }
    }
}

impl Shell {
    /// The language `participant` hears: chosen at the lobby, or the default.
    pub(crate) fn language_of(&self, participant: ParticipantId) -> String {
        self.participants.language(participant)
    }
}

impl Shell {
    /// A digit from a caller in a meeting (not at the attendant).
    pub(crate) fn keypad_digit(&mut self, now: Instant, participant: ParticipantId, digit: char) {
        let Some((meeting, call)) = self.participants.keys_mut(participant) else {
            return;
        };
        let meeting = meeting.to_owned();
        let Some(action) = call.keys.key(now, digit, &self.config.keypad) else {
            return;
        };
        let engine = Arc::clone(&self.engine);
        let prompts = Arc::clone(&self.config.prompts);
        let language = call.language.clone();
        let store = self.config.store.clone();
        tokio::spawn(async move {
            let prompts = prompts.get(&language);
            let done = carry_out(&engine, prompts, &meeting, participant, action).await;
            if let (Ok(Kept::Lock(locked)), Some(store)) = (&done, store) {
                keep_lock(store, &meeting, *locked).await;
            }
            match done.map(Kept::end_after) {
                Err(e) => debug!(error = %e, %meeting, action = action.as_str(), "keypad control"),
                Ok(None) => {}
                // The goodbye plays out before everyone is hung up. The meeting itself stays
                // (its ID can be called again), as when the last caller leaves.
                Ok(Some(after)) => {
                    tokio::time::sleep(after).await;
                    end_calls(&engine, &meeting).await;
                }
            }
        });
    }
}

/// What a carried-out keypad action leaves to its caller.
#[derive(Debug, PartialEq)]
pub(super) enum Kept {
    Nothing,
    /// The conference was locked or unlocked: to be stored.
    Lock(bool),
    /// The conference ends once this much of the goodbye has played.
    EndAfter(Duration),
}

impl Kept {
    fn end_after(self) -> Option<Duration> {
        match self {
            Kept::EndAfter(after) => Some(after),
            Kept::Nothing | Kept::Lock(_) => None,
        }
    }
}

/// Stores a leader's keypad lock as the operator's is stored, so that a restart and the other
/// nodes keep it (a database write: off the runtime's threads).
async fn keep_lock(store: crate::store::Store, meeting: &str, locked: bool) {
    let id = meeting.to_owned();
    match tokio::task::spawn_blocking(move || store.set_locked(&id, locked)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => debug!(error = %e, %meeting, "the keypad's lock was not stored"),
        Err(_) => debug!(%meeting, "the keypad's lock was not stored"),
    }
}

/// Decides `action` on the conference as it is now, does it and tells the caller; storing a
/// lock and ending the conference are left to the caller of this.
pub(super) async fn carry_out(
    engine: &Engine,
    prompts: &Prompts,
    meeting: &str,
    participant: ParticipantId,
    action: KeyAction,
) -> Result<Kept, EngineError> {
    let roster = engine.roster(meeting).await?;
    let Some(me) = roster.iter().find(|p| p.id == participant) else {
        return Ok(Kept::Nothing);
    };
    let situation = Situation {
        role: me.role,
        muted: me.muted,
        locked: engine.policy(meeting).await?.locked,
        present: roster.iter().filter(|p| p.state.is_present()).count(),
        // Steps from the gain the roster shows, which the API may have set too.
        volume: volume_steps(me.output_gain_db),
    };
    let decision = decide(action, situation);
    engine
        .control(
            meeting,
            Control::Keyed(participant, action.as_str(), decision.effect.is_some()),
        )
        .await?;
    let say = spoken(prompts, &decision.say);
    let said = crate::call::playing_time(say.len());
    engine.play(meeting, participant, Some(say)).await?;
    match decision.effect {
        None => {}
        Some(Effect::Mute(on)) => {
            engine
                .control(meeting, Control::Mute(participant, on))
                .await?
        }
        Some(Effect::Volume(steps)) => {
            let gain = Gain::from_db(f32::from(steps) * f32::from(VOLUME_STEP_DB));
            engine
                .control(meeting, Control::ListenGain(participant, gain))
                .await?;
        }
        Some(Effect::Lock(on)) => {
            engine.control(meeting, Control::Lock(on)).await?;
            return Ok(Kept::Lock(on));
        }
        Some(Effect::MuteAll) => engine.control(meeting, Control::MuteAll).await?,
        Some(Effect::End) => return Ok(Kept::EndAfter(said)),
    }
    Ok(Kept::Nothing)
}

/// Prompts one after the other, as one piece of audio.
pub(crate) fn spoken(prompts: &Prompts, say: &[Prompt]) -> Arc<[i16]> {
    let parts: Vec<Arc<[i16]>> = say.iter().map(|p| prompts.audio(*p)).collect();
    if let [one] = parts.as_slice() {
        return Arc::clone(one);
    }
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

/// Everyone present in `meeting` leaves it as `conference-ended` (SIP callers get a BYE).
async fn end_calls(engine: &Engine, meeting: &str) {
    let Ok(roster) = engine.roster(meeting).await else {
        return;
    };
    for p in roster.iter().filter(|p| p.state.is_present()) {
        let reason = crate::conference::DisconnectReason::ConferenceEnded;
        if let Err(e) = engine.control(meeting, Control::Remove(p.id, reason)).await {
            debug!(error = %e, %meeting, "keypad: end");
        }
    }
}

/// A listening gain in dB as whole keypad steps (rounded, within the keypad's range).
fn volume_steps(db: f32) -> i8 {
    let steps = (db / f32::from(VOLUME_STEP_DB)).round();
    let max = f32::from(crate::call::keypad::MAX_VOLUME_STEPS);
    if steps.is_nan() {
        return 0;
    }
    // Within -max..=max, so the cast cannot wrap.
    steps.clamp(-max, max) as i8
}

#[cfg(test)]
#[path = "keys_lock_tests.rs"]
mod lock_tests;

#[cfg(test)]
mod tests {
    use super::volume_steps;

    #[test]
    fn a_gain_set_elsewhere_is_where_the_keys_step_from() {
        assert_eq!(volume_steps(0.0), 0);
        assert_eq!(volume_steps(-6.0), -2);
        assert_eq!(volume_steps(4.4), 1);
        assert_eq!(volume_steps(12.0), 4);
        // The API allows down to -30 dB: the keys take it as their lowest step.
        assert_eq!(volume_steps(-30.0), -4);
        assert_eq!(volume_steps(f32::NAN), 0);
        assert_eq!(volume_steps(f32::INFINITY), 4);
    }
}
