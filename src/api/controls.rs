//! Leader rights and per-participant volume.
//!
//! The operator (API token): `POST …/participants/{pid}/role` makes a participant a leader or
//! an attendee; `POST …/participants/{pid}/gain` sets how loud the others hear it (`input_db`)
//! and how loud it hears them (`output_db`).
//!
//! A leader on the join page: its WHIP session's roster token may also use
//! `/v1/conferences/{cid}/moderation` of its own conference (the auth layer lets it through to
//! here, `allows`): `GET` tells the page who it is, its role and whether the conference is
//! locked; `POST` mutes, unmutes or ejects a participant, or locks or unlocks the conference,
//! when the session's participant is a leader now (by the leader PIN or a leader's join token
//! at the join, or promoted since). An attendee's session may mute and unmute only its own
//! participant (the page's "Mute me"); anything else it asks is answered 403.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::conferences::{Body, meeting_id};
use super::error::ErrorBody;
use super::extract::Path;
use super::replies::{ParticipantInfo, ParticipantReply, RoleName};
use super::view::ParticipantView;
use super::{ApiError, AppState, blocking};
use crate::conference::roster::{MAX_GAIN_DB, MIN_GAIN_DB};
use crate::conference::{Participant, ParticipantId, Role, State as PState};
use crate::mixer::Control;

/// The route a leader's roster token may use besides reading (`view`).
const MODERATION: &str = "moderation";

/// Whether a roster token's request is for its own conference's moderation route (then the
/// handlers here decide; anything else is for `view::check`). 403 for another conference's.
pub(super) fn allows(
    session_cid: &str,
    method: &Method,
    path: &str,
) -> Option<Result<(), ApiError>> {
    let rest = path.strip_prefix("/v1/conferences/")?;
    let (cid, what) = rest.split_once('/')?;
    if what != MODERATION || (method != Method::GET && method != Method::POST) {
        return None;
    }
    Some(if cid == session_cid {
        Ok(())
    } else {
        Err(forbidden(
            "a roster token moderates only its own conference",
        ))
    })
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message.to_owned())
}

/// `p17` -> participant 17.
fn participant_id(pid: &str) -> Result<ParticipantId, ApiError> {
    pid.strip_prefix('p')
        .and_then(|n| n.parse().ok())
        .map(ParticipantId)
        .ok_or_else(|| ApiError::not_found(format!("no participant {pid}")))
}

/// The participant, present (404 unknown, 409 gone).
async fn present(state: &AppState, cid: &str, id: ParticipantId) -> Result<Participant, ApiError> {
    let p = state
        .engine
        .roster(cid)
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no participant {id} in conference {cid}")))?;
    if matches!(p.state, PState::Disconnected(_)) {
        return Err(ApiError::conflict(format!("{id} has left the conference")));
    }
    Ok(p)
}

/// The participant as the operator sees it, after a change.
async fn reply(
    state: &AppState,
    cid: &str,
    id: ParticipantId,
) -> Result<Json<ParticipantReply>, ApiError> {
    let (p, m) = state
        .engine
        .roster_with_media(cid)
        .await?
        .into_iter()
        .find(|(p, _)| p.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no participant {id} in conference {cid}")))?;
    Ok(Json(ParticipantReply {
        participant: ParticipantInfo::of(&p, m.as_ref()),
    }))
}

/// A new role.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewRole {
    /// `leader` or `attendee`.
    role: RoleName,
}

