//! A WHIP offer taken by a new str0m `Rtc` (ICE-lite, RTP mode): the answer, and the leg
//! settings the mixer needs for what was agreed.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::format::{Codec as RtcCodec, FormatParams};
use str0m::media::{Frequency, Mid};
use str0m::{Candidate, Output, Rtc};

use crate::media::codec::Codec;
use crate::media::leg::{LegSpec, TelephoneEventSpec};

/// Why an offer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OfferError {
    /// Not SDP str0m can read (400).
    #[error("malformed SDP offer: {0}")]
    Malformed(String),
    /// No audio m-line at all (422).
    #[error("the offer has no audio m-line")]
    NoAudio,
    /// Audio, but no codec in common (422).
    #[error("the offer has no codec in common with Confab (opus, G722, PCMU, PCMA)")]
    NoCodec,
    #[error("WebRTC setup failed: {0}")]
    Internal(String),
}

/// An accepted offer, ready for the driver.
pub struct Accepted {
    pub rtc: Rtc,
    pub mid: Mid,
    /// Our one ICE candidate's address, as the answer names it: what the peer's datagrams are
    /// sent to, whatever address the shared socket is bound to (a wildcard, or behind a NAT).
    pub candidate: SocketAddr,
    pub answer: String,
    pub spec: LegSpec,
}

/// Our DTLS certificate, made once and renewed daily rather than for each offer: making one
/// (a P-256 key and a self-signed certificate) is most of an offer's cost, so a client posting
/// offers would otherwise have the bridge make keys at its pace. Browsers check only its
/// fingerprint, which each answer names.
pub struct DtlsCerts {
    current: std::sync::Mutex<(Instant, DtlsCert)>,
}

/// How long one certificate serves new offers.
const CERT_RENEWAL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl DtlsCerts {
    /// A first certificate; `None` if the crypto provider cannot make one.
    pub fn new(now: Instant) -> Option<Self> {
        Some(DtlsCerts {
            current: std::sync::Mutex::new((now, make_cert()?)),
        })
    }

    /// The certificate for an offer taken at `now` (a new one once the last is a day old; the
    /// last one again if a new one cannot be made).
    pub fn for_offer(&self, now: Instant) -> DtlsCert {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.saturating_duration_since(current.0) >= CERT_RENEWAL
            && let Some(fresh) = make_cert()
        {
            *current = (now, fresh);
        }
        current.1.clone()
    }
}

fn make_cert() -> Option<DtlsCert> {
    str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
}

/// Payload types we use for telephone-event when the offer does not name them (str0m answers
/// with the offer's numbers where they match).
const TELE_48K: u8 = 110;
const TELE_8K: u8 = 126;

