//! The records API: a WHIP peer's hostile User-Agent reaches its record cleaned and bounded,
//! the per-user filter, the CSV export (quoted, formulas made inert) and conference sessions.

use crate::api::test_state::app_state;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{ConferenceRecordQuery, Format, RecordQuery, conferences, records};
use crate::api::AppState;
use crate::api::extract::{Path, Query};
use crate::conference::Policy;
use crate::engine::EngineSettings;
use crate::store::{RecordWriter, Store};
use crate::webrtc::{WebRtc, WebRtcSettings};

const CHROMIUM_OFFER: &str = include_str!("../../tests/fixtures/chromium-156-offer.sdp");

/// The API's state with a record writer, and the writer (to flush it).
fn state(dir: &std::path::Path) -> (AppState, RecordWriter) {
    let store = Store::open(dir).unwrap();
    let writer = store.record_writer().unwrap();
    let settings = EngineSettings {
        records: Some(writer.sender.clone()),
        ..EngineSettings::loopback(1, 45_320)
    };
    let config = crate::config::WebRtcConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Default::default()
    };
    let webrtc = WebRtc::start(WebRtcSettings::from_config(&config)).unwrap();
    let state = app_state(store, settings, Vec::new()).with_webrtc(
        webrtc,
        std::sync::Arc::new(crate::webrtc::token::TokenSigner::random()),
    );
    (state, writer)
}

/// A WHIP join to `cid` from `client` calling itself `user_agent`, named `name`.
async fn whip(state: &AppState, cid: &str, client: SocketAddr, user_agent: &[u8], name: &str) {
    let request = axum::http::Request::builder()
        .method("POST")
        .uri(format!("/v1/conferences/{cid}/whip"))
        .header(header::CONTENT_TYPE, "application/sdp")
        .header(
            header::USER_AGENT,
            header::HeaderValue::from_bytes(user_agent).unwrap(),
        )
        .extension(ConnectInfo(client))
        .body(HttpBody::from(CHROMIUM_OFFER))
        .unwrap();
    let r = crate::api::whip::join(
        State(state.clone()),
        Path(cid.to_owned()),
        Query(parse(&format!("name={}", urlencode(name))).unwrap()),
        request,
    )
    .await
    .unwrap_or_else(IntoResponse::into_response);
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// A query string as the API reads it.
fn parse<T: serde::de::DeserializeOwned>(query: &str) -> Option<T> {
    let uri: axum::http::Uri = format!("/x?{query}").parse().ok()?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .ok()
        .map(|q| q.0)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(format: Option<Format>, uri: Option<&str>) -> Query<RecordQuery> {
    Query(RecordQuery {
        conference: None,
        uri: uri.map(str::to_owned),
        since: None,
        until: None,
        limit: None,
        offset: None,
        format,
    })
}

async fn body_of(r: Response) -> (StatusCode, Option<String>, String) {
    let status = r.status();
    let kind = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (status, kind, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn a_peers_user_agent_and_address_reach_its_record_cleaned_and_exported_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (state, writer) = state(dir.path());
    state
        .engine
        .create_conference("5050", Policy::default())
        .await
        .unwrap();
    // A User-Agent far too long, with a tab (a control character an HTTP header may carry),
    // a byte that is not UTF-8, a comma and quotes.
    let mut hostile = b"Mozilla/5.0 \"x\",\t\xff".to_vec();
    hostile.extend_from_slice(&[b'A'; 5000]);
    let peer = SocketAddr::from(([192, 0, 2, 9], 50_123));
    whip(
        &state,
        "5050",
        peer,
        &hostile,
        "=HYPERLINK(\"http://evil\")",
    )
    .await;
    whip(
        &state,
        "5050",
        SocketAddr::from(([192, 0, 2, 10], 40_000)),
        b"Other/1",
        "Ann",
    )
    .await;
    writer.flush();

    let r = records(State(state.clone()), query(None, None))
        .await
        .unwrap();
    let (status, _, text) = body_of(r).await;
    assert_eq!(status, StatusCode::OK);
    let page: Value = serde_json::from_str(&text).unwrap();
    let rows = page["records"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{page}");
    let evil = rows
        .iter()
        .find(|r| r["remote"] == "192.0.2.9:50123")
        .unwrap();
    let ua = evil["user_agent"].as_str().unwrap();
    assert!(ua.len() <= crate::store::MAX_USER_AGENT, "{}", ua.len());
    assert!(ua.starts_with("Mozilla/5.0 \"x\",\u{fffd}AAA"), "{ua}");
    assert!(!ua.chars().any(char::is_control), "{ua:?}");

    // Per user: the URI exactly.
    let uri = evil["uri"].as_str().unwrap().to_owned();
    let r = records(State(state.clone()), query(Some(Format::Csv), Some(&uri)))
        .await
        .unwrap();
    let (status, kind, csv) = body_of(r).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind.as_deref(), Some("text/csv; charset=utf-8"));
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("id,conference,participant,display_name,uri,"));
    assert!(lines[0].ends_with(",user_agent,remote"));
    // The name a formula no more; the User-Agent quoted (comma and quotes); the address.
    assert!(
        lines[1].contains(",\"'=HYPERLINK(\"\"http://evil\"\")\","),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains(",\"Mozilla/5.0 \"\"x\"\",\u{fffd}AAA"),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with(",192.0.2.9:50123"), "{}", lines[1]);
}

#[tokio::test]
async fn conference_sessions_are_listed_from_start_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (state, writer) = state(dir.path());
    state
        .engine
        .create_conference("7070", Policy::default())
        .await
        .unwrap();
    state
        .engine
        .control("7070", crate::mixer::Control::End)
        .await
        .unwrap();
    // Ended between ticks, once no leg is left.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let ask = |format| {
        Query(ConferenceRecordQuery {
            conference: Some("7070".into()),
            since: None,
            until: None,
            limit: None,
            offset: None,
            format,
        })
    };
    let page = loop {
        writer.flush();
        let r = conferences(State(state.clone()), ask(None)).await.unwrap();
        let (_, _, text) = body_of(r).await;
        let page: Value = serde_json::from_str(&text).unwrap();
        if page["conferences"][0]["ended_at"].is_i64() || std::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let session = &page["conferences"][0];
    assert_eq!(session["conference"], "7070", "{page}");
    assert_eq!(session["end_reason"], "ended");
    assert_eq!(session["peak_participants"], 0);
    let r = conferences(State(state.clone()), ask(Some(Format::Csv)))
        .await
        .unwrap();
    let (_, kind, csv) = body_of(r).await;
    assert_eq!(kind.as_deref(), Some("text/csv; charset=utf-8"));
    assert!(
        csv.starts_with("id,conference,node,started_at,ended_at,end_reason,peak_participants\r\n")
    );
    assert!(csv.contains(",7070,,"), "{csv}");
    assert!(csv.trim_end().ends_with(",ended,0"), "{csv}");
}

#[tokio::test]
async fn a_bad_format_or_page_is_refused_in_the_error_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (state, _writer) = state(dir.path());
    let mut q = query(None, None);
    q.0.limit = Some(0);
    let e = records(State(state.clone()), q)
        .await
        .unwrap_err()
        .into_response();
    let (status, _, text) = body_of(e).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "invalid", "{body}");
    // An unknown format is not a query the API takes.
    assert!(parse::<RecordQuery>("format=xlsx").is_none());
    let q: RecordQuery = parse("format=csv&uri=sip%3Aa%40b").unwrap();
    assert_eq!(
        (q.format, q.uri.as_deref()),
        (Some(Format::Csv), Some("sip:a@b"))
    );
}