#[utoipa::path(post, path = "/v1/conferences/{cid}/participants/{pid}/role", request_body = NewRole,
    tag = "participants", security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)"), ("pid" = String, Path, description = "Participant id (p17)")),
    responses((status = 200, description = "The participant with its new role. A leader may use the leaders' keypad controls and the join page's; with `wait_for_leader`, a new leader lets those waiting in", body = ParticipantReply),
        (status = 400, description = "Malformed JSON, or a path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference or participant", body = ErrorBody),
        (status = 409, description = "The participant has left", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Not a meeting ID, or a role that is not `leader` or `attendee`", body = ErrorBody),
        (status = 503, description = "Its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn role(
    State(state): State<AppState>,
    Path((cid, pid)): Path<(String, String)>,
    Body(new): Body<NewRole>,
) -> Result<Json<ParticipantReply>, ApiError> {
    meeting_id(&cid)?;
    let id = participant_id(&pid)?;
    let role = match new.role {
        RoleName::Leader => Role::Leader,
        RoleName::Attendee => Role::Attendee,
    };
    control_and_reply(state, cid, id, vec![Control::SetRole(id, role)]).await
}

/// New gains (dB, -30 to +12; 0 leaves the audio as it is). At least one.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewGains {
    /// How loud the others hear the participant.
    #[schema(minimum = -30.0, maximum = 12.0)]
    input_db: Option<f64>,
    /// How loud the participant hears the others (a phone's `*4`/`*7` change it too).
    #[schema(minimum = -30.0, maximum = 12.0)]
    output_db: Option<f64>,
}

/// A gain from the API: a number from -30 to +12 dB.
fn gain(name: &str, db: Option<f64>) -> Result<Option<confab_dsp::mix::Gain>, ApiError> {
    let Some(db) = db else {
        return Ok(None);
    };
    let (min, max) = (f64::from(MIN_GAIN_DB), f64::from(MAX_GAIN_DB));
    if !db.is_finite() || !(min..=max).contains(&db) {
        return Err(ApiError::invalid(format!(
            "{name} must be a number of dB from {min} to +{max}, not {db}"
        )));
    }
    Ok(Some(confab_dsp::mix::Gain::from_db(db as f32)))
}

#[utoipa::path(post, path = "/v1/conferences/{cid}/participants/{pid}/gain", request_body = NewGains,
    tag = "participants", security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)"), ("pid" = String, Path, description = "Participant id (p17)")),
    responses((status = 200, description = "The participant with its gains (`input_gain_db`, `output_gain_db`, to a tenth of a dB)", body = ParticipantReply),
        (status = 400, description = "Malformed JSON, or a path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference or participant", body = ErrorBody),
        (status = 409, description = "The participant has left", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Not a meeting ID, no gain given, or a gain that is not a number from -30 to +12", body = ErrorBody),
        (status = 503, description = "Its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn gains(
    State(state): State<AppState>,
    Path((cid, pid)): Path<(String, String)>,
    Body(new): Body<NewGains>,
) -> Result<Json<ParticipantReply>, ApiError> {
    meeting_id(&cid)?;
    let id = participant_id(&pid)?;
    let input = gain("input_db", new.input_db)?;
    let output = gain("output_db", new.output_db)?;
    if input.is_none() && output.is_none() {
        return Err(ApiError::invalid("give input_db, output_db or both"));
    }
    let controls = (input.map(|g| Control::TalkGain(id, g)).into_iter())
        .chain(output.map(|g| Control::ListenGain(id, g)))
        .collect();
    control_and_reply(state, cid, id, controls).await
}

/// Noise suppression of one participant's audio.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NoiseSuppressionSwitch {
    /// RNNoise on the participant's audio before it enters the mix.
    enabled: bool,
}

#[utoipa::path(post, path = "/v1/conferences/{cid}/participants/{pid}/noise_suppression", request_body = NoiseSuppressionSwitch,
    tag = "participants", security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)"), ("pid" = String, Path, description = "Participant id (p17)")),
    responses((status = 200, description = "Switched; the participant", body = ParticipantReply),
        (status = 400, description = "Malformed JSON, or a path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference or participant", body = ErrorBody),
        (status = 409, description = "The participant has left", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Not a meeting ID, or `enabled` missing or not a boolean", body = ErrorBody),
        (status = 503, description = "Its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn noise_suppression(
    State(state): State<AppState>,
    Path((cid, pid)): Path<(String, String)>,
    Body(new): Body<NoiseSuppressionSwitch>,
) -> Result<Json<ParticipantReply>, ApiError> {
    meeting_id(&cid)?;
    let id = participant_id(&pid)?;
    let control = Control::NoiseSuppression(id, new.enabled);
    control_and_reply(state, cid, id, vec![control]).await
}

/// Applies `controls`, in order, to participant `id` if it is still present, and answers with
/// the participant as it is then.
async fn control_and_reply(
    state: AppState,
    cid: String,
    id: ParticipantId,
    controls: Vec<Control>,
) -> Result<Json<ParticipantReply>, ApiError> {
    present(&state, &cid, id).await?;
    for control in controls {
        state.engine.control(&cid, control).await?;
    }
    reply(&state, &cid, id).await
}

/// What a join page may do: who it is, its role now, and whether the conference is locked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Moderation {
    /// The session's participant (`p17`).
    participant: String,
    role: RoleName,
    locked: bool,
}

/// A leader's act from the join page.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum ModerationAction {
    Mute,
    Unmute,
    Eject,
    Lock,
    Unlock,
}

/// `{"action": "mute", "participant": "p3"}`; `lock` and `unlock` name no participant.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ModerationRequest {
    action: ModerationAction,
    participant: Option<String>,
}

/// The live session of a roster token (401 once it has ended).
fn session_of(
    state: &AppState,
    view: &ParticipantView,
) -> Result<crate::webrtc::Session, ApiError> {
    state
        .webrtc
        .as_ref()
        .and_then(|w| w.roster_session(&view.token))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the roster token is not valid (its call may have ended)",
            )
        })
}

