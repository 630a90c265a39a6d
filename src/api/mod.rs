//! The control API (axum): conferences, participants, events, records, health and drain, under
//! `/v1`, JSON in and out. Every engine call is a command to a mixer thread answered within a
//! tick; handlers make them on blocking threads. Errors are `{"error":{"code","message"}}`.
//!
//! Auth: with `api.token` set, every route but `/healthz`, `/readyz` and `/metrics` wants
//! `Authorization: Bearer <token>` (compared in constant time). A WHIP session's roster token
//! reads its own conference's roster and events and nothing else (`view.rs`).

mod conference_sync;
mod conferences;
mod controls;
mod csv;
mod error;
mod events;
mod extract;
mod https;
mod https_reload;
mod pages;
mod participants;
mod placed;
mod recordings;
mod records;
mod replies;
mod view;
mod whip;

/// The OpenAPI document, from the handlers' annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Confab control API", description = "Conferences, participants, events, records."),
    paths(
        conferences::create, conferences::list, conferences::get, conferences::patch,
        conferences::end, conferences::lock, conferences::unlock, conferences::mute_all,
        records::records, records::conferences, participants::list, participants::get, participants::add,
        participants::act, participants::eject, events::all, events::conference,
        whip::join, whip::leave, whip::token,
        controls::role, controls::gains, controls::noise_suppression, controls::whoami,
        controls::moderate,
        recordings::start, recordings::stop, recordings::list, recordings::get,
        recordings::audio, recordings::delete,
        drain, healthz, readyz, metrics
    ),
    tags((name = "conferences"), (name = "participants"), (name = "events"), (name = "records"), (name = "recordings"), (name = "webrtc"), (name = "operations")),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// The document's security schemes: `bearer` is the API token (`api.token`; a WHIP session's
/// roster token on the two routes it may read), `whip` a conference's passcode or leader PIN or
/// a join token, on WHIP's routes.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "bearer",
            bearer("The API token (`api.token`), or a WHIP session's roster token for its own conference's participants and events"),
        );
        components.add_security_scheme(
            "whip",
            bearer("The conference's passcode or leader PIN, or a join token (`POST /v1/conferences/{cid}/tokens`)"),
        );
    }
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::broadcast;

pub use conference_sync::{Seen as SeenConferences, sync_conferences};
pub use conferences::start as start_conference;
pub use error::ApiError;
pub use events::EventHub;
pub use https::{ALPN, ApiTls};

use crate::engine::Engine;
use crate::mixer::conference::ConferenceEvent;
use crate::sip::server::SipServer;
use crate::store::Store;

/// Largest request body.
const BODY_LIMIT: usize = 64 * 1024;
/// Longest a request may take (SSE streams excepted).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub sip: Option<Arc<SipServer>>,
    pub store: Store,
    pub events: Arc<EventHub>,
    pub token: Option<Arc<str>>,
    pub draining: Arc<AtomicBool>,
    /// The configured number of talkers, for conferences that set none.
    pub max_talkers: usize,
    /// Codec preference for legs added by SDP offer.
    pub codecs: Vec<crate::media::codec::Codec>,
    pub api_metrics: Arc<crate::metrics::ApiMetrics>,
    /// WebRTC (WHIP) joins, when the driver runs.
    pub webrtc: Option<Arc<crate::webrtc::WebRtc>>,
    /// Signs and checks join tokens.
    pub tokens: Arc<crate::webrtc::token::TokenSigner>,
    /// Failed credential attempts (WHIP), shared with SIP's attendant when SIP runs.
    pub limiter: crate::sip::server::SharedLimiter,
    /// Whether `/metrics` labels series with conference IDs (`metrics.conference_labels`).
    pub conference_labels: bool,
    /// The address put in the SDP answers of API legs (`media.advertise`).
    pub media_advertise: Option<std::net::IpAddr>,
    /// `media.srtp`: the SRTP policy of API legs in conferences that set none.
    pub srtp: crate::config::SrtpPolicy,
    /// `media.sdes_over_cleartext`: API legs take SDES keys over plain HTTP too.
    pub sdes_over_cleartext: bool,
    /// The API is served over HTTPS (set by [`serve`]): SDES keys may travel in its requests.
    pub https: bool,
    /// Conference recordings (none: the recording routes answer 503).
    pub recordings: Option<Arc<crate::recording::Recorder>>,
    /// Where meetings run when several nodes share a database (none: here).
    pub placement: Option<Arc<crate::placement::Placement>>,
}

