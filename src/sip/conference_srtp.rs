//! Conferences' own SRTP policies (a conference's `srtp` setting), shared by the API that sets
//! them and the SIP side that reads them: an INVITE whose Request-URI names the conference, a
//! re-INVITE in such a call, and the conference's dial-outs follow it. Callers that come
//! through the attendant are answered before their conference is known: the bridge's
//! `media.srtp` applies to them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::config::SrtpPolicy;

/// Meeting ID to its own SRTP policy. Bound: one entry per stored conference that sets one
/// (the API adds it on create and change, removes it when the setting goes or the conference
/// is deleted).
#[derive(Clone, Debug, Default)]
pub struct ConferenceSrtp(Arc<RwLock<HashMap<String, SrtpPolicy>>>);

impl ConferenceSrtp {
    /// Sets (or with `None` removes) `meeting`'s own policy.
    pub fn set(&self, meeting: &str, policy: Option<SrtpPolicy>) {
        // A poisoned lock still holds a usable map: nothing in it can be half-written.
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        match policy {
            Some(p) => {
                map.insert(meeting.to_owned(), p);
            }
            None => {
                map.remove(meeting);
            }
        }
    }

    /// The policy for calls to `meeting`: its own, else `bridge`'s.
    pub fn policy(&self, meeting: &str, bridge: SrtpPolicy) -> SrtpPolicy {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(meeting).copied().unwrap_or(bridge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conference_policy_overrides_the_bridge_until_removed() {
        let shared = ConferenceSrtp::default();
        let api_side = shared.clone();
        assert_eq!(
            shared.policy("1234", SrtpPolicy::Optional),
            SrtpPolicy::Optional
        );
        api_side.set("1234", Some(SrtpPolicy::Required));
        assert_eq!(
            shared.policy("1234", SrtpPolicy::Optional),
            SrtpPolicy::Required
        );
        assert_eq!(shared.policy("9999", SrtpPolicy::Off), SrtpPolicy::Off);
        api_side.set("1234", None);
        assert_eq!(shared.policy("1234", SrtpPolicy::Off), SrtpPolicy::Off);
    }
}
