//! API legs' SDES follows the transport: keys are taken over HTTPS (or over plain HTTP when
//! `media.sdes_over_cleartext`), never otherwise; `required` refuses a plain offer and `off` an
//! RTP/SAVP one, each with a JSON error that says why.

use crate::api::test_state::app_state;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::Value;

use super::super::{NewParticipant, add};
use crate::api::AppState;
use crate::api::conferences::Body;
use crate::api::extract::Path;
use crate::conference::Policy;
use crate::config::SrtpPolicy;
use crate::engine::EngineSettings;
use crate::media::codec::Codec;
use crate::store::Store;

async fn state(dir: &std::path::Path) -> AppState {
    let settings = EngineSettings {
        rtp_port_max: 45_260,
        ..EngineSettings::loopback(1, 45_220)
    };
    let state = app_state(Store::open(dir).unwrap(), settings, vec![Codec::Pcmu]);
    state
        .engine
        .create_conference("5100", Policy::default())
        .await
        .unwrap();
    state
}

const CRYPTO: &str =
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:q9X4vqHDWpozQKDFv1TRGR365nuarNkLDbvXz9Fg\r\n";

fn offer(proto: &str, crypto: bool) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 31000 {proto} 0\r\n{}",
        if crypto { CRYPTO } else { "" }
    )
}

/// Posts `sdp` to conference 5100: the status and the JSON body.
async fn post(state: &AppState, sdp: String) -> (StatusCode, Value) {
    let new = NewParticipant {
        dial: None,
        sdp: Some(sdp),
        display_name: None,
        uri: None,
        role: None,
    };
    let r = match add(
        State(state.clone()),
        Path("5100".into()),
        axum::extract::OriginalUri("/v1/conferences/5100/participants".parse().unwrap()),
        Body(new),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn answer_of(body: &Value) -> &str {
    body["sdp"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn over_plain_http_no_key_is_taken_or_given() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path()).await;
    // Best effort (RTP/AVP with a crypto line): answered in the clear, without our key.
    let (status, body) = post(&state, offer("RTP/AVP", true)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let answer = answer_of(&body);
    assert!(
        answer.contains("RTP/AVP") && !answer.contains("a=crypto"),
        "{answer}"
    );
    // RTP/SAVP cannot be answered without keys: refused, saying why.
    let (status, body) = post(&state, offer("RTP/SAVP", true)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "sdes_over_cleartext", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("HTTPS"),
        "{body}"
    );
}

#[tokio::test]
async fn over_https_or_when_allowed_the_keys_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = state(dir.path()).await;
    for (https, cleartext) in [(true, false), (false, true)] {
        state.https = https;
        state.sdes_over_cleartext = cleartext;
        for proto in ["RTP/AVP", "RTP/SAVP"] {
            let (status, body) = post(&state, offer(proto, true)).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            let answer = answer_of(&body);
            assert!(answer.contains(proto), "{answer}");
            assert!(
                answer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
                "{answer}"
            );
        }
    }
}

#[tokio::test]
async fn required_refuses_a_plain_offer_and_off_an_srtp_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = state(dir.path()).await;
    state.https = true;
    state.srtp = SrtpPolicy::Required;
    for plain in [
        offer("RTP/AVP", false),
        offer("RTP/AVP", true).replace("a=crypto", "a=x"),
    ] {
        let (status, body) = post(&state, plain).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "srtp_required", "{body}");
    }
    let (status, _) = post(&state, offer("RTP/SAVP", true)).await;
    assert_eq!(status, StatusCode::CREATED);
    // Required over plain HTTP: even an SRTP offer cannot be taken.
    state.https = false;
    let (status, body) = post(&state, offer("RTP/SAVP", true)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "sdes_over_cleartext", "{body}");
    state.https = true;
    state.srtp = SrtpPolicy::Off;
    let (status, body) = post(&state, offer("RTP/SAVP", true)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "srtp_off", "{body}");
    // Malformed stays a 400.
    let (status, _) = post(&state, "junk".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_conference_policy_overrides_the_bridges() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = state(dir.path()).await;
    state.https = true;
    let mut stored = crate::store::StoredConference {
        id: "5100".into(),
        srtp: Some(SrtpPolicy::Required),
        ..Default::default()
    };
    state.store.save_conference(&stored).unwrap();
    // The bridge is `optional`; this conference requires SRTP.
    let (status, body) = post(&state, offer("RTP/AVP", false)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "srtp_required", "{body}");
    // A bridge that requires SRTP, a conference that has it off.
    state.srtp = SrtpPolicy::Required;
    stored.srtp = Some(SrtpPolicy::Off);
    state.store.save_conference(&stored).unwrap();
    let (status, body) = post(&state, offer("RTP/AVP", false)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = post(&state, offer("RTP/SAVP", true)).await;
    assert_eq!(body["error"]["code"], "srtp_off", "{body}");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}
