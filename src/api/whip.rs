//! WHIP (RFC 9725): a WebRTC peer joins by POSTing its SDP offer, gets the answer and a session
//! `Location` to DELETE when it leaves. Join tokens let a peer in without the passcode.
//!
//! These routes take their own credentials (the conference's passcode or leader PIN, or a join
//! token) instead of the API token, and answer CORS so that a page from another origin can
//! join: the preflight, and `Location` exposed.

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, extract::Request};
use serde::Deserialize;

use super::conferences::{Body, meeting_id};
use super::error::ErrorBody;
use super::extract::{Path, Query};
use super::replies::{RoleName, TokenReply};
use super::{ApiError, AppState, blocking};
use crate::conference::limiter::{Credential, Lockout, Transport, caller_key};
use crate::conference::{DisconnectReason, Gate, MAX_NAME, Role, clean_text};
use crate::engine::Joiner;
use crate::media::relay::relay_pair;
use crate::mixer::Control;
use crate::webrtc::token::{Claims, TokenError};
use crate::webrtc::{AdmitError, OfferError, RosterToken, Session, offer, session_id};

/// Adds the CORS headers WHIP clients in a browser need, and answers preflights.
pub(super) async fn cors(request: Request, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS;
    let mut response = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        r.headers_mut()
            .insert("accept-post", HeaderValue::from_static("application/sdp"));
        r
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, DELETE, PATCH, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, If-Match"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link, Confab-Participant, Confab-Roster-Token"),
    );
    response
}

/// The one refusal for an unknown meeting ID, missing or wrong credentials and a bad token:
/// the same status and body, so that the answer does not tell whether the meeting exists.
pub(super) const REFUSED: &str = "a valid passcode or join token is required for this meeting ID";

fn refused() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", REFUSED)
}

/// Who the bearer is: a token's claims, the passcode or leader PIN, or nobody. Every refusal
/// is [`refused`] but an expired token's (its holder was given the meeting ID by the API).
///
/// `pin_allowed`: whether the leader PIN may be compared (not while the meeting is locked out
/// for a caller who proved only the passcode). With the joiner comes the credential it proved,
/// if it gave one that was compared and matched.
fn admit(
    state: &AppState,
    cid: &str,
    headers: &HeaderMap,
    name: Option<String>,
    pin_allowed: bool,
) -> Result<(Joiner, Option<Credential>), ApiError> {
    let admission = state.engine.admission(cid);
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|b| !b.is_empty());
    let display = |n: Option<String>| n.unwrap_or_else(|| "WebRTC".to_owned());
    // A join token names the participant and counts as an identity we asserted.
    if let Some(b) = bearer
        && b.contains('.')
    {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        return match (state.tokens.verify(b, cid, now), admission) {
            // A SIP caller's pass (`sip::hand_off`) is good for that call only.
            (Ok(c), Some(_)) if !c.pass => {
                let name = clean_text(&c.name, MAX_NAME);
                let joiner = Joiner {
                    role: c.role(),
                    identity: c.identity.clone(),
                    uri: format!("webrtc:{name}"),
                    display_name: name,
                };
                Ok((joiner, None))
            }
            (Err(TokenError::Expired), Some(_)) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the join token has expired",
            )),
            _ => Err(refused()),
        };
    }
    let Some(admission) = admission else {
        return Err(refused());
    };
    if admission.gate != Gate::Anyone {
        return Err(refused());
    }
    let same = |a: &str, b: &str| super::same(a.as_bytes(), b.as_bytes());
    let (role, proven) = match (bearer, &admission.passcode, &admission.leader_pin) {
        (Some(b), _, Some(pin)) if pin_allowed && same(b, pin) => {
            (Role::Leader, Some(Credential::LeaderPin))
        }
        (Some(b), Some(code), _) if same(b, code) => (Role::Attendee, Some(Credential::Passcode)),
        // No passcode asked (and none given): nothing proven.
        (None, None, _) => (Role::Attendee, None),
        _ => return Err(refused()),
    };
    let display_name = display(name);
    let joiner = Joiner {
        uri: format!("webrtc:{display_name}"),
        display_name,
        role,
        identity: None,
    };
    Ok((joiner, proven))
}

