//! The presence publisher, `sip::presence::Presence`, driven through its sans-I/O API by an
//! arbitrary sequence of operations on a fake clock: participants connecting, identified
//! with arbitrary identities (or none, or late), leaving; answers to the PUBLISHes it sent
//! with any status and fuzzed SIP-ETag, Expires and Min-Expires, from the server or another
//! address; raw response bytes; time steps.
//!
//! Properties: no panic; everything sent is a PUBLISH that parses, for a presentity that
//! `presentity` accepts, with an Expires within bounds; once every participant has left and
//! 40 s pass (the transaction timeout), the publisher holds no state.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use confab::conference::ParticipantId;
use confab::sip::message::{Message, Method, StartLine};
use confab::sip::presence::{MAX_EXPIRES, Presence, PresenceSettings, presentity};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Connected(u8),
    Identified(u8, Option<String>),
    /// A participant of one of a few fixed identities (so that they share publications).
    Known(u8, u8),
    Left(u8),
    /// Answer the n-th PUBLISH sent and not yet answered.
    Answer {
        nth: u8,
        status: u16,
        etag: Option<String>,
        expires: Option<String>,
        min_expires: Option<String>,
        from_server: bool,
    },
    Raw(Vec<u8>),
    Step(u16),
}

fn random(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = i as u8 ^ 0xa5;
    }
}

fn server() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 15080))
}

fn drain(core: &mut Presence, sent: &mut Vec<Message>) {
    while let Some(bytes) = core.poll() {
        let msg = Message::parse(&bytes).unwrap_or_else(|e| {
            panic!(
                "the publisher sent a message that does not parse ({:?}):\n{}",
                e.error,
                String::from_utf8_lossy(&bytes)
            )
        });
        let StartLine::Request { method, uri } = &msg.start else {
            panic!("not a request: {msg:?}");
        };
        assert_eq!(*method, Method::Publish);
        assert_eq!(presentity(uri).as_deref(), Some(uri.as_str()));
        let expires: u32 = msg
            .header("Expires")
            .and_then(|v| v.parse().ok())
            .expect("an Expires");
        assert!(expires <= MAX_EXPIRES);
        if sent.len() < 64 {
            sent.push(msg);
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let settings = PresenceSettings {
        server: server(),
        local: SocketAddr::from(([127, 0, 0, 1], 5060)),
        expires: 600,
    };
    let mut core = Presence::new(settings, random);
    let mut now = Instant::now();
    let mut sent: Vec<Message> = Vec::new();
    let known = [
        "sip:ann@example.com",
        "<sip:Ann@EXAMPLE.com;user=phone>",
        "sip:bob@example.com",
        "tel:+1555",
    ];
    for op in ops.into_iter().take(256) {
        match op {
            Op::Connected(p) => core.connected(ParticipantId(u64::from(p))),
            Op::Identified(p, identity) => {
                core.identified(now, ParticipantId(u64::from(p)), identity.as_deref())
            }
            Op::Known(p, k) => {
                let id = ParticipantId(u64::from(p));
                core.connected(id);
                core.identified(now, id, Some(known[usize::from(k) % known.len()]));
            }
            Op::Left(p) => core.left(now, ParticipantId(u64::from(p))),
            Op::Answer {
                nth,
                status,
                etag,
                expires,
                min_expires,
                from_server,
            } => {
                if sent.is_empty() {
                    continue;
                }
                let req = sent.remove(usize::from(nth) % sent.len());
                let mut r = req.response(status.clamp(100, 699), "X", None);
                for (name, value) in [
                    ("SIP-ETag", etag),
                    ("Expires", expires),
                    ("Min-Expires", min_expires),
                ] {
                    if let Some(v) = value {
                        r.push_header(name, v.replace(['\r', '\n'], ""));
                    }
                }
                // Through the parser, as the shell hands answers over.
                if let Ok(parsed) = Message::parse(&r.to_bytes()) {
                    let from = if from_server {
                        server()
                    } else {
                        SocketAddr::from(([127, 0, 0, 2], 15080))
                    };
                    core.response(now, from, &parsed);
                }
            }
            Op::Raw(bytes) => {
                if let Ok(msg) = Message::parse(&bytes) {
                    core.response(now, server(), &msg);
                }
            }
            Op::Step(ms) => {
                now += Duration::from_millis(u64::from(ms) * 10);
                core.tick(now);
            }
        }
        drain(&mut core, &mut sent);
    }
    for p in 0..=255u8 {
        core.left(now, ParticipantId(u64::from(p)));
    }
    drain(&mut core, &mut sent);
    for _ in 0..8 {
        now += Duration::from_secs(10);
        core.tick(now);
        drain(&mut core, &mut sent);
    }
    assert_eq!(core.state_size(), 0, "state left after everyone left");
});
