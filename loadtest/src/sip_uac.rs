//! A minimal SIP UAC over UDP for the dial-in legs: INVITE (retransmitted), ACK, and BYE.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::net::Local;

/// A minimal SIP UAC over UDP: INVITE (retransmitted), ACK, and BYE at the end; one call at a
/// time while setting up, paced to stay under the bridge's per-source INVITE limit.
pub(crate) struct Uac {
    socket: UdpSocket,
    /// Our address in Via, Contact and From (with the socket's port).
    own: SocketAddr,
    bridge: SocketAddr,
    calls: Vec<Dialog>,
    next: u64,
    last_invite: Option<Instant>,
}

struct Dialog {
    call_id: String,
    from_tag: String,
    to: String,
    target: String,
}

impl Uac {
    /// A UAC on `local`'s bind address, talking to the bridge's SIP address `bridge`.
    pub(crate) fn new(bridge: SocketAddr, local: &Local) -> anyhow::Result<Self> {
        let socket = local.udp()?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let own = SocketAddr::new(local.own, socket.local_addr()?.port());
        Ok(Uac {
            socket,
            own,
            bridge,
            calls: Vec::new(),
            next: 1,
            last_invite: None,
        })
    }

    fn request(
        &self,
        method: &str,
        uri: &str,
        d: &Dialog,
        cseq: u32,
        body: &str,
        branch: &str,
    ) -> anyhow::Result<String> {
        let me = self.own;
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        Ok(format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:load@{me}>;tag={}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:load@{me}>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            d.from_tag,
            d.to,
            d.call_id,
            body.len()
        ))
    }

    /// INVITEs `room`; the answer's SDP and the call's Call-ID.
    pub(crate) fn invite(&mut self, room: &str, sdp: &str) -> anyhow::Result<(String, String)> {
        // At most 40 INVITEs a second.
        if let Some(t) = self.last_invite {
            let gap = Duration::from_millis(25);
            if t.elapsed() < gap {
                std::thread::sleep(gap - t.elapsed());
            }
        }
        self.last_invite = Some(Instant::now());
        let n = self.next;
        self.next += 1;
        let uri = format!("sip:{room}@{}", self.bridge);
        let mut d = Dialog {
            call_id: format!("load-{}-{n}@{}", std::process::id(), self.own.ip()),
            from_tag: format!("lt{n}"),
            to: format!("<{uri}>"),
            target: uri.clone(),
        };
        let branch = format!("inv{n}");
        let invite = self.request("INVITE", &uri, &d, 1, sdp, &branch)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut resend = Instant::now();
        let mut buf = [0u8; 8192];
        loop {
            if Instant::now() >= resend {
                self.socket.send_to(invite.as_bytes(), self.bridge)?;
                resend = Instant::now() + Duration::from_millis(500);
            }
            if Instant::now() > deadline {
                return Err(anyhow!("INVITE to {room}: no final answer"));
            }
            let Ok((len, _)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            if !text.contains(&d.call_id) || !text.starts_with("SIP/2.0 ") {
                continue;
            }
            let code: u16 = text
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            if code < 200 {
                resend = Instant::now() + Duration::from_secs(30);
                continue;
            }
            let header = |name: &str| {
                text.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
            };
            if let Some(to) = header("To") {
                d.to = to;
            }
            if let Some(contact) = header("Contact") {
                d.target = contact
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or(&uri)
                    .to_owned();
            }
            // ACK (for a failure too: it ends the transaction).
            let ack = self.request("ACK", &d.target.clone(), &d, 1, "", &format!("ack{n}"))?;
            self.socket.send_to(ack.as_bytes(), self.bridge)?;
            if code != 200 {
                return Err(anyhow!("INVITE to {room}: {code}"));
            }
            let body = text
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default();
            let call_id = d.call_id.clone();
            self.calls.push(d);
            return Ok((body, call_id));
        }
    }

    /// Sends BYE on the call `call_id` (retransmitted) and waits for its final answer: at most
    /// 4 s. The call is forgotten whatever the answer.
    pub(crate) fn hang_up(&mut self, call_id: &str) -> anyhow::Result<()> {
        let i = self
            .calls
            .iter()
            .position(|d| d.call_id == call_id)
            .ok_or_else(|| anyhow!("no call {call_id}"))?;
        let d = self.calls.swap_remove(i);
        let n = self.next;
        self.next += 1;
        let bye = self.request("BYE", &d.target, &d, 2, "", &format!("bye{n}"))?;
        let deadline = Instant::now() + Duration::from_secs(4);
        let mut resend = Instant::now();
        let mut buf = [0u8; 8192];
        loop {
            if Instant::now() >= resend {
                self.socket.send_to(bye.as_bytes(), self.bridge)?;
                resend = Instant::now() + Duration::from_millis(500);
            }
            if Instant::now() > deadline {
                return Err(anyhow!("BYE {call_id}: no final answer"));
            }
            let Ok((len, _)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..len]);
            if !text.starts_with("SIP/2.0 ") || !text.contains(call_id) || !text.contains(" BYE") {
                continue;
            }
            let code: u16 = text
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            return match code {
                0..200 => continue,
                200..300 => Ok(()),
                _ => Err(anyhow!("BYE {call_id}: {code}")),
            };
        }
    }

    pub(crate) fn hang_up_all(&mut self) {
        let calls = std::mem::take(&mut self.calls);
        for (i, d) in calls.iter().enumerate() {
            if let Ok(bye) = self.request("BYE", &d.target, d, 2, "", &format!("bye{i}")) {
                let _ = self.socket.send_to(bye.as_bytes(), self.bridge);
            }
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
