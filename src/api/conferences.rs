//! `/v1/conferences` and `/v1/records`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::participants::participant_json;
use super::{ApiError, AppState, blocking};
use crate::conference::roster::EntryExit;
use crate::conference::{Admission, Gate, Policy};
use crate::mixer::Control;
use crate::store::{Access, RecordFilter, StoredConference, unix_ms};

#[cfg(test)]
#[path = "conferences_tests.rs"]
mod tests;

/// JSON bodies whose rejections are API errors: malformed JSON 400, wrong shape 422.
pub(super) struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::invalid(e.body_text())),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::bad_request(
                "the body must be JSON (Content-Type: application/json)",
            )),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the body is larger than 64 KiB",
            )),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// A new conference, or changes to one.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ConferenceSettings {
    id: Option<String>,
    name: Option<String>,
    access: Option<String>,
    /// An empty string removes it.
    passcode: Option<String>,
    leader_pin: Option<String>,
    attendees: Option<Vec<String>>,
    locked: Option<bool>,
    max_participants: Option<usize>,
    wait_for_leader: Option<bool>,
    max_talkers: Option<usize>,
    /// What those in the mix hear when a participant enters or leaves it: `off` (the default)
    /// or `tones` (a rising tone for an entry, a falling one for an exit).
    entry_exit: Option<EntryExitSetting>,
}

/// The API's names for [`EntryExit`].
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum EntryExitSetting {
    Off,
    Tones,
}

impl From<EntryExitSetting> for EntryExit {
    fn from(s: EntryExitSetting) -> Self {
        match s {
            EntryExitSetting::Off => EntryExit::Off,
            EntryExitSetting::Tones => EntryExit::Tones,
        }
    }
}

fn digits(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// A meeting ID: 4 to 12 digits.
pub(super) fn meeting_id(id: &str) -> Result<(), ApiError> {
    if digits(id, 4, 12) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "meeting ID `{}` must be 4 to 12 digits",
            id.chars().take(40).collect::<String>()
        )))
    }
}

