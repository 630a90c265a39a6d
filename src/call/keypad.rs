//! Keypad controls during a call, sans-I/O: the digits a participant keys (RFC 4733, INFO or
//! in-band tones) become actions by a map of short sequences (`*6` mute, ...), and each action
//! becomes what the bridge does and what the caller is told ([`decide`]).
//!
//! A sequence is typed within [`SEQUENCE_GAP`] per key; a key that cannot continue any
//! sequence starts over (and may itself begin one), so stray digits never get stuck.

use std::time::{Duration, Instant};

use crate::conference::Role;
use crate::sip::prompts::Prompt;

/// Longest key sequence a map may hold.
pub const MAX_SEQUENCE: usize = 4;
/// Longest pause between the keys of one sequence.
pub const SEQUENCE_GAP: Duration = Duration::from_secs(3);

/// What a participant can do from the keypad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAction {
    /// Mute or unmute oneself.
    Mute,
    /// One's own listening volume down or up a step.
    VolumeDown,
    VolumeUp,
    /// A prompt listing the keys.
    Help,
    /// "There are N participants".
    HeadCount,
    /// Leaders: lock or unlock the conference.
    Lock,
    /// Leaders: mute everyone but the leaders.
    MuteAll,
    /// Leaders: end the conference.
    End,
}

impl KeyAction {
    pub const ALL: [KeyAction; 8] = [
        KeyAction::Mute,
        KeyAction::VolumeDown,
        KeyAction::VolumeUp,
        KeyAction::Help,
        KeyAction::HeadCount,
        KeyAction::Lock,
        KeyAction::MuteAll,
        KeyAction::End,
    ];

    /// The name in the configuration and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAction::Mute => "mute",
            KeyAction::VolumeDown => "volume_down",
            KeyAction::VolumeUp => "volume_up",
            KeyAction::Help => "help",
            KeyAction::HeadCount => "head_count",
            KeyAction::Lock => "lock",
            KeyAction::MuteAll => "mute_all",
            KeyAction::End => "end",
        }
    }

    pub fn leaders_only(self) -> bool {
        matches!(self, KeyAction::Lock | KeyAction::MuteAll | KeyAction::End)
    }
}

/// Why a key map cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyMapError {
    #[error("{keys:?} must be 1 to {MAX_SEQUENCE} of 0-9, * and #")]
    Keys { action: &'static str, keys: String },
    #[error("{a_keys:?} and keypad.{b} ({b_keys:?}): one is the start of the other")]
    Overlap {
        a: &'static str,
        a_keys: String,
        b: &'static str,
        b_keys: String,
    },
}

impl KeyMapError {
    /// The action whose keys are wrong.
    pub fn action(&self) -> &'static str {
        match self {
            KeyMapError::Keys { action, .. } => action,
            KeyMapError::Overlap { a, .. } => a,
        }
    }
}

/// Which sequence does what. Every sequence is distinct and none starts another, so a sequence
/// is done the moment its last key arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMap {
    entries: Vec<(String, KeyAction)>,
}

impl Default for KeyMap {
    /// `*6` mute, `*4`/`*7` volume, `*1` help, `*0` head count; leaders `*5` lock, `*8` mute
    /// all, `*9` end.
    fn default() -> Self {
        let keys = [
            (KeyAction::Mute, "*6"),
            (KeyAction::VolumeDown, "*4"),
            (KeyAction::VolumeUp, "*7"),
            (KeyAction::Help, "*1"),
            (KeyAction::HeadCount, "*0"),
            (KeyAction::Lock, "*5"),
            (KeyAction::MuteAll, "*8"),
            (KeyAction::End, "*9"),
        ];
        KeyMap {
            entries: keys.iter().map(|(a, k)| ((*k).to_owned(), *a)).collect(),
        }
    }
}

impl KeyMap {
    /// A map from (action, keys) pairs; an empty `keys` turns the action off.
    pub fn new<'a>(
        pairs: impl IntoIterator<Item = (KeyAction, &'a str)>,
    ) -> Result<Self, KeyMapError> {
        let mut entries: Vec<(String, KeyAction)> = Vec::new();
        for (action, keys) in pairs {
            if keys.is_empty() {
                continue;
            }
            if keys.len() > MAX_SEQUENCE || !keys.bytes().all(is_key) {
                return Err(KeyMapError::Keys {
                    action: action.as_str(),
                    keys: keys.to_owned(),
                });
            }
            if let Some((other, b)) = entries
                .iter()
                .find(|(k, _)| k.starts_with(keys) || keys.starts_with(k.as_str()))
            {
                return Err(KeyMapError::Overlap {
                    a: action.as_str(),
                    a_keys: keys.to_owned(),
                    b: b.as_str(),
                    b_keys: other.clone(),
                });
            }
            entries.push((keys.to_owned(), action));
        }
        Ok(KeyMap { entries })
    }

