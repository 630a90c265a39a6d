//! The live WHIP sessions, and the roster tokens that go with them.
//!
//! A roster token lets the page of one participant read its own conference's roster and event
//! stream without the operator's API token. It is `rv1_<lookup>_<secret>`: `lookup` finds the
//! session (a random id of its own, so the token does not reveal the WHIP resource, which can
//! hang the participant up), `secret` is 128 random bits compared in constant time. It lives
//! exactly as long as its session: removing the session removes the token. What it may read is
//! decided by the API (`api::view`), not here.

use std::collections::HashMap;

use crate::conference::ParticipantId;

/// What every roster token starts with (tells it from the API token and join tokens).
pub const ROSTER_TOKEN_PREFIX: &str = "rv1_";

/// A live WHIP session: which conference and participant it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub cid: String,
    pub participant: ParticipantId,
}

/// A session's roster token, in two halves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterToken {
    lookup: String,
    secret: String,
}

impl RosterToken {
    /// A new random token; `None` without randomness.
    pub fn random() -> Option<RosterToken> {
        Some(RosterToken {
            lookup: random_hex::<8>()?,
            secret: random_hex::<16>()?,
        })
    }

    /// The token as the page sends it.
    pub fn text(&self) -> String {
        format!("{ROSTER_TOKEN_PREFIX}{}_{}", self.lookup, self.secret)
    }

    /// The two halves of a token's text, if it has the shape of one.
    fn parse(text: &str) -> Option<(&str, &str)> {
        let (lookup, secret) = text.strip_prefix(ROSTER_TOKEN_PREFIX)?.split_once('_')?;
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        (hex(lookup, 16) && hex(secret, 32)).then_some((lookup, secret))
    }
}

fn random_hex<const N: usize>() -> Option<String> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Constant-time equality of two byte strings (length is not hidden).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Sessions by WHIP session id, and by their roster token's lookup half. Bound: one entry in
/// each per live peer; both go when the peer goes (DELETE, ICE timeout, DTLS, eject, end).
#[derive(Default)]
pub(crate) struct SessionTable {
    by_id: HashMap<String, (Session, RosterToken)>,
    by_lookup: HashMap<String, String>,
}

impl SessionTable {
    pub(crate) fn insert(&mut self, id: String, session: Session, token: RosterToken) {
        if let Some((_, old)) = self.by_id.remove(&id) {
            self.by_lookup.remove(&old.lookup);
        }
        self.by_lookup.insert(token.lookup.clone(), id.clone());
        self.by_id.insert(id, (session, token));
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Session> {
        self.by_id.get(id).map(|(s, _)| s)
    }

    pub(crate) fn remove(&mut self, id: &str) {
        if let Some((_, token)) = self.by_id.remove(id) {
            self.by_lookup.remove(&token.lookup);
        }
    }

    /// Forgets every session (their driver died with their peers).
    pub(crate) fn clear(&mut self) {
        self.by_id.clear();
        self.by_lookup.clear();
    }

    /// The live session a roster token belongs to (a forged, malformed or dead one: `None`).
    pub(crate) fn by_roster_token(&self, text: &str) -> Option<&Session> {
        let (lookup, secret) = RosterToken::parse(text)?;
        let id = self.by_lookup.get(lookup)?;
        let (session, token) = self.by_id.get(id)?;
        same(token.secret.as_bytes(), secret.as_bytes()).then_some(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(cid: &str, p: u64) -> Session {
        Session {
            cid: cid.into(),
            participant: ParticipantId(p),
        }
    }

    #[test]
    fn a_roster_token_finds_its_session_while_it_lives() {
        let mut t = SessionTable::default();
        let (a, b) = (
            RosterToken::random().unwrap(),
            RosterToken::random().unwrap(),
        );
        assert_ne!(a, b);
        assert!(a.text().starts_with(ROSTER_TOKEN_PREFIX));
        assert_eq!(a.text().len(), 4 + 16 + 1 + 32);
        t.insert("s1".into(), session("1234", 1), a.clone());
        t.insert("s2".into(), session("5678", 2), b.clone());
        assert_eq!(t.by_roster_token(&a.text()), Some(&session("1234", 1)));
        assert_eq!(t.by_roster_token(&b.text()), Some(&session("5678", 2)));
        assert_eq!(t.get("s1"), Some(&session("1234", 1)));
        // Gone with its session.
        t.remove("s1");
        assert_eq!(t.by_roster_token(&a.text()), None);
        assert_eq!(t.get("s1"), None);
        assert_eq!((t.by_id.len(), t.by_lookup.len()), (1, 1));
        // Replacing a session's entry drops the old token's index.
        t.insert("s2".into(), session("5678", 3), a.clone());
        assert_eq!(t.by_roster_token(&b.text()), None);
        assert_eq!(t.by_lookup.len(), 1);
    }

    #[test]
    fn forged_and_malformed_roster_tokens_find_nothing() {
        let mut t = SessionTable::default();
        let a = RosterToken::random().unwrap();
        t.insert("s1".into(), session("1234", 1), a.clone());
        let text = a.text();
        // The right lookup with another secret: a guess at the secret.
        let forged = format!("{ROSTER_TOKEN_PREFIX}{}_{}", a.lookup, "0".repeat(32));
        // One digit of the secret changed.
        let mut tweaked = text.clone().into_bytes();
        let last = tweaked.len() - 1;
        tweaked[last] = if tweaked[last] == b'0' { b'1' } else { b'0' };
        let tweaked = String::from_utf8(tweaked).unwrap();
        for bad in [
            forged.as_str(),
            tweaked.as_str(),
            "",
            ROSTER_TOKEN_PREFIX,
            &text[..text.len() - 1],
            &format!("{text}0"),
            &text.replace(ROSTER_TOKEN_PREFIX, "rv2_"),
            &text.replace('_', "."),
            &format!("{ROSTER_TOKEN_PREFIX}{}_{}", a.secret, a.lookup),
            "s1",
        ] {
            assert_eq!(t.by_roster_token(bad), None, "{bad}");
        }
        assert!(t.by_roster_token(&text).is_some());
    }
}