/// A name a client chooses (conference, participant, join token): at most 128 characters and
/// no control characters (they would reach the roster, the records, the pages and the logs);
/// surrounding spaces are dropped. None is an empty name.
pub(super) fn name(field: &str, value: Option<String>) -> Result<String, ApiError> {
    let value = value.unwrap_or_default();
    let value = value.trim();
    if value.chars().count() > crate::conference::MAX_NAME {
        return Err(ApiError::invalid(format!(
            "{field} is longer than 128 characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(value.to_owned())
}

impl ConferenceSettings {
    /// Applies the settings to `c`, checking each.
    fn apply(self, c: &mut StoredConference) -> Result<(), ApiError> {
        if self.name.is_some() {
            c.name = name("name", self.name)?;
        }
        if let Some(access) = self.access {
            c.access = Access::parse(&access).ok_or_else(|| {
                ApiError::invalid("access must be anonymous, authenticated or closed")
            })?;
        }
        for (field, value, target) in [
            ("passcode", self.passcode, &mut c.passcode),
            ("leader_pin", self.leader_pin, &mut c.leader_pin),
        ] {
            match value.as_deref() {
                None => {}
                Some("") => *target = None,
                Some(v) if digits(v, 1, 16) => *target = Some(v.to_owned()),
                Some(_) => {
                    return Err(ApiError::invalid(format!("{field} must be 1 to 16 digits")));
                }
            }
        }
        if c.passcode.is_some() && c.passcode == c.leader_pin {
            return Err(ApiError::invalid("leader_pin must differ from passcode"));
        }
        if let Some(attendees) = self.attendees {
            if attendees.len() > 10_000 || attendees.iter().any(|a| a.is_empty() || a.len() > 256) {
                return Err(ApiError::invalid(
                    "attendees: at most 10000 non-empty entries of at most 256 characters",
                ));
            }
            c.attendees = attendees;
        }
        if let Some(locked) = self.locked {
            c.locked = locked;
        }
        if let Some(n) = self.max_participants {
            if n > 100_000 {
                return Err(ApiError::invalid(
                    "max_participants is at most 100000 (0: no limit)",
                ));
            }
            c.max_participants = n;
        }
        if let Some(w) = self.wait_for_leader {
            c.wait_for_leader = w;
        }
        if let Some(t) = self.max_talkers {
            if !(1..=16).contains(&t) {
                return Err(ApiError::invalid("max_talkers must be 1 to 16"));
            }
            c.max_talkers = Some(t);
        }
        Ok(())
    }
}

fn policy(c: &StoredConference) -> Policy {
    Policy {
        locked: c.locked,
        max_participants: c.max_participants,
        wait_for_leader: c.wait_for_leader,
        // A meeting's callers waiting for the leader hear music (the attendant's do not).
        hold_music: true,
        // Not stored yet: a restart starts the meeting with the default.
        entry_exit: EntryExit::default(),
    }
}

fn admission(c: &StoredConference) -> Admission {
    Admission {
        passcode: c.passcode.clone(),
        leader_pin: c.leader_pin.clone(),
        gate: match c.access {
            Access::Anonymous => Gate::Anyone,
            Access::Authenticated => Gate::Asserted,
            Access::Closed => Gate::Attendees(c.attendees.clone()),
        },
    }
}

/// Starts a stored conference in the engine (at creation and at start-up).
pub fn start(state: &AppState, c: &StoredConference) -> Result<(), ApiError> {
    start_with(state, c, EntryExit::default())
}

/// Starts a conference with what it plays when people enter and leave.
fn start_with(
    state: &AppState,
    c: &StoredConference,
    entry_exit: EntryExit,
) -> Result<(), ApiError> {
    let policy = Policy {
        entry_exit,
        ..policy(c)
    };
    state
        .engine
        .create_conference_full(&c.id, policy, admission(c), c.max_talkers)?;
    Ok(())
}

#[derive(Serialize)]
struct ConferenceView<'a> {
    id: &'a str,
    name: &'a str,
    access: &'static str,
    passcode: &'a Option<String>,
    leader_pin: &'a Option<String>,
    attendees: &'a [String],
    locked: bool,
    max_participants: usize,
    wait_for_leader: bool,
    max_talkers: usize,
    entry_exit: &'static str,
    created_at: i64,
}

fn view(state: &AppState, c: &StoredConference) -> Value {
    let v = ConferenceView {
        id: &c.id,
        name: &c.name,
        access: c.access.as_str(),
        passcode: &c.passcode,
        leader_pin: &c.leader_pin,
        attendees: &c.attendees,
        locked: c.locked,
        max_participants: c.max_participants,
        wait_for_leader: c.wait_for_leader,
        max_talkers: c.max_talkers.unwrap_or(state.max_talkers),
        // As the running conference has it (the setting is not stored).
        entry_exit: state
            .engine
            .policy(&c.id)
            .map(|p| p.entry_exit)
            .unwrap_or_default()
            .as_str(),
        created_at: c.created_at,
    };
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn stored(state: &AppState, id: &str) -> Result<StoredConference, ApiError> {
    meeting_id(id)?;
    state
        .store
        .conference(id)?
        .ok_or_else(|| ApiError::not_found(format!("no conference {id}")))
}

/// A meeting ID nobody uses yet.
fn fresh_id(state: &AppState) -> Result<String, ApiError> {
    for _ in 0..100 {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|_| ApiError::internal("no randomness"))?;
        let n = u64::from_le_bytes(b) % 90_000_000 + 10_000_000;
        let id = n.to_string();
        if state.store.conference(&id)?.is_none() && state.engine.admission(&id).is_none() {
            return Ok(id);
        }
    }
    Err(ApiError::internal("no free meeting ID found"))
}

#[utoipa::path(post, path = "/v1/conferences", request_body = ConferenceSettings, tag = "conferences",
    responses((status = 201, description = "Created: the conference and its (empty) roster"),
        (status = 409, description = "The meeting ID is taken"), (status = 422, description = "Invalid settings"),
        (status = 503, description = "Draining")))]
pub(super) async fn create(
    State(state): State<AppState>,
    Body(settings): Body<ConferenceSettings>,
) -> Result<Response, ApiError> {
    if state.draining() {
        return Err(ApiError::draining());
    }
    blocking(move || {
        let id = match &settings.id {
            Some(id) => {
                meeting_id(id)?;
                id.clone()
            }
            None => fresh_id(&state)?,
        };
        if state.store.conference(&id)?.is_some() || state.engine.admission(&id).is_some() {
            return Err(ApiError::conflict(format!(
                "conference {id} exists already"
            )));
        }
        let mut c = StoredConference {
            id: id.clone(),
            name: format!("Conference {id}"),
            created_at: unix_ms(std::time::SystemTime::now()),
            ..StoredConference::default()
        };
        let entry_exit = settings.entry_exit.map(EntryExit::from).unwrap_or_default();
        settings.apply(&mut c)?;
        start_with(&state, &c, entry_exit)?;
        if let Err(e) = state.store.save_conference(&c) {
            let _ = state.engine.control(&id, Control::End);
            return Err(e.into());
        }
        let body = json!({ "conference": view(&state, &c), "participants": [] });
        Ok((StatusCode::CREATED, Json(body)).into_response())
    })
    .await
}

#[utoipa::path(get, path = "/v1/conferences", tag = "conferences",
    responses((status = 200, description = "Every conference with its participant count")))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let all = state.store.conferences()?;
        let items: Vec<Value> = all
            .iter()
            .map(|c| {
                let present = state
                    .engine
                    .roster(&c.id)
                    .map(|r| {
                        r.iter()
                            .filter(|p| {
                                !matches!(p.state, crate::conference::State::Disconnected(_))
                            })
                            .count()
                    })
                    .unwrap_or(0);
                let mut v = view(&state, c);
                v["participant_count"] = json!(present);
                v
            })
            .collect();
        Ok(Json(json!({ "conferences": items })))
    })
    .await
}

