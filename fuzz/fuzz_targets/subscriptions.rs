//! The conference event package's core, `sip::subscriptions::Subscriptions`, driven through
//! its sans-I/O API by an arbitrary sequence of operations on a fake clock: SUBSCRIBEs built
//! from a template with fuzzed Event, Expires, Contact, Accept, tags, Call-ID and CSeq (new
//! subscriptions and requests in the ones the core made), raw SUBSCRIBE bytes, answers to the
//! NOTIFYs it sent, roster reads with hostile names and URIs, changes, the conference's end,
//! and time steps.
//!
//! Properties: no panic; everything the core sends is a SIP message that parses; once every
//! conference ends and its NOTIFYs are answered or time out, the core holds no state.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use confab::conference::{DisconnectReason, ParticipantId};
use confab::sip::conference_event::{Status, UserView};
use confab::sip::message::{MAX_MESSAGE, Message};
use confab::sip::subscriptions::{Access, Output, SubscribeRequest, Subscriptions};
use confab::sip::uas::Peer;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Subscribe(Subscribe),
    Raw(Vec<u8>, bool),
    /// Answer the n-th NOTIFY sent and not yet answered with this status.
    Answer(u8, u16),
    Roster(u8, Vec<User>),
    Changed(u8),
    Ended(u8),
    Gone(u8),
    Step(u16),
}

#[derive(Arbitrary, Debug)]
struct Subscribe {
    meeting: u8,
    /// In the n-th dialog the core made, or a new one.
    dialog: Option<u8>,
    call_id: u8,
    cseq: u32,
    event: String,
    expires: Option<String>,
    contact: Option<String>,
    accept: Option<String>,
    source: u8,
    access: (bool, bool, bool, bool),
}

#[derive(Arbitrary, Debug)]
struct User {
    id: u8,
    name: String,
    uri: String,
    state: u8,
    leader: bool,
    muted: bool,
    deaf: bool,
    ssrc: Option<u32>,
}

fn random(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = i as u8 ^ 0x5a;
    }
}

fn meeting(n: u8) -> String {
    format!("{}", 1000 + u32::from(n % 4))
}

fn peer(source: u8) -> Peer {
    Peer {
        addr: SocketAddr::from(([127, 0, 0, source % 8 + 1], 5060)),
        connection: (source & 0x80 != 0).then_some(u64::from(source)),
    }
}

struct Harness {
    core: Subscriptions,
    now: Instant,
    /// Dialogs the core made: (Call-ID, From tag, our tag, meeting).
    dialogs: Vec<(String, String, String, String)>,
    notifies: Vec<Message>,
}

impl Harness {
    fn drain(&mut self) {
        while let Some(o) = self.core.poll() {
            let Output::Send { bytes, .. } = o else {
                continue;
            };
            let msg = match Message::parse(&bytes) {
                Ok(m) => m,
                Err(_) if bytes.len() > MAX_MESSAGE => continue,
                Err(e) => panic!(
                    "the core sent a message that does not parse ({:?}):\n{}",
                    e.error,
                    String::from_utf8_lossy(&bytes)
                ),
            };
            if msg.is_request() {
                if self.notifies.len() < 32 {
                    self.notifies.push(msg);
                }
            } else if msg.status() == Some(200) && self.dialogs.len() < 16 {
                let (Some(from), Some(to)) = (msg.from_tag(), msg.to_tag()) else {
                    continue;
                };
                self.dialogs.push((
                    msg.call_id().to_owned(),
                    from.to_owned(),
                    to.to_owned(),
                    String::new(),
                ));
            }
        }
    }

