//! SDP offer/answer for SIP legs: `sdp::negotiate` with the default codec list (and a
//! phones-only one) under each SRTP rule (policy off, optional, required; keys over TLS or
//! over cleartext), then `sdp::answer` for what was agreed.
//!
//! Properties: no panic; an error maps to a SIP status; the agreed codec is one we asked for;
//! our answer is SDP that we read back (as an offer) to the same codec, payload type, packet
//! time, telephone-event, crypto suite, tag and key, RTCP multiplexing and direction.
#![no_main]

use std::net::SocketAddr;

use confab::config::SrtpPolicy;
use confab::media::codec::Codec;
use confab::sip::sdp::{self, Direction, Negotiated, SrtpRule};
use libfuzzer_sys::fuzz_target;

/// `[sip] codecs`'s default, and a bridge for phones only.
const PREFERENCES: [&[Codec]; 2] = [
    &[Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma],
    &[Codec::Pcmu, Codec::Pcma],
];

const OUR_KEY: [u8; 30] = [0x5A; 30];

const RULES: [SrtpRule; 4] = [
    SrtpRule::IF_OFFERED,
    SrtpRule {
        policy: SrtpPolicy::Off,
        keys_may_travel: true,
    },
    SrtpRule {
        policy: SrtpPolicy::Required,
        keys_may_travel: true,
    },
    SrtpRule {
        policy: SrtpPolicy::Optional,
        keys_may_travel: false,
    },
];

fuzz_target!(|data: &[u8]| {
    for (preference, rule) in PREFERENCES
        .iter()
        .flat_map(|p| RULES.iter().map(move |r| (*p, *r)))
    {
        match sdp::negotiate(data, preference, rule) {
            Ok(n) => {
                // Keys are taken only where the rule lets them travel, and always where
                // SRTP is required.
                assert!(
                    n.srtp.is_none() || (rule.keys_may_travel && rule.policy != SrtpPolicy::Off)
                );
                assert!(n.srtp.is_some() || rule.policy != SrtpPolicy::Required);
                agreed(&n, preference)
            }
            Err(e) => {
                let (code, warning) = e.status();
                assert!(matches!(code, 400 | 488), "{e}: {code}");
                assert!((300..400).contains(&warning));
            }
        }
    }
    assert_eq!(
        sdp::base64_decode(&sdp::base64_encode(data)).as_deref(),
        Some(data)
    );
});

fn agreed(n: &Negotiated, preference: &[Codec]) {
    assert!(preference.contains(&n.codec));
    assert!(matches!(n.ptime_ms, 10 | 20 | 30 | 40 | 50 | 60));
    let local: SocketAddr = SocketAddr::from(([192, 0, 2, 10], 40_000));
    let key = n.srtp.map(|_| &OUR_KEY);
    let _ = n.leg_spec(key.copied());
    let answer = sdp::answer(n, local, key, 7, 2);
    let back = match sdp::negotiate(answer.as_bytes(), &[n.codec], SrtpRule::IF_OFFERED) {
        Ok(b) => b,
        Err(e) => panic!("our answer does not read back: {e}\n{answer}"),
    };
    assert_eq!(back.codec, n.codec, "{answer}");
    assert_eq!(back.payload_type, n.payload_type, "{answer}");
    assert_eq!(back.ptime_ms, n.ptime_ms, "{answer}");
    assert_eq!(back.remote, local, "{answer}");
    assert_eq!(
        back.remote_rtcp.is_none(),
        n.remote_rtcp.is_none(),
        "{answer}"
    );
    assert_eq!(back.telephone_event, n.telephone_event, "{answer}");
    assert_eq!(back.audio_level_id, n.audio_level_id, "{answer}");
    assert_eq!(back.csrc_audio_level_id, n.csrc_audio_level_id, "{answer}");
    assert_eq!(
        back.srtp
            .map(|(tag, suite, key)| (tag, suite, key == OUR_KEY)),
        n.srtp.map(|(tag, suite, _)| (tag, suite, true)),
        "{answer}"
    );
    let expected = match n.direction {
        Direction::SendRecv => Direction::SendRecv,
        Direction::SendOnly => Direction::RecvOnly,
        Direction::RecvOnly => Direction::SendOnly,
        Direction::Inactive => Direction::Inactive,
    };
    assert_eq!(back.direction, expected, "{answer}");
}
