//! The conference event package (RFC 4575) on a running bridge: a subscriber written here
//! (plain SIP over UDP) subscribes to a meeting, gets 200 and the full roster, sees a caller
//! join in a partial NOTIFY, then unsubscribes and gets the terminating NOTIFY. Every document
//! is validated against the RFC's schema with xmllint. Strangers' mistakes get their answers
//! (489 for another package, 404 for an unknown meeting).

use crate::support;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use confab::media::codec::Codec;
use support::Endpoint;
use support::clients::RawUa;
use support::server::Server;

const MEETING: &str = "5400";

/// A subscriber: one socket, one subscription dialog.
struct Watcher {
    socket: UdpSocket,
    bridge: SocketAddr,
    call_id: String,
    to_tag: Option<String>,
    cseq: u32,
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

impl Watcher {
    fn new(bridge: SocketAddr, call_id: &str) -> Watcher {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Watcher {
            socket,
            bridge,
            call_id: call_id.into(),
            to_tag: None,
            cseq: 0,
        }
    }

    fn subscribe(&mut self, user: &str, headers: &str) {
        self.cseq += 1;
        let local = self.socket.local_addr().unwrap();
        let to_tag = self
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        let text = format!(
            "SUBSCRIBE sip:{user}@{b} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{cid}s{cseq};rport\r\n\
             From: <sip:watcher@{local}>;tag=w{cid}\r\nTo: <sip:{user}@{b}>{to_tag}\r\nCall-ID: {cid}\r\n\
             CSeq: {cseq} SUBSCRIBE\r\nContact: <sip:watcher@{local}>\r\nMax-Forwards: 70\r\n\
             Accept: application/conference-info+xml\r\n{headers}Content-Length: 0\r\n\r\n",
            b = self.bridge,
            cid = self.call_id,
            cseq = self.cseq,
        );
        self.socket.send_to(text.as_bytes(), self.bridge).unwrap();
    }

