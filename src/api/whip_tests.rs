//! WHIP joins against a running WebRTC driver (Chromium's offer; no ICE ever comes, so each
//! join holds its handshake): the per-meeting cap answers 429 with Retry-After and is counted,
//! and a driver that dies lets its participants go as internal-error, ends their sessions, is
//! not ready while down, and takes joins again once restarted. A 201 names the configured
//! STUN/TURN servers in `Link` headers. A session's roster token mutes and unmutes its own
//! participant only.

use crate::api::test_state::app_state;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{JoinQuery, join, leave};
use crate::api::AppState;
use crate::api::conferences::Body;
use crate::api::extract::{Path, Query};
use crate::conference::{DisconnectReason, Policy, State as PState};
use crate::engine::EngineSettings;
use crate::store::Store;
use crate::webrtc::{HandshakeLimits, WebRtc, WebRtcSettings};

const CHROMIUM_OFFER: &str = include_str!("../../tests/fixtures/chromium-156-offer.sdp");

fn state(dir: &std::path::Path, webrtc: Arc<WebRtc>) -> AppState {
    app_state(
        Store::open(dir).unwrap(),
        EngineSettings::loopback(1, 45_300),
        Vec::new(),
    )
    .with_webrtc(
        webrtc,
        Arc::new(crate::webrtc::token::TokenSigner::random()),
    )
}

fn webrtc(limits: HandshakeLimits, restart_wait: Duration) -> Arc<WebRtc> {
    let config = crate::config::WebRtcConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Default::default()
    };
    WebRtc::start(WebRtcSettings {
        handshake_limits: limits,
        restart_wait,
        ..WebRtcSettings::from_config(&config)
    })
    .unwrap()
}

/// Handshake caps: 256 in all and per address, 64 per meeting (the default per meeting).
const ROOMY: HandshakeLimits = HandshakeLimits {
    total: 256,
    per_conference: 64,
    per_address: 256,
};

/// The status of a WHIP join from `client` with `bearer`.
async fn status(state: &AppState, cid: &str, client: [u8; 4], bearer: Option<&str>) -> StatusCode {
    whip_with(state, cid, client, bearer).await.status()
}

/// POSTs Chromium's offer to `cid`'s WHIP endpoint from `client`.
async fn whip(state: &AppState, cid: &str, client: [u8; 4]) -> Response {
    whip_with(state, cid, client, None).await
}