/// 429 with Retry-After for a client address or conference locked out by failures.
fn locked_out(lockout: Lockout) -> Response {
    let secs = lockout.remaining().as_secs().max(1);
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failures",
        format!("too many failed attempts: try again in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// How long a client refused for too many handshakes is asked to wait: most handshakes end
/// (connected or failed) within a second or two; a stalled one holds its slot for 20 s.
const HANDSHAKE_RETRY_SECS: u64 = 2;

/// 429 with Retry-After for a join over a handshake cap (per address, per meeting, in all).
fn too_many_handshakes(e: &AdmitError) -> Response {
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_handshakes",
        e.to_string(),
    )
    .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(HANDSHAKE_RETRY_SECS));
    r
}

#[derive(Deserialize)]
pub(super) struct JoinQuery {
    name: Option<String>,
}

/// `POST /v1/conferences/{cid}/whip`: the offer in, the answer out.
#[utoipa::path(post, path = "/v1/conferences/{cid}/whip", tag = "webrtc",
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$"),
           ("name" = Option<String>, Query, description = "Display name (tokens carry their own)")),
    request_body(content = String, content_type = "application/sdp",
        description = "SDP offer with one audio m-line (non-trickle: candidates included)"),
    security((), ("whip" = [])),
    responses((status = 307, description = "Several nodes share a database and another runs this meeting: Location is the same join on that node (the credentials were checked here and are checked again there)"),
        (status = 201, description = "SDP answer; Location names the session, Confab-Participant the participant, Confab-Roster-Token a bearer token that reads this conference's participants and events (GET only) while the session lives; one Link header per configured STUN/TURN URL (rel=\"ice-server\", RFC 9725)",
            body = String, content_type = "application/sdp"),
        (status = 400, description = "Malformed SDP, a body that cannot be read or a path parameter that cannot be", body = ErrorBody),
        (status = 401, description = "Unknown meeting ID, or missing, wrong or expired passcode or token (one answer for all but an expired token)", body = ErrorBody),
        (status = 403, description = "Locked", body = ErrorBody),
        (status = 404, description = "The conference ended meanwhile", body = ErrorBody),
        (status = 409, description = "Full", body = ErrorBody),
        (status = 415, description = "Not application/sdp", body = ErrorBody),
        (status = 422, description = "Not a meeting ID, an invalid name, no audio, or no codec in common", body = ErrorBody),
        (status = 429, description = "Too many handshakes in progress from this address, on this meeting or on the bridge, or too many failed attempts from this address or on this meeting ID (Retry-After)", body = ErrorBody),
        (status = 503, description = "Draining, WebRTC not running, or its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn join(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    Query(query): Query<JoinQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    meeting_id(&cid)?;
    let peer_address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let client: IpAddr = peer_address.map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip());
    let headers = request.headers().clone();
    // The peer as its record shows it (the header is the client's to write: cleaned there).
    let origin = crate::store::Origin::new(
        headers
            .get(axum::http::header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .as_deref(),
        peer_address,
    );
    // The whole path (under the `/v1` nest), for a redirect to the same join elsewhere.
    let uri = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| request.uri().clone(), |o| o.0.clone());
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    let sdp_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/sdp"));
    if !sdp_type {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "WHIP takes Content-Type: application/sdp",
        ));
    }
    if state.draining() {
        return Err(ApiError::draining());
    }
    let webrtc = state.webrtc.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_webrtc",
            "WebRTC is not running",
        )
    })?;
    let name = Some(super::conferences::name("name", query.name)?).filter(|n| !n.is_empty());
    // Failures are limited per client address and per meeting ID (known or not, alike). A
    // join token cannot be guessed, so a meeting's lockout does not stop its holders.
    let caller = caller_key(client, None);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains('.'));
    // The body is read before the credentials are looked at, and the lockout check, the
    // comparison and the failure are one step under the limiter's lock: a guesser who holds
    // back the bodies of many requests cannot have them all pass the check before any fails.
    let body = axum::body::to_bytes(request.into_body(), super::BODY_LIMIT)
        .await
        .map_err(|_| ApiError::bad_request("the offer could not be read"))?;
    let joiner = {
        let mut limiter = state
            .limiter
            .lock()
            .map_err(|_| ApiError::internal("the failure limiter is unavailable"))?;
        let now = std::time::Instant::now();
        // A meeting's lockout refuses entries uncompared, but for a caller who lately proved
        // the credential: the PIN (then anything goes), or the passcode (then the PIN is not
        // compared, so knowing the passcode buys no PIN guesses).
        let pin_allowed = if token {
            if let Some(l) = limiter.locked(now, &caller, None) {
                return Ok(locked_out(l));
            }
            true
        } else {
            match limiter.locked_for(now, &caller, Some((&cid, Credential::LeaderPin))) {
                None => true,
                Some(l) => {
                    if limiter.locked(now, &caller, Some(&cid)).is_some() {
                        return Ok(locked_out(l));
                    }
                    false
                }
            }
        };
        match admit(&state, &cid, &headers, name, pin_allowed) {
            Ok((j, proven)) => {
                if let Some(proven) = proven {
                    limiter.success(now, &caller, &cid, proven);
                }
                j
            }
            Err(e) => {
                if e.status() == StatusCode::UNAUTHORIZED {
                    limiter.failure(now, Transport::Whip, &caller, Some(&cid));
                }
                return Err(e);
            }
        }
    };
    // Several nodes: the meeting runs where its lease is; a join here for a meeting another
    // node runs goes there (after the credentials were checked: a redirect tells a stranger
    // nothing a refusal would not).
    if let Some(redirect) = super::placed::elsewhere(&state, &cid, &path_and_query).await? {
        return Ok(redirect);
    }
    let offer_text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the offer is not UTF-8"))?;
    let slot = match webrtc.reserve(client, &cid) {
        Ok(slot) => slot,
        Err(AdmitError::Stopped) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_webrtc",
                AdmitError::Stopped.to_string(),
            ));
        }
        Err(e) => return Ok(too_many_handshakes(&e)),
    };
    let candidate = webrtc.candidate(client);
    let certs = std::sync::Arc::clone(&webrtc);
    let accepted = blocking(move || {
        // A new day's certificate is made here, off the runtime's threads.
        let cert = certs.dtls_cert();
        offer::accept(&offer_text, candidate, std::time::Instant::now(), cert).map_err(
            |e| match e {
                OfferError::Malformed(_) => ApiError::bad_request(e.to_string()),
                OfferError::NoAudio | OfferError::NoCodec => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unprocessable",
                    e.to_string(),
                ),
                OfferError::Internal(_) => ApiError::internal(e.to_string()),
            },
        )
    })
    .await?;
    let (port, peer) = relay_pair(webrtc.doorbell());
    let participant = state
        .engine
        .add_relayed_leg(&cid, joiner, accepted.spec, port, origin)
        .await?;
    let session = session_id().ok_or_else(|| ApiError::internal("no randomness"))?;
    let roster = RosterToken::random().ok_or_else(|| ApiError::internal("no randomness"))?;
    let roster_text = roster.text();
    let answer = accepted.answer.clone();
    let info = Session {
        cid: cid.clone(),
        participant,
    };
    webrtc
        .add(session.clone(), info, roster, accepted, peer, slot)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_webrtc", e.to_string()))?;
    let location = format!("/v1/conferences/{cid}/whip/{session}");
    let mut response = (StatusCode::CREATED, answer).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{session}\"")) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&participant.to_string()) {
        h.insert("confab-participant", v);
    }
    // Reads this conference's roster and events while the session lives (api::view).
    if let Ok(v) = HeaderValue::from_str(&roster_text) {
        h.insert("confab-roster-token", v);
    }
    // The STUN/TURN servers (RFC 9725 section 4.6), for WHIP clients other than our page.
    for link in webrtc.ice_server_links() {
        if let Ok(v) = HeaderValue::from_str(link) {
            h.append(header::LINK, v);
        }
    }
    Ok(response)
}

