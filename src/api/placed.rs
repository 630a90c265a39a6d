//! Several nodes on one database: a request that would put a leg into a meeting another node
//! runs is sent there (HTTP 307: the same method, body and path on the owner's API).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{AppState, blocking};
use crate::placement::Placed;

/// The redirect to the node running `cid`, or none when it runs here (claimed for this node if
/// nobody held it) or is not a conference this node knows (the handler answers for that).
pub(super) async fn elsewhere(
    state: &AppState,
    cid: &str,
    path_and_query: &str,
) -> Result<Option<Response>, ApiError> {
    let Some(placement) = state.placement.clone() else {
        return Ok(None);
    };
    if state.engine.admission(cid).is_none() {
        return Ok(None);
    }
    let meeting = cid.to_owned();
    let placed = blocking(move || placement.place(&meeting).map_err(ApiError::from)).await?;
    let Placed::Elsewhere(owner) = placed else {
        return Ok(None);
    };
    // Never from HTTPS to plain HTTP: the credentials would follow in the clear.
    if state.https && !owner.api.starts_with("https://") {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "placement",
            "this meeting runs on a node without HTTPS",
        ));
    }
    let location = format!("{}{path_and_query}", owner.api);
    Ok(Some(
        (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
    ))
}
