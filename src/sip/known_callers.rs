//! Callers behind a trusted gateway who reached a meeting lately. The gateway's INVITE budget
//! (`GATEWAY_FACTOR` times a caller's) is shared by everyone behind it, and a caller the
//! gateway does not vouch for (no P-Asserted-Identity) is known only by its From, which it
//! chooses: a flood under a new From for each INVITE spends the whole budget, and everyone
//! behind the gateway would be refused. Callers who proved a credential (a meeting's passcode
//! or leader PIN, keyed at the attendant) within [`KNOWN_FOR`] draw on a budget of the
//! gateway's apart from everyone else's (their own per-caller limit still holds), so such a
//! flood cannot shut out the people who use the bridge. A flood cannot make itself known
//! without the credentials: joining an open meeting proves nothing and does not count.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a caller stays known after it was last let into a meeting.
pub(crate) const KNOWN_FOR: Duration = Duration::from_secs(3600);
/// Callers kept at most.
pub(crate) const MAX_KNOWN_CALLERS: usize = 16_384;

#[derive(Debug, Default)]
pub(crate) struct KnownCallers {
    /// Caller key (`limiter::caller_key`) -> when it was last let into a meeting. Bound:
    /// [`MAX_KNOWN_CALLERS`]; an entry goes [`KNOWN_FOR`] after its last admission (pruned
    /// once a second, and at once when the map is full); when it is full of live entries a
    /// new caller is not added (those known stay known).
    admitted: HashMap<String, Instant>,
    next_prune: Option<Instant>,
}

impl KnownCallers {
    /// `caller` was let into a meeting at `now`.
    pub(crate) fn admitted(&mut self, now: Instant, caller: &str) {
        if let Some(at) = self.admitted.get_mut(caller) {
            *at = now;
            return;
        }
        if self.admitted.len() >= MAX_KNOWN_CALLERS {
            self.prune(now);
            if self.admitted.len() >= MAX_KNOWN_CALLERS {
                return;
            }
        }
        self.admitted.insert(caller.to_owned(), now);
    }

    /// Whether `caller` was let into a meeting within [`KNOWN_FOR`].
    pub(crate) fn knows(&self, now: Instant, caller: &str) -> bool {
        self.admitted
            .get(caller)
            .is_some_and(|&at| now.saturating_duration_since(at) < KNOWN_FOR)
    }

    /// Forgets callers last admitted [`KNOWN_FOR`] ago; does the work once a second at most.
    pub(crate) fn tick(&mut self, now: Instant) {
        if self.next_prune.is_some_and(|at| now < at) {
            return;
        }
        self.next_prune = Some(now + Duration::from_secs(1));
        self.prune(now);
    }

    fn prune(&mut self, now: Instant) {
        self.admitted
            .retain(|_, at| now.saturating_duration_since(*at) < KNOWN_FOR);
    }

    pub(crate) fn len(&self) -> usize {
        self.admitted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_is_known_for_an_hour_after_its_last_admission_and_the_map_keeps_its_bound() {
        let t0 = Instant::now();
        let mut known = KnownCallers::default();
        assert!(!known.knows(t0, "gw/sip:ann@example.com"));
        known.admitted(t0, "gw/sip:ann@example.com");
        assert!(known.knows(
            t0 + KNOWN_FOR - Duration::from_secs(1),
            "gw/sip:ann@example.com"
        ));
        // Admitted again half-way: an hour from then.
        known.admitted(t0 + KNOWN_FOR / 2, "gw/sip:ann@example.com");
        assert!(known.knows(t0 + KNOWN_FOR, "gw/sip:ann@example.com"));
        assert!(!known.knows(t0 + KNOWN_FOR * 3 / 2, "gw/sip:ann@example.com"));
        known.tick(t0 + KNOWN_FOR * 3 / 2);
        assert_eq!(known.len(), 0);
        // Full of live callers: a new one is not added, the known stay known.
        for i in 0..MAX_KNOWN_CALLERS + 100 {
            known.admitted(t0, &format!("gw/sip:{i}@example.com"));
        }
        assert_eq!(known.len(), MAX_KNOWN_CALLERS);
        assert!(known.knows(t0, "gw/sip:0@example.com"));
        assert!(!known.knows(t0, &format!("gw/sip:{}@example.com", MAX_KNOWN_CALLERS + 1)));
        // Once they expire, room again.
        let later = t0 + KNOWN_FOR;
        known.admitted(later, "gw/sip:bob@example.com");
        assert_eq!(known.len(), 1);
        assert!(known.knows(later, "gw/sip:bob@example.com"));
    }
}
