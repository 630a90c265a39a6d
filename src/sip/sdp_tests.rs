//! Offer/answer against real offers (tests/fixtures) and hostile ones; answers are read back
//! with sdp-types.

use super::*;
use crate::sip::message::Message;

const IF_OFFERED: SrtpRule = SrtpRule::IF_OFFERED;

const PREFERENCE: [Codec; 4] = [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn body_of(name: &str) -> Vec<u8> {
    Message::parse(&fixture(name)).unwrap().body
}

fn local() -> SocketAddr {
    "127.0.0.1:20000".parse().unwrap()
}

#[test]
fn baresip_pcmu_offer() {
    let n = negotiate(
        &body_of("baresip-1.0.0-invite-pcmu.sip"),
        &PREFERENCE,
        IF_OFFERED,
    )
    .unwrap();
    assert_eq!((n.codec, n.payload_type, n.ptime_ms), (Codec::Pcmu, 0, 20));
    assert_eq!(n.remote, "127.0.0.1:25242".parse().unwrap());
    // No rtcp-mux offered: RTCP on the port above.
    assert_eq!(n.remote_rtcp, Some("127.0.0.1:25243".parse().unwrap()));
    assert_eq!(
        n.telephone_event,
        Some(TelephoneEventSpec {
            payload_type: 101,
            clock_rate: 8000
        })
    );
    assert_eq!(n.srtp, None);
    let text = answer(&n, local(), None, 1, 1);
    let a = Session::parse(text.as_bytes()).unwrap();
    let m = &a.medias[0];
    assert_eq!(
        (m.port, m.proto.as_str(), m.fmt.as_str()),
        (20000, "RTP/AVP", "0 101")
    );
    assert_eq!(m.get_first_attribute_value("rtcp"), Some(Some("20001")));
    assert!(m.has_attribute("sendrecv"));
}

#[test]
fn baresip_opus_srtp_offer() {
    let n = negotiate(
        &body_of("baresip-1.0.0-invite-opus-srtp.sip"),
        &PREFERENCE,
        IF_OFFERED,
    )
    .unwrap();
    assert_eq!((n.codec, n.payload_type), (Codec::Opus, 96));
    let (tag, suite, key) = n.srtp.unwrap();
    assert_eq!((tag, suite), (1, SrtpSuite::AesCm128HmacSha1_80));
    assert_eq!(
        base64_encode(&key),
        "q9X4vqHDWpozQKDFv1TRGR365nuarNkLDbvXz9Fg"
    );
    // Opus' clock has no telephone-event/48000 here: the 8000 one is taken.
    assert_eq!(n.telephone_event.map(|t| t.clock_rate), Some(8000));
    let ours: KeyMaterial = std::array::from_fn(|i| i as u8);
    let spec = n.leg_spec(Some(ours));
    assert_eq!(spec.srtp.map(|k| (k.local, k.remote)), Some((ours, key)));
    let text = answer(&n, local(), Some(&ours), 7, 8);
    let a = Session::parse(text.as_bytes()).unwrap();
    let m = &a.medias[0];
    assert_eq!(m.proto, "RTP/SAVP");
    let crypto = m.get_first_attribute_value("crypto").flatten().unwrap();
    assert_eq!(
        crypto,
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}", base64_encode(&ours))
    );
    assert_eq!(
        m.get_first_attribute_value("rtpmap"),
        Some(Some("96 opus/48000/2"))
    );
}

#[test]
fn linphone_opus_with_telephone_event_at_48000() {
    let n = negotiate(
        &body_of("linphone-5.1-invite-opus.sip"),
        &PREFERENCE,
        IF_OFFERED,
    )
    .unwrap();
    assert_eq!((n.codec, n.payload_type), (Codec::Opus, 96));
    assert_eq!(
        n.telephone_event,
        Some(TelephoneEventSpec {
            payload_type: 97,
            clock_rate: 48000
        })
    );
    // Preferring G.711, which linphone did not offer here: no common codec.
    assert_eq!(
        negotiate(
            &body_of("linphone-5.1-invite-opus.sip"),
            &[Codec::Pcmu],
            IF_OFFERED
        ),
        Err(SdpError::NoCommonCodec)
    );
}

