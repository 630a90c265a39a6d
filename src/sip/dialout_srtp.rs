//! SDES-SRTP in our own dial-out offers (RFC 4568), by the SRTP policy and the signalling
//! transport: over TLS (or cleartext SIP when `media.sdes_over_cleartext` allows it), `optional`
//! offers best-effort SRTP (RTP/AVP with a crypto line, taken if the answer takes it) and
//! `required` offers RTP/SAVP and refuses an answer without SRTP; a key never goes into an
//! offer on signalling that may not carry it. Sans-I/O: the answer's bytes in, a decision out.

use crate::config::SrtpPolicy;
use crate::media::codec::Codec;
use crate::media::srtp::{KeyMaterial, SrtpSuite};
use crate::sip::sdp::{self, Negotiated, SdpError, SrtpRule};

/// The crypto line we offer: one suite, under this tag.
const OFFER_TAG: u32 = 1;
const OFFER_SUITE: SrtpSuite = SrtpSuite::AesCm128HmacSha1_80;

/// How a dial-out offers SRTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferKind {
    /// Plain RTP/AVP, no key.
    Plain,
    /// RTP/AVP with a crypto line: SRTP if the answer takes it, plain RTP otherwise.
    BestEffort,
    /// RTP/SAVP with a crypto line: an answer without SRTP is refused.
    Required,
}

/// What a dial-out under `rule` may offer; an error when the policy wants SRTP but the keys may
/// not travel on this signalling (`required` over cleartext SIP).
pub fn offer_kind(rule: SrtpRule) -> Result<OfferKind, SdpError> {
    match (rule.policy, rule.keys_may_travel) {
        (SrtpPolicy::Off, _) | (SrtpPolicy::Optional, false) => Ok(OfferKind::Plain),
        (SrtpPolicy::Optional, true) => Ok(OfferKind::BestEffort),
        (SrtpPolicy::Required, true) => Ok(OfferKind::Required),
        (SrtpPolicy::Required, false) => Err(SdpError::SdesOverCleartext),
    }
}

/// What our dial-out offered, with our key when it offered one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OfferedSrtp {
    pub(crate) kind: OfferKind,
    pub(crate) key: Option<KeyMaterial>,
}

impl OfferedSrtp {
    pub(crate) const PLAIN: OfferedSrtp = OfferedSrtp {
        kind: OfferKind::Plain,
        key: None,
    };

    /// An offer of `kind`, with a key from `random` when it carries one.
    pub(crate) fn new(kind: OfferKind, random: fn(&mut [u8])) -> OfferedSrtp {
        if kind == OfferKind::Plain {
            return OfferedSrtp::PLAIN;
        }
        let mut key = [0u8; 30];
        random(&mut key);
        OfferedSrtp {
            kind,
            key: Some(key),
        }
    }

    /// `plain` (our RTP/AVP offer of one audio stream) as this offers it: RTP/SAVP when SRTP
    /// is required, and our crypto line at the end of the audio stream's attributes.
    pub(crate) fn apply(&self, plain: &str) -> String {
        let Some(key) = &self.key else {
            return plain.to_owned();
        };
        let mut out = String::with_capacity(plain.len() + 80);
        for line in plain.split_inclusive("\r\n") {
            match line.strip_prefix("m=audio ") {
                Some(rest) if self.kind == OfferKind::Required => {
                    out.push_str("m=audio ");
                    out.push_str(&rest.replacen(" RTP/AVP ", " RTP/SAVP ", 1));
                }
                _ => out.push_str(line),
            }
        }
        if !out.is_empty() && !out.ends_with("\r\n") {
            out.push_str("\r\n");
        }
        out.push_str(&format!(
            "a=crypto:{OFFER_TAG} {} inline:{}\r\n",
            OFFER_SUITE.name(),
            sdp::base64_encode(key)
        ));
        out
    }
}

/// An answer to our dial-out that the leg can take: what was agreed, and our key when the
/// media is SRTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialAnswer {
    pub negotiated: Negotiated,
    pub local_key: Option<KeyMaterial>,
    /// The answer's Server (else User-Agent) header, as sent: for the call record.
    pub user_agent: Option<String>,
}

/// Why an answer to our dial-out is refused (the call is hung up with this as its Reason).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AnswerRefused {
    #[error("the answer cannot be used: {0}")]
    Unusable(SdpError),
    #[error("SRTP is required (media.srtp = required) but the answer has no SDES crypto line")]
    NotEncrypted,
    #[error("the answer asks for SRTP, which our offer did not")]
    SrtpNotOffered,
    #[error("the answer's crypto line is not the one we offered")]
    CryptoMismatch,
}

/// Whether `answer` (bytes from the network) can be taken for a dial-out that offered
/// `offered`, with our codecs `codecs`.
pub(crate) fn check_answer(
    answer: &[u8],
    codecs: &[Codec],
    offered: &OfferedSrtp,
) -> Result<DialAnswer, AnswerRefused> {
    let rule = SrtpRule {
        policy: match offered.kind {
            OfferKind::Required => SrtpPolicy::Required,
            OfferKind::Plain | OfferKind::BestEffort => SrtpPolicy::Optional,
        },
        keys_may_travel: offered.key.is_some(),
    };
    let mut negotiated = sdp::negotiate(answer, codecs, rule).map_err(|e| match e {
        SdpError::SrtpRequired => AnswerRefused::NotEncrypted,
        // RTP/SAVP answered to a plain offer.
        SdpError::SdesOverCleartext => AnswerRefused::SrtpNotOffered,
        other => AnswerRefused::Unusable(other),
    })?;
    let local_key = match (negotiated.srtp, offered.key) {
        (Some((tag, suite, _)), Some(key)) if tag == OFFER_TAG && suite == OFFER_SUITE => Some(key),
        (Some(_), Some(_)) => return Err(AnswerRefused::CryptoMismatch),
        // A crypto line in the answer to a plain offer is ignored, as `negotiate` did.
        (Some(_), None) | (None, _) => None,
    };
    if local_key.is_none() {
        negotiated.srtp = None;
    }
    Ok(DialAnswer {
        negotiated,
        local_key,
        user_agent: None,
    })
}

/// The Reason header (RFC 3326) of the BYE that hangs up on a refused answer.
pub(crate) fn reason_header(refused: &AnswerRefused) -> String {
    let text: String = refused
        .to_string()
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .take(200)
        .collect();
    format!("SIP ;cause=488 ;text=\"{text}\"")
}

#[cfg(test)]
#[path = "dialout_srtp_tests.rs"]
mod tests;