#[utoipa::path(get, path = "/v1/conferences/{cid}", tag = "conferences",
    params(("cid" = String, Path, description = "Meeting ID")),
    responses((status = 200, description = "The conference and its roster"), (status = 404, description = "No such conference")))]
pub(super) async fn get(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let c = stored(&state, &cid)?;
        let roster = state.engine.roster_with_media(&cid)?;
        let participants: Vec<Value> = roster
            .iter()
            .map(|(p, media)| participant_json(p, media.as_ref()))
            .collect();
        Ok(Json(
            json!({ "conference": view(&state, &c), "participants": participants }),
        ))
    })
    .await
}

#[utoipa::path(patch, path = "/v1/conferences/{cid}", request_body = ConferenceSettings, tag = "conferences",
    params(("cid" = String, Path, description = "Meeting ID")),
    responses((status = 200, description = "The changed conference"), (status = 404, description = "No such conference"),
        (status = 422, description = "Invalid settings")))]
pub(super) async fn patch(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    Body(settings): Body<ConferenceSettings>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let mut c = stored(&state, &cid)?;
        if settings.id.as_deref().is_some_and(|id| id != cid) {
            return Err(ApiError::invalid("a conference's id cannot change"));
        }
        let talkers_before = c.max_talkers;
        let entry_exit = settings.entry_exit.map(EntryExit::from);
        settings.apply(&mut c)?;
        state.store.save_conference(&c)?;
        state.engine.set_admission(&cid, admission(&c))?;
        state.engine.control(&cid, Control::Lock(c.locked))?;
        state.engine.control(
            &cid,
            Control::Limits {
                max_participants: c.max_participants,
                wait_for_leader: c.wait_for_leader,
            },
        )?;
        if let Some(e) = entry_exit {
            state.engine.control(&cid, Control::EntryExit(e))?;
        }
        let mut v = view(&state, &c);
        if c.max_talkers != talkers_before {
            v["max_talkers_applies"] = json!("when the conference next starts");
        }
        Ok(Json(json!({ "conference": v })))
    })
    .await
}

