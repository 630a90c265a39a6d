//! `/v1/conferences`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ErrorBody;
use super::extract::Path;
use super::replies::{
    ConferenceList, ConferenceOnly, ConferenceReply, ConferenceSummary, ConferenceView,
    ParticipantInfo, SrtpName,
};
use super::{ApiError, AppState, blocking, to_the_end};
use crate::conference::roster::EntryExit;
use crate::conference::{Admission, Gate, Policy};
use crate::engine::EngineError;
use crate::mixer::CommandError;
use crate::mixer::Control;
use crate::store::{Access, StoredConference, unix_ms};

#[cfg(test)]
#[path = "conferences_tests.rs"]
mod tests;

pub(super) use super::extract::Body;

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
    /// What those in the mix hear when a participant enters or leaves it: `off` (the default),
    /// `tones` (a rising tone for an entry, a falling one for an exit) or `names` (the name a
    /// caller recorded at the attendant, then "has joined" or "has left"; tones for those
    /// with no recorded name).
    entry_exit: Option<EntryExitSetting>,
    /// The conference's own SRTP policy for its SIP and API legs (`off`, `optional` or
    /// `required`); absent: unchanged (at creation, the bridge's `media.srtp`); null: back to
    /// the bridge's. It applies to dial-outs, API legs and INVITEs whose Request-URI names the
    /// conference; callers through the attendant have the bridge's.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<SrtpName>, nullable)]
    srtp: Option<Option<SrtpName>>,
}

/// A field given, even as null (`Some(None)`), told apart from one left out (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The API's names for [`EntryExit`].
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum EntryExitSetting {
    Off,
    Tones,
    Names,
}

