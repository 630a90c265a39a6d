//! Presence on a running bridge against Kamailio's presence module (db_sqlite), both started
//! here: a watcher subscribes to a caller's presence at Kamailio; when the caller (named by
//! the P-Asserted-Identity its trusted gateway, loopback, sends) joins a meeting, the watcher
//! is told "open, in a meeting"; when it hangs up, "closed". Callers with no asserted
//! identity, or one that is not a SIP address, are not published.

use crate::support;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use confab::media::codec::Codec;
use support::Endpoint;
use support::clients::{RawUa, answer_port};
use support::kamailio::Group;
use support::server::{Server, free_port};

const MEETING: &str = "5480";
const MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";
const SCHEMA: &str = "/usr/share/kamailio/db_sqlite";

/// Kamailio as a presence server on `port`, its database in `dir`.
fn presence_server(dir: &Path, port: u16) -> Group {
    let db = dir.join("presence.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    for schema in ["standard", "presence"] {
        let sql = std::fs::read_to_string(format!("{SCHEMA}/{schema}-create.sql")).unwrap();
        conn.execute_batch(&sql).unwrap();
    }
    drop(conn);
    // db_sqlite drops the first `/` after `sqlite://`: an absolute path takes four.
    let url = format!("sqlite:///{}", db.display());
    let cfg = format!(
        "#!KAMAILIO\ndebug=2\nlog_stderror=yes\nchildren=1\nlisten=udp:127.0.0.1:{port}\n\
         mpath=\"{MODULES}/\"\n\
         loadmodule \"db_sqlite.so\"\nloadmodule \"tm.so\"\nloadmodule \"sl.so\"\n\
         loadmodule \"pv.so\"\nloadmodule \"xlog.so\"\nloadmodule \"presence.so\"\n\
         loadmodule \"presence_xml.so\"\n\
         modparam(\"presence\", \"db_url\", \"{url}\")\n\
         modparam(\"presence\", \"server_address\", \"sip:127.0.0.1:{port}\")\n\
         modparam(\"presence_xml\", \"db_url\", \"{url}\")\n\
         modparam(\"presence_xml\", \"force_active\", 1)\n\
         request_route {{\n\
             if ($rm == \"PUBLISH\" || $rm == \"SUBSCRIBE\") {{\n\
                 if (!t_newtran()) {{ sl_reply_error(); exit; }}\n\
                 xlog(\"L_INFO\", \"$rm $ru from $si:$sp\\n\");\n\
                 if ($rm == \"PUBLISH\") handle_publish(); else handle_subscribe();\n\
                 t_release();\n\
                 exit;\n\
             }}\n\
             sl_send_reply(\"405\", \"Method Not Allowed\");\n\
         }}\n"
    );
    let path = dir.join("presence.cfg");
    std::fs::write(&path, cfg).unwrap();
    use std::os::unix::process::CommandExt;
    let child = Command::new("kamailio")
        .process_group(0)
        .arg("-f")
        .arg(&path)
        .args(["-DD", "-E", "-m", "64", "-M", "8"])
        .arg("-w")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("kamailio.log")).unwrap(),
        ))
        .spawn()
        .expect("kamailio");
    Group(child)
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Someone watching a presentity at the presence server.
struct Watcher {
    socket: UdpSocket,
    server: SocketAddr,
}

impl Watcher {
    /// Subscribes to `presentity`, retrying until the server answers (it may still be
    /// starting); the 200 and the first NOTIFY come in either order.
    fn subscribe(server: SocketAddr, presentity: &str, log: &Path) -> Watcher {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let local = socket.local_addr().unwrap();
        let w = Watcher { socket, server };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        while Instant::now() < deadline {
            n += 1;
            let text = format!(
                "SUBSCRIBE {presentity} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKw{n};rport\r\n\
                 From: <sip:bob@example.com>;tag=bob{n}\r\nTo: <{presentity}>\r\nCall-ID: watch{n}\r\n\
                 CSeq: 1 SUBSCRIBE\r\nContact: <sip:bob@{local}>\r\nEvent: presence\r\n\
                 Accept: application/pidf+xml\r\nExpires: 300\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            w.socket.send_to(text.as_bytes(), server).unwrap();
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                if let Some(m) = w.recv()
                    && m.starts_with("SIP/2.0 200")
                {
                    return w;
                }
            }
        }
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!("the presence server did not take the subscription; it said:\n{log}");
    }

    /// The next message, a NOTIFY answered 200.
    fn recv(&self) -> Option<String> {
        let mut buf = vec![0u8; 65_536];
        let (n, _) = self.socket.recv_from(&mut buf).ok()?;
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.starts_with("NOTIFY ") {
            let ok = support::clients::ok_to(&m);
            self.socket.send_to(ok.as_bytes(), self.server).unwrap();
        }
        Some(m)
    }

    /// The body of the first NOTIFY within `wait` whose document `matches`.
    fn notified(&self, wait: Duration, matches: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(m) = self.recv()
                && m.starts_with("NOTIFY ")
                && header(&m, "Event") == Some("presence")
                && matches(body(&m))
            {
                return Some(body(&m).to_owned());
            }
        }
        None
    }
}

