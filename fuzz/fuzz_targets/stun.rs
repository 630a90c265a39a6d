//! What a WebRTC peer's datagrams meet in the driver: our STUN reader (`webrtc::stun`), then
//! the peer's str0m `Rtc` (ICE-lite, as `webrtc::offer::accept` makes it for a Chromium offer)
//! asked `accepts` and fed `handle_input` and drained, as the driver does.
//!
//! The driver owns a socket and is not sans-I/O; this harness repeats its routing and driving
//! steps on the `Rtc` alone. Binding requests are built with fuzzed fields and signed with our
//! answer's ICE password (MESSAGE-INTEGRITY) and a FINGERPRINT, so that the fuzzer gets past
//! str0m's checks into ICE and DTLS; raw datagrams go in as they are. A new `Rtc` per input
//! keeps runs repeatable; its DTLS certificate is made once, as the bridge makes one a day.
//! Every input starts with a browser's first connectivity check, which must be answered.
//! Properties: no panic; the reader finds our ufrag in every request signed for us; a
//! well-formed request that names us elicits a response.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use confab::webrtc::{DtlsCerts, offer, stun};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use str0m::config::DtlsCert;
use str0m::net::{Protocol, Receive};
use str0m::{Input, Output};

const OFFER: &str = include_str!("../seeds/whip_offer/chromium-156-offer.sdp");
/// The offer's own ICE credentials (the peer's side).
const THEIR_UFRAG: &str = "MZuH";

#[derive(Arbitrary, Debug)]
enum Op {
    Binding(Binding),
    /// DTLS, RTP, RTCP or junk from the peer's address (or another port of it).
    Datagram {
        bytes: Vec<u8>,
        port: u8,
    },
    /// Time passes: str0m's timers run.
    Wait {
        ms: u16,
    },
}

#[derive(Arbitrary, Debug)]
struct Binding {
    transaction: [u8; 12],
    priority: Option<u32>,
    controlling: Option<u64>,
    controlled: Option<u64>,
    use_candidate: bool,
    username: Username,
    /// Any other attributes, before the integrity.
    extra: Vec<(u16, Vec<u8>)>,
    integrity: Integrity,
    fingerprint: bool,
    port: u8,
}

#[derive(Arbitrary, Debug)]
enum Username {
    /// `<our ufrag>:<their ufrag>`, as a browser sends it.
    Ours,
    /// Someone else's session.
    Other(String),
    Missing,
}

#[derive(Arbitrary, Debug)]
enum Integrity {
    Right,
    Wrong([u8; 20]),
    Missing,
}

/// One DTLS certificate for every input, as the bridge makes one for every offer of a day.
fn cert() -> DtlsCert {
    static CERT: OnceLock<DtlsCerts> = OnceLock::new();
    let certs = CERT.get_or_init(|| match DtlsCerts::new(base()) {
        Some(c) => c,
        None => panic!("no DTLS certificate"),
    });
    certs.for_offer(base())
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// RFC 5389 15.5: CRC-32 (the one of ISO 3309) of the message, XORed with "STUN".
fn fingerprint(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc ^ 0x5354_554E
}

fn attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&value[..usize::from(len)]);
    out.resize(out.len().div_ceil(4) * 4, 0);
}

/// Sets the header's length to what follows the header plus `more` bytes.
fn set_length(m: &mut [u8], more: usize) {
    let len = u16::try_from(m.len() - 20 + more).unwrap_or(u16::MAX);
    m[2..4].copy_from_slice(&len.to_be_bytes());
}

/// A binding request (RFC 5389, RFC 8445 7.1.2) to us, signed with `password`.
fn binding(b: &Binding, ours: &str, password: &str) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xA4, 0x42];
    m.extend_from_slice(&b.transaction);
    match &b.username {
        Username::Ours => attribute(&mut m, 0x0006, format!("{ours}:{THEIR_UFRAG}").as_bytes()),
        Username::Other(u) => attribute(&mut m, 0x0006, u.as_bytes()),
        Username::Missing => {}
    }
    if let Some(p) = b.priority {
        attribute(&mut m, 0x0024, &p.to_be_bytes());
    }
    if let Some(t) = b.controlling {
        attribute(&mut m, 0x802A, &t.to_be_bytes());
    }
    if let Some(t) = b.controlled {
        attribute(&mut m, 0x8029, &t.to_be_bytes());
    }
    if b.use_candidate {
        attribute(&mut m, 0x0025, &[]);
    }
    for (kind, value) in b.extra.iter().take(4) {
        attribute(&mut m, *kind, value);
    }
    match &b.integrity {
        Integrity::Right => {
            set_length(&mut m, 24);
            let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
            let tag = hmac::sign(&key, &m);
            attribute(&mut m, 0x0008, tag.as_ref());
        }
        Integrity::Wrong(tag) => attribute(&mut m, 0x0008, tag),
        Integrity::Missing => {}
    }
    if b.fingerprint {
        set_length(&mut m, 8);
        let crc = fingerprint(&m);
        attribute(&mut m, 0x8028, &crc.to_be_bytes());
    }
    set_length(&mut m, 0);
    m
}

