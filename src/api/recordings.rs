//! Conference recordings: start and stop per conference, and the recordings kept (list,
//! metadata, the audio with a single HTTP range, delete). The work is `crate::recording`'s;
//! here are the routes, the checks of what a client sends, and the range.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::extract::{Path, Query};
use super::{ApiError, AppState, blocking};
use crate::recording::{RecordError, Recorder, RecordingMeta, valid_id};

/// Bytes read from disk per chunk of a download.
const CHUNK: u64 = 64 * 1024;

/// `DELETE /v1/conferences/{cid}/recording`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RecordingStopped {
    /// The recording that was stopped (its files are closed within a second).
    pub id: String,
}

/// A page of recordings, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RecordingPage {
    pub recordings: Vec<RecordingMeta>,
    /// The `offset` of the next page; none on the last.
    #[schema(required = true)]
    pub next_offset: Option<usize>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordingQuery {
    /// Only this conference's recordings.
    conference: Option<String>,
    /// Recordings per page: 1 to 1000 (100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Recordings to skip (0).
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    offset: Option<usize>,
}

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        let message = e.to_string();
        match e {
            RecordError::NoConference | RecordError::NoRecording => ApiError::not_found(message),
            RecordError::AlreadyRecording | RecordError::NotRecording | RecordError::InProgress => {
                ApiError::conflict(message)
            }
            RecordError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}

/// The events of a recording's start and of its end on the event streams (named once: the
/// console's indicator follows them).
pub(super) const STARTED: &str = "recording.started";
pub(super) const STOPPED: &str = "recording.stopped";

/// [`STARTED`] and [`STOPPED`] (its files closed: stopped, or the conference ended) on the
/// event streams.
pub(super) fn publish_to(recorder: &Recorder, events: Arc<super::EventHub>) {
    recorder.on_change(move |n| {
        let (kind, data) = match n.closed_ms {
            None => (
                STARTED,
                serde_json::json!({ "conference": n.conference, "recording": n.id }),
            ),
            Some(ms) => (
                STOPPED,
                serde_json::json!({ "conference": n.conference, "recording": n.id,
                                    "duration_ms": ms }),
            ),
        };
        events.publish(Arc::from(n.conference.as_str()), kind, &data);
    });
}

fn recorder(state: &AppState) -> Result<Arc<Recorder>, ApiError> {
    state.recordings.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "recording is not available on this bridge",
        )
    })
}

fn recording_id(id: &str) -> Result<(), ApiError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "a recording id is 1 to 64 of A-Z a-z 0-9 _ -",
        ))
    }
}

#[utoipa::path(post, path = "/v1/conferences/{cid}/recording", tag = "recordings", security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$")),
    responses((status = 201, description = "Recording: the mix is written from the next tick", body = RecordingMeta),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference running", body = ErrorBody),
        (status = 409, description = "Being recorded already", body = ErrorBody),
        (status = 422, description = "Not a meeting ID", body = ErrorBody),
        (status = 503, description = "Recording or the mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn start(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Response, ApiError> {
    super::conferences::meeting_id(&cid)?;
    let recorder = recorder(&state)?;
    blocking(move || {
        let meta = recorder.start_recording(&state.engine, &cid)?;
        Ok((StatusCode::CREATED, Json(meta)).into_response())
    })
    .await
}

#[utoipa::path(delete, path = "/v1/conferences/{cid}/recording", tag = "recordings", security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$")),
    responses((status = 200, description = "Stopped", body = RecordingStopped),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such conference running", body = ErrorBody),
        (status = 409, description = "Not being recorded", body = ErrorBody),
        (status = 422, description = "Not a meeting ID", body = ErrorBody),
        (status = 503, description = "Recording or the mixer thread unavailable", body = ErrorBody)))]
pub(super) async fn stop(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Json<RecordingStopped>, ApiError> {
    super::conferences::meeting_id(&cid)?;
    let recorder = recorder(&state)?;
    blocking(move || {
        let id = recorder.stop_recording(&state.engine, &cid)?;
        Ok(Json(RecordingStopped { id }))
    })
    .await
}

#[utoipa::path(get, path = "/v1/recordings", tag = "recordings", params(RecordingQuery), security(("bearer" = [])),
    responses((status = 200, description = "Recordings, newest first, and the next page's offset \
        (the first 10,000 directory entries are looked at)", body = RecordingPage),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 422, description = "Invalid filter", body = ErrorBody),
        (status = 503, description = "Recording unavailable", body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<RecordingQuery>,
) -> Result<Json<RecordingPage>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 1000"));
    }
    let offset = q.offset.unwrap_or(0);
    let recorder = recorder(&state)?;
    blocking(move || {
        let all = recorder.list(q.conference.as_deref());
        let recordings: Vec<RecordingMeta> = all.iter().skip(offset).take(limit).cloned().collect();
        let next = offset.saturating_add(recordings.len());
        let next_offset = (next < all.len()).then_some(next);
        Ok(Json(RecordingPage {
            recordings,
            next_offset,
        }))
    })
    .await
}

