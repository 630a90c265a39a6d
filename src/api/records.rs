//! `/v1/records` (a call record per participant leg) and `/v1/records/conferences` (a record
//! per conference session), as JSON pages or as CSV for spreadsheets and reports.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::csv::{Cell, Csv};
use super::error::ErrorBody;
use super::extract::Query;
use super::{ApiError, AppState, blocking};
use crate::store::{ConferenceRecord, Record, RecordFilter};

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;

/// A call record: one participant's stay in a conference.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RecordItem {
    pub id: i64,
    pub conference: String,
    pub participant: String,
    pub display_name: String,
    pub uri: String,
    pub role: String,
    pub transport: String,
    #[schema(required = true)]
    pub codec: Option<String>,
    pub srtp: bool,
    /// Milliseconds since the Unix epoch.
    pub joined_at: i64,
    /// None while the participant is still there.
    #[schema(required = true)]
    pub left_at: Option<i64>,
    #[schema(required = true)]
    pub disconnect_reason: Option<String>,
    #[schema(required = true)]
    pub sip_status: Option<u16>,
    pub packets_in: u64,
    pub packets_out: u64,
    pub packets_lost: i64,
    #[schema(required = true)]
    pub jitter_ms: Option<f64>,
    #[schema(required = true)]
    pub rtt_ms: Option<f64>,
    #[schema(required = true)]
    pub mos: Option<f64>,
    /// The far end's software (SIP User-Agent, or Server of a dial-out's answer; WHIP's HTTP
    /// User-Agent), without control characters, at most 256 bytes; none when not known.
    #[schema(required = true)]
    pub user_agent: Option<String>,
    /// The far end's address as the bridge saw it (`ip:port`): where the INVITE or the WHIP
    /// request came from, or where a dial-out was sent; none when not known.
    #[schema(required = true)]
    pub remote: Option<String>,
}

impl From<Record> for RecordItem {
    fn from(r: Record) -> Self {
        RecordItem {
            id: r.id,
            conference: r.conference,
            participant: r.participant,
            display_name: r.display_name,
            uri: r.uri,
            role: r.role,
            transport: r.transport,
            codec: r.codec,
            srtp: r.srtp,
            joined_at: r.joined_at,
            left_at: r.left_at,
            disconnect_reason: r.reason,
            sip_status: r.sip_status,
            packets_in: r.packets_in,
            packets_out: r.packets_out,
            packets_lost: r.packets_lost,
            jitter_ms: r.jitter_ms.filter(|x| x.is_finite()),
            rtt_ms: r.rtt_ms.filter(|x| x.is_finite()),
            mos: r.mos.filter(|x| x.is_finite()),
            user_agent: r.user_agent,
            remote: r.remote,
        }
    }
}

/// A page of call records, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RecordPage {
    pub records: Vec<RecordItem>,
    /// The `offset` of the next page; none on the last.
    #[schema(required = true)]
    pub next_offset: Option<usize>,
}

/// A conference session: from its start on a node to its end there.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConferenceRecordItem {
    pub id: i64,
    pub conference: String,
    /// The node that ran it (empty on a single node without a name).
    pub node: String,
    /// Milliseconds since the Unix epoch.
    pub started_at: i64,
    /// None while it runs.
    #[schema(required = true)]
    pub ended_at: Option<i64>,
    /// `ended` (deleted, or ended on this node), `abandoned` (the node stopped with it running).
    #[schema(required = true)]
    pub end_reason: Option<String>,
    /// The most participants with media at once; none while it runs.
    #[schema(required = true)]
    pub peak_participants: Option<u64>,
}

impl From<ConferenceRecord> for ConferenceRecordItem {
    fn from(r: ConferenceRecord) -> Self {
        ConferenceRecordItem {
            id: r.id,
            conference: r.conference,
            node: r.node,
            started_at: r.started_at,
            ended_at: r.ended_at,
            end_reason: r.reason,
            peak_participants: r.peak_participants,
        }
    }
}

/// A page of conference sessions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConferenceRecordPage {
    pub conferences: Vec<ConferenceRecordItem>,
    /// The `offset` of the next page; none on the last.
    #[schema(required = true)]
    pub next_offset: Option<usize>,
}

/// How an answer is written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum Format {
    #[default]
    Json,
    Csv,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordQuery {
    conference: Option<String>,
    /// Only the legs of this participant URI (exactly as recorded), for per-user reports.
    uri: Option<String>,
    /// Joined at or after, milliseconds since the Unix epoch.
    since: Option<i64>,
    /// Joined before, milliseconds since the Unix epoch.
    until: Option<i64>,
    /// Records per page: 1 to 1000 (100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Records to skip (0).
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    offset: Option<usize>,
    /// `json` (the default) or `csv` (`text/csv`, one row per record after a header row; the
    /// next page's offset in the `Next-Offset` header).
    #[param(inline)]
    format: Option<Format>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct ConferenceRecordQuery {
    conference: Option<String>,
    /// Started at or after, milliseconds since the Unix epoch.
    since: Option<i64>,
    /// Started before, milliseconds since the Unix epoch.
    until: Option<i64>,
    /// Records per page: 1 to 1000 (100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Records to skip (0).
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    offset: Option<usize>,
    /// `json` (the default) or `csv`.
    #[param(inline)]
    format: Option<Format>,
}

/// The page asked for, checked.
fn page(limit: Option<usize>, offset: Option<usize>) -> Result<(usize, usize), ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 1000"));
    }
    let offset = offset.unwrap_or(0);
    if i64::try_from(offset).is_err() {
        return Err(ApiError::invalid("offset is too large"));
    }
    Ok((limit, offset))
}

