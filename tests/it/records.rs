//! Call records of a real SIP call on a running `confab serve`: the caller's User-Agent and
//! address in its record and in the CSV export (per user), and the conference's session from
//! its start to its deletion, which keeps both.

use crate::support;

use confab::media::codec::Codec;
use serde_json::Value;
use support::Endpoint;
use support::server::{Server, http_raw};

#[test]
fn a_sip_callers_user_agent_and_address_are_in_its_record_and_the_csv_export() {
    let _turn = support::shared();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    assert_eq!(
        server
            .call("POST", "/v1/conferences", Some(r#"{"id":"5400"}"#))
            .0,
        201
    );
    let phone = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 7);
    let offer = support::offer_for(&phone, 0, "PCMU/8000");
    let mut ua = support::clients::RawUa::new(server.sip, "records-1");
    ua.extra_headers = "User-Agent: =Phone \"X\", 1.0\r\n".to_owned();
    let (status, answer) = ua.invite("5400", &offer);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(ua.request("BYE", None, ""), 200);

    // The record, once the writer has it: the User-Agent as sent, the INVITE's source.
    let mut record = Value::Null;
    assert!(support::wait_for(std::time::Duration::from_secs(5), || {
        let (_, v) = server.call("GET", "/v1/records?conference=5400", None);
        record = v["records"][0].clone();
        record["left_at"].is_i64()
    }));
    assert_eq!(record["user_agent"], "=Phone \"X\", 1.0", "{record}");
    let uri = record["uri"].as_str().unwrap().to_owned();
    // The raw UA's From is `sip:raw@{its address}`: the address the bridge saw it at.
    let from = uri.trim_start_matches("sip:raw@");
    assert_eq!(record["remote"].as_str(), Some(from), "{record}");

    // The CSV export of this user: one row, the User-Agent made inert and quoted.
    let path = format!("/v1/records?format=csv&uri={}", encode(&uri));
    let (status, headers, csv) = http_raw(server.api, "GET", &path, None, None, &[]);
    assert_eq!(status, 200, "{csv}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: text/csv"),
        "{headers}"
    );
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(
        rows[1].ends_with(&format!(",\"'=Phone \"\"X\"\", 1.0\",{from}")),
        "{}",
        rows[1]
    );
    let (_, nobody) = server.call("GET", "/v1/records?uri=sip%3Anobody%40x", None);
    assert_eq!(nobody["records"], Value::Array(Vec::new()));

    // Deleted: the conference's session ends, and its records stay.
    assert_eq!(server.call("DELETE", "/v1/conferences/5400", None).0, 204);
    let mut session = Value::Null;
    assert!(support::wait_for(std::time::Duration::from_secs(5), || {
        let (_, v) = server.call("GET", "/v1/records/conferences?conference=5400", None);
        session = v["conferences"][0].clone();
        session["ended_at"].is_i64()
    }));
    assert_eq!(session["end_reason"], "ended", "{session}");
    assert_eq!(session["peak_participants"], 1, "{session}");
    let (_, v) = server.call("GET", "/v1/records?conference=5400", None);
    assert_eq!(v["records"].as_array().map(Vec::len), Some(1), "{v}");
    server.stop();
}

/// `uri` for a query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
