//! Our dial-out offers' SRTP by policy and transport, and which answers to them are taken.

use super::*;
use crate::media::codec::Codec;

const KEY: KeyMaterial = [7; 30];

fn offered(kind: OfferKind) -> OfferedSrtp {
    OfferedSrtp {
        kind,
        key: (kind != OfferKind::Plain).then_some(KEY),
    }
}

fn plain_offer() -> String {
    sdp::offer("192.0.2.1:20000".parse().unwrap(), &[Codec::Pcmu], 1)
}

/// An answer from 192.0.2.9 with `proto` and `extra` attribute lines.
fn answer(proto: &str, extra: &str) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 30000 {proto} 0\r\n{extra}"
    )
    .into_bytes()
}

const THEIR_CRYPTO: &str =
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:q9X4vqHDWpozQKDFv1TRGR365nuarNkLDbvXz9Fg\r\n";

#[test]
fn the_offer_follows_the_policy_and_whether_keys_may_travel() {
    let kind = |policy, keys_may_travel| {
        offer_kind(SrtpRule {
            policy,
            keys_may_travel,
        })
    };
    assert_eq!(kind(SrtpPolicy::Off, true), Ok(OfferKind::Plain));
    assert_eq!(kind(SrtpPolicy::Off, false), Ok(OfferKind::Plain));
    assert_eq!(kind(SrtpPolicy::Optional, true), Ok(OfferKind::BestEffort));
    // Never a key in an offer on signalling that may not carry it.
    assert_eq!(kind(SrtpPolicy::Optional, false), Ok(OfferKind::Plain));
    assert_eq!(kind(SrtpPolicy::Required, true), Ok(OfferKind::Required));
    assert_eq!(
        kind(SrtpPolicy::Required, false),
        Err(SdpError::SdesOverCleartext)
    );
}

#[test]
fn a_best_effort_offer_is_avp_with_our_crypto_line_and_a_required_one_is_savp() {
    let plain = plain_offer();
    assert_eq!(offered(OfferKind::Plain).apply(&plain), plain);
    assert_eq!(OfferedSrtp::new(OfferKind::Plain, |_| {}).key, None);
    let line = format!(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n",
        sdp::base64_encode(&KEY)
    );
    for (kind, proto) in [
        (OfferKind::BestEffort, "RTP/AVP"),
        (OfferKind::Required, "RTP/SAVP"),
    ] {
        let secured = offered(kind).apply(&plain);
        let m = secured.lines().find(|l| l.starts_with("m=audio ")).unwrap();
        assert_eq!(m, format!("m=audio 20000 {proto} 0 101"));
        assert_eq!(secured.matches("a=crypto:").count(), 1, "{secured}");
        assert!(secured.ends_with(&line), "{secured}");
        // What an answerer reads from it: our suite and our key.
        let n = sdp::negotiate(
            secured.as_bytes(),
            &[Codec::Pcmu],
            SrtpRule {
                policy: SrtpPolicy::Optional,
                keys_may_travel: true,
            },
        )
        .unwrap();
        assert_eq!(n.srtp, Some((1, SrtpSuite::AesCm128HmacSha1_80, KEY)));
    }
    let key = OfferedSrtp::new(OfferKind::Required, |b| b.fill(3)).key;
    assert_eq!(key, Some([3; 30]));
}

#[test]
fn an_answer_that_takes_our_crypto_line_makes_an_srtp_leg() {
    for (kind, proto) in [
        (OfferKind::BestEffort, "RTP/AVP"),
        (OfferKind::BestEffort, "RTP/SAVP"),
        (OfferKind::Required, "RTP/SAVP"),
    ] {
        let taken =
            check_answer(&answer(proto, THEIR_CRYPTO), &[Codec::Pcmu], &offered(kind)).unwrap();
        assert_eq!(taken.local_key, Some(KEY));
        let keys = taken.negotiated.leg_spec(taken.local_key).srtp.unwrap();
        assert_eq!(keys.local, KEY);
        assert_ne!(keys.remote, KEY);
        assert_eq!(keys.suite, SrtpSuite::AesCm128HmacSha1_80);
    }
}

#[test]
fn a_plain_answer_is_plain_rtp_unless_srtp_is_required() {
    let taken = check_answer(
        &answer("RTP/AVP", ""),
        &[Codec::Pcmu],
        &offered(OfferKind::BestEffort),
    )
    .unwrap();
    assert_eq!(taken.local_key, None);
    assert_eq!(taken.negotiated.leg_spec(taken.local_key).srtp, None);
    assert_eq!(
        check_answer(
            &answer("RTP/AVP", ""),
            &[Codec::Pcmu],
            &offered(OfferKind::Required)
        ),
        Err(AnswerRefused::NotEncrypted)
    );
    // A plain offer: a crypto line in the answer is ignored, RTP/SAVP refused.
    let taken = check_answer(
        &answer("RTP/AVP", THEIR_CRYPTO),
        &[Codec::Pcmu],
        &OfferedSrtp::PLAIN,
    )
    .unwrap();
    assert_eq!((taken.local_key, taken.negotiated.srtp), (None, None));
    assert_eq!(
        check_answer(
            &answer("RTP/SAVP", THEIR_CRYPTO),
            &[Codec::Pcmu],
            &OfferedSrtp::PLAIN
        ),
        Err(AnswerRefused::SrtpNotOffered)
    );
}

#[test]
fn hostile_or_mismatched_answers_are_refused() {
    let best = offered(OfferKind::BestEffort);
    let other_tag =
        "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:q9X4vqHDWpozQKDFv1TRGR365nuarNkLDbvXz9Fg\r\n";
    let other_suite =
        "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:q9X4vqHDWpozQKDFv1TRGR365nuarNkLDbvXz9Fg\r\n";
    for extra in [other_tag, other_suite] {
        assert_eq!(
            check_answer(&answer("RTP/AVP", extra), &[Codec::Pcmu], &best),
            Err(AnswerRefused::CryptoMismatch)
        );
    }
    // RTP/SAVP without a crypto line we can use.
    assert!(matches!(
        check_answer(&answer("RTP/SAVP", ""), &[Codec::Pcmu], &best),
        Err(AnswerRefused::Unusable(SdpError::UnsupportedCrypto))
    ));
    for junk in [&b""[..], b"\xff\xfe", b"v=0\r\nm=audio x\r\n"] {
        assert!(matches!(
            check_answer(junk, &[Codec::Pcmu], &best),
            Err(AnswerRefused::Unusable(_))
        ));
    }
    assert!(matches!(
        check_answer(&answer("RTP/AVP", ""), &[Codec::Opus], &best),
        Err(AnswerRefused::Unusable(SdpError::NoCommonCodec))
    ));
}

#[test]
fn the_reason_header_says_why_in_a_quoted_string_that_cannot_break_out() {
    let header = reason_header(&AnswerRefused::NotEncrypted);
    assert!(header.starts_with("SIP ;cause=488 ;text=\""), "{header}");
    assert!(header.contains("SRTP is required"), "{header}");
    let hostile = reason_header(&AnswerRefused::Unusable(SdpError::Malformed(
        "a \"quote\" \\ and\r\nInjected: yes".into(),
    )));
    assert_eq!(hostile.matches('"').count(), 2, "{hostile}");
    assert!(!hostile.contains(['\r', '\n', '\\']), "{hostile}");
}
