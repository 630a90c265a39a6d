//! The SRTP rule of a leg added through the API by its SDP offer, as for SIP: SDES keys are
//! taken only from a request that came over HTTPS, unless `media.sdes_over_cleartext`; the
//! SRTP policy (the conference's `srtp`, else `media.srtp`) decides the rest, and an offer it
//! cannot answer is refused with a JSON error that says why.

use axum::http::StatusCode;

use super::ApiError;
use super::AppState;
use crate::sip::sdp::{SdpError, SrtpRule};

/// What an answer to an offer posted to conference `cid` may do with SDES keys: the
/// conference's own policy (stored with it), else `media.srtp`.
pub(super) fn rule(state: &AppState, cid: &str) -> Result<SrtpRule, ApiError> {
    let own = state.store.conference(cid)?.and_then(|c| c.srtp);
    Ok(SrtpRule {
        policy: own.unwrap_or(state.srtp),
        keys_may_travel: state.https || state.sdes_over_cleartext,
    })
}

/// An offer that cannot be answered, as the API says it.
pub(super) fn refusal(e: SdpError) -> ApiError {
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    match e {
        SdpError::SdesOverCleartext => ApiError::new(
            unprocessable,
            "sdes_over_cleartext",
            "SDES keys are taken only over HTTPS (api.tls_cert and api.tls_key), unless \
             media.sdes_over_cleartext: post the offer over HTTPS, or offer plain RTP/AVP",
        ),
        SdpError::SrtpRequired => ApiError::new(
            unprocessable,
            "srtp_required",
            "SRTP is required here: offer RTP/SAVP with an SDES crypto line \
             (AES_CM_128_HMAC_SHA1_80 or _32), over HTTPS",
        ),
        SdpError::SrtpOff => ApiError::new(
            unprocessable,
            "srtp_off",
            "SRTP is off here: offer plain RTP/AVP",
        ),
        e if e.status().0 == 400 => ApiError::bad_request(e.to_string()),
        e => ApiError::invalid(e.to_string()),
    }
}

#[cfg(test)]
#[path = "participants_srtp_tests.rs"]
mod tests;
