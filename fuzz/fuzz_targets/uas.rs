//! The dial-in (and dial-out) SIP state machine, `sip::uas::Uas`, driven through its sans-I/O
//! API by an arbitrary sequence of operations on a fake clock: requests built from templates
//! with fuzzed fields (INVITE, CANCEL, requests in the dialogs it made), responses to the
//! requests it sent, raw datagrams, the engine's answers to joins, dial-outs, transfers,
//! hang-ups, draining and time steps.
//!
//! The harness learns the dialogs the core makes (its To tags, its dial-outs' Call-IDs and
//! branches) from what it sends, so that in-dialog requests and responses reach their call.
//! Properties: no panic; everything the core sends is a SIP message that parses; once every
//! participant is hung up and three minutes pass, the core holds no state.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use confab::conference::ParticipantId;
use confab::config::Network;
use confab::media::codec::Codec;
use confab::sip::message::{MAX_MESSAGE, Message};
use confab::sip::sdp;
use confab::sip::uas::{Action, CallRef, JoinResult, Peer, Uas, UasSettings};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    dispatcher: bool,
    max_calls: u8,
    invites_per_second: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Invite(Invite),
    /// CANCEL of the INVITE with this call and branch.
    Cancel {
        call: u8,
        branch: u8,
        tcp: bool,
    },
    InDialog(InDialog),
    /// A response to the `request`th request the core sent.
    Respond(Respond),
    Raw {
        bytes: Vec<u8>,
        tcp: bool,
        untrusted: bool,
    },
    /// The engine answers the `pending`th join still waiting.
    Joined {
        pending: u8,
        result: u8,
    },
    Tick {
        ms: u16,
    },
    Dial {
        user: u16,
        tcp: bool,
    },
    Refer {
        participant: u8,
    },
    Hangup {
        participant: u8,
    },
    Draining(bool),
}

#[derive(Arbitrary, Debug)]
struct Invite {
    call: u8,
    branch: Option<u8>,
    /// The meeting in the Request-URI; none: a URI without a user part.
    meeting: Option<u16>,
    cseq: u32,
    session_expires: Option<u64>,
    require: Option<bool>,
    record_route: bool,
    asserted: bool,
    tcp: bool,
    untrusted: bool,
    body: Body,
}

#[derive(Arbitrary, Debug)]
struct InDialog {
    dialog: u8,
    method: InMethod,
    cseq: u32,
    branch: u8,
    session_expires: Option<u64>,
    body: Body,
}

#[derive(Arbitrary, Debug)]
enum InMethod {
    Ack,
    Bye,
    Invite,
    Update,
    /// INFO with `Content-Type: application/dtmf-relay` (true) or `application/dtmf`.
    Info(bool),
    Options,
    /// NOTIFY of a REFER's progress (`message/sipfrag` with this status).
    Notify(u16),
    Refer,
    Message,
    Other,
}

#[derive(Arbitrary, Debug)]
struct Respond {
    request: u8,
    code: u16,
    tag: bool,
    contact: bool,
    record_route: bool,
    body: Body,
}

#[derive(Arbitrary, Debug)]
enum Body {
    None,
    Offer(OfferKind),
    /// A DTMF digit (for INFO) or any text.
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum OfferKind {
    Pcmu,
    Opus,
    G722Hold,
    Inactive,
    Srtp,
    NoCommonCodec,
    VideoAndAudio,
    RtcpMux,
}

fn offer(kind: OfferKind) -> String {
    let head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n";
    let media = match kind {
        OfferKind::Pcmu => {
            "m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n".to_owned()
        }
        OfferKind::Opus => "m=audio 30002 RTP/AVP 96 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/48000\r\na=ptime:40\r\n".to_owned(),
        OfferKind::G722Hold => "m=audio 30004 RTP/AVP 9\r\na=sendonly\r\n".to_owned(),
        OfferKind::Inactive => "m=audio 30006 RTP/AVP 8\r\na=inactive\r\n".to_owned(),
        OfferKind::Srtp => format!(
            "m=audio 30008 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n",
            sdp::base64_encode(&[7u8; 30])
        ),
        OfferKind::NoCommonCodec => "m=audio 30010 RTP/AVP 18\r\n".to_owned(),
        OfferKind::VideoAndAudio => {
            "m=video 30012 RTP/AVP 96\r\nm=audio 30014 RTP/AVP 0\r\na=rtcp:30020\r\n".to_owned()
        }
        OfferKind::RtcpMux => "m=audio 30016 RTP/AVPF 0\r\na=rtcp-mux\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n".to_owned(),
    };
    format!("{head}{media}")
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::None => Vec::new(),
            Body::Offer(kind) => offer(*kind).into_bytes(),
            Body::Text(t) => t.clone().into_bytes(),
            Body::Bytes(b) => b.clone(),
        }
    }

    fn content_type(&self) -> &'static str {
        match self {
            Body::Offer(_) | Body::None => "application/sdp",
            Body::Text(_) | Body::Bytes(_) => "text/plain",
        }
    }
}