/// POSTs Chromium's offer to `cid`'s WHIP endpoint from `client` with `bearer` (a passcode,
/// a PIN or a join token) if given.
async fn whip_with(state: &AppState, cid: &str, client: [u8; 4], bearer: Option<&str>) -> Response {
    let mut request = axum::http::Request::builder()
        .method("POST")
        .uri(format!("/v1/conferences/{cid}/whip"))
        .header(header::CONTENT_TYPE, "application/sdp")
        .extension(ConnectInfo(SocketAddr::from((client, 50_000))));
    if let Some(b) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {b}"));
    }
    let request = request.body(HttpBody::from(CHROMIUM_OFFER)).unwrap();
    join(
        State(state.clone()),
        Path(cid.to_owned()),
        Query(JoinQuery { name: None }),
        request,
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

fn header_of<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The session id in a 201's Location.
fn session_of(r: &Response) -> String {
    let location = header_of(r, "location").unwrap();
    location.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_65th_handshake_on_one_meeting_is_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ROOMY;
    let state = state(dir.path(), webrtc(limits, Duration::from_millis(100)));
    for cid in ["5050", "6060"] {
        state
            .engine
            .create_conference(cid, Policy::default())
            .await
            .unwrap();
    }
    let mut sessions = Vec::new();
    for i in 0..64u8 {
        let r = whip(&state, "5050", [10, 0, 1, i]).await;
        assert_eq!(r.status(), StatusCode::CREATED, "join {i}");
        sessions.push(session_of(&r));
    }
    let r = whip(&state, "5050", [10, 0, 2, 1]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.headers().get(header::RETRY_AFTER),
        Some(&HeaderValue::from_static("2"))
    );
    let webrtc = state.webrtc.clone().unwrap();
    assert_eq!(
        webrtc.metrics.handshakes_refused(),
        [("address", 0), ("conference", 1), ("total", 0)]
    );
    // Another meeting is not held up by this one's.
    let r = whip(&state, "6060", [10, 0, 2, 1]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // One of the 64 leaves: its slot is free again.
    let first = sessions.remove(0);
    let left = leave(State(state.clone()), Path(("5050".into(), first)))
        .await
        .unwrap();
    assert_eq!(left.status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = whip(&state, "5050", [10, 0, 2, 2]).await;
        if r.status() == StatusCode::CREATED {
            break;
        }
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A 201 names each configured STUN/TURN URL in a `Link` header (RFC 9725 section 4.6), with
/// the TURN credentials; none is sent when no server is configured.
#[tokio::test]
async fn a_join_answers_with_a_link_header_per_ice_server_url() {
    let dir = tempfile::tempdir().unwrap();
    let config: crate::config::Config = crate::config::Config::from_toml(
        r#"
[webrtc]
listen = "127.0.0.1:0"
ice_servers = [
  { urls = ["stun:stun.example.net:3478"] },
  { urls = ["turn:turn.example.net:3478?transport=udp"], username = "u:1", credential = "p\"w" },
]
"#,
    )
    .unwrap();
    let webrtc = WebRtc::start(WebRtcSettings {
        handshake_limits: ROOMY,
        ..WebRtcSettings::from_config(&config.webrtc)
    })
    .unwrap();
    let state = state(dir.path(), webrtc);
    state
        .engine
        .create_conference("8080", Policy::default())
        .await
        .unwrap();
    let r = whip(&state, "8080", [10, 0, 4, 1]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let links: Vec<&str> = r
        .headers()
        .get_all(header::LINK)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        links,
        [
            r#"<stun:stun.example.net:3478>; rel="ice-server""#,
            r#"<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; username="u:1"; credential="p\"w"; credential-type="password""#,
        ]
    );

    let plain = state_without_servers(dir.path()).await;
    let r = whip(&plain, "8081", [10, 0, 4, 2]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get(header::LINK).is_none());
}

async fn state_without_servers(dir: &std::path::Path) -> AppState {
    let dir = dir.join("plain");
    std::fs::create_dir_all(&dir).unwrap();
    let state = state(&dir, webrtc(ROOMY, Duration::from_millis(100)));
    state
        .engine
        .create_conference("8081", Policy::default())
        .await
        .unwrap();
    state
}

async fn ready(state: &AppState) -> (StatusCode, String) {
    let r = crate::api::readyz(State(state.clone())).await;
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn a_dead_driver_ends_its_participants_and_is_not_ready_until_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let limits = HandshakeLimits {
        total: 16,
        per_conference: 16,
        per_address: 16,
    };
    // A wait long enough for the test to see the driver down.
    let state = state(dir.path(), webrtc(limits, Duration::from_secs(1)));
    state
        .engine
        .create_conference("7070", Policy::default())
        .await
        .unwrap();
    let r = whip(&state, "7070", [10, 0, 3, 1]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let session = session_of(&r);
    let roster_token = header_of(&r, "confab-roster-token").unwrap().to_owned();
    let pid = header_of(&r, "confab-participant").unwrap().to_owned();
    let webrtc = state.webrtc.clone().unwrap();
    assert!(webrtc.roster_session(&roster_token).is_some());
    assert_eq!(ready(&state).await, (StatusCode::OK, "ready".into()));

    assert!(webrtc.panic_driver_for_test());
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while webrtc.metrics.driver_restarts_total.load(relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the driver never died"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        ready(&state).await,
        (StatusCode::SERVICE_UNAVAILABLE, "webrtc down".into())
    );
    let r = whip(&state, "7070", [10, 0, 3, 2]).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    while !webrtc.running() {
        assert!(std::time::Instant::now() < deadline, "never restarted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ready(&state).await, (StatusCode::OK, "ready".into()));
    assert_eq!(webrtc.metrics.panics_total.load(relaxed), 1);

    // The participant left the mix as internal-error; its session and roster token ended.
    let left = loop {
        let roster = state.engine.roster("7070").await.unwrap();
        let p = roster.iter().find(|p| p.id.to_string() == pid).unwrap();
        if let PState::Disconnected(reason) = p.state {
            break reason;
        }
        assert!(std::time::Instant::now() < deadline, "{p:?} never left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(left, DisconnectReason::InternalError);
    assert!(webrtc.roster_session(&roster_token).is_none());
    let gone = leave(State(state.clone()), Path(("7070".into(), session)))
        .await
        .unwrap_or_else(IntoResponse::into_response);
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    // Joins are taken again.
    let r = whip(&state, "7070", [10, 0, 3, 3]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// Fifty strangers guessing a meeting's passcode lock it; a caller who gave the right passcode
/// before the lockout still gets in with it, a new caller with the same passcode waits.
#[tokio::test]
async fn a_caller_who_knew_the_passcode_passes_the_meetings_lockout() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), webrtc(ROOMY, Duration::from_millis(100)));
    let admission = crate::conference::Admission {
        passcode: Some("4321".into()),
        ..Default::default()
    };
    state
        .engine
        .create_conference_with("7070", Policy::default(), admission)
        .await
        .unwrap();
    let known = [10, 0, 7, 1];
    let r = whip_with(&state, "7070", known, Some("4321")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for i in 0..50u8 {
        let r = whip_with(&state, "7070", [10, 0, 8, i], Some("0000")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let newcomer = whip_with(&state, "7070", [10, 0, 9, 1], Some("4321")).await;
    assert_eq!(newcomer.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(newcomer.headers().get(header::RETRY_AFTER).is_some());
    let again = whip_with(&state, "7070", known, Some("4321")).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    // Known good for the passcode, not for guessing: a wrong code from it is a failure.
    let wrong = whip_with(&state, "7070", known, Some("1111")).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
}

/// Knowing a meeting's passcode buys no leader-PIN guesses past its lockout, and joining
/// without giving a credential (a PIN-only meeting, an empty bearer) proves nothing.
#[tokio::test]
async fn only_a_compared_credential_passes_the_lockout_and_only_for_itself() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ROOMY;
    let state = state(dir.path(), webrtc(limits, Duration::from_millis(100)));
    let both = crate::conference::Admission {
        passcode: Some("4321".into()),
        leader_pin: Some("9876".into()),
        ..Default::default()
    };
    let pin_only = crate::conference::Admission {
        leader_pin: Some("9876".into()),
        ..Default::default()
    };
    for (cid, admission) in [("8080", both), ("9090", pin_only)] {
        state
            .engine
            .create_conference_with(cid, Policy::default(), admission)
            .await
            .unwrap();
    }
    let (attendee, leader, nobody) = ([10, 1, 0, 1], [10, 1, 0, 2], [10, 1, 0, 3]);
    assert_eq!(
        status(&state, "8080", attendee, Some("4321")).await,
        StatusCode::CREATED
    );
    assert_eq!(
        status(&state, "8080", leader, Some("9876")).await,
        StatusCode::CREATED
    );
    // An empty bearer on a PIN-only meeting joins as an attendee, proving nothing.
    assert_eq!(
        status(&state, "9090", nobody, Some("   ")).await,
        StatusCode::CREATED
    );
    for cid in ["8080", "9090"] {
        for i in 0..50u8 {
            let r = whip_with(&state, cid, [10, 2, cid.as_bytes()[0], i], Some("0000")).await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{cid} guess {i}");
        }
    }
    assert_eq!(
        status(&state, "9090", nobody, Some("9876")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The leader passes with its PIN; the attendee's PIN entry is not compared with the PIN
    // (so even the right one is a failure), and that forgets its passcode proof.
    assert_eq!(
        status(&state, "8080", leader, Some("9876")).await,
        StatusCode::CREATED
    );
    assert_eq!(
        status(&state, "8080", attendee, Some("9876")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&state, "8080", attendee, Some("4321")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A moderation request (`{"action": …}`) to `cid` with `bearer`, through the whole router
/// (its auth layer included); the status and the error's code, if any.
async fn moderate(app: &axum::Router, cid: &str, bearer: &str, body: &str) -> (StatusCode, String) {
    let request = axum::http::Request::builder()
        .method("POST")
        .uri(format!("/v1/conferences/{cid}/moderation"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
        .extension(ConnectInfo(SocketAddr::from(([10, 0, 5, 9], 50_000))))
        .body(HttpBody::from(body.to_owned()))
        .unwrap();
    let mut app = app.clone();
    let r = tower_service::Service::call(&mut app, request)
        .await
        .unwrap();
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    let code = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, code)
}

/// An attendee's join page mutes and unmutes its own participant with its session's roster
/// token, on a bridge whose API has a token the page does not know; muting another, ejecting
/// (itself included) and locking are 403, a forged or ended session's token 401, and nothing
/// refused changed anything.
#[tokio::test]
async fn a_session_mutes_and_unmutes_only_its_own_participant() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = state(dir.path(), webrtc(ROOMY, Duration::from_millis(100)));
    state.token = Some(std::sync::Arc::from("s3cret"));
    state
        .engine
        .create_conference("9090", Policy::default())
        .await
        .unwrap();
    let (me, other) = (
        whip(&state, "9090", [10, 0, 5, 1]).await,
        whip(&state, "9090", [10, 0, 5, 2]).await,
    );
    assert_eq!(
        (me.status(), other.status()),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    let token = header_of(&me, "confab-roster-token").unwrap().to_owned();
    let mine = header_of(&me, "confab-participant").unwrap().to_owned();
    let theirs = header_of(&other, "confab-participant").unwrap().to_owned();
    let app = crate::api::router(state.clone());
    let muted = async |pid: &str| {
        let roster = state.engine.roster("9090").await.unwrap();
        roster
            .iter()
            .find(|p| p.id.to_string() == pid)
            .map(|p| p.muted)
    };
    let act = |action: &str, pid: &str| format!(r#"{{"action":"{action}","participant":"{pid}"}}"#);

    assert_eq!(
        moderate(&app, "9090", &token, &act("mute", &mine)).await,
        (StatusCode::NO_CONTENT, String::new())
    );
    assert_eq!(muted(&mine).await, Some(true));
    assert_eq!(
        moderate(&app, "9090", &token, &act("unmute", &mine)).await,
        (StatusCode::NO_CONTENT, String::new())
    );
    assert_eq!(muted(&mine).await, Some(false));

    for body in [
        act("mute", &theirs),
        act("eject", &theirs),
        act("eject", &mine),
        r#"{"action":"lock"}"#.to_owned(),
    ] {
        assert_eq!(
            moderate(&app, "9090", &token, &body).await,
            (StatusCode::FORBIDDEN, "forbidden".to_owned()),
            "{body}"
        );
    }
    assert_eq!(muted(&theirs).await, Some(false));
    assert!(!state.engine.policy("9090").await.unwrap().locked);
    assert_eq!(
        state.engine.roster("9090").await.unwrap().len(),
        2,
        "no one was ejected"
    );

    // A forged token, and the real one once its session has ended: 401.
    let forged = format!(
        "{}{}",
        crate::webrtc::sessions::ROSTER_TOKEN_PREFIX,
        "00".repeat(32)
    );
    assert_eq!(
        moderate(&app, "9090", &forged, &act("mute", &mine)).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".to_owned())
    );
    let left = leave(State(state.clone()), Path(("9090".into(), session_of(&me))))
        .await
        .unwrap();
    assert_eq!(left.status(), StatusCode::OK);
    assert_eq!(
        moderate(&app, "9090", &token, &act("unmute", &mine))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

/// A join token's `identity` names its participant (presence publishes it, reduced to its
/// address of record); the token route takes nothing but a SIP address for it.
#[tokio::test]
async fn a_join_tokens_identity_names_its_participant() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), webrtc(ROOMY, Duration::from_millis(100)));
    state
        .engine
        .create_conference("6060", Policy::default())
        .await
        .unwrap();
    let mint = |identity: &str| super::NewToken {
        display_name: "Ann".into(),
        role: None,
        ttl_secs: None,
        identity: Some(identity.into()),
    };
    for bad in ["tel:+15551234", "sip:ann@exa\r\nmple.com", "ann", ""] {
        let r = super::token(State(state.clone()), Path("6060".into()), Body(mint(bad)))
            .await
            .unwrap_or_else(IntoResponse::into_response);
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    }
    let r = super::token(
        State(state.clone()),
        Path("6060".into()),
        Body(mint("\"Ann\" <sip:Ann@Example.COM;user=phone>")),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response);
    assert_eq!(r.status(), StatusCode::CREATED);
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let token = reply["token"].as_str().unwrap().to_owned();
    let joined = whip_with(&state, "6060", [10, 0, 6, 1], Some(&token)).await;
    assert_eq!(joined.status(), StatusCode::CREATED);
    let roster = state.engine.roster("6060").await.unwrap();
    assert_eq!(roster.len(), 1);
    assert_eq!(roster[0].identity.as_deref(), Some("sip:Ann@example.com"));
    // A passcode names nobody.
    let open = whip_with(&state, "6060", [10, 0, 6, 2], None).await;
    assert_eq!(open.status(), StatusCode::CREATED);
    let roster = state.engine.roster("6060").await.unwrap();
    assert_eq!(roster[1].identity, None);
}

/// A SIP caller's pass (made by another node's attendant for one call) is signed like a join
/// token, but WHIP refuses it; the same claims as a join token are let in.
#[tokio::test]
async fn a_sip_callers_pass_is_not_a_join_token() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), webrtc(ROOMY, Duration::from_millis(100)));
    state
        .engine
        .create_conference("6061", Policy::default())
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |pass: bool| crate::webrtc::token::Claims {
        cid: "6061".into(),
        name: String::new(),
        role: "leader".into(),
        exp: now + 60,
        identity: None,
        language: Some("de".into()),
        pass,
    };
    let pass = state.tokens.sign(&claims(true));
    let refused = whip_with(&state, "6061", [10, 0, 7, 1], Some(&pass)).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let join = state.tokens.sign(&claims(false));
    let joined = whip_with(&state, "6061", [10, 0, 7, 2], Some(&join)).await;
    assert_eq!(joined.status(), StatusCode::CREATED);
}
