//! `/v1/conferences/{cid}/participants`: the roster, adding by dial-out or by SDP offer, and
//! the per-participant controls.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::conferences::{Body, meeting_id};
use super::error::ErrorBody;
use super::extract::Path;
use super::replies::{
    AddedParticipant, ParticipantInfo, ParticipantList, ParticipantReply, ParticipantsReply,
    RoleName,
};
use super::{ApiError, AppState, blocking};
use crate::conference::{Participant, ParticipantId, Role, State as PState};
use crate::engine::Joiner;
use crate::media::leg::LegStats;
use crate::mixer::Control;

#[path = "participants_srtp.rs"]
mod srtp;

/// A participant as the API shows it.
pub(super) fn participant_json(p: &Participant, media: Option<&LegStats>) -> ParticipantInfo {
    ParticipantInfo::of(p, media)
}

/// `p17` -> participant 17.
fn participant_id(pid: &str) -> Result<ParticipantId, ApiError> {
    pid.strip_prefix('p')
        .and_then(|n| n.parse().ok())
        .map(ParticipantId)
        .ok_or_else(|| ApiError::not_found(format!("no participant {pid}")))
}

async fn find(
    state: &AppState,
    cid: &str,
    id: ParticipantId,
) -> Result<(Participant, Option<LegStats>), ApiError> {
    state
        .engine
        .roster_with_media(cid)
        .await?
        .into_iter()
        .find(|(p, _)| p.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no participant {id} in conference {cid}")))
}

#[utoipa::path(get, path = "/v1/conferences/{cid}/participants", tag = "participants",
    security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$")),
    responses((status = 200, description = "The roster, with each present participant's media (a roster token: those present, without identities or media)", body = ParticipantsReply),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token of another conference", body = ErrorBody),
        (status = 404, description = "No such conference", body = ErrorBody),
        (status = 422, description = "Not a meeting ID", body = ErrorBody),
        (status = 503, description = "Its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    view: Option<axum::Extension<super::view::ParticipantView>>,
) -> Result<Json<ParticipantsReply>, ApiError> {
    meeting_id(&cid)?;
    if view.is_some() {
        let roster = state.engine.roster(&cid).await?;
        return Ok(Json(ParticipantsReply::Participant(
            super::view::roster_json(roster.iter()),
        )));
    }
    let roster = state.engine.roster_with_media(&cid).await?;
    let participants = roster
        .iter()
        .map(|(p, m)| participant_json(p, m.as_ref()))
        .collect();
    Ok(Json(ParticipantsReply::Operator(ParticipantList {
        participants,
    })))
}

#[utoipa::path(get, path = "/v1/conferences/{cid}/participants/{pid}", tag = "participants",
    security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$"), ("pid" = String, Path, description = "Participant id (p17)", pattern = "^p[0-9]{1,19}$")),
    responses((status = 200, description = "The participant", body = ParticipantReply),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference or participant", body = ErrorBody),
        (status = 422, description = "Not a meeting ID", body = ErrorBody),
        (status = 503, description = "Its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<AppState>,
    Path((cid, pid)): Path<(String, String)>,
) -> Result<Json<ParticipantReply>, ApiError> {
    meeting_id(&cid)?;
    let id = participant_id(&pid)?;
    let (p, m) = find(&state, &cid, id).await?;
    Ok(Json(ParticipantReply {
        participant: participant_json(&p, m.as_ref()),
    }))
}

/// A participant to add: a number to call, or a leg whose offer a gateway holds.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewParticipant {
    dial: Option<String>,
    sdp: Option<String>,
    display_name: Option<String>,
    uri: Option<String>,
    /// `leader` or `attendee` (default).
    role: Option<RoleName>,
}

#[utoipa::path(post, path = "/v1/conferences/{cid}/participants", request_body = NewParticipant, tag = "participants",
    security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$")),
    responses((status = 201, description = "Added: `inviting` for a dial-out (`participant` only); with `sdp`, the answer too", body = AddedParticipant),
        (status = 307, description = "Several nodes share a database and another runs this meeting: Location is the same request on that node"),
        (status = 400, description = "Malformed JSON or SDP, or a path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Locked, or a roster token", body = ErrorBody),
        (status = 404, description = "No such conference", body = ErrorBody),
        (status = 409, description = "Full", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Not a meeting ID, an invalid request or an offer that cannot be answered", body = ErrorBody),
        (status = 503, description = "Draining, SIP not running, no free RTP port, or its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn add(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    Body(new): Body<NewParticipant>,
) -> Result<Response, ApiError> {
    meeting_id(&cid)?;
    if state.draining() {
        return Err(ApiError::draining());
    }
    // Several nodes: the leg goes where the meeting runs.
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    if let Some(redirect) = super::placed::elsewhere(&state, &cid, path_and_query).await? {
        return Ok(redirect);
    }
    let role = match new.role {
        None | Some(RoleName::Attendee) => Role::Attendee,
        Some(RoleName::Leader) => Role::Leader,
    };
    let display_name = super::conferences::name("display_name", new.display_name)?;
    match (new.dial, new.sdp) {
        (Some(target), None) => {
            if !crate::sip::uas::safe_uri(&target) {
                return Err(ApiError::invalid(
                    "dial must be a sip: URI of at most 256 printable characters \
                     (no spaces, quotes, angle brackets or line breaks)",
                ));
            }
            let sip = state.sip.clone().ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_sip",
                    "SIP is not running",
                )
            })?;
            if state.engine.admission(&cid).is_none() {
                return Err(ApiError::not_found(format!("no conference {cid}")));
            }
            let joiner = Joiner {
                display_name,
                uri: target.clone(),
                role,
                identity: None,
            };
            let p = sip.dial(&cid, &target, joiner).await.map_err(|e| match e {
                crate::sip::server::DialError::Engine(e) => ApiError::from(e),
                crate::sip::server::DialError::BadTarget(t) => {
                    ApiError::invalid(format!("cannot call {t}"))
                }
                e @ crate::sip::server::DialError::SrtpNeedsTls(_) => {
                    ApiError::invalid(e.to_string())
                }
                other => {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_sip", other.to_string())
                }
            })?;
            let (participant, media) = find(&state, &cid, p).await?;
            let body = AddedParticipant {
                participant: participant_json(&participant, media.as_ref()),
                sdp: None,
            };
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        (None, Some(offer)) => {
            let joiner = Joiner {
                display_name,
                uri: new.uri.unwrap_or_else(|| "sdp:gateway".to_owned()),
                role,
                identity: None,
            };
            let media_advertise = state.media_advertise;
            // The conference's own SRTP policy is a storage read.
            let rule = {
                let state = state.clone();
                let cid = cid.clone();
                blocking(move || srtp::rule(&state, &cid)).await?
            };
            let n = crate::sip::sdp::negotiate(offer.as_bytes(), &state.codecs, rule)
                .map_err(srtp::refusal)?;
            let local_key = match n.srtp {
                Some(_) => {
                    let mut k = [0u8; 30];
                    getrandom::fill(&mut k).map_err(|_| ApiError::internal("no randomness"))?;
                    Some(k)
                }
                None => None,
            };
            let spec = n.leg_spec(local_key);
            // No signalling from the far end here: its record shows the media address
            // the offer names.
            let origin = crate::store::Origin::new(None, Some(n.remote));
            let (p, bound) = state
                .engine
                .add_rtp_leg_from(&cid, joiner, spec, origin)
                .await?;
            // The client's media address decides which of ours it is given (the API
            // caller may be elsewhere).
            let local = crate::addr::Advertise::new(media_advertise, bound.ip())
                .socket_for_peer(bound, n.remote.ip());
            let answer = crate::sip::sdp::answer(&n, local, local_key.as_ref(), p.0, 1);
            let (participant, media) = find(&state, &cid, p).await?;
            let body = AddedParticipant {
                participant: participant_json(&participant, media.as_ref()),
                sdp: Some(answer),
            };
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        _ => Err(ApiError::invalid("give exactly one of `dial` and `sdp`")),
    }
}

#[utoipa::path(post, path = "/v1/conferences/{cid}/participants/{pid}/{action}", tag = "participants",
    security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$"), ("pid" = String, Path, description = "Participant id (p17)", pattern = "^p[0-9]{1,19}$"),
        ("action" = String, Path, description = "mute, unmute, deaf or undeaf")),
    responses((status = 200, description = "The participant after the change", body = ParticipantReply),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference, participant or action", body = ErrorBody),
        (status = 409, description = "The participant has left", body = ErrorBody),
        (status = 422, description = "Not a meeting ID", body = ErrorBody),
        (status = 503, description = "Its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn act(
    State(state): State<AppState>,
    Path((cid, pid, action)): Path<(String, String, String)>,
) -> Result<Json<ParticipantReply>, ApiError> {
    meeting_id(&cid)?;
    let id = participant_id(&pid)?;
    let control = match action.as_str() {
        "mute" => Control::Mute(id, true),
        "unmute" => Control::Mute(id, false),
        "deaf" => Control::Deaf(id, true),
        "undeaf" => Control::Deaf(id, false),
        _ => return Err(ApiError::not_found(format!("no action {action}"))),
    };
    let (p, _) = find(&state, &cid, id).await?;
    if matches!(p.state, PState::Disconnected(_)) {
        return Err(ApiError::conflict(format!("{id} has left the conference")));
    }
    state.engine.control(&cid, control).await?;
    let (p, m) = find(&state, &cid, id).await?;
    Ok(Json(ParticipantReply {
        participant: participant_json(&p, m.as_ref()),
    }))
}

#[utoipa::path(delete, path = "/v1/conferences/{cid}/participants/{pid}", tag = "participants",
    security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$"), ("pid" = String, Path, description = "Participant id (p17)", pattern = "^p[0-9]{1,19}$")),
    responses((status = 204, description = "Ejected"),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference or participant", body = ErrorBody),
        (status = 409, description = "The participant has left", body = ErrorBody),
        (status = 422, description = "Not a meeting ID", body = ErrorBody),
        (status = 503, description = "Its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn eject(
    State(state): State<AppState>,
    Path((cid, pid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    meeting_id(&cid)?;
    let id = participant_id(&pid)?;
    let (p, _) = find(&state, &cid, id).await?;
    if matches!(p.state, PState::Disconnected(_)) {
        return Err(ApiError::conflict(format!("{id} has left the conference")));
    }
    state.engine.control(&cid, Control::Eject(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
