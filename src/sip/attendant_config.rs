//! What the attendant says and how it counts: the prompts of each language, the language menu
//! and access users, the attendant's settings, failure limits and the keypad map.

use std::sync::Arc;

use crate::conference::limiter::LimitSettings;
use crate::sip::attendant::AttendantSettings;
use crate::sip::prompts::{PromptBook, Prompts};

/// What the attendant says and how it counts.
#[derive(Clone, Debug)]
pub struct AttendantConfig {
    /// Every language's prompts; the first is the default.
    pub prompts: Arc<PromptBook>,
    /// Offered by a menu to callers of the access user (see [`crate::call::language_menu`]);
    /// fewer than two: no menu.
    pub menu_languages: Vec<String>,
    /// More access users, each with its callers' language: (user, language).
    pub access_users: Vec<(String, String)>,
    pub settings: AttendantSettings,
    /// Wrong entries (meeting ID, passcode, leader PIN) per caller in ten minutes before the
    /// caller is locked out (see [`crate::conference::limiter`]).
    pub max_failures_per_source: u32,
    /// The keypad controls of callers in a meeting.
    pub keypad: crate::call::keypad::KeyMap,
    /// Where meetings run when several nodes share a database (none: one node, here).
    pub placement: Option<Arc<crate::placement::Placement>>,
    /// Where a leader's keypad lock is kept, as the operator's lock is, so that a restart (and
    /// the other nodes on a shared database) keep it; none: the mixer's alone.
    pub store: Option<crate::store::Store>,
    /// Signs the pass of a caller this node's attendant let into a meeting another node runs
    /// (the REFER names it), and checks the passes of callers handed here, who are then not
    /// asked for the passcode again and keep their role and language (see
    /// [`crate::sip::hand_off`]). The join tokens' secret; none: callers are asked again.
    pub hand_off: Option<Arc<crate::webrtc::token::TokenSigner>>,
}

impl AttendantConfig {
    /// The prompts of `language` (the default's if it has none).
    pub(crate) fn prompts_in(&self, language: &str) -> &Prompts {
        self.prompts.get(language)
    }

    /// The failure limits these settings ask for.
    pub fn limits(&self) -> LimitSettings {
        LimitSettings {
            per_caller: self.max_failures_per_source.max(1),
            ..LimitSettings::default()
        }
    }
}