#[test]
fn webrtc_offers_are_not_for_sip_legs() {
    // DTLS-SRTP offers belong to the WHIP endpoint.
    for f in ["chromium-156-offer.sdp", "aiortc-1.16-offer.sdp"] {
        let e = negotiate(&fixture(f), &PREFERENCE, IF_OFFERED);
        assert!(
            matches!(
                e,
                Err(SdpError::UnsupportedTransport(_)) | Err(SdpError::Malformed(_))
            ),
            "{f}: {e:?}"
        );
    }
}

fn offer(media: &str) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n{media}")
}

#[test]
fn preference_ptime_mux_extensions_direction_and_other_media() {
    let o = offer(
        "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n\
         m=audio 4000 RTP/AVP 8 9 0\r\na=ptime:30\r\na=rtcp-mux\r\na=sendonly\r\n\
         a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
         a=extmap:3/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level\r\n",
    );
    let n = negotiate(o.as_bytes(), &PREFERENCE, IF_OFFERED).unwrap();
    // Static payload types without rtpmap; G.722 preferred over the offer's order.
    assert_eq!((n.codec, n.payload_type, n.ptime_ms), (Codec::G722, 9, 30));
    assert_eq!(n.remote_rtcp, None);
    assert_eq!(
        (n.audio_level_id, n.csrc_audio_level_id),
        (Some(1), Some(3))
    );
    assert_eq!(n.direction, Direction::SendOnly);
    assert!(n.direction.is_hold());
    assert_eq!(n.telephone_event, None);
    let a = Session::parse(answer(&n, local(), None, 1, 1).as_bytes()).unwrap();
    assert_eq!(a.medias.len(), 2);
    assert_eq!((a.medias[0].media.as_str(), a.medias[0].port), ("video", 0));
    let m = &a.medias[1];
    assert_eq!(m.fmt, "9");
    assert!(m.has_attribute("rtcp-mux") && m.has_attribute("recvonly"));
    assert_eq!(m.get_first_attribute_value("ptime"), Some(Some("30")));
    // Opus only at packet times Opus has.
    let o = offer("m=audio 4000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=ptime:30\r\n");
    assert_eq!(
        negotiate(o.as_bytes(), &PREFERENCE, IF_OFFERED)
            .unwrap()
            .ptime_ms,
        20
    );
    // An explicit a=rtcp port and address.
    let o = offer("m=audio 4000 RTP/AVP 0\r\na=rtcp:4009 IN IP4 10.0.0.9\r\n");
    assert_eq!(
        negotiate(o.as_bytes(), &PREFERENCE, IF_OFFERED)
            .unwrap()
            .remote_rtcp,
        Some("10.0.0.9:4009".parse().unwrap())
    );
}