/// A dialog the core made, as the far end sees it.
#[derive(Clone, Debug)]
struct Dialog {
    call_id: String,
    /// The far end's From (with its tag) and To (with the core's tag).
    from: String,
    to: String,
    peer: Peer,
}

const CALLER: &str = "127.0.0.1:5262";
const CALLEE: &str = "127.0.0.2:5060";
const UNTRUSTED: &str = "198.51.100.7:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 5262)))
}

fn peer(tcp: bool, untrusted: bool) -> Peer {
    Peer {
        addr: addr(if untrusted { UNTRUSTED } else { CALLER }),
        connection: tcp.then_some(1),
    }
}

/// Tags, branches and keys: a counter, restarted for every input so that runs repeat.
static RANDOM: AtomicU64 = AtomicU64::new(1);

fn counter_random(buf: &mut [u8]) {
    let mut x = RANDOM.fetch_add(0x9E37_79B9, Ordering::Relaxed) | 1;
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

struct Harness {
    uas: Uas,
    now: Instant,
    dialogs: Vec<Dialog>,
    /// Requests the core sent (dial-out INVITEs, CANCELs, BYEs, REFERs) and where to.
    requests: Vec<(Message, Peer)>,
    pending: Vec<CallRef>,
    participants: Vec<ParticipantId>,
    next_participant: u64,
}

impl Harness {
    fn fresh_participant(&mut self) -> ParticipantId {
        self.next_participant += 1;
        let p = ParticipantId(self.next_participant);
        self.participants.push(p);
        p
    }

    /// Takes what the core wants done: every message it sends must parse.
    fn drain(&mut self) {
        while let Some(action) = self.uas.poll() {
            match action {
                Action::Send { to, bytes } => {
                    let msg = match Message::parse(&bytes) {
                        Ok(m) => m,
                        Err(_) if bytes.len() > MAX_MESSAGE => continue,
                        Err(e) => panic!(
                            "the core sent a message that does not parse ({:?}):\n{}",
                            e.error,
                            String::from_utf8_lossy(&bytes)
                        ),
                    };
                    self.learn(msg, to);
                }
                Action::Join(join) if self.pending.len() < 16 => self.pending.push(join.call),
                _ => {}
            }
        }
    }

    /// Dialogs from the core's responses to INVITEs, requests to answer from its requests.
    fn learn(&mut self, msg: Message, to: Peer) {
        if msg.is_request() {
            if self.requests.len() < 16 {
                self.requests.push((msg, to));
            }
            return;
        }
        let is_invite = msg.cseq().is_some_and(|(_, m)| m.as_str() == "INVITE");
        if !is_invite || msg.to_tag().is_none() || self.dialogs.len() >= 16 {
            return;
        }
        let (Some(from), Some(to_header)) = (msg.header("From"), msg.header("To")) else {
            return;
        };
        self.dialogs.push(Dialog {
            call_id: msg.call_id().to_owned(),
            from: from.to_owned(),
            to: to_header.to_owned(),
            peer: to,
        });
    }

    fn handle(&mut self, peer: Peer, bytes: &[u8]) {
        self.uas.handle(self.now, peer, bytes);
        self.drain();
    }

    fn invite(&mut self, i: &Invite) {
        let uri = match i.meeting {
            Some(m) => format!("sip:{m}@127.0.0.1"),
            None => "sip:127.0.0.1".to_owned(),
        };
        let transport = if i.tcp { "TCP" } else { "UDP" };
        let mut m = format!("INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/{transport} {CALLER}");
        if let Some(b) = i.branch {
            m.push_str(&format!(";branch=z9hG4bK{b}"));
        }
        m.push_str(&format!(
            ";rport\r\nMax-Forwards: 70\r\nFrom: \"Ann\" <sip:ann@127.0.0.1>;tag=ft{c}\r\nTo: <{uri}>\r\nCall-ID: c{c}\r\nCSeq: {} INVITE\r\nContact: <sip:ann@{CALLER}>\r\n",
            i.cseq,
            c = i.call % 8
        ));
        if let Some(se) = i.session_expires {
            m.push_str(&format!("Session-Expires: {se};refresher=uac\r\n"));
        }
        match i.require {
            Some(true) => m.push_str("Require: timer\r\n"),
            Some(false) => m.push_str("Require: 100rel, timer\r\n"),
            None => {}
        }
        if i.record_route {
            m.push_str("Record-Route: <sip:127.0.0.3;lr>\r\n");
        }
        if i.asserted {
            m.push_str("P-Asserted-Identity: <sip:+15551230000@127.0.0.3>\r\n");
        }
        let body = i.body.bytes();
        let bytes = with_body(m, i.body.content_type(), &body);
        self.handle(peer(i.tcp, i.untrusted), &bytes);
    }

    fn cancel(&mut self, call: u8, branch: u8, tcp: bool) {
        let transport = if tcp { "TCP" } else { "UDP" };
        let m = format!(
            "CANCEL sip:{c}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} {CALLER};branch=z9hG4bK{branch}\r\nFrom: \"Ann\" <sip:ann@127.0.0.1>;tag=ft{c}\r\nTo: <sip:{c}@127.0.0.1>\r\nCall-ID: c{c}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
            c = call % 8
        );
        self.handle(peer(tcp, false), m.as_bytes());
    }

    fn in_dialog(&mut self, d: &InDialog) {
        let dialog = match self.dialogs.len() {
            0 => Dialog {
                call_id: format!("c{}", d.dialog % 8),
                from: format!("<sip:ann@127.0.0.1>;tag=ft{}", d.dialog % 8),
                to: "<sip:1234@127.0.0.1>;tag=unknown".to_owned(),
                peer: peer(false, false),
            },
            n => self.dialogs[usize::from(d.dialog) % n].clone(),
        };
        let method = match d.method {
            InMethod::Ack => "ACK",
            InMethod::Bye => "BYE",
            InMethod::Invite => "INVITE",
            InMethod::Update => "UPDATE",
            InMethod::Info(_) => "INFO",
            InMethod::Options => "OPTIONS",
            InMethod::Notify(_) => "NOTIFY",
            InMethod::Refer => "REFER",
            InMethod::Message => "MESSAGE",
            InMethod::Other => "PUBLISHX",
        };
        let transport = if dialog.peer.connection.is_some() {
            "TCP"
        } else {
            "UDP"
        };
        let mut m = format!(
            "{method} sip:confab@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/{transport} {};branch=z9hG4bK{}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\n",
            dialog.peer.addr, d.branch, dialog.from, dialog.to, dialog.call_id, d.cseq
        );
        if let Some(se) = d.session_expires {
            m.push_str(&format!("Session-Expires: {se}\r\n"));
        }
        let (content_type, body) = match d.method {
            InMethod::Info(relay) => {
                let digit = match &d.body {
                    Body::Text(t) => t.clone(),
                    _ => "5".to_owned(),
                };
                if relay {
                    (
                        "application/dtmf-relay",
                        format!("Signal={digit}\r\nDuration=160\r\n").into_bytes(),
                    )
                } else {
                    ("application/dtmf", digit.into_bytes())
                }
            }
            InMethod::Notify(code) => (
                "message/sipfrag",
                format!("SIP/2.0 {code} Whatever\r\n").into_bytes(),
            ),
            _ => (d.body.content_type(), d.body.bytes()),
        };
        let bytes = with_body(m, content_type, &body);
        self.handle(dialog.peer, &bytes);
    }

    fn respond(&mut self, r: &Respond) {
        let Some((req, to)) = (match self.requests.len() {
            0 => None,
            n => Some(self.requests[usize::from(r.request) % n].clone()),
        }) else {
            return;
        };
        let code = 100 + r.code % 600;
        let tag = format!("rt{}", r.request % 4);
        let mut resp = req.response(code, "Whatever", r.tag.then_some(tag.as_str()));
        if r.contact {
            resp.push_header("Contact", format!("<sip:bob@{CALLEE}>"));
        }
        if r.record_route {
            resp.push_header("Record-Route", "<sip:127.0.0.3;lr>");
        }
        let body = r.body.bytes();
        if !body.is_empty() {
            resp.push_header("Content-Type", r.body.content_type());
            resp.body = body;
        }
        // The far end's side of a dialog its 2xx to a dial-out makes.
        let is_invite = req.method().is_some_and(|m| m.as_str() == "INVITE");
        if is_invite
            && (200..300).contains(&code)
            && r.tag
            && self.dialogs.len() < 16
            && let (Some(from), Some(to_header)) = (req.header("From"), resp.header("To"))
        {
            self.dialogs.push(Dialog {
                call_id: req.call_id().to_owned(),
                from: to_header.to_owned(),
                to: from.to_owned(),
                peer: to,
            });
        }
        let bytes = resp.to_bytes();
        self.handle(to, &bytes);
    }

    fn joined(&mut self, pending: u8, result: u8) {
        if self.pending.is_empty() {
            return;
        }
        let call = self
            .pending
            .remove(usize::from(pending) % self.pending.len());
        let result = match result % 9 {
            0..=1 => JoinResult::Joined {
                participant: self.fresh_participant(),
                local: addr("127.0.0.1:20000"),
            },
            2 => JoinResult::NoConference,
            3 => JoinResult::Locked,
            4 => JoinResult::Full,
            5 => JoinResult::Ended,
            6 => JoinResult::Unavailable,
            7 => JoinResult::Forbidden,
            _ => JoinResult::NotAllowed,
        };
        self.uas.joined(self.now, call, result);
        self.drain();
    }

    fn pick(&self, i: u8) -> Option<ParticipantId> {
        match self.participants.len() {
            0 => None,
            n => Some(self.participants[usize::from(i) % n]),
        }
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        self.uas.tick(self.now);
        self.drain();
    }
}

fn with_body(mut head: String, content_type: &str, body: &[u8]) -> Vec<u8> {
    if !body.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fuzz_target!(|input: Input| {
    RANDOM.store(1, Ordering::Relaxed);
    let settings = UasSettings {
        local: addr("127.0.0.1:5060"),
        trusted: vec![Network::loopback_v4()],
        access_user: "conference".into(),
        codecs: vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma],
        outbound_proxy: None,
        dispatcher: input.dispatcher.then(|| addr("127.0.0.9:5060")),
        max_calls: usize::from(input.max_calls % 16) + 1,
        invites_per_second: u32::from(input.invites_per_second % 8) + 1,
        advertise: None,
        media_advertise: None,
        route: confab::addr::route_source,
        tls: None,
        srtp: confab::config::SrtpPolicy::Optional,
        sdes_over_cleartext: true,
        conference_srtp: Default::default(),
        auth: Default::default(),
        credentials: Vec::new(),
        kept_while_draining: Default::default(),
        presence: None,
    };
    let mut h = Harness {
        uas: Uas::new(settings, counter_random),
        now: base(),
        dialogs: Vec::new(),
        requests: Vec::new(),
        pending: Vec::new(),
        participants: Vec::new(),
        next_participant: 0,
    };
    for op in &input.ops {
        match op {
            Op::Invite(i) => h.invite(i),
            Op::Cancel { call, branch, tcp } => h.cancel(*call, *branch, *tcp),
            Op::InDialog(d) => h.in_dialog(d),
            Op::Respond(r) => h.respond(r),
            Op::Raw {
                bytes,
                tcp,
                untrusted,
            } => h.handle(peer(*tcp, *untrusted), bytes),
            Op::Joined { pending, result } => h.joined(*pending, *result),
            Op::Tick { ms } => h.tick(Duration::from_millis(u64::from(*ms))),
            Op::Dial { user, tcp } => {
                let participant = h.fresh_participant();
                let to = Peer {
                    addr: addr(CALLEE),
                    connection: tcp.then_some(2),
                };
                let target = format!("sip:{user}@{CALLEE}");
                let offer = sdp::offer(addr("127.0.0.1:20002"), &[Codec::Pcmu], 1);
                // Each SRTP policy: best effort, SRTP required (answers without it hung up),
                // and plain.
                let policy = match user % 3 {
                    0 => confab::config::SrtpPolicy::Optional,
                    1 => confab::config::SrtpPolicy::Required,
                    _ => confab::config::SrtpPolicy::Off,
                };
                h.uas.dial(h.now, participant, &target, to, offer, policy);
                h.drain();
            }
            Op::Refer { participant } => {
                if let Some(p) = h.pick(*participant) {
                    h.uas.refer(h.now, p, "sip:elsewhere@127.0.0.4");
                    h.drain();
                }
            }
            Op::Hangup { participant } => {
                if let Some(p) = h.pick(*participant) {
                    h.uas.hangup(h.now, p);
                    h.drain();
                }
            }
            Op::Draining(on) => h.uas.set_draining(*on),
        }
    }

    // Every participant hung up, and time passes without an answer: nothing may be left.
    for p in h.participants.clone() {
        h.uas.hangup(h.now, p);
        h.drain();
    }
    // Four-second steps (T2, the longest retransmission interval) for three minutes. Once
    // nothing is held, a tick has nothing to act on and nothing arrives any more, so the
    // steps left would change nothing: stop there.
    for _ in 0..45 {
        if h.uas.state_size() == 0 {
            break;
        }
        h.tick(Duration::from_secs(4));
        h.pending.clear();
    }
    assert_eq!(
        h.uas.state_size(),
        0,
        "state left three minutes after the end"
    );
});