impl AppState {
    pub fn new(
        engine: Arc<Engine>,
        sip: Option<Arc<SipServer>>,
        store: Store,
        events: broadcast::Receiver<ConferenceEvent>,
        token: Option<String>,
        max_talkers: usize,
        codecs: Vec<crate::media::codec::Codec>,
    ) -> Self {
        let limiter = match &sip {
            Some(sip) => Arc::clone(&sip.limiter),
            None => Arc::new(std::sync::Mutex::new(
                crate::conference::limiter::FailureLimiter::new(Default::default()),
            )),
        };
        AppState {
            limiter,
            conference_labels: false,
            media_advertise: None,
            srtp: crate::config::SrtpPolicy::Optional,
            sdes_over_cleartext: false,
            https: false,
            recordings: None,
            placement: None,
            engine,
            sip,
            store,
            events: EventHub::start(events),
            token: token.filter(|t| !t.is_empty()).map(Arc::from),
            draining: Arc::new(AtomicBool::new(false)),
            max_talkers,
            codecs,
            api_metrics: Arc::default(),
            webrtc: None,
            tokens: Arc::new(crate::webrtc::token::TokenSigner::random()),
        }
    }

    /// Takes WHIP joins on `webrtc`, with join tokens signed by `tokens`.
    pub fn with_webrtc(
        mut self,
        webrtc: Arc<crate::webrtc::WebRtc>,
        tokens: Arc<crate::webrtc::token::TokenSigner>,
    ) -> Self {
        self.webrtc = Some(webrtc);
        self.tokens = tokens;
        self
    }

    /// Lets `/metrics` label series with conference IDs (off by default: the endpoint is not
    /// authenticated, and the IDs are what callers dial).
    pub fn with_conference_labels(mut self, on: bool) -> Self {
        self.conference_labels = on;
        self
    }

    /// Records conferences with `recorder`.
    pub fn with_recordings(mut self, recorder: Arc<crate::recording::Recorder>) -> Self {
        recordings::publish_to(&recorder, Arc::clone(&self.events));
        self.recordings = Some(recorder);
        self
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route(
            "/conferences",
            post(conferences::create).get(conferences::list),
        )
        .route(
            "/conferences/{cid}",
            get(conferences::get)
                .patch(conferences::patch)
                .delete(conferences::end),
        )
        .route("/conferences/{cid}/lock", post(conferences::lock))
        .route("/conferences/{cid}/unlock", post(conferences::unlock))
        .route("/conferences/{cid}/mute-all", post(conferences::mute_all))
        .route(
            "/conferences/{cid}/participants",
            get(participants::list).post(participants::add),
        )
        .route(
            "/conferences/{cid}/participants/{pid}",
            get(participants::get).delete(participants::eject),
        )
        .route(
            "/conferences/{cid}/participants/{pid}/{action}",
            post(participants::act),
        )
        .route(
            "/conferences/{cid}/participants/{pid}/role",
            post(controls::role),
        )
        .route(
            "/conferences/{cid}/participants/{pid}/gain",
            post(controls::gains),
        )
        .route(
            "/conferences/{cid}/participants/{pid}/noise_suppression",
            post(controls::noise_suppression),
        )
        .route(
            "/conferences/{cid}/moderation",
            get(controls::whoami).post(controls::moderate),
        )
        .route("/conferences/{cid}/events", get(events::conference))
        .route("/conferences/{cid}/tokens", post(whip::token))
        .route("/events", get(events::all))
        .route("/records", get(records::records))
        .route("/records/conferences", get(records::conferences))
        .route(
            "/conferences/{cid}/recording",
            post(recordings::start).delete(recordings::stop),
        )
        .route("/recordings", get(recordings::list))
        .route(
            "/recordings/{id}",
            get(recordings::get).delete(recordings::delete),
        )
        .route("/recordings/{id}/audio", get(recordings::audio))
        .route("/admin/drain", post(drain))
        .route("/openapi.json", get(openapi));
    let authed = Router::new()
        .nest("/v1", v1)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth));
    // WHIP takes the conference's own credentials, not the API token, and answers CORS.
    let whip = Router::new()
        .route(
            "/v1/conferences/{cid}/whip",
            post(whip::join).options(no_content),
        )
        .route(
            "/v1/conferences/{cid}/whip/{session}",
            axum::routing::delete(whip::leave)
                .patch(whip::patch)
                .options(no_content),
        )
        .layer(middleware::from_fn(whip::cors));
    Router::new()
        .merge(whip)
        .merge(pages::router())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(authed)
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Serves the API on `listen` until `shutdown` resolves: over HTTPS only when `tls` is given
/// (HTTP/2 or HTTP/1.1 by ALPN), else over plain HTTP.
pub async fn serve(
    listen: SocketAddr,
    state: AppState,
    tls: Option<ApiTls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let app = router(AppState {
        https: tls.is_some(),
        ..state
    });
    let task = match tls {
        Some(tls) => {
            let app = if tls.hsts { https::with_hsts(app) } else { app };
            tokio::spawn(https::serve_tls(
                listener,
                app,
                tls,
                https::Limits::default(),
                shutdown,
            ))
        }
        None => tokio::spawn(async move {
            if let Err(e) = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
            {
                tracing::error!(error = %e, "api server");
            }
        }),
    };
    Ok((local, task))
}