#[test]
fn offers_we_cannot_answer() {
    let cases: [(&str, SdpError); 6] = [
        (
            "m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
            SdpError::NoCommonCodec,
        ),
        ("m=video 4000 RTP/AVP 96\r\n", SdpError::NoAudio),
        ("m=audio 0 RTP/AVP 0\r\n", SdpError::NoAudio),
        ("m=audio 4000 RTP/SAVP 0\r\n", SdpError::UnsupportedCrypto),
        (
            "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:AAAA\r\n",
            SdpError::UnsupportedCrypto,
        ),
        (
            "m=audio 4000 UDP/TLS/RTP/SAVPF 111\r\n",
            SdpError::UnsupportedTransport("UDP/TLS/RTP/SAVPF".into()),
        ),
    ];
    for (media, want) in cases {
        assert_eq!(
            negotiate(offer(media).as_bytes(), &PREFERENCE, IF_OFFERED),
            Err(want.clone()),
            "{media}"
        );
        assert_eq!(want.status().0, 488);
    }
    // A key with an MKI, or of the wrong length, is not taken.
    let mki = "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:q9X4vqHDWpozQKDFv1TRGR365nuarNkLDbvXz9Fg|2^20|1:4\r\n";
    assert_eq!(
        negotiate(offer(mki).as_bytes(), &PREFERENCE, IF_OFFERED),
        Err(SdpError::UnsupportedCrypto)
    );
    let short = "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:AAAA\r\n";
    assert_eq!(
        negotiate(offer(short).as_bytes(), &PREFERENCE, IF_OFFERED),
        Err(SdpError::UnsupportedCrypto)
    );
    for junk in [
        &b""[..],
        b"hello",
        b"v=0\r\nm=audio x RTP/AVP 0\r\n",
        b"\xff\xfe",
    ] {
        let e = negotiate(junk, &PREFERENCE, IF_OFFERED).unwrap_err();
        assert!(
            matches!(e, SdpError::Malformed(_) | SdpError::NoAudio),
            "{e:?}"
        );
    }
    // No connection address anywhere.
    let no_c = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    assert!(matches!(
        negotiate(no_c.as_bytes(), &PREFERENCE, IF_OFFERED),
        Err(SdpError::Malformed(_))
    ));
}

#[test]
fn base64_round_trip() {
    for len in 0..40 {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        assert_eq!(base64_decode(&base64_encode(&bytes)).unwrap(), bytes);
    }
    assert_eq!(base64_encode(b"Man"), "TWFu");
    assert_eq!(base64_encode(b"Ma"), "TWE=");
    assert_eq!(base64_decode("!!"), None);
}

#[test]
fn our_offer_answered_by_ourselves() {
    let text = super::offer(local(), &PREFERENCE, 5);
    let parsed = Session::parse(text.as_bytes()).unwrap();
    assert_eq!(parsed.medias[0].fmt, "111 9 0 8 101");
    // Answering our own offer with G.711 only picks PCMU and our RTCP port.
    let n = negotiate(text.as_bytes(), &[Codec::Pcmu], IF_OFFERED).unwrap();
    assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 0));
    assert_eq!(n.remote_rtcp, Some("127.0.0.1:20001".parse().unwrap()));
    assert_eq!(n.telephone_event.map(|t| t.payload_type), Some(101));
}

#[test]
fn a_private_connection_address_means_a_nat_and_latching_to_the_first_source() {
    for (ip, nat) in [
        ("10.1.2.3", true),
        ("192.168.0.10", true),
        ("172.20.0.1", true),
        ("100.64.1.1", true),
        ("169.254.3.3", true),
        ("0.0.0.0", true),
        ("fd00::1", true),
        ("fe80::1", true),
        ("127.0.0.1", false),
        ("198.51.100.7", false),
        ("2001:db8::1", false),
        ("100.128.0.1", false),
    ] {
        assert_eq!(behind_nat(ip.parse().unwrap()), nat, "{ip}");
    }
}