    /// The keys of `action`, if it has any.
    pub fn keys(&self, action: KeyAction) -> Option<&str> {
        self.entries
            .iter()
            .find(|(_, a)| *a == action)
            .map(|(k, _)| k.as_str())
    }

    fn lookup(&self, typed: &[u8]) -> Lookup {
        let mut prefix = false;
        for (keys, action) in &self.entries {
            if keys.as_bytes() == typed {
                return Lookup::Done(*action);
            }
            prefix |= keys.as_bytes().starts_with(typed);
        }
        if prefix { Lookup::More } else { Lookup::None }
    }
}

enum Lookup {
    Done(KeyAction),
    More,
    None,
}

fn is_key(b: u8) -> bool {
    b.is_ascii_digit() || b == b'*' || b == b'#'
}

/// What one participant has typed so far.
#[derive(Clone, Debug, Default)]
pub struct KeyEntry {
    typed: [u8; MAX_SEQUENCE],
    len: usize,
    last: Option<Instant>,
}

impl KeyEntry {
    /// One key at `now`: the action it completes, if any. Anything not a key is ignored.
    pub fn key(&mut self, now: Instant, key: char, map: &KeyMap) -> Option<KeyAction> {
        let Ok(byte) = u8::try_from(key) else {
            return None;
        };
        if !is_key(byte) {
            return None;
        }
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) > SEQUENCE_GAP)
        {
            self.len = 0;
        }
        self.last = Some(now);
        // The key continues the sequence if it can, or starts a new one.
        for start_over in [false, true] {
            if start_over {
                self.len = 0;
            }
            if self.len >= MAX_SEQUENCE {
                continue;
            }
            self.typed[self.len] = byte;
            self.len += 1;
            match map.lookup(&self.typed[..self.len]) {
                Lookup::Done(action) => {
                    self.len = 0;
                    return Some(action);
                }
                Lookup::More => return None,
                Lookup::None => self.len -= 1,
            }
        }
        self.len = 0;
        None
    }
}

/// What the bridge knows when an action is keyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Situation {
    pub role: Role,
    pub muted: bool,
    pub locked: bool,
    /// Participants present (not disconnected), the one keying included.
    pub present: usize,
    /// The participant's listening volume, in steps of [`VOLUME_STEP_DB`] from unity.
    pub volume: i8,
}

/// One step of listening volume.
pub const VOLUME_STEP_DB: i8 = 3;
/// Listening volume goes this many steps down or up at most.
pub const MAX_VOLUME_STEPS: i8 = 4;

/// What the bridge does about an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Mute(bool),
    /// New listening volume, in steps from unity.
    Volume(i8),
    Lock(bool),
    MuteAll,
    End,
}

/// What an action does and what the one who keyed it hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub effect: Option<Effect>,
    pub say: Vec<Prompt>,
}

/// The effect and the announcement of `action` for a participant in `situation`.
pub fn decide(action: KeyAction, situation: Situation) -> Decision {
    if action.leaders_only() && situation.role != Role::Leader {
        return Decision {
            effect: None,
            say: vec![Prompt::LeadersOnly],
        };
    }
    let (effect, say) = match action {
        KeyAction::Mute if situation.muted => (Some(Effect::Mute(false)), vec![Prompt::Unmuted]),
        KeyAction::Mute => (Some(Effect::Mute(true)), vec![Prompt::Muted]),
        KeyAction::VolumeDown => (
            Some(Effect::Volume(
                situation.volume.saturating_sub(1).max(-MAX_VOLUME_STEPS),
            )),
            vec![Prompt::VolumeDown],
        ),
        KeyAction::VolumeUp => (
            Some(Effect::Volume(
                situation.volume.saturating_add(1).min(MAX_VOLUME_STEPS),
            )),
            vec![Prompt::VolumeUp],
        ),
        KeyAction::Help => (None, vec![Prompt::Help]),
        KeyAction::HeadCount => (None, head_count(situation.present)),
        KeyAction::Lock if situation.locked => (Some(Effect::Lock(false)), vec![Prompt::Unlocked]),
        KeyAction::Lock => (Some(Effect::Lock(true)), vec![Prompt::Locked]),
        KeyAction::MuteAll => (Some(Effect::MuteAll), vec![Prompt::AllMuted]),
        KeyAction::End => (Some(Effect::End), vec![Prompt::Ended]),
    };
    Decision { effect, say }
}

/// "There are N participants in this meeting" (numbers up to twenty, then "more than twenty").
pub fn head_count(present: usize) -> Vec<Prompt> {
    if present <= 1 {
        return vec![Prompt::OnlyYou];
    }
    let number = Prompt::number(present).unwrap_or(Prompt::MoreThanTwenty);
    vec![Prompt::ThereAre, number, Prompt::Participants]
}

#[cfg(test)]
#[path = "keypad_tests.rs"]
mod tests;
