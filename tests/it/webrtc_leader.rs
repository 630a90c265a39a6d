//! Leader rights without a browser: a WHIP session's roster token moderates its own conference
//! (`/v1/conferences/{cid}/moderation`: mute, unmute, eject, lock, unlock) only while its
//! participant is a leader — by the leader PIN at the join, or promoted by the operator's
//! `POST …/participants/{pid}/role` — and an attendee's session is answered 403. Also the
//! operator's per-participant gains (`POST …/participants/{pid}/gain`) and their validation.

use serde_json::{Value, json};

use super::{CHROMIUM_OFFER, create, header, participant, whip};
use crate::support;
use crate::support::server::{Server, http};

/// A WHIP join with `secret`: the participant and its roster token.
fn join(server: &Server, cid: &str, secret: &str) -> (String, String) {
    let (s, head, b) = whip(server, cid, CHROMIUM_OFFER, Some(secret), "application/sdp");
    assert_eq!(s, 201, "{b}");
    (
        header(&head, "confab-participant").unwrap().to_owned(),
        header(&head, "confab-roster-token").unwrap().to_owned(),
    )
}

fn moderate(server: &Server, cid: &str, token: &str, body: Value) -> (u16, Value) {
    http(
        server.api,
        "POST",
        &format!("/v1/conferences/{cid}/moderation"),
        Some(&body.to_string()),
        Some(token),
    )
}

fn whoami(server: &Server, cid: &str, token: &str) -> Value {
    let (s, v) = http(
        server.api,
        "GET",
        &format!("/v1/conferences/{cid}/moderation"),
        None,
        Some(token),
    );
    assert_eq!(s, 200, "{v}");
    v
}

#[test]
fn a_leaders_session_moderates_and_an_attendees_does_not() {
    let _turn = support::shared();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), Some("operator-s3cret"), &[]);
    create(
        &server,
        json!({ "id": "7272", "passcode": "1357", "leader_pin": "2468" }),
    );
    create(&server, json!({ "id": "7373", "passcode": "1357" }));
    let phone = support::Endpoint::new(confab::media::codec::Codec::Pcmu, 440.0, -20.0, 0x7272);
    let body =
        json!({ "sdp": support::offer_for(&phone, 0, "PCMU/8000"), "display_name": "phone" });
    let (s, v) = server.call(
        "POST",
        "/v1/conferences/7272/participants",
        Some(&body.to_string()),
    );
    assert_eq!(s, 201, "{v}");
    let phone_id = v["participant"]["id"].as_str().unwrap().to_owned();
    let (attendee, a_token) = join(&server, "7272", "1357");
    let (leader, l_token) = join(&server, "7272", "2468");

    assert_eq!(
        whoami(&server, "7272", &a_token),
        json!({ "participant": attendee, "role": "attendee", "locked": false })
    );
    assert_eq!(
        whoami(&server, "7272", &l_token),
        json!({ "participant": leader, "role": "leader", "locked": false })
    );

    // The attendee's session: nothing, and nothing changes.
    for body in [
        json!({ "action": "eject", "participant": phone_id }),
        json!({ "action": "mute", "participant": phone_id }),
        json!({ "action": "lock" }),
    ] {
        let (s, v) = moderate(&server, "7272", &a_token, body.clone());
        assert_eq!(s, 403, "{body}: {v}");
        assert_eq!(v["error"]["code"], "forbidden", "{v}");
    }
    let p = participant(&server, "7272", &phone_id);
    assert!(p["state"] != "disconnected" && p["muted"] == false, "{p}");

    // The leader's session: mute, lock and unlock, eject.
    let (s, v) = moderate(
        &server,
        "7272",
        &l_token,
        json!({ "action": "mute", "participant": phone_id }),
    );
    assert_eq!(s, 204, "{v}");
    assert_eq!(participant(&server, "7272", &phone_id)["muted"], true);
    let (s, v) = moderate(&server, "7272", &l_token, json!({ "action": "lock" }));
    assert_eq!(s, 204, "{v}");
    let (_, c) = server.call("GET", "/v1/conferences/7272", None);
    assert_eq!(c["conference"]["locked"], true, "{c}");
    assert_eq!(whoami(&server, "7272", &l_token)["locked"], true);
    let (s, _) = moderate(&server, "7272", &l_token, json!({ "action": "unlock" }));
    assert_eq!(s, 204);
    // Wrong shapes: 422; another conference: 403; the operator's routes: still 403.
    for body in [
        json!({ "action": "lock", "participant": phone_id }),
        json!({ "action": "mute" }),
        json!({ "action": "end" }),
    ] {
        let (s, v) = moderate(&server, "7272", &l_token, body.clone());
        assert_eq!(s, 422, "{body}: {v}");
    }
    let (s, _) = moderate(&server, "7373", &l_token, json!({ "action": "lock" }));
    assert_eq!(s, 403);
    for (method, path) in [
        (
            "POST",
            format!("/v1/conferences/7272/participants/{phone_id}/mute"),
        ),
        (
            "DELETE",
            format!("/v1/conferences/7272/participants/{phone_id}"),
        ),
        ("POST", "/v1/conferences/7272/lock".to_owned()),
        (
            "POST",
            format!("/v1/conferences/7272/participants/{attendee}/role"),
        ),
        (
            "POST",
            format!("/v1/conferences/7272/participants/{attendee}/gain"),
        ),
    ] {
        let (s, v) = http(server.api, method, &path, Some("{}"), Some(&l_token));
        assert_eq!(s, 403, "{method} {path}: {v}");
    }
    let (s, v) = moderate(
        &server,
        "7272",
        &l_token,
        json!({ "action": "eject", "participant": phone_id }),
    );
    assert_eq!(s, 204, "{v}");
    let p = participant(&server, "7272", &phone_id);
    assert_eq!(
        (&p["state"], &p["disconnect_reason"]),
        (&json!("disconnected"), &json!("ejected")),
        "{p}"
    );
    let (s, v) = moderate(
        &server,
        "7272",
        &l_token,
        json!({ "action": "mute", "participant": phone_id }),
    );
    assert_eq!(s, 409, "{v}");

    // The operator promotes the attendee: its session moderates; demoted, it does not.
    let role = |who: &str, role: &str| {
        server.call(
            "POST",
            &format!("/v1/conferences/7272/participants/{who}/role"),
            Some(&json!({ "role": role }).to_string()),
        )
    };
    let (s, v) = role(&attendee, "leader");
    assert_eq!(
        (s, &v["participant"]["role"]),
        (200, &json!("leader")),
        "{v}"
    );
    assert_eq!(whoami(&server, "7272", &a_token)["role"], "leader");
    let (s, v) = moderate(
        &server,
        "7272",
        &a_token,
        json!({ "action": "mute", "participant": leader }),
    );
    assert_eq!(s, 204, "{v}");
    let (s, v) = role(&attendee, "attendee");
    assert_eq!(
        (s, &v["participant"]["role"]),
        (200, &json!("attendee")),
        "{v}"
    );
    let (s, _) = moderate(
        &server,
        "7272",
        &a_token,
        json!({ "action": "unmute", "participant": leader }),
    );
    assert_eq!(s, 403);
    let (s, v) = role(&attendee, "boss");
    assert_eq!(s, 422, "{v}");
    let (s, v) = role("p999999", "leader");
    assert_eq!(s, 404, "{v}");
    let (s, v) = role(&phone_id, "leader");
    assert_eq!(s, 409, "{v}");
    // The operator's token asks no session's question.
    let (s, v) = server.call("GET", "/v1/conferences/7272/moderation", None);
    assert_eq!(s, 400, "{v}");
}