/// A caller from the trusted gateway (loopback) asserting `identity`, with media flowing
/// so that it is connected.
fn call(server: &Server, name: &str, identity: &str, ssrc: u32) -> (RawUa, Endpoint, SocketAddr) {
    let mut phone = Endpoint::new(Codec::Pcmu, 440.0, -20.0, ssrc);
    let offer = support::offer_for(&phone, 0, "PCMU/8000");
    let mut caller = RawUa::new(server.sip, name);
    if !identity.is_empty() {
        caller.extra_headers = format!("P-Asserted-Identity: {identity}\r\n");
    }
    let (code, answer) = caller.invite(MEETING, &offer);
    assert_eq!(code, 200, "{}", caller.last_final);
    let media = SocketAddr::new(server.sip.ip(), answer_port(&answer));
    for _ in 0..10 {
        phone.send_frame(media);
    }
    (caller, phone, media)
}

/// A figure of the bridge's `/metrics` exposition (`name` with its labels and a space).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// The exposition once `ready` says it is (or after 5 s).
fn metrics_when(server: &Server, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, text) =
            support::server::http_raw(server.api, "GET", "/metrics", None, None, &[]);
        assert_eq!(status, 200);
        if ready(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_caller_in_a_meeting_shows_in_a_meeting_to_its_watchers() {
    let modules = [
        format!("{MODULES}/presence.so"),
        format!("{MODULES}/db_sqlite.so"),
    ];
    let missing: Vec<String> = modules
        .iter()
        .filter(|m| !Path::new(m).exists())
        .map(|m| format!("{m} is missing (kamailio-presence-modules, kamailio-sqlite-modules)"))
        .collect();
    if !support::require(&["kamailio"]) || !support::skip_unless_empty(&missing) {
        return;
    }
    let _turn = support::shared();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _kamailio = presence_server(dir.path(), port);
    let presence: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let watcher = Watcher::subscribe(
        presence,
        "sip:ann@example.com",
        &dir.path().join("kamailio.log"),
    );
    // Nothing published yet: whatever the server says first is not "in a meeting".
    let early = watcher.notified(Duration::from_secs(1), |_| true);
    assert!(!early.unwrap_or_default().contains("rpid:meeting"));

    let data = tempfile::tempdir().unwrap();
    let presence_arg = presence.to_string();
    let server = Server::start(
        data.path(),
        None,
        &[
            "--presence-server",
            &presence_arg,
            "--presence-expires-secs",
            "120",
        ],
    );
    let (code, v) = server.call(
        "POST",
        "/v1/conferences",
        Some(&format!(r#"{{"id":"{MEETING}"}}"#)),
    );
    assert_eq!(code, 201, "{v}");

    // Ann joins: her watcher sees her open and in a meeting.
    let (mut ann, mut ann_phone, ann_media) =
        call(&server, "pres-ann", "\"Ann\" <sip:ann@Example.com>", 48);
    let open = watcher
        .notified(Duration::from_secs(10), |doc| doc.contains("rpid:meeting"))
        .unwrap_or_else(|| {
            panic!(
                "no NOTIFY with Ann in a meeting; kamailio said:\n{}",
                std::fs::read_to_string(dir.path().join("kamailio.log")).unwrap_or_default()
            )
        });
    assert!(open.contains("entity=\"sip:ann@example.com\""), "{open}");
    assert!(open.contains("<basic>open</basic>"), "{open}");
    assert!(open.contains("In a conference"), "{open}");
    // The meeting is not named to watchers.
    assert!(!open.contains(MEETING), "{open}");

    // A caller nobody vouches for (its From is its own choice) is not published.
    let (mut anon, _anon_phone, _) = call(&server, "pres-from", "", 50);
    // Nor one whose identity is no SIP address (and nothing fails).
    let (mut other, _other_phone, _) = call(&server, "pres-tel", "<tel:+15551234>", 49);
    // Its identity is read once it is connected (its first packets played).
    let text = metrics_when(&server, |text| {
        metric(text, "confab_presence_refused_total ") == Some(1.0)
    });
    assert_eq!(
        metric(&text, "confab_presence_refused_total "),
        Some(1.0),
        "{text}"
    );

    // Ann hangs up: closed, no longer in a meeting.
    for _ in 0..5 {
        ann_phone.send_frame(ann_media);
    }
    assert_eq!(ann.request("BYE", None, ""), 200);
    let closed = watcher
        .notified(Duration::from_secs(10), |doc| {
            doc.contains("<basic>closed</basic>")
        })
        .expect("a NOTIFY with Ann closed after she hung up");
    assert!(!closed.contains("rpid:meeting"), "{closed}");

    // What Kamailio was sent: Ann's publication and its removal, and nothing for tel:.
    let log = std::fs::read_to_string(dir.path().join("kamailio.log")).unwrap_or_default();
    let publishes: Vec<&str> = log.lines().filter(|l| l.contains("PUBLISH ")).collect();
    assert!(
        publishes.len() >= 2
            && publishes
                .iter()
                .all(|l| l.contains("PUBLISH sip:ann@example.com from 127.0.0.1:")),
        "{publishes:?}"
    );
    assert_eq!(other.request("BYE", None, ""), 200);
    assert_eq!(anon.request("BYE", None, ""), 200);

    // The metrics say so: two PUBLISHes (Ann in, Ann out), none failed, the tel: caller not
    // published, nothing held once the removal was answered.
    let text = metrics_when(&server, |text| {
        metric(text, "confab_presence_publications ") == Some(0.0)
    });
    assert_eq!(
        metric(&text, "confab_presence_publishes_total{result=\"sent\"} "),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "confab_presence_publishes_total{result=\"failed\"} "),
        Some(0.0)
    );
    assert_eq!(metric(&text, "confab_presence_refused_total "), Some(1.0));
    assert_eq!(metric(&text, "confab_presence_publications "), Some(0.0));
}