impl From<EntryExitSetting> for EntryExit {
    fn from(s: EntryExitSetting) -> Self {
        match s {
            EntryExitSetting::Off => EntryExit::Off,
            EntryExitSetting::Tones => EntryExit::Tones,
            EntryExitSetting::Names => EntryExit::Names,
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
        if let Some(e) = self.entry_exit {
            c.entry_exit = e.into();
        }
        if let Some(srtp) = self.srtp {
            c.srtp = srtp.map(Into::into);
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
        entry_exit: c.entry_exit,
    }
}

pub(super) fn admission(c: &StoredConference) -> Admission {
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
pub fn start(state: &AppState, c: &StoredConference) -> crate::engine::Pending<()> {
    // Before the conference can be joined: a caller is never negotiated under the bridge's
    // policy in between. Taken back if the conference cannot start (one running already
    // keeps it: it is the same stored conference's).
    share_srtp(state, &c.id, c.srtp);
    let sip = state.sip.clone();
    let id = c.id.clone();
    state
        .engine
        .create_conference_full(&c.id, policy(c), admission(c), c.max_talkers)
        .and_check(move |started| match started {
            Ok(_) => Ok(()),
            Err(e) => {
                if !matches!(e, EngineError::Command(CommandError::ConferenceExists))
                    && let Some(sip) = sip
                {
                    sip.conference_srtp.set(&id, None);
                }
                Err(e)
            }
        })
}

/// Tells SIP a conference's own SRTP policy (none: the bridge's).
pub(super) fn share_srtp(state: &AppState, id: &str, srtp: Option<crate::config::SrtpPolicy>) {
    if let Some(sip) = &state.sip {
        sip.conference_srtp.set(id, srtp);
    }
}

fn view(state: &AppState, c: &StoredConference) -> ConferenceView {
    ConferenceView {
        id: c.id.clone(),
        name: c.name.clone(),
        access: c.access.into(),
        passcode: c.passcode.clone(),
        leader_pin: c.leader_pin.clone(),
        attendees: c.attendees.clone(),
        locked: c.locked,
        max_participants: c.max_participants,
        wait_for_leader: c.wait_for_leader,
        max_talkers: c.max_talkers.unwrap_or(state.max_talkers),
        entry_exit: c.entry_exit.into(),
        srtp: c.srtp.map(Into::into),
        created_at: c.created_at,
        max_talkers_applies: None,
    }
}

fn stored(state: &AppState, id: &str) -> Result<StoredConference, ApiError> {
    meeting_id(id)?;
    state
        .store
        .conference(id)?
        .ok_or_else(|| ApiError::not_found(format!("no conference {id}")))
}

/// `view` of a running conference as its mixer has it now: a leader's keypad lock is the
/// mixer's, not the store's, and the operator must see it.
fn live(mut view: ConferenceView, policy: Option<crate::conference::Policy>) -> ConferenceView {
    if let Some(policy) = policy {
        view.locked = policy.locked;
    }
    view
}

/// [`stored`], read off the runtime's threads (a database read).
async fn stored_off_runtime(state: &AppState, id: &str) -> Result<StoredConference, ApiError> {
    let (state, id) = (state.clone(), id.to_owned());
    blocking(move || stored(&state, &id)).await
}

/// Saves `c` off the runtime's threads (a database write) and gives it back.
async fn saved_off_runtime(
    state: &AppState,
    c: StoredConference,
) -> Result<StoredConference, ApiError> {
    let store = state.store.clone();
    blocking(move || {
        store.save_conference(&c)?;
        Ok(c)
    })
    .await
}

/// Writes `c`'s settings but its lock off the runtime's threads and gives it back; 404 when
/// the conference was deleted meanwhile.
async fn updated_off_runtime(
    state: &AppState,
    c: StoredConference,
) -> Result<StoredConference, ApiError> {
    let store = state.store.clone();
    blocking(move || {
        if store.update_settings(&c)? {
            Ok(c)
        } else {
            Err(ApiError::not_found(format!("no conference {}", c.id)))
        }
    })
    .await
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
    security(("bearer" = [])),
    responses((status = 201, description = "Created: the conference and its (empty) roster", body = ConferenceReply),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 409, description = "The meeting ID is taken", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid settings", body = ErrorBody),
        (status = 503, description = "Draining, storage or a mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<AppState>,
    Body(settings): Body<ConferenceSettings>,
) -> Result<Response, ApiError> {
    to_the_end(create_steps(state, settings)).await
}

async fn create_steps(state: AppState, settings: ConferenceSettings) -> Result<Response, ApiError> {
    if state.draining() {
        return Err(ApiError::draining());
    }
    let (id, c) = {
        let state = state.clone();
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
            settings.apply(&mut c)?;
            Ok((id, c))
        })
        .await?
    };
    start(&state, &c).await?;
    let c = match saved_off_runtime(&state, c).await {
        Ok(c) => c,
        Err(e) => {
            let _ = state.engine.control(&id, Control::End).await;
            // A conference made later with this ID must not inherit this one's policy.
            share_srtp(&state, &id, None);
            return Err(e);
        }
    };
    let body = ConferenceReply {
        conference: view(&state, &c),
        participants: Vec::new(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(get, path = "/v1/conferences", tag = "conferences", security(("bearer" = [])),
    responses((status = 200, description = "Every conference with its participant count", body = ConferenceList),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody)))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<ConferenceList>, ApiError> {
    let all = {
        let store = state.store.clone();
        blocking(move || Ok(store.conferences()?)).await?
    };
    let mut conferences = Vec::with_capacity(all.len());
    // Rosters and locks asked for a few conferences at a time, answered side by side: never
    // so many at once that a mixer thread's queue fills (and refuses SIP's controls).
    for some in all.chunks(LISTED_AT_ONCE) {
        let asked: Vec<_> = some
            .iter()
            .map(|c| (c, state.engine.roster(&c.id), state.engine.policy(&c.id)))
            .collect();
        for (c, roster, policy) in asked {
            conferences.push(summary(&state, c, roster, policy).await);
        }
    }
    Ok(Json(ConferenceList { conferences }))
}

/// Conferences whose roster and lock `GET /v1/conferences` asks for at once (2 commands each,
/// against a mixer thread's queue of 1,024).
const LISTED_AT_ONCE: usize = 32;

/// A listed conference with its head count.
async fn summary(
    state: &AppState,
    c: &StoredConference,
    roster: crate::engine::Pending<Vec<crate::conference::Participant>>,
    policy: crate::engine::Pending<crate::conference::Policy>,
) -> ConferenceSummary {
    let present = roster
        .await
        .map(|r| {
            r.iter()
                .filter(|p| !matches!(p.state, crate::conference::State::Disconnected(_)))
                .count()
        })
        .unwrap_or(0);
    ConferenceSummary {
        conference: live(view(state, c), policy.await.ok()),
        participant_count: present,
    }
}

#[utoipa::path(get, path = "/v1/conferences/{cid}", tag = "conferences", security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$")),
    responses((status = 200, description = "The conference and its roster", body = ConferenceReply),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference", body = ErrorBody),
        (status = 422, description = "Not a meeting ID", body = ErrorBody),
        (status = 503, description = "Storage or its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Json<ConferenceReply>, ApiError> {
    let c = stored_off_runtime(&state, &cid).await?;
    let policy = state.engine.policy(&cid);
    let roster = state.engine.roster_with_media(&cid).await?;
    let participants = roster
        .iter()
        .map(|(p, media)| ParticipantInfo::of(p, media.as_ref()))
        .collect();
    Ok(Json(ConferenceReply {
        conference: live(view(&state, &c), policy.await.ok()),
        participants,
    }))
}

#[utoipa::path(patch, path = "/v1/conferences/{cid}", request_body = ConferenceSettings, tag = "conferences",
    security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$")),
    responses((status = 200, description = "The changed conference", body = ConferenceOnly),
        (status = 400, description = "Malformed JSON or a path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Not a meeting ID, or invalid settings", body = ErrorBody),
        (status = 503, description = "Storage or its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn patch(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    Body(settings): Body<ConferenceSettings>,
) -> Result<Json<ConferenceOnly>, ApiError> {
    to_the_end(patch_steps(state, cid, settings)).await
}

async fn patch_steps(
    state: AppState,
    cid: String,
    settings: ConferenceSettings,
) -> Result<Json<ConferenceOnly>, ApiError> {
    let mut c = stored_off_runtime(&state, &cid).await?;
    if settings.id.as_deref().is_some_and(|id| id != cid) {
        return Err(ApiError::invalid("a conference's id cannot change"));
    }
    let talkers_before = c.max_talkers;
    let entry_exit_before = c.entry_exit;
    // The mixer's lock only when asked: a leader may have locked by keypad since it was read.
    let lock = settings.locked;
    settings.apply(&mut c)?;
    let c = match lock {
        Some(_) => saved_off_runtime(&state, c).await?,
        // The stored lock as it is: a leader may have locked by keypad since `c` was read.
        None => updated_off_runtime(&state, c).await?,
    };
    // What is stored is what SIP applies, even if the engine below cannot be told.
    share_srtp(&state, &cid, c.srtp);
    state.engine.set_admission(&cid, admission(&c))?;
    if lock.is_some() {
        state.engine.control(&cid, Control::Lock(c.locked)).await?;
    }
    state
        .engine
        .control(
            &cid,
            Control::Limits {
                max_participants: c.max_participants,
                wait_for_leader: c.wait_for_leader,
            },
        )
        .await?;
    if c.entry_exit != entry_exit_before {
        state
            .engine
            .control(&cid, Control::EntryExit(c.entry_exit))
            .await?;
    }
    let mut conference = live(view(&state, &c), state.engine.policy(&cid).await.ok());
    if c.max_talkers != talkers_before {
        conference.max_talkers_applies = Some("when the conference next starts");
    }
    Ok(Json(ConferenceOnly { conference }))
}

#[utoipa::path(delete, path = "/v1/conferences/{cid}", tag = "conferences", security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$")),
    responses((status = 204, description = "Ended: everyone left with `conference-ended`"),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference", body = ErrorBody),
        (status = 422, description = "Not a meeting ID", body = ErrorBody),
        (status = 503, description = "Storage or its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn end(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<StatusCode, ApiError> {
    to_the_end(end_steps(state, cid)).await
}

async fn end_steps(state: AppState, cid: String) -> Result<StatusCode, ApiError> {
    stored_off_runtime(&state, &cid).await?;
    // Everyone leaves with `conference-ended`; the settings are gone with it.
    match state.engine.control(&cid, Control::End).await {
        Ok(()) | Err(EngineError::Command(CommandError::NoConference)) => {}
        Err(e) => return Err(e.into()),
    }
    {
        let (store, cid) = (state.store.clone(), cid.clone());
        blocking(move || Ok(store.delete_conference(&cid)?)).await?;
    }
    share_srtp(&state, &cid, None);
    Ok(StatusCode::NO_CONTENT)
}

async fn set_lock(
    state: AppState,
    cid: String,
    locked: bool,
) -> Result<Json<ConferenceOnly>, ApiError> {
    to_the_end(set_lock_steps(state, cid, locked)).await
}

async fn set_lock_steps(
    state: AppState,
    cid: String,
    locked: bool,
) -> Result<Json<ConferenceOnly>, ApiError> {
    let mut c = stored_off_runtime(&state, &cid).await?;
    state.engine.control(&cid, Control::Lock(locked)).await?;
    c.locked = locked;
    let c = saved_off_runtime(&state, c).await?;
    Ok(Json(ConferenceOnly {
        conference: view(&state, &c),
    }))
}

#[utoipa::path(post, path = "/v1/conferences/{cid}/lock", tag = "conferences", security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$")),
    responses((status = 200, description = "Locked: new joins (but leaders') are refused", body = ConferenceOnly),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference", body = ErrorBody),
        (status = 422, description = "Not a meeting ID", body = ErrorBody),
        (status = 503, description = "Storage or its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn lock(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Json<ConferenceOnly>, ApiError> {
    set_lock(state, cid, true).await
}

#[utoipa::path(post, path = "/v1/conferences/{cid}/unlock", tag = "conferences", security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$")),
    responses((status = 200, description = "Unlocked", body = ConferenceOnly),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference", body = ErrorBody),
        (status = 422, description = "Not a meeting ID", body = ErrorBody),
        (status = 503, description = "Storage or its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn unlock(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Json<ConferenceOnly>, ApiError> {
    set_lock(state, cid, false).await
}

#[utoipa::path(post, path = "/v1/conferences/{cid}/mute-all", tag = "conferences", security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$")),
    responses((status = 204, description = "Everyone but leaders muted"),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference", body = ErrorBody),
        (status = 422, description = "Not a meeting ID", body = ErrorBody),
        (status = 503, description = "Storage or its mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn mute_all(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<StatusCode, ApiError> {
    stored_off_runtime(&state, &cid).await?;
    state.engine.control(&cid, Control::MuteAll).await?;
    Ok(StatusCode::NO_CONTENT)
}
