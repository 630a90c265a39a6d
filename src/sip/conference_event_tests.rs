//! Documents of the conference event package: their content, hostile strings, and every
//! kind of document validated against RFC 4575's schema by xmllint.

use std::path::Path;
use std::process::Command;

use super::*;

pub(crate) fn view(id: u64, name: &str, status: Status) -> UserView {
    UserView {
        id: ParticipantId(id),
        display_name: name.into(),
        uri: format!("sip:user{id}@example.com"),
        leader: id == 1,
        status,
        muted: false,
        deaf: false,
        ssrc: Some(1000 + id as u32),
    }
}

/// Validates `doc` with xmllint against the RFC 4575 schema (fixture); the error if not.
pub(crate) fn validate(doc: &str) -> Result<(), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc4575");
    let file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(file.path(), doc).map_err(|e| e.to_string())?;
    let out = Command::new("xmllint")
        .args(["--nonet", "--noout", "--schema"])
        .arg(dir.join("conference-info.xsd"))
        .arg(file.path())
        .output()
        .map_err(|e| format!("xmllint (apt-get install libxml2-utils): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn a_full_document_lists_users_roles_status_media_and_ssrc() {
    let mut muted = view(2, "Bob", Status::Connected);
    muted.muted = true;
    let users = [view(1, "Ann", Status::Connected), muted];
    let entries: Vec<Entry> = users.iter().map(Entry::User).collect();
    let doc = document(
        "sip:1234@127.0.0.1",
        1,
        true,
        ConferenceState { user_count: 2 },
        &entries,
    );
    assert!(doc.contains("entity=\"sip:1234@127.0.0.1\" state=\"full\" version=\"1\""));
    assert!(doc.contains("<user-count>2</user-count>"));
    assert!(doc.contains("<display-text>Ann</display-text>"));
    assert!(doc.contains("<entry>leader</entry>"));
    assert!(doc.contains("<entry>attendee</entry>"));
    assert!(doc.contains("<src-id>1001</src-id>"));
    assert!(doc.contains("<status>connected</status>"));
    // Bob is muted: the others do not hear him.
    assert!(doc.contains("<status>recvonly</status>"));
    assert!(doc.contains("<uri>sip:user2@example.com</uri>"));
    validate(&doc).unwrap();
}

#[test]
fn every_status_and_a_deleted_user_validate() {
    let users = [
        view(1, "Ann", Status::DialingOut),
        view(2, "Bob", Status::Pending),
        view(3, "Cy", Status::OnHold),
        view(4, "Di", Status::Disconnected(DisconnectReason::Ejected)),
        view(5, "Ed", Status::Disconnected(DisconnectReason::Busy)),
        view(
            6,
            "Fa",
            Status::Disconnected(DisconnectReason::MediaTimeout),
        ),
    ];
    let mut entries: Vec<Entry> = users.iter().map(Entry::User).collect();
    entries.push(Entry::Deleted(ParticipantId(9)));
    let doc = document(
        "sip:1234@127.0.0.1",
        7,
        false,
        ConferenceState { user_count: 3 },
        &entries,
    );
    for s in ["dialing-out", "pending", "on-hold", "disconnected"] {
        assert!(doc.contains(&format!("<status>{s}</status>")), "{s}");
    }
    for m in ["booted", "busy", "failed"] {
        assert!(doc.contains(&format!("<disconnection-method>{m}</disconnection-method>")));
    }
    assert!(doc.contains("state=\"partial\" version=\"7\""));
    assert!(doc.contains("<users state=\"partial\">"));
    assert!(doc.contains("<user entity=\"urn:x-confab:participant:9\" state=\"deleted\"/>"));
    validate(&doc).unwrap();
}

#[test]
fn hostile_names_and_uris_are_escaped_or_left_out() {
    let mut u = view(
        1,
        "</display-text><evil a=\"1\" b='2'>&amp;\u{0}\u{7}\u{1b}x",
        Status::Connected,
    );
    u.uri = "sip:a@b\"><script>".into();
    let mut v = view(2, "Zoë \"Z\" & <co>", Status::Connected);
    v.uri = "<sip:x@y>;tag=\r\n".into();
    let users = [u, v];
    let entries: Vec<Entry> = users.iter().map(Entry::User).collect();
    let doc = document(
        "sip:1234@host\"><x>",
        1,
        true,
        ConferenceState { user_count: 2 },
        &entries,
    );
    assert!(!doc.contains("<evil"), "{doc}");
    assert!(!doc.contains("<script>"), "{doc}");
    assert!(!doc.contains('\u{0}') && !doc.contains('\u{7}') && !doc.contains('\u{1b}'));
    assert!(
        doc.contains("&lt;/display-text&gt;&lt;evil a=&quot;1&quot; b=&apos;2&apos;&gt;&amp;amp;x")
    );
    assert!(doc.contains("Zoë &quot;Z&quot; &amp; &lt;co&gt;"));
    // URIs that are not plain URIs are not used as such.
    assert!(doc.contains("endpoint entity=\"urn:x-confab:leg:1\""));
    assert!(doc.contains("entity=\"sip:conference@invalid\""));
    validate(&doc).unwrap();
}

#[test]
fn escape_and_safe_uri() {
    assert_eq!(
        escape("a&b<c>d\"e'f\u{1}g"),
        "a&amp;b&lt;c&gt;d&quot;e&apos;fg"
    );
    assert_eq!(
        safe_uri("sip:ann@example.com;user=phone").as_deref(),
        Some("sip:ann@example.com;user=phone")
    );
    assert_eq!(safe_uri("tel:+4930123").as_deref(), Some("tel:+4930123"));
    for bad in [
        "",
        "sip:",
        "http://x",
        "sip:a b@c",
        "sip:a\"@b",
        "sip:<a>",
        "sip:é@x",
    ] {
        assert_eq!(safe_uri(bad), None, "{bad:?}");
    }
}

#[test]
fn the_fingerprint_follows_what_the_document_says() {
    let a = view(1, "Ann", Status::Connected);
    let mut b = a.clone();
    assert_eq!(a.fingerprint(), b.fingerprint());
    b.muted = true;
    assert_ne!(a.fingerprint(), b.fingerprint());
    let mut c = a.clone();
    c.status = Status::Disconnected(DisconnectReason::Hangup);
    assert_ne!(a.fingerprint(), c.fingerprint());
}
