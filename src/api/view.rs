//! The participant's view: what a WHIP session's roster token may read without the operator's
//! API token. Exactly two things, both of the session's own conference and only by GET: the
//! roster (`/v1/conferences/{cid}/participants`, without addresses, SIP identities or media
//! details) and the event stream (`/v1/conferences/{cid}/events`, which ends with the session).
//! Everything else — another conference, any other route, any other method — is refused.

use axum::http::{Method, StatusCode};

use super::ApiError;
use super::replies::{Roster, RosterEntry};
use crate::conference::{Participant, State as PState};
use crate::webrtc::Session;
use crate::webrtc::sessions::ROSTER_TOKEN_PREFIX;

/// A request let in by a roster token (an extension the handlers read to show less).
#[derive(Clone, Debug)]
pub(super) struct ParticipantView {
    /// The token, to tell whether its session still lives (the event stream ends with it).
    pub token: String,
}

/// Whether a bearer has the shape of a roster token (then it is judged as one, never as the
/// API token).
pub(super) fn is_roster_token(bearer: &str) -> bool {
    bearer.starts_with(ROSTER_TOKEN_PREFIX)
}

/// The two routes a roster token may read.
#[derive(Debug, PartialEq, Eq)]
enum Readable<'a> {
    Participants(&'a str),
    Events(&'a str),
}

fn readable(path: &str) -> Option<Readable<'_>> {
    let rest = path.strip_prefix("/v1/conferences/")?;
    let (cid, what) = rest.split_once('/')?;
    match what {
        "participants" => Some(Readable::Participants(cid)),
        "events" => Some(Readable::Events(cid)),
        _ => None,
    }
}

/// Judges a request carrying a roster token: `session` is the live session the token belongs
/// to (`None`: forged, malformed or its session has ended). 401 for a token that is no good,
/// 403 for a good one asking for more than its own conference's roster and events.
pub(super) fn check(
    session: Option<&Session>,
    method: &Method,
    path: &str,
) -> Result<(), ApiError> {
    let Some(session) = session else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the roster token is not valid (its call may have ended)",
        ));
    };
    let forbidden = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a roster token reads only its own conference's participants and events",
        )
    };
    if method != Method::GET {
        return Err(forbidden());
    }
    match readable(path) {
        Some(Readable::Participants(cid) | Readable::Events(cid)) if cid == session.cid => Ok(()),
        _ => Err(forbidden()),
    }
}

/// A participant as another participant sees it: who, whether present, muted and talking.
pub(super) fn participant_json(p: &Participant) -> RosterEntry {
    RosterEntry::of(p)
}

/// The roster a participant sees: those present (the history of who left is the operator's).
pub(super) fn roster_json<'a>(roster: impl Iterator<Item = &'a Participant>) -> Roster {
    let participants = roster
        .filter(|p| !matches!(p.state, PState::Disconnected(_)))
        .map(participant_json)
        .collect();
    Roster { participants }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conference::ParticipantId;
    use serde_json::json;

    fn session() -> Session {
        Session {
            cid: "1234".into(),
            participant: ParticipantId(3),
        }
    }

    fn status(session: Option<&Session>, method: Method, path: &str) -> u16 {
        match check(session, &method, path) {
            Ok(()) => 200,
            Err(e) => e.status().as_u16(),
        }
    }

    #[test]
    fn a_roster_token_reads_its_own_conference_only() {
        let s = session();
        let s = Some(&s);
        assert_eq!(
            status(s, Method::GET, "/v1/conferences/1234/participants"),
            200
        );
        assert_eq!(status(s, Method::GET, "/v1/conferences/1234/events"), 200);
        // Another conference, however spelt.
        for path in [
            "/v1/conferences/5678/participants",
            "/v1/conferences/5678/events",
            "/v1/conferences/12345/participants",
            "/v1/conferences/123/participants",
            "/v1/conferences/%31234/participants",
            "/v1/conferences/1234%2F../5678/participants",
        ] {
            assert_eq!(status(s, Method::GET, path), 403, "{path}");
        }
        // Any other route of its own conference, or of none.
        for path in [
            "/v1/conferences/1234",
            "/v1/conferences/1234/participants/p3",
            "/v1/conferences/1234/participants/p3/mute",
            "/v1/conferences/1234/participants/",
            "/v1/conferences/1234/events/",
            "/v1/conferences/1234/tokens",
            "/v1/conferences/1234/lock",
            "/v1/conferences",
            "/v1/events",
            "/v1/records",
            "/v1/admin/drain",
            "/v1/openapi.json",
        ] {
            assert_eq!(status(s, Method::GET, path), 403, "{path}");
        }
        // No write, not even on the two routes it may read.
        for method in [
            Method::POST,
            Method::DELETE,
            Method::PATCH,
            Method::PUT,
            Method::HEAD,
        ] {
            for path in [
                "/v1/conferences/1234/participants",
                "/v1/conferences/1234/events",
                "/v1/conferences/1234/participants/p3/mute",
                "/v1/conferences/1234",
            ] {
                assert_eq!(status(s, method.clone(), path), 403, "{method} {path}");
            }
        }
    }

    #[test]
    fn a_token_without_a_live_session_reads_nothing() {
        // (Forged, malformed and ended tokens find no session: webrtc::sessions' tests.)
        for method in [Method::GET, Method::POST] {
            assert_eq!(
                status(None, method, "/v1/conferences/1234/participants"),
                401
            );
        }
        assert!(is_roster_token("rv1_00_11"));
        assert!(!is_roster_token("s3cret"));
        assert!(!is_roster_token("7b22.00"));
    }

    #[test]
    fn the_participant_view_leaves_out_identities_and_media() {
        let p = Participant {
            id: ParticipantId(7),
            display_name: "Ann".into(),
            uri: "sip:+4930123@gw.example.net".into(),
            role: crate::conference::Role::Leader,
            identity: None,
            state: PState::Connected,
            muted: true,
            deaf: false,
            speaking: false,
            media_ready: true,
            on_hold: false,
            sip_status: Some(200),
            input_gain_db: 0.0,
            output_gain_db: 0.0,
        };
        let v = serde_json::to_value(participant_json(&p)).unwrap();
        assert_eq!(
            v,
            json!({ "id": "p7", "display_name": "Ann", "state": "connected", "muted": true, "speaking": false })
        );
        assert!(!v.to_string().contains("4930123"));
        let mut gone = p.clone();
        gone.state = PState::Disconnected(crate::conference::DisconnectReason::Hangup);
        let roster = roster_json([&p, &gone].into_iter());
        assert_eq!(roster.participants.len(), 1);
    }
}
