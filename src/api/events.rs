//! Server-Sent Events: `/v1/conferences/{cid}/events` and `/v1/events`. Every event gets an id;
//! a client that reconnects with `Last-Event-ID` is first sent what it missed from a bounded
//! history, then the live stream. A comment every 15 s keeps idle connections open. DTMF digits
//! never leave the bridge this way (they may be passcodes).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::FutureExt;
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use super::conferences::meeting_id;
use super::error::ErrorBody;
use super::extract::Path;
use super::{ApiError, AppState};
use crate::conference::{Event, State as PState};
use crate::mixer::conference::ConferenceEvent;

/// Events kept for clients that reconnect.
const HISTORY: usize = 2048;

/// One published event.
#[derive(Debug, Clone)]
pub(super) struct Published {
    pub id: u64,
    pub conference: Arc<str>,
    pub kind: &'static str,
    pub data: Arc<str>,
}

/// Numbers the engine's events, keeps the recent ones, and fans them out.
#[derive(Debug)]
pub struct EventHub {
    history: Mutex<VecDeque<Published>>,
    live: broadcast::Sender<Published>,
    /// Participants that left, by reason (for the metrics).
    disconnects: Mutex<std::collections::HashMap<&'static str, u64>>,
    /// The next event's id (events come from the engine and from the recorder).
    next: std::sync::atomic::AtomicU64,
}

/// The API's name and JSON of an event (`None`: not published).
fn describe(e: &ConferenceEvent) -> Option<(&'static str, Value)> {
    let c = e.conference.to_string();
    Some(match &e.event {
        Event::State { participant, state } => {
            let reason = match state {
                PState::Disconnected(r) => Some(r.as_str()),
                _ => None,
            };
            (
                "participant.state",
                json!({ "conference": c, "participant": participant.to_string(),
                        "state": state.as_str(), "disconnect_reason": reason }),
            )
        }
        Event::Muted { participant, muted } => (
            "participant.muted",
            json!({ "conference": c, "participant": participant.to_string(), "muted": muted }),
        ),
        Event::Deaf { participant, deaf } => (
            "participant.deaf",
            json!({ "conference": c, "participant": participant.to_string(), "deaf": deaf }),
        ),
        Event::Speaking {
            participant,
            speaking,
        } => (
            "participant.speaking",
            json!({ "conference": c, "participant": participant.to_string(), "speaking": speaking }),
        ),
        Event::SpeakingWhileMuted { participant } => (
            "participant.speaking_while_muted",
            json!({ "conference": c, "participant": participant.to_string() }),
        ),
        Event::DominantSpeaker { participant } => (
            "conference.dominant_speaker",
            json!({ "conference": c, "participant": participant.to_string() }),
        ),
        Event::Locked { locked } => (
            "conference.locked",
            json!({ "conference": c, "locked": locked }),
        ),
        Event::Ended => ("conference.ended", json!({ "conference": c })),
        Event::Keypad {
            participant,
            action,
            done,
        } => (
            "participant.keypad",
            json!({ "conference": c, "participant": participant.to_string(),
                    "action": action, "done": done }),
        ),
        Event::Gain {
            participant,
            input_db,
            output_db,
        } => (
            "participant.gain",
            json!({ "conference": c, "participant": participant.to_string(),
                    "input_db": input_db, "output_db": output_db }),
        ),
        Event::Role { participant, role } => (
            "participant.role",
            json!({ "conference": c, "participant": participant.to_string(),
                    "role": role.as_str() }),
        ),
        Event::Dtmf { .. } => return None,
    })
}

impl EventHub {
    /// Starts numbering what `events` brings.
    pub fn start(mut events: broadcast::Receiver<ConferenceEvent>) -> Arc<EventHub> {
        let (live, _) = broadcast::channel(4096);
        let hub = Arc::new(EventHub {
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            disconnects: Mutex::default(),
            next: std::sync::atomic::AtomicU64::new(1),
            live,
        });
        let h = Arc::clone(&hub);
        tokio::spawn(async move {
            loop {
                let e = match events.recv().await {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(lost = n, "api fell behind the engine's events");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if let Event::State {
                    state: PState::Disconnected(reason),
                    ..
                } = &e.event
                {
                    h.count_disconnect(reason.as_str());
                }
                let Some((kind, data)) = describe(&e) else {
                    continue;
                };
                h.publish(Arc::clone(&e.conference), kind, &data);
            }
        });
        hub
    }

    /// Numbers an event, keeps it for replay and sends it to the streams open now.
    pub fn publish(&self, conference: Arc<str>, kind: &'static str, data: &Value) {
        // Numbered and kept under the history's lock, so ids stay in order in the replay.
        let Ok(mut history) = self.history.lock() else {
            return;
        };
        let p = Published {
            id: self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            conference,
            kind,
            data: Arc::from(data.to_string()),
        };
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(p.clone());
        let _ = self.live.send(p);
    }

    /// The names of the events kept for replay, oldest first (what a stream opened from the
    /// start would be told).
    #[cfg(test)]
    pub(super) fn kinds(&self) -> Vec<&'static str> {
        self.history
            .lock()
            .map(|h| h.iter().map(|p| p.kind).collect())
            .unwrap_or_default()
    }