    fn recv(&self) -> String {
        let mut buf = vec![0u8; 65_536];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("a message from the bridge");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// The final answer to our last SUBSCRIBE (NOTIFYs that come first are kept).
    fn answer(&mut self, notifies: &mut Vec<String>) -> String {
        loop {
            let m = self.recv();
            if m.starts_with("NOTIFY ") {
                self.ok(&m);
                notifies.push(m);
            } else if status(&m).is_some_and(|s| s >= 200) {
                if let Some(tag) = header(&m, "To").and_then(|t| t.split(";tag=").nth(1)) {
                    self.to_tag.get_or_insert_with(|| tag.to_owned());
                }
                return m;
            }
        }
    }

    /// The next NOTIFY, answered 200.
    fn notify(&self) -> String {
        loop {
            let m = self.recv();
            if m.starts_with("NOTIFY ") {
                self.ok(&m);
                return m;
            }
        }
    }

    fn ok(&self, request: &str) {
        let ok = support::clients::ok_to(request);
        self.socket.send_to(ok.as_bytes(), self.bridge).unwrap();
    }
}

/// `doc` is valid under RFC 4575's schema (xmllint, offline).
fn assert_valid(doc: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc4575");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), doc).unwrap();
    let out = Command::new("xmllint")
        .args(["--nonet", "--noout", "--schema"])
        .arg(dir.join("conference-info.xsd"))
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{doc}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_sip_subscriber_sees_the_roster_and_a_caller_joining() {
    if !support::require(&["xmllint"]) {
        return;
    }
    let _turn = support::shared();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    let (code, v) = server.call(
        "POST",
        "/v1/conferences",
        Some(&format!(r#"{{"id":"{MEETING}"}}"#)),
    );
    assert_eq!(code, 201, "{v}");

    // Other packages and unknown meetings.
    let mut stranger = Watcher::new(server.sip, "evt-other");
    stranger.subscribe(MEETING, "Event: presence\r\n");
    let refused = stranger.answer(&mut Vec::new());
    assert_eq!(status(&refused), Some(489), "{refused}");
    assert_eq!(header(&refused, "Allow-Events"), Some("conference"));
    let mut lost = Watcher::new(server.sip, "evt-lost");
    lost.subscribe("5999", "Event: conference\r\n");
    assert_eq!(status(&lost.answer(&mut Vec::new())), Some(404));

    let mut w = Watcher::new(server.sip, "evt-watch");
    let mut early = Vec::new();
    w.subscribe(MEETING, "Event: conference\r\nExpires: 600\r\n");
    let ok = w.answer(&mut early);
    assert_eq!(status(&ok), Some(200), "{ok}");
    assert_eq!(header(&ok, "Expires"), Some("600"));
    let first = early.pop().unwrap_or_else(|| w.notify());
    assert_eq!(header(&first, "Event"), Some("conference"));
    assert!(
        header(&first, "Subscription-State").is_some_and(|s| s.starts_with("active;expires=")),
        "{first}"
    );
    assert_eq!(
        header(&first, "Content-Type"),
        Some("application/conference-info+xml")
    );
    let doc = body(&first);
    assert!(doc.contains("state=\"full\" version=\"1\""), "{doc}");
    assert!(doc.contains("<user-count>0</user-count>"), "{doc}");
    assert_valid(doc);

    // A caller joins: a partial NOTIFY names it.
    let phone = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 7);
    let offer = support::offer_for(&phone, 0, "PCMU/8000");
    let mut caller = RawUa::new(server.sip, "evt-caller");
    caller.extra_headers = "P-Asserted-Identity: \"Ann <&>\" <sip:ann@example.com>\r\n".into();
    let (code, _) = caller.invite(MEETING, &offer);
    assert_eq!(code, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = None;
    while Instant::now() < deadline {
        let n = w.notify();
        let doc = body(&n).to_owned();
        assert_valid(&doc);
        assert!(doc.contains("state=\"partial\""), "{doc}");
        if doc.contains("<uri>sip:raw@") {
            seen = Some(doc);
            break;
        }
    }
    let doc = seen.expect("a partial NOTIFY with the caller");
    assert!(doc.contains("version=\"2\""), "{doc}");
    assert!(doc.contains("<user-count>1</user-count>"), "{doc}");
    assert!(doc.contains("<entry>attendee</entry>"), "{doc}");
    assert!(
        doc.contains("<status>pending</status>") || doc.contains("<status>connected</status>"),
        "{doc}"
    );

    // Unsubscribe: 200 with Expires 0, and a NOTIFY that says it is over.
    w.subscribe(MEETING, "Event: conference\r\nExpires: 0\r\n");
    let mut pending = Vec::new();
    let ok = w.answer(&mut pending);
    assert_eq!(header(&ok, "Expires"), Some("0"), "{ok}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    for n in pending {
        if header(&n, "Subscription-State").is_some_and(|s| s.starts_with("terminated")) {
            last = Some(n);
        }
    }
    while last.is_none() && Instant::now() < deadline {
        let n = w.notify();
        if header(&n, "Subscription-State").is_some_and(|s| s.starts_with("terminated")) {
            last = Some(n);
        }
    }
    let last = last.expect("a terminating NOTIFY");
    assert_eq!(
        header(&last, "Subscription-State"),
        Some("terminated;reason=timeout")
    );
    assert_valid(body(&last));
    assert_eq!(caller.request("BYE", None, ""), 200);
}

/// SIPp as the roster watcher (tests/sipp/uac_subscribe_conference.xml): with one caller in
/// the meeting, its SUBSCRIBE gets 200, the full roster with one user, and the terminating
/// NOTIFY after its unsubscribe.
#[test]
fn sipp_subscribes_and_unsubscribes() {
    if !support::require(&["sipp", "xmllint"]) {
        return;
    }
    let _turn = support::shared();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    let (code, v) = server.call("POST", "/v1/conferences", Some(r#"{"id":"5401"}"#));
    assert_eq!(code, 201, "{v}");
    let phone = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 7);
    let offer = support::offer_for(&phone, 0, "PCMU/8000");
    let mut caller = RawUa::new(server.sip, "evt-sipp-caller");
    assert_eq!(caller.invite("5401", &offer).0, 200);
    let scenario =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/uac_subscribe_conference.xml");
    let out = Command::new("sipp")
        .arg(server.sip.to_string())
        .arg("-sf")
        .arg(&scenario)
        .args(["-s", "5401", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &support::server::free_port().to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "20s", "-timeout_error"])
        .output()
        .expect("sipp");
    assert!(
        out.status.success(),
        "sipp exit {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(caller.request("BYE", None, ""), 200);
}
