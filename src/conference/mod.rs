//! Conferences: the roster (who, in which state, under which policy) and talker selection.

pub mod roster;
pub mod talkers;

pub use roster::{
    DisconnectReason, Event, JoinError, Joining, Participant, ParticipantId, Policy, Role, Roster,
    State,
};

/// How dial-in callers get into a conference: who may, and the digits the attendant asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Digits every caller keys (none: the meeting ID is enough).
    pub passcode: Option<String>,
    /// Digits that make a caller a leader.
    pub leader_pin: Option<String>,
    pub gate: Gate,
}

/// Whose calls a conference takes (the `access` of DESIGN.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Gate {
    /// `anonymous`: anyone with the meeting ID (and the passcode, if there is one).
    #[default]
    Anyone,
    /// `authenticated`: callers whose identity the trusted gateway asserts.
    Asserted,
    /// `closed`: only these identities (SIP URIs or their user parts, e.g. phone numbers).
    Attendees(Vec<String>),
}

/// `sip:+4930123@gw;user=phone` -> `+4930123@gw`, lower case.
fn identity_key(uri: &str) -> String {
    let bare = uri
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim_start_matches("sips:")
        .trim_start_matches("sip:")
        .trim_start_matches("tel:");
    bare.split([';', '?', '>'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

impl Gate {
    /// Whether a caller is let in: `asserted` is the identity the gateway asserts
    /// (P-Asserted-Identity), `from` the caller's own claim.
    pub fn admits(&self, asserted: Option<&str>, from: &str) -> bool {
        match self {
            Gate::Anyone => true,
            Gate::Asserted => asserted.is_some(),
            Gate::Attendees(list) => {
                let who = identity_key(asserted.unwrap_or(from));
                let user = who.split('@').next().unwrap_or_default().to_owned();
                list.iter()
                    .map(|a| identity_key(a))
                    .any(|a| a == who || (!user.is_empty() && a == user))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Gate;

    #[test]
    fn gates() {
        assert!(Gate::Anyone.admits(None, "sip:x@y"));
        assert!(!Gate::Asserted.admits(None, "sip:x@y"));
        assert!(Gate::Asserted.admits(Some("sip:+49301@gw"), "sip:x@y"));
        let closed = Gate::Attendees(vec!["sip:Ann@example.com".into(), "+4930123".into()]);
        assert!(closed.admits(None, "<sip:ann@example.com>;tag=1"));
        assert!(closed.admits(Some("sip:+4930123@gw;user=phone"), "sip:anon@x"));
        assert!(!closed.admits(None, "sip:bob@example.com"));
        // The asserted identity wins over the caller's claim.
        assert!(!closed.admits(Some("sip:bob@gw"), "sip:ann@example.com"));
    }
}
