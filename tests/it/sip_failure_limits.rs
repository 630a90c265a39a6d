//! Failed passcodes over SIP, with a raw UDP client on loopback keying by SIP INFO: failures
//! are the real caller's (the identity the gateway asserts), counted at each wrong entry even
//! when the caller hangs up during the goodbye, and a locked-out caller does not lock out the
//! other callers behind the same gateway. Bounded: a handful of calls, 5 s waits at most.

use crate::support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use confab::conference::{Admission, Gate, Policy};
use support::clients::SipBridge;

const MEETING: &str = "5555";

/// One call from the gateway (this socket) for `who`.
struct Call {
    sock: UdpSocket,
    bridge: SocketAddr,
    call_id: String,
    who: String,
    /// The meeting called, the From URI and the P-Asserted-Identity header line (if any).
    meeting: String,
    from: String,
    asserted: String,
    to_tag: Option<String>,
    cseq: u32,
}

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

impl Call {
    fn new(bridge: SocketAddr, who: &str, n: u32) -> Call {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Call {
            sock,
            bridge,
            call_id: format!("limits-{who}-{n}"),
            who: who.to_owned(),
            meeting: MEETING.to_owned(),
            from: "sip:anonymous@gw.invalid".to_owned(),
            asserted: format!("P-Asserted-Identity: <sip:{who}@gw.invalid>\r\n"),
            to_tag: None,
            cseq: 1,
        }
    }

    fn send(&self, text: &str) {
        self.sock.send_to(text.as_bytes(), self.bridge).unwrap();
    }

    /// The next final response to `method` within 5 s.
    fn final_response(&self, method: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 8192];
        while Instant::now() < deadline {
            let Ok(n) = self.sock.recv(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let is_answer = header(&text, "CSeq").is_some_and(|c| c.ends_with(method));
            if is_answer && status(&text).is_some_and(|s| s >= 200) {
                return text;
            }
        }
        panic!("no final answer to {method} for {}", self.who)
    }

    /// INVITE for the meeting; the final status.
    fn invite(&mut self) -> u16 {
        let local = self.sock.local_addr().unwrap();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
            local.port() + 2
        );
        self.send(&format!(
            "INVITE sip:{m}@{b} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{c}i\r\nFrom: <{f}>;tag=f{c}\r\nTo: <sip:{m}@{b}>\r\nCall-ID: {c}\r\nCSeq: 1 INVITE\r\n{a}Contact: <sip:caller@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            m = self.meeting,
            f = self.from,
            a = self.asserted,
            b = self.bridge,
            c = self.call_id,
        ));
        let answer = self.final_response("INVITE");
        self.to_tag = header(&answer, "To")
            .and_then(|t| t.split(";tag=").nth(1))
            .map(str::to_owned);
        // ACK (for a 2xx a request of its own, for an error the same transaction's).
        self.in_dialog("ACK", "", "");
        status(&answer).unwrap()
    }

    fn in_dialog(&mut self, method: &str, extra: &str, body: &str) {
        let local = self.sock.local_addr().unwrap();
        let cseq = if method == "ACK" { 1 } else { self.cseq + 1 };
        if method != "ACK" {
            self.cseq = cseq;
        }
        let branch = if method == "ACK" {
            format!("{}i", self.call_id)
        } else {
            format!("{}{cseq}", self.call_id)
        };
        self.send(&format!(
            "{method} sip:confab@{b} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch}\r\nFrom: <{f}>;tag=f{c}\r\nTo: <sip:{m}@{b}>;tag={t}\r\nCall-ID: {c}\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len(),
            m = self.meeting,
            f = self.from,
            b = self.bridge,
            c = self.call_id,
            t = self.to_tag.as_deref().unwrap_or_default(),
        ));
        if method != "ACK" {
            let answer = self.final_response(method);
            assert_eq!(status(&answer), Some(200), "{method}: {answer}");
        }
    }

    /// Keys `digits` by SIP INFO (application/dtmf-relay).
    fn keys(&mut self, digits: &str) {
        for d in digits.chars() {
            let body = format!("Signal={d}\r\nDuration=160\r\n");
            self.in_dialog("INFO", "Content-Type: application/dtmf-relay\r\n", &body);
        }
    }
}

