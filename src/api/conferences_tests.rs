//! The conference settings as the API takes them: `entry_exit` reaches the running conference
//! (created and changed), is shown back, and is in the OpenAPI document with its values.

use crate::api::test_state::app_state;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use super::{Body, ConferenceSettings, create, get, list, patch};
use crate::api::AppState;
use crate::api::extract::Path;
use crate::conference::roster::EntryExit;
use crate::config::SrtpPolicy;
use crate::engine::EngineSettings;
use crate::store::Store;

fn state(dir: &std::path::Path) -> AppState {
    app_state(
        Store::open(dir).unwrap(),
        EngineSettings::loopback(1, 45_200),
        Vec::new(),
    )
}

fn settings(json: &str) -> Body<ConferenceSettings> {
    Body(serde_json::from_str(json).unwrap())
}

async fn json_of(r: axum::response::Response) -> (StatusCode, Value) {
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn entry_exit_reaches_the_running_conference_and_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());

    let made = create(State(state.clone()), settings(r#"{"id":"4001"}"#))
        .await
        .unwrap();
    let (status, body) = json_of(made).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["conference"]["entry_exit"], "off", "{body}");
    let policy = state.engine.policy("4001").await.unwrap();
    assert_eq!(policy.entry_exit, EntryExit::Off);
    // A meeting's waiting callers hear music.
    assert!(policy.hold_music);

    let made = create(
        State(state.clone()),
        settings(r#"{"id":"4002","entry_exit":"tones","wait_for_leader":true}"#),
    )
    .await
    .unwrap();
    let (_, body) = json_of(made).await;
    assert_eq!(body["conference"]["entry_exit"], "tones", "{body}");
    assert_eq!(
        state.engine.policy("4002").await.unwrap().entry_exit,
        EntryExit::Tones
    );

    // Changed: the running conference follows; other changes leave it as it is.
    let changed = patch(
        State(state.clone()),
        Path("4002".into()),
        settings(r#"{"entry_exit":"off"}"#),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(&changed.0).unwrap()["conference"]["entry_exit"],
        "off"
    );
    assert_eq!(
        state.engine.policy("4002").await.unwrap().entry_exit,
        EntryExit::Off
    );
    let _ = patch(
        State(state.clone()),
        Path("4001".into()),
        settings(r#"{"entry_exit":"tones"}"#),
    )
    .await
    .unwrap();
    let changed = patch(
        State(state.clone()),
        Path("4001".into()),
        settings(r#"{"max_participants":5}"#),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(&changed.0).unwrap()["conference"]["entry_exit"],
        "tones"
    );
}

#[test]
fn only_known_entry_exit_values_are_taken() {
    for bad in [r#""voices""#, r#""Tones""#, "true", "1"] {
        let body = format!(r#"{{"entry_exit":{bad}}}"#);
        assert!(
            serde_json::from_str::<ConferenceSettings>(&body).is_err(),
            "{bad}"
        );
    }
    // The refusal (a 422 by `Body`) names the values there are.
    let e = serde_json::from_str::<ConferenceSettings>(r#"{"entry_exit":"voices"}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`off`") && e.contains("`tones`") && e.contains("`names`"),
        "{e}"
    );
    for good in ["off", "tones", "names"] {
        let body = format!(r#"{{"entry_exit":"{good}"}}"#);
        assert!(serde_json::from_str::<ConferenceSettings>(&body).is_ok());
    }
}

#[test]
fn the_openapi_document_lists_entry_exit_values() {
    use utoipa::OpenApi;
    let doc = serde_json::to_value(crate::api::ApiDoc::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let field = &schemas["ConferenceSettings"]["properties"]["entry_exit"];
    assert!(!field.is_null(), "{}", schemas["ConferenceSettings"]);
    let values = schemas["EntryExitSetting"]["enum"].clone();
    assert_eq!(
        values,
        serde_json::json!(["off", "tones", "names"]),
        "{schemas}"
    );
}

#[tokio::test]
async fn a_conference_srtp_policy_is_set_shown_stored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let made = create(State(state.clone()), settings(r#"{"id":"4101"}"#))
        .await
        .unwrap();
    let (_, body) = json_of(made).await;
    assert!(body["conference"]["srtp"].is_null(), "{body}");
    let made = create(
        State(state.clone()),
        settings(r#"{"id":"4102","srtp":"required"}"#),
    )
    .await
    .unwrap();
    let (_, body) = json_of(made).await;
    assert_eq!(body["conference"]["srtp"], "required", "{body}");
    let stored = |id: &str| state.store.conference(id).unwrap().unwrap().srtp;
    assert_eq!(stored("4102"), Some(SrtpPolicy::Required));
    // Absent: unchanged.
    let changed = patch(
        State(state.clone()),
        Path("4102".into()),
        settings(r#"{"name":"Secret"}"#),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(&changed.0).unwrap()["conference"]["srtp"],
        "required"
    );
    let changed = patch(
        State(state.clone()),
        Path("4102".into()),
        settings(r#"{"srtp":"off"}"#),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(&changed.0).unwrap()["conference"]["srtp"],
        "off"
    );
    assert_eq!(stored("4102"), Some(SrtpPolicy::Off));
    // Null: back to the bridge's.
    let changed = patch(
        State(state.clone()),
        Path("4102".into()),
        settings(r#"{"srtp":null}"#),
    )
    .await
    .unwrap();
    assert!(serde_json::to_value(&changed.0).unwrap()["conference"]["srtp"].is_null());
    assert_eq!(stored("4102"), None);
    for bad in [r#""Required""#, r#""dtls""#, "true", "1"] {
        let body = format!(r#"{{"srtp":{bad}}}"#);
        assert!(
            serde_json::from_str::<ConferenceSettings>(&body).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn the_openapi_document_lists_srtp_values() {
    use utoipa::OpenApi;
    let doc = serde_json::to_value(crate::api::ApiDoc::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let field = &schemas["ConferenceSettings"]["properties"]["srtp"];
    assert!(!field.is_null(), "{}", schemas["ConferenceSettings"]);
    assert!(
        !schemas["ConferenceView"]["properties"]["srtp"].is_null(),
        "{}",
        schemas["ConferenceView"]
    );
    assert_eq!(
        schemas["SrtpName"]["enum"],
        serde_json::json!(["off", "optional", "required"]),
        "{schemas}"
    );
}

#[tokio::test]
async fn a_lock_made_in_the_meeting_is_what_the_operator_sees() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let made = create(State(state.clone()), settings(r#"{"id":"4003"}"#))
        .await
        .unwrap();
    assert_eq!(json_of(made).await.1["conference"]["locked"], false);
    // A leader's keypad (*5) locks the mixer's conference, not the stored one.
    state
        .engine
        .control("4003", crate::mixer::Control::Lock(true))
        .await
        .unwrap();
    let shown = get(State(state.clone()), Path("4003".into()))
        .await
        .unwrap();
    let shown = serde_json::to_value(&shown.0).unwrap();
    assert_eq!(shown["conference"]["locked"], true, "{shown}");
    let all = serde_json::to_value(&list(State(state.clone())).await.unwrap().0).unwrap();
    assert_eq!(all["conferences"][0]["locked"], true, "{all}");
    // A change of something else shows it too, and does not undo it.
    let changed = patch(
        State(state.clone()),
        Path("4003".into()),
        settings(r#"{"max_participants":5}"#),
    )
    .await
    .unwrap();
    let changed = serde_json::to_value(&changed.0).unwrap();
    assert_eq!(changed["conference"]["locked"], true, "{changed}");
    assert!(state.engine.policy("4003").await.unwrap().locked);
}