/// A payload type given two `a=rtpmap` lines in one media section, or two different codecs
/// anywhere in the offer: str0m panics on such an offer ("Pt locked multiple times"), so it is
/// refused before str0m reads it. The same codec on the same number in several sections (a
/// browser's audio sections each with 111 opus) is fine.
fn payload_type_mapped_twice(offer: &str) -> Option<u8> {
    let mut seen: Vec<(u8, String, usize)> = Vec::new();
    let mut section = 0;
    for line in offer.lines().map(str::trim) {
        if line.starts_with("m=") {
            section += 1;
            continue;
        }
        let Some(rest) = line.strip_prefix("a=rtpmap:") else {
            continue;
        };
        let Some((pt, codec)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(pt) = pt.trim().parse::<u8>() else {
            continue;
        };
        let codec = codec.trim().to_ascii_lowercase();
        let twice = seen
            .iter()
            .any(|(p, c, s)| *p == pt && (*s == section || *c != codec));
        if twice {
            return Some(pt);
        }
        // Bounded by the offer's length (32 KiB at most, checked first).
        seen.push((pt, codec, section));
    }
    None
}

/// Takes `offer` with an ICE-lite `Rtc` whose one host candidate is `candidate`, answering
/// for DTLS with `cert` (see [`DtlsCerts`]: made once, not per offer).
pub fn accept(
    offer: &str,
    candidate: SocketAddr,
    now: Instant,
    cert: DtlsCert,
) -> Result<Accepted, OfferError> {
    if offer.len() > 32 * 1024 {
        return Err(OfferError::Malformed("longer than 32 KiB".into()));
    }
    if let Some(pt) = payload_type_mapped_twice(offer) {
        return Err(OfferError::Malformed(format!(
            "payload type {pt} has two a=rtpmap lines"
        )));
    }
    let parsed =
        SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::Malformed(e.to_string()))?;
    if !offer
        .lines()
        .any(|l| l.trim_start().starts_with("m=audio "))
    {
        return Err(OfferError::NoAudio);
    }
    let mut config = Rtc::builder()
        .set_dtls_cert(cert)
        // Egress stats carry the loss the peer reports of our stream (the Opus toward it
        // follows it); once a second, as often as the mixer looks.
        .set_stats_interval(Some(crate::media::opus_path::ADAPT_EVERY))
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_g722(true, false)
        .enable_pcmu(true, false)
        .enable_pcma(true, false);
    for (pt, rate) in [
        (TELE_48K, Frequency::FORTY_EIGHT_KHZ),
        (TELE_8K, Frequency::EIGHT_KHZ),
    ] {
        config.codec_config().add_config(
            pt.into(),
            None,
            RtcCodec::Tele,
            rate,
            Some(1),
            FormatParams::default(),
        );
    }
    let mut rtc = config.build(now);
    let host =
        Candidate::host(candidate, "udp").map_err(|e| OfferError::Internal(e.to_string()))?;
    rtc.add_local_candidate(host);
    let answer = rtc
        .sdp_api()
        .accept_offer(parsed)
        .map_err(|e| OfferError::Malformed(e.to_string()))?;
    // Nothing goes on the wire before the peer's first check; drain what str0m queued.
    loop {
        match rtc.poll_output() {
            Ok(Output::Timeout(_)) => break,
            Ok(_) => {}
            Err(e) => return Err(OfferError::Internal(e.to_string())),
        }
    }
    let mid = audio_mid(offer).map(Mid::from);
    let mid = mid.ok_or(OfferError::NoAudio)?;
    let mut spec = leg_spec(&rtc, mid)?;
    if spec.codec == Codec::Opus {
        // str0m keeps the peer's fmtp to itself: read from the offer what the peer asked of
        // the Opus toward it.
        spec.opus = crate::media::opus_path::OpusFmtp::in_sdp(offer, spec.payload_type);
    }
    Ok(Accepted {
        rtc,
        mid,
        candidate,
        answer: name_our_address(&answer.to_sdp_string(), candidate),
        spec,
    })
}

/// str0m writes `0.0.0.0` in the answer's `o=` and `c=` lines (ICE makes them meaningless);
/// the bridge never names an unspecified address in what it sends, so they get the address of
/// our one candidate.
fn name_our_address(answer: &str, candidate: SocketAddr) -> String {
    let (family, ip) = match candidate.ip() {
        std::net::IpAddr::V4(ip) => ("IP4", ip.to_string()),
        std::net::IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    answer
        .split_inclusive('\n')
        .map(|line| {
            let unspecified = ["IN IP4 0.0.0.0", "IN IP6 ::"]
                .iter()
                .find(|u| line.trim_end().ends_with(*u));
            match unspecified {
                Some(u) if line.starts_with("o=") || line.starts_with("c=") => {
                    let kept = &line.trim_end()[..line.trim_end().len() - u.len()];
                    format!("{kept}IN {family} {ip}\r\n")
                }
                _ => line.to_owned(),
            }
        })
        .collect()
}

/// The `a=mid` of the offer's first audio m-line.
fn audio_mid(offer: &str) -> Option<&str> {
    let mut in_audio = false;
    for line in offer.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if in_audio {
                return None;
            }
            in_audio = m.starts_with("audio ");
        } else if in_audio && let Some(mid) = line.strip_prefix("a=mid:") {
            return Some(mid.trim());
        }
    }
    None
}

