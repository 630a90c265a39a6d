//! The per-participant noise suppression switch (`POST …/participants/{pid}/noise_suppression`)
//! against a running bridge: switched both ways for a participant, its body checked, an unknown
//! participant refused. (What it does to the audio is measured in the mixer's sim tests.)

use serde_json::json;

use crate::support;
use crate::support::server::Server;

#[test]
fn noise_suppression_is_switched_per_participant_and_checked() {
    let _turn = support::shared();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), Some("operator-s3cret"), &[]);
    let (s, v) = server.call(
        "POST",
        "/v1/conferences",
        Some(&json!({ "id": "7575" }).to_string()),
    );
    assert_eq!(s, 201, "{v}");
    let phone = support::Endpoint::new(confab::media::codec::Codec::Pcmu, 440.0, -20.0, 0x7575);
    let body = json!({ "sdp": support::offer_for(&phone, 0, "PCMU/8000") });
    let (s, v) = server.call(
        "POST",
        "/v1/conferences/7575/participants",
        Some(&body.to_string()),
    );
    assert_eq!(s, 201, "{v}");
    let pid = v["participant"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/conferences/7575/participants/{pid}/noise_suppression");
    let switch = |body: &str| server.call("POST", &path, Some(body));
    for body in [
        r#"{"enabled": true}"#,
        r#"{"enabled": false}"#,
        r#"{"enabled": true}"#,
    ] {
        let (s, v) = switch(body);
        assert_eq!(s, 200, "{body}: {v}");
        assert_eq!(v["participant"]["id"], json!(pid), "{v}");
    }
    for (body, status) in [
        (r#"{}"#, 422),
        (r#"{"enabled": "yes"}"#, 422),
        (r#"{"enabled": true, "level": 3}"#, 422),
        (r#"{"enabled": "#, 400),
    ] {
        let (s, v) = switch(body);
        assert_eq!(s, status, "{body}: {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    let (s, v) = server.call(
        "POST",
        "/v1/conferences/7575/participants/p999999/noise_suppression",
        Some(r#"{"enabled": true}"#),
    );
    assert_eq!(s, 404, "{v}");
}
