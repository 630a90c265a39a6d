//! Conferences: the roster (who, in which state, under which policy) and talker selection.

pub mod limiter;
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
    /// `closed`: only these identities, as asserted by the trusted gateway. An entry with a
    /// host (`sip:ann@example.com`, `ann@example.com`) must equal the asserted identity's user
    /// (exactly) and host (in any case); a bare number (`+4930123`, `4930123`: digits with an
    /// optional leading `+`) must equal the asserted identity's user part exactly. Any other
    /// bare entry matches nobody.
    Attendees(Vec<String>),
}

/// The longest name a caller or API client may give (bytes; see [`clean_text`]).
pub const MAX_NAME: usize = 128;

/// `text` without control characters, cut to at most `max` bytes at a char boundary. Names a
/// caller or client chooses (SIP display names and URIs, WHIP and token names) go through
/// this before they reach the roster, the records or the logs.
pub fn clean_text(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out.trim().to_owned()
}

/// An identity as `(user, host)`: `sip:+4930123@gw;user=phone` -> `("+4930123", "gw")`,
/// `tel:+4930123` -> `("+4930123", "")`. None when there is no user part.
fn identity(uri: &str) -> Option<(String, String)> {
    let t = uri.trim().trim_start_matches('<');
    let t = t.split('>').next().unwrap_or_default();
    let lower = t.to_ascii_lowercase();
    let bare = ["sips:", "sip:", "tel:"]
        .iter()
        .find(|p| lower.starts_with(*p))
        .map_or(t, |p| &t[p.len()..]);
    let (user, host) = match bare.split_once('@') {
        Some((u, h)) => (u, h),
        None => (bare, ""),
    };
    let user = user.split([';', '?']).next().unwrap_or_default().trim();
    let host = host
        .split([';', '?', '>'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    (!user.is_empty()).then(|| (user.to_owned(), host))
}

fn bare_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

impl Gate {
    /// Whether a caller is let in: `asserted` is the identity the trusted gateway asserts
    /// (P-Asserted-Identity; an empty one is none). The caller's own claim (From) never counts.
    pub fn admits(&self, asserted: Option<&str>) -> bool {
        let asserted = asserted.and_then(identity);
        match self {
            Gate::Anyone => true,
            Gate::Asserted => asserted.is_some(),
            Gate::Attendees(list) => {
                let Some((user, host)) = asserted else {
                    return false;
                };
                list.iter().any(|entry| {
                    let entry = entry.trim();
                    if bare_number(entry) {
                        return entry == user;
                    }
                    match identity(entry) {
                        Some((u, h)) if !h.is_empty() => u == user && h == host,
                        _ => false,
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Gate, clean_text};

    #[test]
    fn gates() {
        assert!(Gate::Anyone.admits(None));
        assert!(!Gate::Asserted.admits(None));
        assert!(Gate::Asserted.admits(Some("sip:+49301@gw")));
        let closed = Gate::Attendees(vec!["sip:Ann@example.com".into(), "+4930123".into()]);
        assert!(closed.admits(Some("<sip:Ann@EXAMPLE.com>;tag=1")));
        assert!(closed.admits(Some("sip:+4930123@gw;user=phone")));
        assert!(closed.admits(Some("tel:+4930123")));
        assert!(!closed.admits(Some("sip:bob@example.com")));
    }

    #[test]
    fn an_empty_asserted_identity_is_none() {
        for empty in ["", " ", "<>", "<sip:>", "sip:@gw", "tel:"] {
            assert!(!Gate::Asserted.admits(Some(empty)), "{empty:?}");
        }
    }

    #[test]
    fn closed_takes_only_the_asserted_identity_and_matches_it_exactly() {
        let closed = Gate::Attendees(vec![
            "sip:ann@example.com".into(),
            "+4930123".into(),
            "carol".into(),
        ]);
        // The caller's own From is not an identity: without an assertion nobody gets in.
        assert!(!closed.admits(None));
        // A user part alone does not match an entry with a host, and hosts must agree.
        assert!(!closed.admits(Some("sip:ann@evil.example")));
        assert!(!closed.admits(Some("sip:ann")));
        assert!(
            !closed.admits(Some("sip:Ann@example.com")),
            "users are case-sensitive"
        );
        // A bare number matches the user part exactly: no prefix, suffix or other number.
        assert!(!closed.admits(Some("sip:+49301234@gw")));
        assert!(!closed.admits(Some("sip:4930123@gw")));
        assert!(!closed.admits(Some("sip:+4930123x@gw")));
        // A bare entry that is not a number matches nobody.
        assert!(!closed.admits(Some("sip:carol@example.com")));
        assert!(!closed.admits(Some("carol")));
    }

    #[test]
    fn names_are_cut_and_cleaned() {
        assert_eq!(
            clean_text("Ann\r\nVia: x\u{7}\u{1b}[2J", 128),
            "AnnVia: x[2J"
        );
        let long = "é".repeat(200);
        let cut = clean_text(&long, 128);
        assert_eq!(cut.len(), 128);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(
            clean_text(&"€".repeat(100), 128).len(),
            126,
            "cut at a char boundary"
        );
    }
}