    fn count_disconnect(&self, reason: &'static str) {
        if let Ok(mut d) = self.disconnects.lock() {
            *d.entry(reason).or_insert(0) += 1;
        }
    }

    /// Participants that left, by reason, since start.
    pub fn disconnects(&self) -> Vec<(&'static str, u64)> {
        self.disconnects
            .lock()
            .map(|d| d.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }

    /// What came after `last` (oldest first), and the live stream from now.
    fn since(&self, last: Option<u64>) -> (Vec<Published>, broadcast::Receiver<Published>) {
        // Subscribe under the lock so nothing falls between the replay and the live stream.
        let history = self.history.lock();
        let live = self.live.subscribe();
        let replay = match (history, last) {
            (Ok(h), Some(last)) => h.iter().filter(|p| p.id > last).cloned().collect(),
            _ => Vec::new(),
        };
        (replay, live)
    }
}

fn to_sse(p: &Published) -> SseEvent {
    SseEvent::default()
        .id(p.id.to_string())
        .event(p.kind)
        .data(p.data.as_ref())
}

fn stream_for(
    hub: &EventHub,
    headers: &HeaderMap,
    conference: Option<String>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + use<> {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let (replay, live) = hub.since(last);
    let keep = {
        let conference = conference.clone();
        move |p: &Published| conference.as_deref().is_none_or(|c| *p.conference == *c)
    };
    let keep_live = keep.clone();
    let replayed: Vec<_> = replay.into_iter().filter(|p| keep(p)).collect();
    let last_replayed = replayed.last().map(|p| p.id).or(last).unwrap_or(0);
    let replay = stream::iter(replayed.into_iter().map(|p| Ok(to_sse(&p))));
    let live = BroadcastStream::new(live).filter_map(move |item| {
        let out = match item {
            Ok(p) if p.id > last_replayed && keep_live(&p) => Some(Ok(to_sse(&p))),
            _ => None,
        };
        std::future::ready(out)
    });
    replay.chain(live)
}

fn keep_alive() -> KeepAlive {
    KeepAlive::new()
        .interval(Duration::from_secs(15))
        .text("heartbeat")
}

#[utoipa::path(get, path = "/v1/events", tag = "events", security(("bearer" = [])),
    responses((status = 200, description = "Server-Sent Events of every conference (ids; Last-Event-ID resumes)",
            body = String, content_type = "text/event-stream"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token", body = ErrorBody)))]
pub(super) async fn all(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    Sse::new(stream_for(&state.events, &headers, None)).keep_alive(keep_alive())
}

#[utoipa::path(get, path = "/v1/conferences/{cid}/events", tag = "events",
    security(("bearer" = [])),
    params(("cid" = String, Path, description = "Meeting ID (4 to 12 digits)", pattern = "^[0-9]{4,12}$")),
    responses((status = 200, description = "Server-Sent Events of one conference", body = String, content_type = "text/event-stream"),
        (status = 400, description = "A path parameter that cannot be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A roster token of another conference", body = ErrorBody),
        (status = 404, description = "No such conference", body = ErrorBody),
        (status = 422, description = "Not a meeting ID", body = ErrorBody)))]
pub(super) async fn conference(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    headers: HeaderMap,
    view: Option<axum::Extension<super::view::ParticipantView>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    meeting_id(&cid)?;
    if state.engine.admission(&cid).is_none() {
        return Err(ApiError::not_found(format!("no conference {cid}")));
    }
    let stream = stream_for(&state.events, &headers, Some(cid));
    // A participant's stream lasts as long as its session (and roster token), not longer.
    let ended = match view {
        Some(axum::Extension(view)) => session_ended(state.webrtc.clone(), view.token).boxed(),
        None => std::future::pending().boxed(),
    };
    Ok(Sse::new(stream.take_until(ended)).keep_alive(keep_alive()))
}

/// How often a participant's event stream looks whether its session still lives.
const SESSION_CHECK: Duration = Duration::from_secs(1);

/// Resolves once the session of roster token `token` has ended.
async fn session_ended(webrtc: Option<Arc<crate::webrtc::WebRtc>>, token: String) {
    let mut tick = tokio::time::interval(SESSION_CHECK);
    loop {
        tick.tick().await;
        if webrtc
            .as_ref()
            .and_then(|w| w.roster_session(&token))
            .is_none()
        {
            return;
        }
    }
}