/// What the mixer leg does with the agreed codecs: Opus first, then G.722, PCMU, PCMA.
fn leg_spec(rtc: &Rtc, mid: Mid) -> Result<LegSpec, OfferError> {
    let media = rtc.media(mid).ok_or(OfferError::NoAudio)?;
    let agreed: Vec<_> = rtc
        .codec_config()
        .params()
        .iter()
        .filter(|p| media.remote_pts().contains(&p.pt()))
        .collect();
    let pick = [
        (RtcCodec::Opus, Codec::Opus),
        (RtcCodec::G722, Codec::G722),
        (RtcCodec::PCMU, Codec::Pcmu),
        (RtcCodec::PCMA, Codec::Pcma),
    ]
    .into_iter()
    .find_map(|(theirs, ours)| {
        agreed
            .iter()
            .find(|p| p.spec().codec == theirs)
            .map(|p| (ours, *p.pt()))
    });
    let (codec, payload_type) = pick.ok_or(OfferError::NoCodec)?;
    // telephone-event at the audio codec's RTP clock rate, else any.
    let clock = codec.clock_rate();
    let tele: Vec<_> = agreed
        .iter()
        .filter(|p| p.spec().codec == RtcCodec::Tele)
        .map(|p| TelephoneEventSpec {
            payload_type: *p.pt(),
            clock_rate: p.spec().clock_rate.get(),
        })
        .collect();
    let telephone_event = tele
        .iter()
        .find(|t| t.clock_rate == clock)
        .or(tele.first())
        .copied();
    let mut spec = LegSpec::new(codec, crate::media::leg::RELAY_SOURCE);
    spec.payload_type = payload_type;
    spec.telephone_event = telephone_event;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn here() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    fn cert() -> DtlsCert {
        make_cert().unwrap()
    }

    fn fingerprint(answer: &str) -> &str {
        answer
            .lines()
            .find_map(|l| l.strip_prefix("a=fingerprint:"))
            .unwrap()
    }

    #[test]
    fn one_certificate_answers_every_offer_until_it_is_a_day_old() {
        str0m::crypto::from_feature_flags().install_process_default();
        let t0 = Instant::now();
        let certs = DtlsCerts::new(t0).unwrap();
        let offer = fixture("chromium-156-offer.sdp");
        let answer = |at: Instant| {
            accept(&offer, here(), at, certs.for_offer(at))
                .unwrap()
                .answer
        };
        let first = answer(t0);
        let later = answer(t0 + CERT_RENEWAL - std::time::Duration::from_secs(1));
        assert_eq!(fingerprint(&first), fingerprint(&later));
        let next_day = answer(t0 + CERT_RENEWAL);
        assert_ne!(fingerprint(&first), fingerprint(&next_day));
        // And the new one stays for its day.
        let after = answer(t0 + CERT_RENEWAL * 2 - std::time::Duration::from_secs(1));
        assert_eq!(fingerprint(&next_day), fingerprint(&after));
    }

    #[test]
    fn chromium_offer_gets_opus_and_an_ice_lite_answer() {
        str0m::crypto::from_feature_flags().install_process_default();
        let a = accept(
            &fixture("chromium-156-offer.sdp"),
            here(),
            Instant::now(),
            cert(),
        )
        .unwrap();
        assert_eq!(a.spec.codec, Codec::Opus);
        assert_eq!(a.spec.payload_type, 111);
        assert!(a.spec.opus.fec && !a.spec.opus.dtx);
        // What the browser asks of the Opus toward it reaches the leg.
        let asks = fixture("chromium-156-offer.sdp").replace(
            "a=fmtp:111 minptime=10;useinbandfec=1",
            "a=fmtp:111 minptime=10;useinbandfec=0;usedtx=1;maxaveragebitrate=16000",
        );
        let b = accept(&asks, here(), Instant::now(), cert()).unwrap();
        assert_eq!(
            b.spec.opus,
            crate::media::opus_path::OpusFmtp {
                fec: false,
                max_average_bitrate: Some(16000),
                dtx: true
            }
        );
        assert_eq!(
            a.spec.telephone_event,
            Some(TelephoneEventSpec {
                payload_type: 110,
                clock_rate: 48000
            })
        );
        assert!(a.answer.contains("a=ice-lite"), "{}", a.answer);
        // Our address in o= and c=, never 0.0.0.0.
        assert!(!a.answer.contains("0.0.0.0"), "{}", a.answer);
        assert!(
            a.answer.contains("\r\nc=IN IP4 127.0.0.1\r\n"),
            "{}",
            a.answer
        );
        assert!(
            a.answer
                .lines()
                .any(|l| l.starts_with("o=") && l.ends_with(" IN IP4 127.0.0.1")),
            "{}",
            a.answer
        );
        assert!(
            a.answer.contains("127.0.0.1 40000 typ host"),
            "{}",
            a.answer
        );
        assert!(a.answer.contains("a=setup:passive"), "{}", a.answer);
    }

    #[test]
    fn aiortc_offer_accepted() {
        str0m::crypto::from_feature_flags().install_process_default();
        let a = accept(
            &fixture("aiortc-1.16-offer.sdp"),
            here(),
            Instant::now(),
            cert(),
        )
        .unwrap();
        assert_eq!(a.spec.codec, Codec::Opus);
        assert!(a.answer.contains("opus/48000/2"));
    }

    #[test]
    fn g722_only_offer_gets_g722() {
        str0m::crypto::from_feature_flags().install_process_default();
        let offer = fixture("chromium-156-offer.sdp")
            .replace(
                "m=audio 48909 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
                "m=audio 48909 UDP/TLS/RTP/SAVPF 9 126",
            )
            .lines()
            .filter(|l| {
                !["111", "63", "0", "8", "13", "110"].iter().any(|pt| {
                    ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
                        .iter()
                        .any(|a| l.starts_with(&format!("{a}{pt} ")))
                })
            })
            .collect::<Vec<_>>()
            .join("\r\n")
            + "\r\n";
        let a = accept(&offer, here(), Instant::now(), cert()).unwrap();
        assert_eq!(a.spec.codec, Codec::G722);
        assert_eq!(a.spec.telephone_event.map(|t| t.clock_rate), Some(8000));
    }

    #[test]
    fn bad_offers_are_told_apart() {
        str0m::crypto::from_feature_flags().install_process_default();
        assert!(matches!(
            accept("hello", here(), Instant::now(), cert()),
            Err(OfferError::Malformed(_))
        ));
        let video = fixture("chromium-156-offer.sdp").replace("m=audio", "m=video");
        let r = accept(&video, here(), Instant::now(), cert());
        assert!(
            matches!(r, Err(OfferError::NoAudio) | Err(OfferError::Malformed(_))),
            "{:?}",
            r.err()
        );
        let huge = "v=0\r\n".repeat(10_000);
        assert!(matches!(
            accept(&huge, here(), Instant::now(), cert()),
            Err(OfferError::Malformed(_))
        ));
    }

    /// One payload type mapped twice (found by the `whip_offer` fuzz target, its seed
    /// `pt-9-mapped-twice.sdp`) panicked str0m; it is refused as malformed, while the same codec
    /// on one number in two sections (as browsers send) is still taken.
    #[test]
    fn a_payload_type_mapped_twice_is_refused_before_str0m_sees_it() {
        str0m::crypto::from_feature_flags().install_process_default();
        let seed = std::fs::read_to_string(format!(
            "{}/fuzz/seeds/whip_offer/pt-9-mapped-twice.sdp",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let r = accept(&seed, here(), Instant::now(), cert());
        assert!(
            matches!(&r, Err(OfferError::Malformed(why)) if why.contains("payload type 9")),
            "{:?}",
            r.err()
        );
        let across = "m=audio 9 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n\
                      m=audio 9 RTP/AVP 111\r\na=rtpmap:111 OPUS/48000/2\r\n";
        assert_eq!(payload_type_mapped_twice(across), None);
        let clash = across.replace("OPUS/48000/2", "G722/8000");
        assert_eq!(payload_type_mapped_twice(&clash), Some(111));
        let chromium = fixture("chromium-156-offer.sdp");
        assert_eq!(payload_type_mapped_twice(&chromium), None);
        assert!(accept(&chromium, here(), Instant::now(), cert()).is_ok());
    }
}
