//! SIP messages: one datagram through `Message::parse`, and the same bytes as a TCP stream
//! through `StreamFramer` in arbitrary chunks.
//!
//! Input: `[k][k chunk lengths][message bytes]`; the datagram is everything after the chunk
//! lengths. Properties: no panic; a parsed message written back with `to_bytes` parses to the
//! same message; the 400 we would send for a malformed request parses; framing a stream does
//! not depend on how it was cut into reads.
#![no_main]

use confab::sip::message::{MAX_MESSAGE, Malformed, Message, StreamFramer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (chunks, bytes) = split_chunks(data);
    datagram(bytes);
    stream(bytes, &chunks);
});

/// Chunk lengths (1..=256) for the stream, and the bytes after them.
fn split_chunks(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&k, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let k = usize::from(k % 16).min(rest.len());
    let (lengths, bytes) = rest.split_at(k);
    (lengths.iter().map(|&l| usize::from(l) + 1).collect(), bytes)
}

fn datagram(bytes: &[u8]) {
    match Message::parse(bytes) {
        Ok(msg) => {
            touch(&msg);
            let written = msg.to_bytes();
            if written.len() <= MAX_MESSAGE {
                match Message::parse(&written) {
                    Ok(again) => assert_eq!(
                        without_length(&msg),
                        without_length(&again),
                        "a parsed message written back reads differently"
                    ),
                    Err(e) => panic!("a parsed message written back fails to parse: {e:?}"),
                }
            }
            if msg.is_request() {
                answer_parses(&msg);
            }
        }
        Err(Malformed { partial, .. }) => {
            if let Some(req) = partial {
                touch(&req);
                answer_parses(&req);
            }
        }
    }
}

/// Everything the call logic reads of a message.
fn touch(msg: &Message) {
    let _ = (msg.method(), msg.status(), msg.call_id(), msg.cseq());
    let _ = (
        msg.branch(),
        msg.from_tag(),
        msg.to_tag(),
        msg.request_user(),
    );
    for name in ["Via", "Require", "Supported", "Contact", "Route"] {
        for v in msg.header_values(name) {
            let _ = confab::sip::message::param(v, "tag");
            let _ = confab::sip::message::addr_uri(v);
            let _ = confab::sip::message::display_name(v);
        }
    }
    if let Some(from) = msg.header("From") {
        let uri = confab::sip::message::addr_uri(from);
        let _ = confab::sip::message::uri_user(uri);
        let _ = confab::sip::message::display_name(from);
    }
}

/// A response to a request we accepted (or would answer 400) must be a message we can read.
fn answer_parses(req: &Message) {
    let reply = req.response(400, "Bad Request", Some("confab")).to_bytes();
    if reply.len() <= MAX_MESSAGE
        && let Err(e) = Message::parse(&reply)
    {
        panic!("our response to a request does not parse: {e:?}");
    }
}

/// The message without its Content-Length headers (`to_bytes` writes its own, last).
fn without_length(msg: &Message) -> Message {
    let mut m = msg.clone();
    m.headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("Content-Length"));
    m
}

/// Frames and whether framing failed, with the stream pushed in `chunks` (cycled).
fn frame(bytes: &[u8], chunks: &[usize]) -> (Vec<Vec<u8>>, bool) {
    let mut framer = StreamFramer::default();
    let mut frames = Vec::new();
    let mut at = 0;
    let mut i = 0;
    loop {
        let len = chunks
            .get(i % chunks.len().max(1))
            .copied()
            .unwrap_or(bytes.len());
        let end = bytes.len().min(at + len.max(1));
        framer.push(&bytes[at..end]);
        at = end;
        i += 1;
        loop {
            match framer.next_message() {
                Ok(Some(f)) => {
                    // What the TCP shell does with a frame.
                    let _ = Message::parse(&f);
                    frames.push(f);
                }
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
        if at >= bytes.len() {
            return (frames, false);
        }
    }
}

fn stream(bytes: &[u8], chunks: &[usize]) {
    let whole = frame(bytes, &[]);
    let cut = frame(bytes, chunks);
    assert_eq!(whole, cut, "framing depends on how the stream was read");
}
