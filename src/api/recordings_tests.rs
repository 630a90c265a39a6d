//! The recording routes through the whole router: 404 and 409 for start and stop, ids that
//! could name a path outside the directory refused, the audio's single range (206, 416),
//! listing, metadata and delete; the console page follows the recording events the API sends
//! and calls these routes.

use crate::api::test_state::app_state;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;

use super::byte_range;
use crate::api::AppState;
use crate::conference::Policy;
use crate::engine::EngineSettings;
use crate::recording::{Recorder, RecordingSettings};
use crate::store::Store;

fn state(dir: &std::path::Path) -> AppState {
    let store = Store::open(dir).unwrap();
    let recorder = Recorder::start(RecordingSettings {
        dir: dir.join("recordings"),
        retention_days: 0,
        max_bytes: 0,
    })
    .unwrap();
    app_state(store, EngineSettings::loopback(1, 45_320), Vec::new())
        .with_recordings(Arc::new(recorder))
}

/// A request through the router: status, headers and body.
async fn send(
    state: &AppState,
    method: &str,
    uri: &str,
    range: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(r) = range {
        request = request.header(header::RANGE, r);
    }
    let mut app = crate::api::router(state.clone());
    let r = tower_service::Service::call(&mut app, request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 24).await.unwrap();
    (status, headers, bytes.to_vec())
}

async fn json(state: &AppState, method: &str, uri: &str) -> (StatusCode, Value) {
    let (status, _, body) = send(state, method, uri, None).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn start_and_stop_answer_404_409_and_422() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let at = "/v1/conferences/5001/recording";
    assert_eq!(json(&state, "POST", at).await.0, StatusCode::NOT_FOUND);
    assert_eq!(json(&state, "DELETE", at).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        json(&state, "POST", "/v1/conferences/abc/recording")
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    state
        .engine
        .create_conference("5001", Policy::default())
        .await
        .unwrap();
    assert_eq!(json(&state, "DELETE", at).await.0, StatusCode::CONFLICT);
    let (status, started) = json(&state, "POST", at).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["conference"], "5001");
    assert_eq!(started["state"], "recording");
    let (status, again) = json(&state, "POST", at).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "conflict");
    let (status, stopped) = json(&state, "DELETE", at).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stopped["id"], started["id"]);
    assert_eq!(json(&state, "DELETE", at).await.0, StatusCode::CONFLICT);
    // A second recording of the same conference is another file.
    let (status, second) = json(&state, "POST", at).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(second["id"], started["id"]);
}