async fn no_content() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Constant-time equality of two byte strings (length is not hidden).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let operator = state
        .token
        .as_ref()
        .is_some_and(|t| same(given.as_bytes(), t.as_bytes()));
    // A participant's page: judged as a roster token whether or not the API has a token, so
    // that it sees the same (smaller) view either way.
    if !operator && view::is_roster_token(&given) {
        let session = state.webrtc.as_ref().and_then(|w| w.roster_session(&given));
        // A leader's page moderates its own conference (the handler checks the role).
        let moderation = session
            .as_ref()
            .and_then(|s| controls::allows(&s.cid, request.method(), request.uri().path()));
        let verdict = match moderation {
            Some(verdict) => verdict,
            None => view::check(session.as_ref(), request.method(), request.uri().path()),
        };
        if let Err(e) = verdict {
            return e.into_response();
        }
        request
            .extensions_mut()
            .insert(view::ParticipantView { token: given });
    } else if state.token.is_some() && !operator {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
        .into_response();
    }
    let response = tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await;
    match response {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long",
        )
        .into_response(),
    }
}

/// Counts requests by route template and status.
async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    state.api_metrics.count(&route, response.status().as_u16());
    response
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics: OpenMetrics text when the Accept \
        header names it (as Prometheus does), else the Prometheus text format 0.0.4",
        content((String = "application/openmetrics-text"), (String = "text/plain")))))]
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let openmetrics = crate::metrics::text::wants_openmetrics(
        headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let auth = state.limiter.lock().ok().map(|l| Arc::clone(&l.counters));
    let disconnects = state.events.disconnects();
    let text = crate::metrics::render(
        &state.engine,
        &crate::metrics::Options {
            conference_labels: state.conference_labels,
            auth: auth.as_deref(),
            placement: state.placement.as_deref().map(|p| &p.counters),
        },
        state.sip.as_deref().map(|s| &*s.metrics),
        state.webrtc.as_deref().map(|w| &*w.metrics),
        &state.api_metrics,
        &disconnects,
        state.draining(),
    )
    .await;
    let (content_type, text) = if openmetrics {
        (crate::metrics::text::OPENMETRICS, text)
    } else {
        (
            crate::metrics::text::PROMETHEUS_TEXT,
            crate::metrics::text::prometheus_text(&text),
        )
    };
    ([(axum::http::header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn openapi() -> Response {
    use utoipa::OpenApi;
    match ApiDoc::openapi().to_json() {
        Ok(text) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive: `ok`", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready: `ready`", body = String, content_type = "text/plain"),
        (status = 503, description = "Draining, storage unavailable, or a part (mixer, SIP, WebRTC) down: `draining`, `storage unavailable`, `mixer down`…",
            body = String, content_type = "text/plain")))]
async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.store.clone();
    let healthy = tokio::task::spawn_blocking(move || store.healthy())
        .await
        .unwrap_or(false);
    if state.draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else if !healthy {
        (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable").into_response()
    } else if let Some(part) = part_down(&state) {
        (StatusCode::SERVICE_UNAVAILABLE, format!("{part} down")).into_response()
    } else {
        "ready".into_response()
    }
}

/// The first part of the bridge whose thread or task has ended, if any.
fn part_down(state: &AppState) -> Option<&'static str> {
    if !state.engine.mixers_alive() {
        Some("mixer")
    } else if state.sip.as_ref().is_some_and(|s| !s.running()) {
        Some("sip")
    } else if state.webrtc.as_ref().is_some_and(|w| !w.running()) {
        Some("webrtc")
    } else {
        None
    }
}

#[utoipa::path(post, path = "/v1/admin/drain", tag = "operations", security(("bearer" = [])),
    responses((status = 202, description = "Draining: no new conferences or calls, SIP answers 503", body = replies::DrainReply),
        (status = 401, description = "No valid bearer token", body = error::ErrorBody),
        (status = 403, description = "A roster token", body = error::ErrorBody)))]
async fn drain(State(state): State<AppState>) -> Response {
    state.draining.store(true, Ordering::Relaxed);
    if let Some(sip) = &state.sip {
        sip.set_draining(true);
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(replies::DrainReply { draining: true }),
    )
        .into_response()
}

/// Runs a handler's steps to their end even if its client goes away (axum drops a request's
/// future when the connection closes or the request times out): a change made of several
/// steps (the mixer, then the store) is never left half done.
async fn to_the_end<T: Send + 'static>(
    steps: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(steps)
        .await
        .map_err(|_| ApiError::internal("the request was lost"))?
}

/// Runs a blocking store call (or other blocking work) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal("the request was lost"))?
}

#[cfg(test)]
#[path = "test_state.rs"]
pub(crate) mod test_state;

#[cfg(test)]
#[path = "readiness_tests.rs"]
mod readiness_tests;

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod runtime_tests;

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod openapi_tests;

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_comparison() {
        assert!(super::same(b"secret", b"secret"));
        assert!(!super::same(b"secret", b"secreT"));
        assert!(!super::same(b"secret", b"secre"));
        assert!(!super::same(b"", b"x"));
    }
}