#[utoipa::path(delete, path = "/v1/conferences/{cid}", tag = "conferences",
    params(("cid" = String, Path, description = "Meeting ID")),
    responses((status = 204, description = "Ended: everyone left with `conference-ended`"), (status = 404, description = "No such conference")))]
pub(super) async fn end(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        stored(&state, &cid)?;
        // Everyone leaves with `conference-ended`; the settings are gone with it.
        match state.engine.control(&cid, Control::End) {
            Ok(()) | Err(crate::engine::EngineError::Command(crate::mixer::CommandError::NoConference)) => {}
            Err(e) => return Err(e.into()),
        }
        state.store.delete_conference(&cid)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn set_lock(state: AppState, cid: String, locked: bool) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let mut c = stored(&state, &cid)?;
        state.engine.control(&cid, Control::Lock(locked))?;
        c.locked = locked;
        state.store.save_conference(&c)?;
        Ok(Json(json!({ "conference": view(&state, &c) })))
    })
    .await
}

#[utoipa::path(post, path = "/v1/conferences/{cid}/lock", tag = "conferences",
    params(("cid" = String, Path, description = "Meeting ID")),
    responses((status = 200, description = "Locked: new joins (but leaders') are refused"), (status = 404, description = "No such conference")))]
pub(super) async fn lock(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_lock(state, cid, true).await
}

#[utoipa::path(post, path = "/v1/conferences/{cid}/unlock", tag = "conferences",
    params(("cid" = String, Path, description = "Meeting ID")),
    responses((status = 200, description = "Unlocked"), (status = 404, description = "No such conference")))]
pub(super) async fn unlock(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_lock(state, cid, false).await
}

#[utoipa::path(post, path = "/v1/conferences/{cid}/mute-all", tag = "conferences",
    params(("cid" = String, Path, description = "Meeting ID")),
    responses((status = 204, description = "Everyone but leaders muted"), (status = 404, description = "No such conference")))]
pub(super) async fn mute_all(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        stored(&state, &cid)?;
        state.engine.control(&cid, Control::MuteAll)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordQuery {
    conference: Option<String>,
    /// Joined at or after, milliseconds since the Unix epoch.
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<usize>,
    offset: Option<usize>,
}

#[utoipa::path(get, path = "/v1/records", tag = "records", params(RecordQuery),
    responses((status = 200, description = "Call records, newest first, and the next page's offset"),
        (status = 422, description = "Invalid filter")))]
pub(super) async fn records(
    State(state): State<AppState>,
    query: Result<Query<RecordQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 1000"));
    }
    let filter = RecordFilter {
        conference: q.conference,
        since: q.since,
        until: q.until,
        limit,
        offset: q.offset.unwrap_or(0),
    };
    blocking(move || {
        let rows = state.store.records(&filter)?;
        let items: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "id": r.id, "conference": r.conference, "participant": r.participant,
                    "display_name": r.display_name, "uri": r.uri, "role": r.role,
                    "transport": r.transport, "codec": r.codec, "srtp": r.srtp,
                    "joined_at": r.joined_at, "left_at": r.left_at,
                    "disconnect_reason": r.reason, "sip_status": r.sip_status,
                    "packets_in": r.packets_in, "packets_out": r.packets_out,
                    "packets_lost": r.packets_lost, "jitter_ms": r.jitter_ms,
                    "rtt_ms": r.rtt_ms, "mos": r.mos,
                })
            })
            .collect();
        let next = (items.len() == filter.limit).then_some(filter.offset + filter.limit);
        Ok(Json(json!({ "records": items, "next_offset": next })))
    })
    .await
}
