//! Callers one node's attendant hands to the node that runs their meeting.
//!
//! With several nodes, a caller may key a meeting at the attendant of a node that does not run
//! it. That node refers the caller to the owner (`REFER`, `Refer-To: <sip:MEETING@OWNER;...>`),
//! and the caller's phone calls the owner. The caller has already given the passcode (or the
//! leader PIN) and chosen a language, so the target carries a pass: a join token
//! (`webrtc::token`, HMAC-SHA256 under `webrtc.token_secret`, which every node of a cluster
//! shares) for that meeting, with the caller's role and language, valid for a minute. The
//! owner lets a caller whose Request-URI holds a valid pass straight into the meeting, as what
//! the pass says, instead of asking for the passcode again. A pass that does not verify (another
//! secret, expired, another meeting, forged) is ignored: the caller is asked as anyone else.
//! The meeting's own gate (`closed`, `authenticated`), lock and capacity still apply.

use crate::conference::Role;
use crate::webrtc::token::{Claims, TokenSigner};

/// The Request-URI parameter that holds a pass.
pub const PARAM: &str = "confab-pass";
/// How long a pass lets its caller in: time for the phone to act on the REFER.
pub const VALID_FOR_SECS: u64 = 60;
/// How far the nodes' clocks may differ.
pub const CLOCK_SKEW_SECS: u64 = 30;
/// The longest pass read (ours are a few hundred characters); a longer one is ignored.
pub const MAX_PASS: usize = 4096;

/// What a verified pass lets its caller be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handed {
    pub role: Role,
    /// The language the caller chose; none: the default.
    pub language: Option<String>,
}

/// Where a caller `role` who hears `language` is referred to reach `meeting` on the node
/// whose SIP address is `owner`: with a pass when there is a signer.
pub fn refer_target(
    signer: Option<&TokenSigner>,
    meeting: &str,
    owner: &str,
    caller: &Handed,
    now_unix: u64,
) -> String {
    let plain = format!("sip:{meeting}@{owner}");
    let Some(signer) = signer else {
        return plain;
    };
    let claims = Claims {
        cid: meeting.to_owned(),
        name: String::new(),
        role: caller.role.as_str().to_owned(),
        exp: now_unix.saturating_add(VALID_FOR_SECS),
        identity: None,
        language: caller.language.clone(),
        pass: true,
    };
    // The token is hex and one `.`: nothing in it needs escaping in a URI parameter.
    format!("{plain};{PARAM}={}", signer.sign(&claims))
}

/// The caller a pass lets into `meeting` at `now_unix`, if it verifies.
pub fn check(signer: &TokenSigner, pass: &str, meeting: &str, now_unix: u64) -> Option<Handed> {
    if pass.len() > MAX_PASS {
        return None;
    }
    let claims = signer.verify(pass, meeting, now_unix).ok()?;
    // A WHIP join token is not a pass, whatever it has left to live.
    if !claims.pass {
        return None;
    }
    // A pass lives a minute: one that claims longer was not made by a node's attendant.
    if claims.exp > now_unix.saturating_add(VALID_FOR_SECS + CLOCK_SKEW_SECS) {
        return None;
    }
    Some(Handed {
        role: claims.role(),
        language: claims.language,
    })
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[path = "hand_off_tests.rs"]
mod tests;