    fn subscribe(&mut self, s: &Subscribe) {
        let (call_id, from_tag, to_tag) = match s
            .dialog
            .and_then(|d| self.dialogs.get(usize::from(d) % self.dialogs.len().max(1)))
        {
            Some((c, f, t, _)) => (c.clone(), f.clone(), format!(";tag={t}")),
            None => (
                format!("c{}", s.call_id),
                format!("f{}", s.call_id),
                String::new(),
            ),
        };
        let clean = |v: &str| v.replace(['\r', '\n'], " ");
        let mut headers = format!("Event: {}\r\n", clean(&s.event));
        if let Some(e) = &s.expires {
            headers.push_str(&format!("Expires: {}\r\n", clean(e)));
        }
        if let Some(c) = &s.contact {
            headers.push_str(&format!("Contact: {}\r\n", clean(c)));
        }
        if let Some(a) = &s.accept {
            headers.push_str(&format!("Accept: {}\r\n", clean(a)));
        }
        let m = meeting(s.meeting);
        let text = format!(
            "SUBSCRIBE sip:{m}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK{call_id}{cseq}\r\n\
             From: <sip:w@127.0.0.1>;tag={from_tag}\r\nTo: <sip:{m}@127.0.0.1>{to_tag}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} SUBSCRIBE\r\n{headers}Content-Length: 0\r\n\r\n",
            cseq = s.cseq,
        );
        let Ok(msg) = Message::parse(text.as_bytes()) else {
            return;
        };
        let (exists, trusted, admitted, participant) = s.access;
        let access = Access {
            exists,
            trusted,
            admitted,
            participant,
        };
        self.request(msg, s.source, trusted, access);
    }

    fn request(&mut self, msg: Message, source: u8, trusted: bool, access: Access) {
        let req = SubscribeRequest {
            peer: peer(source),
            msg,
            local: SocketAddr::from(([127, 0, 0, 1], 5060)),
            contact: "<sip:confab@127.0.0.1:5060>".into(),
            trusted,
            participants: vec![ParticipantId(1)],
        };
        self.core.subscribe(self.now, &req, access);
    }
}

fn view(u: &User) -> UserView {
    let status = match u.state % 6 {
        0 => Status::DialingOut,
        1 => Status::Pending,
        2 => Status::Connected,
        3 => Status::OnHold,
        4 => Status::Disconnected(DisconnectReason::Hangup),
        _ => Status::Disconnected(DisconnectReason::Ejected),
    };
    UserView {
        id: ParticipantId(u64::from(u.id % 64)),
        display_name: u.name.chars().take(200).collect(),
        uri: u.uri.chars().take(300).collect(),
        leader: u.leader,
        status,
        muted: u.muted,
        deaf: u.deaf,
        ssrc: u.ssrc,
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut h = Harness {
        core: Subscriptions::new(random),
        now: Instant::now(),
        dialogs: Vec::new(),
        notifies: Vec::new(),
    };
    for op in ops.iter().take(256) {
        match op {
            Op::Subscribe(s) => h.subscribe(s),
            Op::Raw(bytes, trusted) => {
                if let Ok(msg) = Message::parse(bytes) {
                    let access = Access {
                        exists: true,
                        trusted: *trusted,
                        admitted: true,
                        participant: false,
                    };
                    h.request(msg, 1, *trusted, access);
                }
            }
            Op::Answer(n, code) => {
                if !h.notifies.is_empty() {
                    let i = usize::from(*n) % h.notifies.len();
                    let notify = h.notifies.swap_remove(i);
                    let code = 100 + code % 600;
                    h.core
                        .notify_answer(h.now, &notify.response(code, "Answer", None));
                }
            }
            Op::Roster(m, users) => {
                let users: Vec<UserView> = users.iter().take(80).map(view).collect();
                h.core.roster(h.now, &meeting(*m), Some(users));
            }
            Op::Changed(m) => h.core.changed(&meeting(*m)),
            Op::Ended(m) => h.core.ended(h.now, &meeting(*m)),
            Op::Gone(m) => h.core.roster(h.now, &meeting(*m), None),
            Op::Step(ms) => {
                h.now += Duration::from_millis(u64::from(*ms) * 10);
                h.core.tick(h.now);
            }
        }
        h.drain();
    }
    // Every conference ends; nobody answers: within 64*T1 nothing is left.
    for m in 0..4 {
        h.core.ended(h.now, &meeting(m));
    }
    h.drain();
    h.now += Duration::from_secs(33);
    h.core.tick(h.now);
    h.drain();
    h.now += Duration::from_secs(33);
    h.core.tick(h.now);
    h.drain();
    assert_eq!(
        h.core.state_size(),
        0,
        "state left after every conference ended"
    );
});