/// `media.srtp` and where the keys may travel, over the three kinds of offer: SRTP only
/// (SAVP), SRTP if you like (AVP with a crypto line, RFC 4568's best effort) and plain.
#[test]
fn the_srtp_policy_decides_each_kind_of_offer() {
    let key =
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:q9X4vqHDWpozQKDFv1TRGR365nuarNkLDbvXz9Fg\r\n";
    let savp = offer(&format!("m=audio 4000 RTP/SAVP 0\r\n{key}"));
    let best_effort = offer(&format!("m=audio 4000 RTP/AVP 0\r\n{key}"));
    let plain = offer("m=audio 4000 RTP/AVP 0\r\n");
    let rule = |policy, keys_may_travel| SrtpRule {
        policy,
        keys_may_travel,
    };
    let srtp = |o: &str, r| negotiate(o.as_bytes(), &PREFERENCE, r).map(|n| n.srtp.is_some());
    use SrtpPolicy::*;
    // Over TLS (or with cleartext allowed).
    for (policy, want_savp, want_best_effort, want_plain) in [
        (Off, Err(SdpError::SrtpOff), Ok(false), Ok(false)),
        (Optional, Ok(true), Ok(true), Ok(false)),
        (Required, Ok(true), Ok(true), Err(SdpError::SrtpRequired)),
    ] {
        let r = rule(policy, true);
        assert_eq!(srtp(&savp, r), want_savp, "{policy:?} savp");
        assert_eq!(
            srtp(&best_effort, r),
            want_best_effort,
            "{policy:?} avp+crypto"
        );
        assert_eq!(srtp(&plain, r), want_plain, "{policy:?} plain");
    }
    // Over cleartext SIP, keys are never taken: SAVP is refused, a best-effort offer is
    // answered in the clear, and a bridge that requires SRTP takes nothing.
    for (policy, want_savp, want_best_effort, want_plain) in [
        (Off, Err(SdpError::SrtpOff), Ok(false), Ok(false)),
        (
            Optional,
            Err(SdpError::SdesOverCleartext),
            Ok(false),
            Ok(false),
        ),
        (
            Required,
            Err(SdpError::SdesOverCleartext),
            Err(SdpError::SrtpRequired),
            Err(SdpError::SrtpRequired),
        ),
    ] {
        let r = rule(policy, false);
        assert_eq!(srtp(&savp, r), want_savp, "{policy:?} savp, cleartext");
        assert_eq!(
            srtp(&best_effort, r),
            want_best_effort,
            "{policy:?} avp+crypto, cleartext"
        );
        assert_eq!(srtp(&plain, r), want_plain, "{policy:?} plain, cleartext");
    }
    for e in [
        SdpError::SrtpOff,
        SdpError::SdesOverCleartext,
        SdpError::SrtpRequired,
    ] {
        assert_eq!(e.status(), (488, 399));
    }
    // A best-effort answer keeps the offer's profile and carries our key.
    let n = negotiate(best_effort.as_bytes(), &PREFERENCE, rule(Optional, true)).unwrap();
    let ours = [7u8; 30];
    let text = answer(&n, local(), Some(&ours), 1, 1);
    assert!(text.contains("m=audio 20000 RTP/AVP 0"), "{text}");
    assert!(
        text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{text}"
    );
}

/// The Opus fmtp of the payload type taken reaches the leg: baresip's bitrate cap, linphone's
/// FEC; another payload type's fmtp or another codec's leaves the defaults.
#[test]
fn opus_fmtp_reaches_the_leg() {
    let n = negotiate(
        &body_of("baresip-1.0.0-invite-opus-srtp.sip"),
        &PREFERENCE,
        IF_OFFERED,
    )
    .unwrap();
    assert_eq!(n.opus.max_average_bitrate, Some(32000));
    assert_eq!(n.leg_spec(None).opus, n.opus);
    let n = negotiate(
        &body_of("linphone-5.1-invite-opus.sip"),
        &PREFERENCE,
        IF_OFFERED,
    )
    .unwrap();
    assert_eq!(n.opus, OpusFmtp::default());
    let o = offer(
        "m=audio 4000 RTP/AVP 111 112\r\na=rtpmap:111 opus/48000/2\r\n\
         a=fmtp:112 useinbandfec=1\r\na=fmtp:111 usedtx=1; useinbandfec=0;maxaveragebitrate=20000\r\n",
    );
    let n = negotiate(o.as_bytes(), &PREFERENCE, IF_OFFERED).unwrap();
    assert_eq!(
        n.opus,
        OpusFmtp {
            fec: false,
            max_average_bitrate: Some(20000),
            dtx: true
        }
    );
    let o = offer("m=audio 4000 RTP/AVP 0\r\na=fmtp:0 useinbandfec=0\r\n");
    let n = negotiate(o.as_bytes(), &PREFERENCE, IF_OFFERED).unwrap();
    assert_eq!(n.opus, OpusFmtp::default());
    // Garbage in the line is ignored, not refused.
    let o = offer("m=audio 4000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111\r\n");
    assert!(negotiate(o.as_bytes(), &PREFERENCE, IF_OFFERED).is_ok());
}
