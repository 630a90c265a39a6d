//! `[keypad]`: the key sequences of the controls a caller has during a call.

use serde::Deserialize;

use crate::call::keypad::{KeyAction, KeyMap, KeyMapError};

/// `[keypad]`: each control's keys (1 to 4 of `0-9`, `*`, `#`); an empty string turns it off.
/// No sequence may be the start of another.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeypadConfig {
    pub mute: String,
    pub volume_down: String,
    pub volume_up: String,
    pub help: String,
    pub head_count: String,
    /// Leaders only, as are `mute_all` and `end`.
    pub lock: String,
    pub mute_all: String,
    pub end: String,
}

impl Default for KeypadConfig {
    fn default() -> Self {
        let map = KeyMap::default();
        let keys = |a| map.keys(a).unwrap_or_default().to_owned();
        KeypadConfig {
            mute: keys(KeyAction::Mute),
            volume_down: keys(KeyAction::VolumeDown),
            volume_up: keys(KeyAction::VolumeUp),
            help: keys(KeyAction::Help),
            head_count: keys(KeyAction::HeadCount),
            lock: keys(KeyAction::Lock),
            mute_all: keys(KeyAction::MuteAll),
            end: keys(KeyAction::End),
        }
    }
}

impl KeypadConfig {
    /// The map these keys make.
    pub fn key_map(&self) -> Result<KeyMap, KeyMapError> {
        KeyMap::new([
            (KeyAction::Mute, self.mute.as_str()),
            (KeyAction::VolumeDown, self.volume_down.as_str()),
            (KeyAction::VolumeUp, self.volume_up.as_str()),
            (KeyAction::Help, self.help.as_str()),
            (KeyAction::HeadCount, self.head_count.as_str()),
            (KeyAction::Lock, self.lock.as_str()),
            (KeyAction::MuteAll, self.mute_all.as_str()),
            (KeyAction::End, self.end.as_str()),
        ])
    }
}
