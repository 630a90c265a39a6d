//! A SIP user agent written in the test, for what a real phone will not do on cue: plain
//! messages over UDP, one call at a time, every response and request visible to the test.

use std::time::Duration;

/// A SIP user agent written in the test: plain messages over UDP, one call at a time.
pub struct RawUa {
    socket: std::net::UdpSocket,
    bridge: std::net::SocketAddr,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    cseq: u32,
    user: String,
    /// Header lines added to the INVITE (each ending in CRLF).
    pub extra_headers: String,
    /// Parameters after the INVITE's Request-URI (`;name=value...`).
    pub uri_params: String,
    /// The last final response to an INVITE, whole.
    pub last_final: String,
}

impl RawUa {
    pub fn new(bridge: std::net::SocketAddr, call_id: &str) -> Self {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        RawUa {
            socket,
            bridge,
            call_id: call_id.to_owned(),
            from_tag: format!("t{call_id}"),
            to_tag: None,
            cseq: 1,
            user: String::new(),
            extra_headers: String::new(),
            uri_params: String::new(),
            last_final: String::new(),
        }
    }

    fn local(&self) -> std::net::SocketAddr {
        self.socket.local_addr().unwrap()
    }

    fn send(&self, text: &str) {
        self.socket.send_to(text.as_bytes(), self.bridge).unwrap();
    }

    /// The next message from the bridge; a BYE is answered 200 and returned too.
    pub fn recv(&self) -> Option<String> {
        let mut buf = [0u8; 8192];
        let n = self.socket.recv(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("BYE ") {
            self.send(&ok_to(&text));
        }
        Some(text)
    }

    /// The next message from the bridge if one comes within `wait` (a BYE is answered 200).
    pub fn poll(&self, wait: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(wait)).ok()?;
        let message = self.recv();
        let _ = self.socket.set_read_timeout(Some(Duration::from_secs(5)));
        message
    }

    fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
        msg.split("\r\n")
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }

    /// Sends an INVITE to `user` with `sdp`; returns the final status and the answer's body,
    /// acknowledging it.
    pub fn invite(&mut self, user: &str, sdp: &str) -> (u16, String) {
        self.invite_with(user, sdp, |_| String::new())
    }

    /// An INVITE whose ACK carries `ack_body(200's body)` (an offerless INVITE's answer).
    pub fn invite_with(
        &mut self,
        user: &str,
        sdp: &str,
        ack_body: impl FnOnce(&str) -> String,
    ) -> (u16, String) {
        self.user = user.to_owned();
        let local = self.local();
        let branch = format!("z9hG4bK{}i", self.call_id);
        let msg = format!(
            "INVITE sip:{user}@{b}{params} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             From: <sip:raw@{local}>;tag={tag}\r\nTo: <sip:{user}@{b}>\r\nCall-ID: {cid}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:raw@{local}>\r\nMax-Forwards: 70\r\n{extra}\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            extra = self.extra_headers,
            params = self.uri_params,
            b = self.bridge,
            tag = self.from_tag,
            cid = self.call_id,
            len = sdp.len()
        );
        self.send(&msg);
        loop {
            let Some(r) = self.recv() else {
                return (0, String::new());
            };
            let code: u16 = r.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
            if code < 200 {
                continue;
            }
            self.last_final = r.clone();
            let to = Self::header(&r, "To").unwrap_or_default().to_owned();
            self.to_tag = to.split(";tag=").nth(1).map(str::to_owned);
            let ack_branch = if code == 200 {
                format!("{branch}a")
            } else {
                branch.clone()
            };
            let body = r.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
            let answer = if code == 200 {
                ack_body(&body)
            } else {
                String::new()
            };
            let kind = if answer.is_empty() {
                ""
            } else {
                "Content-Type: application/sdp\r\n"
            };
            let ack = format!(
                "ACK sip:{user}@{b} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={ack_branch}\r\n\
                 From: <sip:raw@{local}>;tag={tag}\r\nTo: {to}\r\nCall-ID: {cid}\r\n\
                 CSeq: 1 ACK\r\n{kind}Content-Length: {len}\r\n\r\n{answer}",
                b = self.bridge,
                tag = self.from_tag,
                cid = self.call_id,
                len = answer.len(),
            );
            self.send(&ack);
            return (code, body);
        }
    }

    /// An in-dialog request (INFO, BYE, ...); returns the response's status.
    pub fn request(&mut self, method: &str, content_type: Option<&str>, body: &str) -> u16 {
        self.cseq += 1;
        let local = self.local();
        let mut extra = String::new();
        if let Some(t) = content_type {
            extra = format!("Content-Type: {t}\r\n");
        }
        let msg = format!(
            "{method} sip:{user}@{b} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{cid}{cseq}\r\n\
             From: <sip:raw@{local}>;tag={tag}\r\nTo: <sip:{user}@{b}>;tag={to}\r\nCall-ID: {cid}\r\n\
             CSeq: {cseq} {method}\r\n{extra}Content-Length: {len}\r\n\r\n{body}",
            user = self.user,
            b = self.bridge,
            tag = self.from_tag,
            to = self.to_tag.clone().unwrap_or_default(),
            cid = self.call_id,
            cseq = self.cseq,
            len = body.len()
        );
        self.send(&msg);
        while let Some(r) = self.recv() {
            if r.starts_with("SIP/2.0 ") && r.contains(&format!("CSeq: {} {method}", self.cseq)) {
                return r.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
            }
        }
        0
    }
}

/// A `200 OK` to `request` (its Via, From, To, Call-ID and CSeq copied), as a UA written in
/// a test answers a BYE or a NOTIFY.
pub fn ok_to(request: &str) -> String {
    let copy = |name: &str| {
        request
            .split("\r\n")
            .filter(|l| l.starts_with(&format!("{name}: ")))
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
    };
    format!(
        "SIP/2.0 200 OK\r\n{}{}{}{}{}Content-Length: 0\r\n\r\n",
        copy("Via"),
        copy("From"),
        copy("To"),
        copy("Call-ID"),
        copy("CSeq")
    )
}

/// The media port of an SDP answer's first m-line.
pub fn answer_port(sdp: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}