#[tokio::test]
async fn ids_that_could_leave_the_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    // What a traversal would reach: a sidecar-like file and an audio-like one beside and
    // above the recordings directory.
    std::fs::write(dir.path().join("secret.json"), br#"{"id":"secret"}"#).unwrap();
    std::fs::write(dir.path().join("secret.opus"), b"SECRET").unwrap();
    for id in [
        "..%2Fsecret",
        "%2E%2E%2Fsecret",
        "..%5Csecret",
        "..",
        "secret%00",
        "a.b",
        "%2Fetc%2Fpasswd",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        &"x".repeat(65),
    ] {
        for suffix in ["", "/audio"] {
            for method in ["GET", "DELETE"] {
                if method == "DELETE" && !suffix.is_empty() {
                    continue;
                }
                let uri = format!("/v1/recordings/{id}{suffix}");
                let (status, _, body) = send(&state, method, &uri, None).await;
                assert!(
                    [
                        StatusCode::NOT_FOUND,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        StatusCode::BAD_REQUEST
                    ]
                    .contains(&status),
                    "{method} {uri}: {status}"
                );
                assert!(!String::from_utf8_lossy(&body).contains("SECRET"), "{uri}");
            }
        }
    }
    assert!(dir.path().join("secret.json").exists());
    assert!(dir.path().join("secret.opus").exists());
    assert_eq!(
        json(&state, "GET", "/v1/recordings/secret").await.0,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn byte_ranges() {
    assert_eq!(byte_range(None, 10), Ok(None));
    assert_eq!(byte_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
    assert_eq!(byte_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
    assert_eq!(byte_range(Some("bytes=-4"), 10), Ok(Some((6, 9))));
    assert_eq!(byte_range(Some("bytes=-40"), 10), Ok(Some((0, 9))));
    assert_eq!(byte_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
    for bad in [
        "bytes=10-",
        "bytes=3-1",
        "bytes=0-1,4-5",
        "items=0-1",
        "bytes=-0",
        "bytes=",
        "bytes=a-b",
        "bytes=+1-2",
        "bytes=99999999999999999999999-",
    ] {
        assert_eq!(byte_range(Some(bad), 10), Err(()), "{bad}");
    }
    assert_eq!(byte_range(Some("bytes=0-"), 0), Err(()));
}

/// Waits (10 s at most) until the recording's sidecar says `state`.
async fn until_state(state: &AppState, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, meta) = json(state, "GET", &format!("/v1/recordings/{id}")).await;
        if status == StatusCode::OK && meta["state"] == want {
            return meta;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never {want}: {status} {meta}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn audio_ranges_listing_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    for cid in ["5101", "5102"] {
        state
            .engine
            .create_conference(cid, Policy::default())
            .await
            .unwrap();
    }
    let (_, a) = json(&state, "POST", "/v1/conferences/5101/recording").await;
    let (_, b) = json(&state, "POST", "/v1/conferences/5102/recording").await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    until_state(&state, a, "recording").await;
    // Being written: not deleted.
    assert_eq!(
        json(&state, "DELETE", &format!("/v1/recordings/{a}"))
            .await
            .0,
        StatusCode::CONFLICT
    );
    json(&state, "DELETE", "/v1/conferences/5101/recording").await;
    let meta = until_state(&state, a, "complete").await;
    assert!(meta["bytes"].as_u64().unwrap() > 0, "{meta}");

    let audio = format!("/v1/recordings/{a}/audio");
    let (status, headers, whole) = send(&state, "GET", &audio, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "audio/ogg");
    assert_eq!(headers[header::ACCEPT_RANGES], "bytes");
    assert!(whole.starts_with(b"OggS"));
    let size = whole.len();
    let (status, headers, part) = send(&state, "GET", &audio, Some("bytes=0-3")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part, b"OggS");
    assert_eq!(
        headers[header::CONTENT_RANGE],
        format!("bytes 0-3/{size}").as_str()
    );
    let (status, _, tail) = send(&state, "GET", &audio, Some("bytes=-10")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail, &whole[size - 10..]);
    for bad in [
        format!("bytes={size}-"),
        "bytes=5-2".into(),
        "bytes=0-1,3-4".into(),
    ] {
        let (status, headers, _) = send(&state, "GET", &audio, Some(&bad)).await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(
            headers[header::CONTENT_RANGE],
            format!("bytes */{size}").as_str()
        );
    }

    let (status, all) = json(&state, "GET", "/v1/recordings").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["recordings"].as_array().unwrap().len(), 2, "{all}");
    let (_, only) = json(&state, "GET", "/v1/recordings?conference=5101").await;
    assert_eq!(only["recordings"][0]["id"], a);
    assert_eq!(only["recordings"].as_array().unwrap().len(), 1);
    let (_, page) = json(&state, "GET", "/v1/recordings?limit=1").await;
    assert_eq!(page["next_offset"], 1);
    let (_, page2) = json(&state, "GET", "/v1/recordings?limit=1&offset=1").await;
    assert_eq!(page2["next_offset"], Value::Null);
    assert_ne!(page["recordings"][0]["id"], page2["recordings"][0]["id"]);
    assert_eq!(
        json(&state, "GET", "/v1/recordings?limit=0").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    assert_eq!(
        send(&state, "DELETE", &format!("/v1/recordings/{a}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        json(&state, "GET", &format!("/v1/recordings/{a}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(json(&state, "GET", &audio).await.0, StatusCode::NOT_FOUND);
    let _ = b;
}

/// The console served by the API has a recording indicator and a start/stop button that call
/// the routes above, and it follows each recording event the API really sends (whatever their
/// names become, they are read from what was published, not written out here).
#[tokio::test]
async fn the_console_follows_the_recording_events_the_api_sends() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    state
        .engine
        .create_conference("5201", Policy::default())
        .await
        .unwrap();
    let at = "/v1/conferences/5201/recording";
    assert_eq!(json(&state, "POST", at).await.0, StatusCode::CREATED);
    assert_eq!(json(&state, "DELETE", at).await.0, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    let told = loop {
        let told: Vec<&str> = state
            .events
            .kinds()
            .into_iter()
            .filter(|k| k.starts_with("recording."))
            .collect();
        if told.len() == 2 {
            break told;
        }
        assert!(Instant::now() < deadline, "told {told:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(told, [super::STARTED, super::STOPPED]);

    let (status, _, page) = send(&state, "GET", "/console", None).await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains(r#"id="recording""#), "no indicator");
    assert!(page.contains(r#"id="record""#), "no start/stop button");
    let (status, _, js) = send(&state, "GET", "/pages/console.js", None).await;
    assert_eq!(status, StatusCode::OK);
    let js = String::from_utf8(js).unwrap();
    for kind in told {
        assert!(
            js.contains(&format!("\"{kind}\"")),
            "console.js ignores {kind}"
        );
    }
    // Start is a POST and stop a DELETE of the conference's recording.
    assert!(
        js.contains("/recording`"),
        "console.js calls no recording route"
    );
    assert!(js.contains(r#"on ? "DELETE" : "POST""#));
}