/// `DELETE /v1/conferences/{cid}/whip/{session}`: the peer leaves.
#[utoipa::path(delete, path = "/v1/conferences/{cid}/whip/{session}", tag = "webrtc",
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$"), ("session" = String, Path, description = "WHIP session")),
    responses((status = 200, description = "Left (no body)"),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody)))]
pub(super) async fn leave(
    State(state): State<AppState>,
    Path((cid, session)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let webrtc = state
        .webrtc
        .clone()
        .ok_or_else(|| ApiError::not_found("no such WHIP session"))?;
    let found = webrtc
        .session(&session)
        .filter(|s| s.cid == cid)
        .ok_or_else(|| ApiError::not_found("no such WHIP session"))?;
    webrtc.close(&session);
    // The leg also learns it from the relay; saying it here makes the roster current at once.
    let _ = state
        .engine
        .control(
            &found.cid,
            Control::Remove(found.participant, DisconnectReason::Hangup),
        )
        .await;
    Ok(StatusCode::OK.into_response())
}

/// `PATCH` (trickle ICE, ICE restart): not implemented; candidates come in the offer.
pub(super) async fn patch() -> Response {
    let mut r = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "trickle ICE is not supported: send all candidates in the offer",
    )
    .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("DELETE"));
    r
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewToken {
    /// 1 to 128 characters, no control characters.
    display_name: String,
    /// `leader` or `attendee` (default).
    role: Option<RoleName>,
    /// Lifetime in seconds (default 3600, at most 7 days).
    ttl_secs: Option<u64>,
    /// The SIP address the participant is known by (`sip:user@host`): with `[presence]`
    /// set, published as "In a conference" while the participant is in it.
    identity: Option<String>,
}

