//! The OpenAPI document is a contract a client can be generated from: every answer with a body
//! has a schema, every schema is typed (no untyped `serde_json::Value`), errors are the one
//! error shape, and the bearer scheme is declared and required where the API token is.
//! (scripts/schemathesis checks the live bridge against it.)

use serde_json::{Value, json};
use utoipa::OpenApi;

use super::records::RecordItem;
use super::replies::{AddedParticipant, ParticipantInfo, RosterEntry, StateName, TokenReply};
use crate::conference::{DisconnectReason, Participant, ParticipantId, Role, State as PState};

fn document() -> Value {
    serde_json::to_value(super::ApiDoc::openapi()).unwrap()
}

/// Every operation: (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                out.push((method.clone(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// Answers that carry no body: any 204, and WHIP's DELETE (RFC 9725: 200 OK).
fn bodiless(method: &str, path: &str, status: &str) -> bool {
    // A redirect says where in Location (a WHIP join sent to the node running the meeting).
    status == "204"
        || status == "307"
        || (method == "delete" && path.ends_with("/whip/{session}") && status == "200")
}

/// Whether a schema node says what it is (a type, a reference, a combination, an enum).
fn typed(schema: &Value) -> bool {
    ["type", "$ref", "allOf", "anyOf", "oneOf", "enum", "const"]
        .iter()
        .any(|k| schema.get(k).is_some())
}

/// Every schema node under `schema` that says nothing of its type, with where it is.
fn untyped(schema: &Value, at: &str, found: &mut Vec<String>) {
    if !typed(schema) {
        found.push(at.to_owned());
        return;
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            untyped(p, &format!("{at}.{name}"), found);
        }
    }
    if let Some(items) = schema.get("items") {
        untyped(items, &format!("{at}[]"), found);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, s) in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            untyped(s, &format!("{at}.{key}[{i}]"), found);
        }
    }
}

#[test]
fn every_answer_with_a_body_has_a_typed_schema() {
    let doc = document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let ops = operations(&doc);
    assert!(ops.len() >= 23, "{} operations", ops.len());
    let mut missing = Vec::new();
    for (method, path, op) in &ops {
        let responses = op["responses"].as_object().unwrap();
        assert!(!responses.is_empty(), "{method} {path}: no responses");
        for (status, response) in responses {
            let at = format!("{method} {path} {status}");
            let content = response.get("content").and_then(Value::as_object);
            if bodiless(method, path, status) {
                assert!(content.is_none(), "{at}: a body where none is sent");
                continue;
            }
            let Some(content) = content.filter(|c| !c.is_empty()) else {
                missing.push(format!("{at}: no content"));
                continue;
            };
            for (media, c) in content {
                let schema = &c["schema"];
                if schema.is_null() {
                    missing.push(format!("{at} {media}: no schema"));
                    continue;
                }
                untyped(schema, &format!("{at} {media}"), &mut missing);
                if let Some(r) = schema["$ref"].as_str() {
                    let name = r.trim_start_matches("#/components/schemas/");
                    assert!(schemas.contains_key(name), "{at}: {r} is not a component");
                }
                // Errors in JSON are the one error shape.
                if status.starts_with(['4', '5']) && media == "application/json" {
                    assert_eq!(
                        schema["$ref"], "#/components/schemas/ErrorBody",
                        "{at}: not the error shape"
                    );
                }
            }
        }
    }
    // And the components themselves are typed all the way down.
    for (name, schema) in schemas {
        untyped(schema, name, &mut missing);
    }
    assert!(missing.is_empty(), "{missing:#?}");
    assert_eq!(
        schemas["ErrorBody"]["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorDetail"
    );
    let detail = &schemas["ErrorDetail"];
    assert_eq!(detail["required"], json!(["code", "message"]), "{detail}");
}

#[test]
fn the_bearer_scheme_is_declared_and_required_where_the_token_is() {
    let doc = document();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http", "{schemes}");
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["whip"]["scheme"], "bearer", "{schemes}");
    for (method, path, op) in operations(&doc) {
        let security = op.get("security").cloned().unwrap_or(Value::Null);
        let open = ["/healthz", "/readyz", "/metrics"].contains(&path.as_str());
        if open {
            assert!(security.is_null(), "{method} {path}: {security}");
        } else if path.contains("/whip") {
            // The conference's own credentials, or none for an open meeting.
            if method == "post" {
                assert_eq!(security, json!([{}, { "whip": [] }]), "{method} {path}");
            }
        } else {
            assert_eq!(security, json!([{ "bearer": [] }]), "{method} {path}");
            let responses = &op["responses"];
            assert!(!responses["401"].is_null(), "{method} {path}: no 401");
            assert!(!responses["403"].is_null(), "{method} {path}: no 403");
        }
    }
}