/// The next page's offset, when this one was full.
fn next_offset(rows: usize, filter: &RecordFilter) -> Option<usize> {
    (rows == filter.limit).then_some(filter.offset.saturating_add(filter.limit))
}

/// A CSV answer, with the next page's offset in a header.
fn csv_response(csv: Csv, next: Option<usize>) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        csv.into_string(),
    )
        .into_response();
    if let Some(next) = next {
        response.headers_mut().insert("next-offset", next.into());
    }
    response
}

#[utoipa::path(get, path = "/v1/records", tag = "records", params(RecordQuery), security(("bearer" = [])),
    responses((status = 200, description = "Call records, newest first, and the next page's offset (as CSV with `format=csv`)",
            content((RecordPage = "application/json"), (String = "text/csv"))),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 422, description = "Invalid filter", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody)))]
pub(super) async fn records(
    State(state): State<AppState>,
    Query(q): Query<RecordQuery>,
) -> Result<Response, ApiError> {
    let (limit, offset) = page(q.limit, q.offset)?;
    let filter = RecordFilter {
        conference: q.conference,
        uri: q.uri,
        since: q.since,
        until: q.until,
        limit,
        offset,
    };
    let format = q.format.unwrap_or_default();
    blocking(move || {
        let rows = state.store.records(&filter)?;
        let next_offset = next_offset(rows.len(), &filter);
        Ok(match format {
            Format::Csv => csv_response(records_csv(&rows), next_offset),
            Format::Json => Json(RecordPage {
                records: rows.into_iter().map(RecordItem::from).collect(),
                next_offset,
            })
            .into_response(),
        })
    })
    .await
}

#[utoipa::path(get, path = "/v1/records/conferences", tag = "records", params(ConferenceRecordQuery), security(("bearer" = [])),
    responses((status = 200, description = "Conference sessions, newest first, and the next page's offset (as CSV with `format=csv`)",
            content((ConferenceRecordPage = "application/json"), (String = "text/csv"))),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody),
        (status = 422, description = "Invalid filter", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody)))]
pub(super) async fn conferences(
    State(state): State<AppState>,
    Query(q): Query<ConferenceRecordQuery>,
) -> Result<Response, ApiError> {
    let (limit, offset) = page(q.limit, q.offset)?;
    let filter = RecordFilter {
        conference: q.conference,
        since: q.since,
        until: q.until,
        limit,
        offset,
        ..RecordFilter::default()
    };
    let format = q.format.unwrap_or_default();
    blocking(move || {
        let rows = state.store.conference_records(&filter)?;
        let next_offset = next_offset(rows.len(), &filter);
        Ok(match format {
            Format::Csv => csv_response(conferences_csv(&rows), next_offset),
            Format::Json => Json(ConferenceRecordPage {
                conferences: rows.into_iter().map(ConferenceRecordItem::from).collect(),
                next_offset,
            })
            .into_response(),
        })
    })
    .await
}

/// The legs' records as CSV, the columns of the JSON answer in its order.
fn records_csv(rows: &[Record]) -> Csv {
    let mut csv = Csv::with_header(&[
        "id",
        "conference",
        "participant",
        "display_name",
        "uri",
        "role",
        "transport",
        "codec",
        "srtp",
        "joined_at",
        "left_at",
        "disconnect_reason",
        "sip_status",
        "packets_in",
        "packets_out",
        "packets_lost",
        "jitter_ms",
        "rtt_ms",
        "mos",
        "user_agent",
        "remote",
    ]);
    let finite = |x: Option<f64>| x.filter(|x| x.is_finite());
    for r in rows {
        csv.row([
            Cell::figure(r.id),
            r.conference.as_str().into(),
            r.participant.as_str().into(),
            r.display_name.as_str().into(),
            r.uri.as_str().into(),
            r.role.as_str().into(),
            r.transport.as_str().into(),
            (&r.codec).into(),
            Cell::figure(r.srtp),
            Cell::figure(r.joined_at),
            Cell::maybe(r.left_at),
            (&r.reason).into(),
            Cell::maybe(r.sip_status),
            Cell::figure(r.packets_in),
            Cell::figure(r.packets_out),
            Cell::figure(r.packets_lost),
            Cell::maybe(finite(r.jitter_ms)),
            Cell::maybe(finite(r.rtt_ms)),
            Cell::maybe(finite(r.mos)),
            (&r.user_agent).into(),
            (&r.remote).into(),
        ]);
    }
    csv
}

/// The conference sessions as CSV, the columns of the JSON answer in its order.
fn conferences_csv(rows: &[ConferenceRecord]) -> Csv {
    let mut csv = Csv::with_header(&[
        "id",
        "conference",
        "node",
        "started_at",
        "ended_at",
        "end_reason",
        "peak_participants",
    ]);
    for r in rows {
        csv.row([
            Cell::figure(r.id),
            r.conference.as_str().into(),
            r.node.as_str().into(),
            Cell::figure(r.started_at),
            Cell::maybe(r.ended_at),
            (&r.reason).into(),
            Cell::maybe(r.peak_participants),
        ]);
    }
    csv
}
