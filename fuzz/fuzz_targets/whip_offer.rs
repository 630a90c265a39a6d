//! A WHIP offer (`webrtc::offer::accept`): str0m's SDP parser, the ICE-lite `Rtc` taking the
//! offer, and the codec and telephone-event choice for the mixer leg.
//!
//! Input: the offer's text (inputs that are not UTF-8 are dropped, as the API's text body
//! would refuse them). Properties: no panic; an accepted offer has an answer that str0m reads
//! back as SDP, a codec we serve and a payload type the offer names.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Once, OnceLock};
use std::time::Instant;

use confab::media::codec::Codec;
use confab::webrtc::{DtlsCerts, offer};
use libfuzzer_sys::fuzz_target;
use str0m::change::SdpAnswer;
use str0m::config::DtlsCert;

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

fuzz_target!(|data: &[u8]| {
    static CRYPTO: Once = Once::new();
    CRYPTO.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let candidate = SocketAddr::from(([192, 0, 2, 10], 40_000));
    let Ok(accepted) = offer::accept(text, candidate, base(), cert()) else {
        return;
    };
    assert!(matches!(
        accepted.spec.codec,
        Codec::Opus | Codec::G722 | Codec::Pcmu | Codec::Pcma
    ));
    // str0m takes a payload type from the m-line or from an rtpmap line alone.
    let pt = accepted.spec.payload_type.to_string();
    let rtpmap = format!("a=rtpmap:{pt} ");
    assert!(
        text.lines().any(|l| {
            let l = l.trim();
            l.starts_with(&rtpmap)
                || l.starts_with("m=audio ") && l.split_whitespace().skip(3).any(|f| f == pt)
        }),
        "payload type {pt} is not in the offer"
    );
    if let Err(e) = SdpAnswer::from_sdp_string(&accepted.answer) {
        panic!("str0m cannot read its own answer: {e}\n{}", accepted.answer);
    }
});