fn participant() -> Participant {
    use crate::conference::{Joining, Roster};
    let mut roster = Roster::new(Default::default());
    let id = ParticipantId(7);
    roster
        .join(Joining {
            id,
            display_name: "Ann".into(),
            uri: "sip:ann@192.0.2.1".into(),
            role: Role::Leader,
            identity: None,
        })
        .unwrap();
    let mut p = roster.participant(id).unwrap().clone();
    p.state = PState::Disconnected(DisconnectReason::NoAnswer);
    p.sip_status = Some(480);
    p
}

#[test]
fn the_typed_answers_keep_the_api_shapes() {
    let p = participant();
    let v = serde_json::to_value(ParticipantInfo::of(&p, None)).unwrap();
    // These as they always were (fields may be added, none changed).
    let was = json!({
        "id": "p7", "display_name": "Ann", "uri": "sip:ann@192.0.2.1", "role": "leader",
        "state": "disconnected", "disconnect_reason": "no-answer", "muted": false,
        "deaf": false, "speaking": false, "on_hold": false, "sip_status": 480, "media": null,
    });
    for (key, value) in was.as_object().unwrap() {
        assert_eq!(&v[key], value, "{key} in {v}");
        assert!(v.get(key).is_some(), "{key} missing from {v}");
    }
    let v = serde_json::to_value(RosterEntry::of(&p)).unwrap();
    assert_eq!(
        v,
        json!({ "id": "p7", "display_name": "Ann", "state": "disconnected", "muted": false, "speaking": false })
    );
    // A dial-out's answer has no `sdp`; an offer's has it.
    let added = AddedParticipant {
        participant: ParticipantInfo::of(&p, None),
        sdp: None,
    };
    let v = serde_json::to_value(added).unwrap();
    assert!(
        v.get("sdp").is_none() && v["participant"]["id"] == "p7",
        "{v}"
    );
    let v = serde_json::to_value(TokenReply {
        token: "t".into(),
        expires_at: 9,
        role: super::replies::RoleName::Attendee,
    })
    .unwrap();
    assert_eq!(
        v,
        json!({ "token": "t", "expires_at": 9, "role": "attendee" })
    );
    assert_eq!(
        serde_json::to_value(StateName::from(PState::Inviting)).unwrap(),
        "inviting"
    );
    let record = crate::store::Record {
        id: 1,
        conference: "1234".into(),
        participant: "p7".into(),
        display_name: "Ann".into(),
        uri: "sip:ann@192.0.2.1".into(),
        role: "leader".into(),
        transport: "udp".into(),
        codec: Some("PCMU".into()),
        srtp: false,
        joined_at: 5,
        left_at: None,
        reason: Some("hangup".into()),
        sip_status: None,
        packets_in: 1,
        packets_out: 2,
        packets_lost: -1,
        jitter_ms: Some(f64::NAN),
        rtt_ms: None,
        mos: Some(4.1),
        user_agent: Some("Linphone/5.2".into()),
        remote: None,
    };
    let v = serde_json::to_value(RecordItem::from(record)).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = [
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
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(v["disconnect_reason"], "hangup");
    // No NaN reaches JSON as a `null` where the schema says number.
    assert_eq!(v["jitter_ms"], Value::Null);
    assert_eq!(v["user_agent"], "Linphone/5.2");
    assert_eq!(v["remote"], Value::Null);
}
