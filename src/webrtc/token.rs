//! Join tokens: who may join a conference over WHIP without its passcode.
//!
//! A token is `<claims>.<mac>`: the claims (conference, display name, role, expiry in Unix
//! seconds) as hex-encoded JSON, and an HMAC-SHA256 of that text under the bridge's secret,
//! hex too. Checking is constant-time (aws-lc's `hmac::verify`). Hex rather than base64 keeps
//! the token URL- and header-safe without another dependency.

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};

use crate::conference::Role;

/// What a token lets its bearer do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The conference (meeting ID).
    pub cid: String,
    /// Display name in the roster.
    pub name: String,
    /// `leader` or `attendee`.
    pub role: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// The SIP address the participant is known by (presence publishes it), if the issuer
    /// vouched for one. Tokens signed before this claim existed read as none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The language the participant hears (a caller's choice at another node's attendant,
    /// handed on with it); none: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// A pass of a caller handed from another node's attendant (`sip::hand_off`), good for
    /// that only: WHIP refuses it, and a pass is nothing else.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pass: bool,
}

impl Claims {
    pub fn role(&self) -> Role {
        if self.role == "leader" {
            Role::Leader
        } else {
            Role::Attendee
        }
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is wrong")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is for another conference")]
    OtherConference,
}

/// Signs and checks tokens.
pub struct TokenSigner {
    key: hmac::Key,
}

impl std::fmt::Debug for TokenSigner {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner")
    }
}

impl TokenSigner {
    /// With a random secret (for when none is configured).
    pub fn random() -> Self {
        let mut b = [0u8; 32];
        if getrandom::fill(&mut b).is_err() {
            // No randomness: a key nobody knows is still better than a fixed one; the time
            // and address of this value differ per process.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            b[..16].copy_from_slice(&t.to_le_bytes());
        }
        TokenSigner {
            key: hmac::Key::new(hmac::HMAC_SHA256, &b),
        }
    }

    /// From the configured secret, or a random one (tokens then die with the process).
    pub fn new(secret: Option<&str>) -> Option<Self> {
        let bytes = match secret {
            Some(s) if !s.is_empty() => s.as_bytes().to_vec(),
            _ => {
                let mut b = vec![0u8; 32];
                getrandom::fill(&mut b).ok()?;
                b
            }
        };
        Some(TokenSigner {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        })
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let body = hex(serde_json::to_string(claims).unwrap_or_default().as_bytes());
        let mac = hmac::sign(&self.key, body.as_bytes());
        format!("{body}.{}", hex(mac.as_ref()))
    }

    /// The claims of a valid, unexpired token for conference `cid` at `now` (Unix seconds).
    pub fn verify(&self, token: &str, cid: &str, now: u64) -> Result<Claims, TokenError> {
        let (body, mac) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let mac = unhex(mac).ok_or(TokenError::Malformed)?;
        hmac::verify(&self.key, body.as_bytes(), &mac).map_err(|_| TokenError::BadSignature)?;
        let json = unhex(body).ok_or(TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.cid != cid {
            return Err(TokenError::OtherConference);
        }
        Ok(claims)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 8192 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            cid: "1234".into(),
            name: "Ada".into(),
            role: "leader".into(),
            exp: 1000,
            identity: None,
            language: None,
            pass: false,
        }
    }

    #[test]
    fn an_identity_is_signed_with_the_rest_and_old_tokens_have_none() {
        let s = TokenSigner::new(Some("secret")).unwrap();
        let with = Claims {
            identity: Some("sip:ada@example.com".into()),
            ..claims()
        };
        let t = s.sign(&with);
        assert_eq!(s.verify(&t, "1234", 0), Ok(with));
        // Signed as a bridge without the claim signed it: no identity.
        let old = r#"{"cid":"1234","name":"Ada","role":"leader","exp":1000}"#;
        let body = hex(old.as_bytes());
        let mac = hmac::sign(&s.key, body.as_bytes());
        let t = format!("{body}.{}", hex(mac.as_ref()));
        assert_eq!(s.verify(&t, "1234", 0), Ok(claims()));
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let s = TokenSigner::new(Some("secret")).unwrap();
        let t = s.sign(&claims());
        assert_eq!(s.verify(&t, "1234", 999), Ok(claims()));
        assert_eq!(s.verify(&t, "1234", 1000), Err(TokenError::Expired));
        assert_eq!(s.verify(&t, "9999", 999), Err(TokenError::OtherConference));
        assert_eq!(claims().role(), Role::Leader);
    }

    #[test]
    fn tampering_and_other_keys_are_refused() {
        let s = TokenSigner::new(Some("secret")).unwrap();
        let t = s.sign(&claims());
        let other = TokenSigner::new(Some("other")).unwrap();
        assert_eq!(other.verify(&t, "1234", 0), Err(TokenError::BadSignature));
        // A forged body (role changed) keeps the old MAC.
        let (_, mac) = t.split_once('.').unwrap();
        let forged = Claims {
            role: "leader".into(),
            name: "Eve".into(),
            ..claims()
        };
        let body = hex(serde_json::to_string(&forged).unwrap().as_bytes());
        assert_eq!(
            s.verify(&format!("{body}.{mac}"), "1234", 0),
            Err(TokenError::BadSignature)
        );
        for bad in ["", ".", "zz.zz", "abc", "00.0", &t[..t.len() - 1]] {
            assert!(s.verify(bad, "1234", 0).is_err(), "{bad}");
        }
        // Random secrets differ.
        let a = TokenSigner::new(None).unwrap();
        let b = TokenSigner::new(None).unwrap();
        assert!(b.verify(&a.sign(&claims()), "1234", 0).is_err());
    }
}