#[test]
fn per_participant_gains_are_set_shown_and_checked() {
    let _turn = support::shared();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), Some("operator-s3cret"), &[]);
    create(&server, json!({ "id": "7474" }));
    let phone = support::Endpoint::new(confab::media::codec::Codec::Pcmu, 440.0, -20.0, 0x7474);
    let body = json!({ "sdp": support::offer_for(&phone, 0, "PCMU/8000") });
    let (s, v) = server.call(
        "POST",
        "/v1/conferences/7474/participants",
        Some(&body.to_string()),
    );
    assert_eq!(s, 201, "{v}");
    let pid = v["participant"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (
            &v["participant"]["input_gain_db"],
            &v["participant"]["output_gain_db"]
        ),
        (&json!(0.0), &json!(0.0)),
        "{v}"
    );
    let path = format!("/v1/conferences/7474/participants/{pid}/gain");
    let gain = |body: &str| server.call("POST", &path, Some(body));

    let (s, v) = gain(r#"{"input_db": -6, "output_db": 3}"#);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            &v["participant"]["input_gain_db"],
            &v["participant"]["output_gain_db"]
        ),
        (&json!(-6.0), &json!(3.0)),
        "{v}"
    );
    // One at a time leaves the other.
    let (s, v) = gain(r#"{"output_db": -12.5}"#);
    assert_eq!(s, 200, "{v}");
    let p = participant(&server, "7474", &pid);
    assert_eq!(
        (&p["input_gain_db"], &p["output_gain_db"]),
        (&json!(-6.0), &json!(-12.5)),
        "{p}"
    );
    for (body, status) in [
        (r#"{"input_db": 12.1}"#, 422),
        (r#"{"output_db": -31}"#, 422),
        (r#"{"input_db": "loud"}"#, 422),
        (r#"{}"#, 422),
        (r#"{"input_db": 1, "volume": 2}"#, 422),
        (r#"{"input_db": 1e999}"#, 400),
        (r#"{"input_db": "#, 400),
    ] {
        let (s, v) = gain(body);
        assert_eq!(s, status, "{body}: {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    let (s, v) = gain(r#"{"input_db": 12.1}"#);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("-30"),
        "{s} {v}"
    );
    let (s, v) = server.call(
        "POST",
        "/v1/conferences/7474/participants/p999999/gain",
        Some(r#"{"input_db": 1}"#),
    );
    assert_eq!(s, 404, "{v}");
    let (s, _) = server.call(
        "DELETE",
        &format!("/v1/conferences/7474/participants/{pid}"),
        None,
    );
    assert_eq!(s, 204);
    let (s, v) = gain(r#"{"input_db": 1}"#);
    assert_eq!(s, 409, "{v}");
}