#[utoipa::path(get, path = "/v1/recordings/{id}", tag = "recordings", security(("bearer" = [])),
    params(("id" = String, Path, description = "Recording id", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses((status = 200, description = "The recording's metadata: participants, speaking intervals", body = RecordingMeta),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such recording", body = ErrorBody),
        (status = 422, description = "Not a recording id", body = ErrorBody),
        (status = 503, description = "Recording unavailable", body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RecordingMeta>, ApiError> {
    recording_id(&id)?;
    let recorder = recorder(&state)?;
    blocking(move || Ok(Json(recorder.get(&id)?))).await
}

#[utoipa::path(delete, path = "/v1/recordings/{id}", tag = "recordings", security(("bearer" = [])),
    params(("id" = String, Path, description = "Recording id", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses((status = 204, description = "Deleted"),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such recording", body = ErrorBody),
        (status = 409, description = "Still being recorded (stop it first)", body = ErrorBody),
        (status = 422, description = "Not a recording id", body = ErrorBody),
        (status = 503, description = "Recording unavailable", body = ErrorBody)))]
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    recording_id(&id)?;
    let recorder = recorder(&state)?;
    blocking(move || {
        recorder.delete(&id)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// A single byte range of a `size`-byte file, inclusive: `Ok(None)` without a Range header,
/// `Err(())` for one that cannot be served (malformed, several ranges, past the end).
pub(super) fn byte_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = header else {
        return Ok(None);
    };
    let spec = value.trim().strip_prefix("bytes=").ok_or(())?.trim();
    if spec.contains(',') || size == 0 {
        return Err(());
    }
    let (first, last) = spec.split_once('-').ok_or(())?;
    let number = |s: &str| -> Result<u64, ()> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        s.parse().map_err(|_| ())
    };
    let (start, end) = if first.is_empty() {
        // The last n bytes.
        let n = number(last)?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start = number(first)?;
        let end = if last.is_empty() {
            size - 1
        } else {
            number(last)?.min(size - 1)
        };
        (start, end)
    };
    if start >= size || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

#[utoipa::path(get, path = "/v1/recordings/{id}/audio", tag = "recordings", security(("bearer" = [])),
    params(("id" = String, Path, description = "Recording id", pattern = "^[A-Za-z0-9_-]{1,64}$"),
        ("Range" = Option<String>, Header, description = "One byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`)")),
    responses((status = 200, description = "The audio, Ogg Opus", body = String, content_type = "audio/ogg"),
        (status = 206, description = "The range asked for", body = String, content_type = "audio/ogg"),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 404, description = "No such recording", body = ErrorBody),
        (status = 416, description = "A range that cannot be served (malformed, several, past the end)", body = ErrorBody),
        (status = 422, description = "Not a recording id", body = ErrorBody),
        (status = 503, description = "Recording unavailable", body = ErrorBody)))]
pub(super) async fn audio(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    recording_id(&id)?;
    let recorder = recorder(&state)?;
    let range = headers
        .get(header::RANGE)
        .map(|v| v.to_str().unwrap_or("invalid"))
        .map(str::to_owned);
    let (file, size) = blocking(move || {
        let path = recorder.audio(&id)?;
        let file = std::fs::File::open(path).map_err(|_| RecordError::NoRecording)?;
        let size = file
            .metadata()
            .map_err(|e| ApiError::internal(e.to_string()))?
            .len();
        Ok((Arc::new(file), size))
    })
    .await?;
    let (status, start, end) = match byte_range(range.as_deref(), size) {
        Ok(None) => (StatusCode::OK, 0, size),
        Ok(Some((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        Err(()) => {
            let mut e = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("one byte range within the file's {size} bytes is served"),
            )
            .into_response();
            if let Ok(v) = format!("bytes */{size}").parse() {
                e.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(e);
        }
    };
    // Read in chunks off the async threads as the client takes them.
    let stream = futures_util::stream::unfold(start, move |at| {
        let file = Arc::clone(&file);
        async move {
            if at >= end {
                return None;
            }
            let n = (end - at).min(CHUNK) as usize;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n];
                file.read_exact_at(&mut buf, at).map(|()| buf)
            })
            .await;
            match read {
                Ok(Ok(buf)) => Some((Ok(bytes::Bytes::from(buf)), at + n as u64)),
                Ok(Err(e)) => Some((Err(e), end)),
                Err(e) => Some((Err(std::io::Error::other(e)), end)),
            }
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("audio/ogg"),
    );
    h.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    if let Ok(v) = (end - start).to_string().parse() {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = format!("bytes {start}-{}/{size}", end - 1).parse()
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

#[cfg(test)]
#[path = "recordings_tests.rs"]
mod tests;
