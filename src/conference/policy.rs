//! A conference's policy: who may join, and what the conference plays itself when people come
//! and go. Kept apart from the roster's state machine, which reads it.

/// Who may join and how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub locked: bool,
    /// Present (not disconnected) participants allowed; 0 means no limit.
    pub max_participants: usize,
    pub wait_for_leader: bool,
    /// Those waiting for the leader hear music on hold (else silence). Off unless asked for:
    /// the attendant's lobby holds its callers apart with `wait_for_leader`, and they must hear
    /// its prompts and nothing between them; the API's meetings ask for it.
    pub hold_music: bool,
    /// What those in the mix hear when someone enters or leaves it.
    pub entry_exit: EntryExit,
}

/// What a conference plays when a participant enters the mix or leaves it. Off by default: a
/// meeting that did not ask for tones hears only its participants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EntryExit {
    #[default]
    Off,
    /// The enter tone (rising) and the exit tone (falling), heard by everyone in the mix.
    Tones,
    /// The caller's name, recorded at the attendant, then "has joined the conference" (or
    /// "has left"); for a participant with no recorded name (WebRTC, API legs, a caller who
    /// said nothing), the tones.
    Names,
}

impl EntryExit {
    /// From the name used in the API and the store.
    pub fn parse(name: &str) -> Option<EntryExit> {
        match name {
            "off" => Some(EntryExit::Off),
            "tones" => Some(EntryExit::Tones),
            "names" => Some(EntryExit::Names),
            _ => None,
        }
    }

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryExit::Off => "off",
            EntryExit::Tones => "tones",
            EntryExit::Names => "names",
        }
    }
}