/// `POST /v1/conferences/{cid}/tokens`: a signed join token for WHIP.
#[utoipa::path(post, path = "/v1/conferences/{cid}/tokens", tag = "webrtc",
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$")), request_body = NewToken,
    security(("bearer" = [])),
    responses((status = 201, description = "The token and its expiry", body = TokenReply),
        (status = 400, description = "Malformed JSON or a path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Not a meeting ID, or an invalid name, role, lifetime or identity", body = ErrorBody)))]
pub(super) async fn token(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    Body(new): Body<NewToken>,
) -> Result<Response, ApiError> {
    meeting_id(&cid)?;
    if state.engine.admission(&cid).is_none() {
        return Err(ApiError::not_found(format!("no conference {cid}")));
    }
    let name = super::conferences::name("display_name", Some(new.display_name))?;
    if name.is_empty() {
        return Err(ApiError::invalid(
            "display_name must be 1 to 128 characters",
        ));
    }
    let identity = match new.identity.as_deref() {
        None => None,
        Some(i) => Some(crate::sip::presence::presentity(i).ok_or_else(|| {
            ApiError::invalid(
                "identity must be a SIP address (sip:user@host), at most 256 characters",
            )
        })?),
    };
    let role = new.role.unwrap_or(RoleName::Attendee);
    let ttl = new.ttl_secs.unwrap_or(3600);
    if ttl == 0 || ttl > 7 * 24 * 3600 {
        return Err(ApiError::invalid("ttl_secs must be 1 to 604800"));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = Claims {
        cid,
        name,
        role: role.as_str().to_owned(),
        exp: now + ttl,
        identity,
        language: None,
        pass: false,
    };
    let token = state.tokens.sign(&claims);
    let reply = TokenReply {
        token,
        expires_at: claims.exp,
        role,
    };
    Ok((StatusCode::CREATED, Json(reply)).into_response())
}

#[cfg(test)]
#[path = "whip_tests.rs"]
mod tests;