fn answer_line<'a>(answer: &'a str, prefix: &str) -> Option<&'a str> {
    answer
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .map(str::trim)
}

fuzz_target!(|ops: Vec<Op>| {
    static CRYPTO: Once = Once::new();
    CRYPTO.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
    let local = SocketAddr::from(([192, 0, 2, 10], 40_000));
    let mut now = base();
    let Ok(mut accepted) = offer::accept(OFFER, local, now, cert()) else {
        panic!("the Chromium offer was refused");
    };
    let (Some(ours), Some(password)) = (
        stun::answer_ufrag(&accepted.answer).map(str::to_owned),
        answer_line(&accepted.answer, "a=ice-pwd:").map(str::to_owned),
    ) else {
        panic!("our answer has no ICE credentials");
    };
    let rtc = &mut accepted.rtc;
    // A browser's first check, so that what follows meets ICE connected and DTLS waiting.
    let first = Binding {
        transaction: [1; 12],
        priority: Some(1_853_817_087),
        controlling: Some(7),
        controlled: None,
        use_candidate: true,
        username: Username::Ours,
        extra: Vec::new(),
        integrity: Integrity::Right,
        fingerprint: true,
        port: 0,
    };
    let ops = std::iter::once(Op::Binding(first)).chain(ops);
    for op in ops.take(64) {
        let (bytes, port, canonical) = match &op {
            Op::Wait { ms } => {
                now += Duration::from_millis(u64::from(*ms));
                if rtc.handle_input(Input::Timeout(now)).is_err() {
                    return;
                }
                if !drain(rtc).0 {
                    return;
                }
                continue;
            }
            Op::Datagram { bytes, port } => (bytes.clone(), *port, false),
            Op::Binding(b) => {
                let m = binding(b, &ours, &password);
                let signed_for_us =
                    matches!(b.username, Username::Ours) && matches!(b.integrity, Integrity::Right);
                if signed_for_us {
                    assert_eq!(stun::local_ufrag(&m), Some(ours.as_str()));
                }
                let canonical = signed_for_us
                    && b.fingerprint
                    && b.priority.is_some()
                    && b.controlling.is_some()
                    && b.controlled.is_none()
                    && b.extra.is_empty();
                (m, b.port, canonical)
            }
        };
        if let Some(u) = stun::local_ufrag(&bytes) {
            assert!(!u.is_empty() && !u.contains(':'));
        }
        now += Duration::from_millis(1);
        let source = SocketAddr::from(([198, 51, 100, 2], 50_000 + u16::from(port % 4)));
        let Ok(contents) = bytes.as_slice().try_into() else {
            continue;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: local,
                contents,
            },
        );
        if !rtc.accepts(&input) {
            assert!(
                !canonical,
                "a well-formed binding request for us was not accepted"
            );
            continue;
        }
        if rtc.handle_input(input).is_err() {
            // The driver lets such a peer go.
            return;
        }
        let (alive, sent) = drain(rtc);
        if canonical {
            assert!(sent, "a well-formed binding request got no response");
        }
        if !alive {
            return;
        }
    }
});

/// Polls until str0m only has a timeout left: whether it still lives, and whether it sent.
fn drain(rtc: &mut str0m::Rtc) -> (bool, bool) {
    let mut sent = false;
    for _ in 0..256 {
        match rtc.poll_output() {
            Ok(Output::Timeout(_)) => return (rtc.is_alive(), sent),
            Ok(Output::Transmit(_)) => sent = true,
            Ok(Output::Event(_)) => {}
            Err(_) => return (false, sent),
        }
    }
    (rtc.is_alive(), sent)
}