#[test]
fn failures_are_the_callers_own_and_hanging_up_does_not_erase_them() {
    let _turn = support::exclusive();
    // The bridge of tests/support: max_failures_per_source 3, loopback (this gateway) trusted.
    let bridge = SipBridge::start();
    bridge
        .engine
        .create_conference_with(
            MEETING,
            Policy::default(),
            Admission {
                passcode: Some("4242".into()),
                ..Admission::default()
            },
        )
        .wait()
        .unwrap();
    let sip = bridge.sip_addr();
    // Mallory guesses twice, hangs up (before a third try would end the call), calls again,
    // guesses once more and hangs up during what follows: three failures all the same.
    let mut first = Call::new(sip, "+4930111", 1);
    assert_eq!(first.invite(), 200);
    first.keys("1111#2222#");
    first.in_dialog("BYE", "", "");
    let mut second = Call::new(sip, "+4930111", 2);
    assert_eq!(second.invite(), 200);
    second.keys("3333#");
    second.in_dialog("BYE", "", "");
    // Locked out: the next call of that caller is refused at once, even from another port.
    std::thread::sleep(Duration::from_millis(200));
    let mut third = Call::new(sip, "+4930111", 3);
    assert_eq!(third.invite(), 403);
    // Another caller behind the same gateway is not affected and gets in with the passcode.
    let mut other = Call::new(sip, "+4930222", 1);
    assert_eq!(other.invite(), 200);
    other.keys("4242#");
    let joined = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        bridge
            .engine
            .roster(MEETING)
            .wait()
            .unwrap()
            .iter()
            .any(|p| p.uri.contains("anonymous"))
    });
    assert!(joined, "the other caller did not reach the meeting");
    other.in_dialog("BYE", "", "");
}

#[test]
fn closed_and_authenticated_meetings_take_only_identities_the_gateway_asserts() {
    let _turn = support::exclusive();
    let bridge = SipBridge::start();
    for (id, gate) in [
        ("6001", Gate::Asserted),
        (
            "6002",
            Gate::Attendees(vec!["sip:ann@gw.invalid".into(), "+4930333".into()]),
        ),
    ] {
        let admission = Admission {
            gate,
            ..Admission::default()
        };
        bridge
            .engine
            .create_conference_with(id, Policy::default(), admission)
            .wait()
            .unwrap();
    }
    let sip = bridge.sip_addr();
    let call = |n: u32, meeting: &str, from: &str, asserted: &str| {
        let mut c = Call::new(sip, "id", n);
        c.meeting = meeting.to_owned();
        c.from = from.to_owned();
        c.asserted = asserted.to_owned();
        let status = c.invite();
        if status == 200 {
            c.in_dialog("BYE", "", "");
        }
        status
    };
    // `authenticated`: an empty assertion asserts nobody.
    assert_eq!(call(1, "6001", "sip:ann@gw.invalid", ""), 403);
    assert_eq!(
        call(
            2,
            "6001",
            "sip:ann@gw.invalid",
            "P-Asserted-Identity: <>\r\n"
        ),
        403
    );
    assert_eq!(
        call(
            3,
            "6001",
            "sip:x@gw.invalid",
            "P-Asserted-Identity: <sip:+4930999@gw.invalid>\r\n"
        ),
        200
    );
    // `closed`: the caller's own From never counts, user parts do not match loosely, and a bare
    // number matches the asserted user part exactly.
    assert_eq!(call(4, "6002", "sip:ann@gw.invalid", ""), 403);
    assert_eq!(
        call(
            5,
            "6002",
            "sip:ann@gw.invalid",
            "P-Asserted-Identity: <sip:ann@elsewhere.invalid>\r\n"
        ),
        403
    );
    assert_eq!(
        call(
            6,
            "6002",
            "sip:x@gw.invalid",
            "P-Asserted-Identity: <sip:+49303331@gw.invalid>\r\n"
        ),
        403
    );
    assert_eq!(
        call(
            7,
            "6002",
            "sip:x@gw.invalid",
            "P-Asserted-Identity: <sip:ann@gw.invalid>\r\n"
        ),
        200
    );
    assert_eq!(
        call(
            8,
            "6002",
            "sip:x@gw.invalid",
            "P-Asserted-Identity: <sip:+4930333@gw.invalid;user=phone>\r\n"
        ),
        200
    );
}
