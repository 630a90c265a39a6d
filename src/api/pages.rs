//! The browser pages, embedded in the binary: `/join/{cid}` for participants and `/console`
//! for moderators. Static HTML, CSS and JavaScript with no build step; they use the public API
//! only (WHIP, the roster, the control actions and the event stream).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

const JOIN: &str = include_str!("pages/join.html");
const CONSOLE: &str = include_str!("pages/console.html");

/// Files under `/pages/`: name, content type, text.
const ASSETS: [(&str, &str, &str); 4] = [
    (
        "confab.css",
        "text/css; charset=utf-8",
        include_str!("pages/confab.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("pages/common.js"),
    ),
    (
        "join.js",
        "text/javascript; charset=utf-8",
        include_str!("pages/join.js"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("pages/console.js"),
    ),
];

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/join/{cid}", get(join))
        .route("/console", get(console))
        .route("/pages/ice-servers.json", get(ice_servers))
        .route("/pages/{file}", get(asset))
}

/// `webrtc.ice_servers` for the join page's `RTCPeerConnection`. Public like the page itself:
/// TURN credentials given here are visible to anyone who can open the join page.
async fn ice_servers(State(state): State<AppState>) -> Response {
    let list = state.webrtc.as_ref().map_or("[]", |w| w.ice_servers_json());
    let mut r = format!("{{\"iceServers\":{list}}}").into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Credentials from a TURN REST service change: never keep an old answer.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn page(html: &'static str) -> Response {
    let mut r = html.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The pages load only their own scripts and talk only to this server.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; media-src 'self' blob: mediastream:; connect-src 'self'",
        ),
    );
    r
}

async fn join(Path(cid): Path<String>) -> Response {
    if cid.is_empty() || cid.len() > 32 || !cid.bytes().all(|b| b.is_ascii_digit()) {
        return (StatusCode::NOT_FOUND, "no such meeting ID").into_response();
    }
    page(JOIN)
}

async fn console() -> Response {
    page(CONSOLE)
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, text)) => {
            let mut r = (*text).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            r
        }
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