#[utoipa::path(get, path = "/v1/conferences/{cid}/moderation", tag = "webrtc",
    security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)")),
    responses((status = 200, description = "The session's participant, its role now, and whether the conference is locked", body = Moderation),
        (status = 400, description = "The API token (this is a WHIP session's question), or a path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token, or the session has ended", body = ErrorBody),
        (status = 403, description = "A roster token of another conference", body = ErrorBody),
        (status = 404, description = "No such conference", body = ErrorBody),
        (status = 409, description = "The session's participant has left", body = ErrorBody),
        (status = 422, description = "Not a meeting ID", body = ErrorBody),
        (status = 503, description = "Its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn whoami(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    view: Option<axum::Extension<ParticipantView>>,
) -> Result<Json<Moderation>, ApiError> {
    meeting_id(&cid)?;
    let Some(axum::Extension(view)) = view else {
        return Err(ApiError::bad_request(
            "this asks for a WHIP session's roster token (Confab-Roster-Token)",
        ));
    };
    let session = session_of(&state, &view)?;
    let me = present(&state, &cid, session.participant).await?;
    Ok(Json(Moderation {
        participant: me.id.to_string(),
        role: me.role.into(),
        locked: state.engine.policy(&cid).await?.locked,
    }))
}

#[utoipa::path(post, path = "/v1/conferences/{cid}/moderation", request_body = ModerationRequest, tag = "webrtc",
    security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)")),
    responses((status = 204, description = "Done"),
        (status = 400, description = "Malformed JSON, or a path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token, or the session has ended", body = ErrorBody),
        (status = 403, description = "A roster token of another conference, or of an attendee asking for more than muting or unmuting itself", body = ErrorBody),
        (status = 404, description = "No such conference or participant", body = ErrorBody),
        (status = 409, description = "The participant (or the session's own) has left", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Not a meeting ID, an unknown action, or a participant missing (mute, unmute, eject) or given (lock, unlock)", body = ErrorBody),
        (status = 503, description = "Storage or its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn moderate(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    view: Option<axum::Extension<ParticipantView>>,
    Body(request): Body<ModerationRequest>,
) -> Result<StatusCode, ApiError> {
    super::to_the_end(moderate_steps(state, cid, view, request)).await
}

async fn moderate_steps(
    state: AppState,
    cid: String,
    view: Option<axum::Extension<ParticipantView>>,
    request: ModerationRequest,
) -> Result<StatusCode, ApiError> {
    meeting_id(&cid)?;
    let target = match (request.action, request.participant.as_deref()) {
        (ModerationAction::Lock | ModerationAction::Unlock, None) => None,
        (ModerationAction::Lock | ModerationAction::Unlock, Some(_)) => {
            return Err(ApiError::invalid("lock and unlock name no participant"));
        }
        (_, Some(pid)) => Some(participant_id(pid)?),
        (_, None) => return Err(ApiError::invalid("name the participant")),
    };
    if let Some(axum::Extension(view)) = view {
        // A page: its participant must be a leader now, or mute or unmute only itself.
        let session = session_of(&state, &view)?;
        let me = present(&state, &cid, session.participant).await?;
        let own_mute = matches!(
            request.action,
            ModerationAction::Mute | ModerationAction::Unmute
        ) && target == Some(me.id);
        if me.role != Role::Leader && !own_mute {
            return Err(forbidden(
                "an attendee may only mute or unmute itself; the rest is for leaders",
            ));
        }
    }
    let control = match (request.action, target) {
        (ModerationAction::Lock, _) => Control::Lock(true),
        (ModerationAction::Unlock, _) => Control::Lock(false),
        (ModerationAction::Mute, Some(p)) => Control::Mute(p, true),
        (ModerationAction::Unmute, Some(p)) => Control::Mute(p, false),
        (ModerationAction::Eject, Some(p)) => Control::Eject(p),
        (_, None) => return Err(ApiError::invalid("name the participant")),
    };
    if let Some(p) = target {
        present(&state, &cid, p).await?;
    }
    let lock = match control {
        Control::Lock(locked) => Some(locked),
        _ => None,
    };
    state.engine.control(&cid, control).await?;
    if let Some(locked) = lock {
        // Stored as the operator's lock is, so that it outlives a restart.
        let store = state.store.clone();
        let stored = blocking(move || Ok(store.set_locked(&cid, locked)?)).await?;
        if !stored {
            return Err(ApiError::not_found("the conference is not stored"));
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
#[path = "controls_tests.rs"]
mod tests;
