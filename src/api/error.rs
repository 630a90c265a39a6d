//! The API's errors: a status and `{"error":{"code","message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::conference::JoinError;
use crate::engine::EngineError;
use crate::mixer::CommandError;
use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn draining() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this node is draining: no new conferences or participants",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// The body of every error answer: `{"error":{"code","message"}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ErrorBody {
    pub(super) error: ErrorDetail,
}

/// What went wrong: a stable code for programs, a message for people.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ErrorDetail {
    /// E.g. `bad_request`, `invalid`, `unauthorized`, `forbidden`, `locked`, `not_found`,
    /// `conflict`, `too_large`, `unsupported_media_type`, `too_many_failures`, `draining`,
    /// `unavailable`, `storage`, `timeout`.
    pub(super) code: String,
    pub(super) message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Command(CommandError::NoConference) => {
                ApiError::not_found("no such conference")
            }
            EngineError::Command(CommandError::ConferenceExists) => {
                ApiError::conflict("the conference exists already")
            }
            EngineError::Command(CommandError::NoParticipant) => {
                ApiError::conflict("the participant is not (or no longer) in the conference")
            }
            EngineError::Command(CommandError::Join(JoinError::Locked)) => {
                ApiError::new(StatusCode::FORBIDDEN, "locked", "the conference is locked")
            }
            EngineError::Command(CommandError::Join(JoinError::Full)) => {
                ApiError::conflict("the conference is full")
            }
            EngineError::Command(CommandError::Join(JoinError::Ended)) => {
                ApiError::not_found("the conference has ended")
            }
            EngineError::PortsExhausted => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_ports",
                "no free RTP port",
            ),
            other => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                other.to_string(),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // The detail (a database's host and name) goes to the log, not to the client.
        tracing::warn!(error = %e, "storage");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage",
            "the database is unavailable",
        )
    }
}
