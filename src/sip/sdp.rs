//! SDP offer/answer for SIP legs (RFC 3264), parsed with sdp-types.
//!
//! In: an offer's bytes and our codec preference. Out: what was agreed (a [`Negotiated`] that
//! becomes the leg's `LegSpec`) and the answer's text. One audio stream is taken (the first
//! with a non-zero port); every other m-line is refused with port 0, as RFC 3264 asks. The
//! codec is the first of our preference the offer carries; telephone-event at the codec's
//! clock when offered, else at 8000; SDES-SRTP (RFC 4568) with AES_CM_128_HMAC_SHA1_80 or _32;
//! rtcp-mux when offered; the offer's ptime; the RFC 6464/6465 level extensions; the Opus
//! fmtp (`useinbandfec`, `maxaveragebitrate`, `usedtx`) for the encoder toward the caller.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use sdp_types::Session;

use crate::config::SrtpPolicy;
use crate::media::codec::Codec;
use crate::media::leg::{LegSpec, TelephoneEventSpec};
use crate::media::opus_path::OpusFmtp;
use crate::media::srtp::{KeyMaterial, SrtpKeys, SrtpSuite};

const SSRC_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
const CSRC_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:csrc-audio-level";

/// Why an offer cannot be answered. Each maps to a SIP answer (see [`SdpError::status`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("no audio stream offered")]
    NoAudio,
    #[error("no common codec")]
    NoCommonCodec,
    #[error("no supported crypto suite (AES_CM_128_HMAC_SHA1_80 or _32 by SDES)")]
    UnsupportedCrypto,
    #[error("unsupported transport {0}")]
    UnsupportedTransport(String),
    #[error("SRTP is off on this bridge (media.srtp = off)")]
    SrtpOff,
    #[error("SDES keys are exchanged only over SIP on TLS (sips: or transport=tls)")]
    SdesOverCleartext,
    #[error("this bridge requires SRTP: offer RTP/SAVP with an SDES crypto line over TLS")]
    SrtpRequired,
}

impl SdpError {
    /// The SIP status, and the Warning code of RFC 3261 20.43.
    pub fn status(&self) -> (u16, u16) {
        match self {
            SdpError::Malformed(_) => (400, 399),
            SdpError::NoAudio => (488, 304),
            SdpError::NoCommonCodec => (488, 305),
            SdpError::UnsupportedCrypto => (488, 306),
            SdpError::UnsupportedTransport(_) => (488, 302),
            SdpError::SrtpOff | SdpError::SdesOverCleartext | SdpError::SrtpRequired => (488, 399),
        }
    }
}

/// Media direction (RFC 3264 6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn answer(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "recvonly",
            Direction::RecvOnly => "sendonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The offerer puts us on hold (it will not send, or not receive).
    pub fn is_hold(self) -> bool {
        matches!(self, Direction::SendOnly | Direction::Inactive)
    }
}

/// What an offer and our preference agreed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub payload_type: u8,
    pub ptime_ms: u32,
    pub remote: SocketAddr,
    /// `None`: rtcp-mux.
    pub remote_rtcp: Option<SocketAddr>,
    pub telephone_event: Option<TelephoneEventSpec>,
    /// The offer's crypto line we took: tag, suite and the peer's key.
    pub srtp: Option<(u32, SrtpSuite, KeyMaterial)>,
    pub direction: Direction,
    pub audio_level_id: Option<u8>,
    pub csrc_audio_level_id: Option<u8>,
    /// The offer's fmtp for the Opus payload type we took (defaults for other codecs).
    pub opus: OpusFmtp,
    /// The whole offer's m-lines, for the answer to refuse the others.
    other_media: Vec<(usize, String)>,
    audio_index: usize,
    proto: String,
}

impl Negotiated {
    /// What an offerless call has before its answer: no address to send to yet.
    pub fn unanswered(codec: Codec) -> Negotiated {
        let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
        Negotiated {
            codec,
            payload_type: codec.default_payload_type(),
            ptime_ms: 20,
            remote: nowhere,
            remote_rtcp: Some(nowhere),
            telephone_event: None,
            srtp: None,
            direction: Direction::SendRecv,
            audio_level_id: None,
            csrc_audio_level_id: None,
            opus: OpusFmtp::default(),
            other_media: Vec::new(),
            audio_index: 0,
            proto: "RTP/AVP".to_owned(),
        }
    }

    /// The leg's settings, with `local_key` our SDES key when the leg is secured.
    pub fn leg_spec(&self, local_key: Option<KeyMaterial>) -> LegSpec {
        LegSpec {
            codec: self.codec,
            payload_type: self.payload_type,
            ptime_ms: self.ptime_ms,
            remote: self.remote,
            remote_rtcp: self.remote_rtcp,
            telephone_event: self.telephone_event,
            audio_level_id: self.audio_level_id,
            csrc_audio_level_id: self.csrc_audio_level_id,
            srtp: match (self.srtp, local_key) {
                (Some((_, suite, remote)), Some(local)) => Some(SrtpKeys {
                    suite,
                    local,
                    remote,
                }),
                _ => None,
            },
            latch_any_source: behind_nat(self.remote.ip()),
            opus: self.opus,
        }
    }
}

impl Negotiated {
    /// The caller sent this offer straight to us (one Via) from `source`, but named another
    /// address as its own in both its Via and its SDP: a NAT nobody rewrote is in between.
    /// Its media will come from the NAT too, so we send to (and latch only from) the NAT's
    /// address at the ports the caller gave; a hold (no address) is left as it is. Behind a
    /// proxy the Via is the proxy's and nothing is inferred.
    pub fn through_nat(
        &mut self,
        lone_via_host: Option<std::net::IpAddr>,
        source: std::net::IpAddr,
    ) {
        let source = source.to_canonical();
        let Some(said) = lone_via_host else {
            return;
        };
        let media = self.remote.ip().to_canonical();
        if said == source || media != said || media.is_unspecified() {
            return;
        }
        self.remote.set_ip(source);
        if let Some(rtcp) = &mut self.remote_rtcp
            && rtcp.ip().to_canonical() == said
        {
            rtcp.set_ip(source);
        }
    }
}

/// Whether an offer's connection address says the peer is behind a NAT nobody rewrote (a
/// private, shared, link-local or unspecified address cannot be where its media comes from):
/// then its leg latches to the first source; otherwise only the named host is heard.
pub fn behind_nat(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                // 100.64.0.0/10, carrier-grade NAT (RFC 6598).
                || (a == 100 && (64..128).contains(&b))
        }
        std::net::IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

fn codec_of(name: &str, clock: u32) -> Option<Codec> {
    match (name.to_ascii_uppercase().as_str(), clock) {
        ("PCMU", 8000) => Some(Codec::Pcmu),
        ("PCMA", 8000) => Some(Codec::Pcma),
        ("G722", 8000) => Some(Codec::G722),
        ("OPUS", 48000) => Some(Codec::Opus),
        _ => None,
    }
}

/// Parses `rtpmap` values: `PT NAME/CLOCK[/CHANNELS]`.
fn rtpmap(v: &str) -> Option<(u8, String, u32)> {
    let (pt, rest) = v.split_once(' ')?;
    let mut parts = rest.trim().split('/');
    let name = parts.next()?.to_owned();
    let clock = parts.next()?.parse().ok()?;
    Some((pt.parse().ok()?, name, clock))
}

/// When an answer may use SDES-SRTP: the configured policy, and whether the keys may travel
/// on the signalling the offer came by (TLS, or cleartext allowed by the operator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SrtpRule {
    pub policy: SrtpPolicy,
    pub keys_may_travel: bool,
}

impl SrtpRule {
    /// Takes SRTP whenever it is offered (the API's legs, whose channel the operator chose).
    pub const IF_OFFERED: SrtpRule = SrtpRule {
        policy: SrtpPolicy::Optional,
        keys_may_travel: true,
    };

    /// Whether the answer uses the offer's crypto line `found`; an offer this rule cannot
    /// answer is an error.
    fn decide(
        self,
        savp: bool,
        found: Option<(u32, SrtpSuite, KeyMaterial)>,
    ) -> Result<Option<(u32, SrtpSuite, KeyMaterial)>, SdpError> {
        let allowed = self.policy != SrtpPolicy::Off && self.keys_may_travel;
        match (found, allowed) {
            (Some(keys), true) => Ok(Some(keys)),
            // RTP/SAVP cannot be answered with plain RTP.
            (_, false) if savp && self.policy == SrtpPolicy::Off => Err(SdpError::SrtpOff),
            (_, false) if savp => Err(SdpError::SdesOverCleartext),
            (None, true) if savp => Err(SdpError::UnsupportedCrypto),
            _ if self.policy == SrtpPolicy::Required => Err(SdpError::SrtpRequired),
            // A best-effort offer (RTP/AVP with a crypto line) answered in the clear.
            _ => Ok(None),
        }
    }
}

/// Answers `offer` with the first codec of `preference` it carries, taking SRTP as `srtp`
/// allows (SAVP offers, and AVP offers with a crypto line as RFC 4568's best effort).
pub fn negotiate(
    offer: &[u8],
    preference: &[Codec],
    srtp: SrtpRule,
) -> Result<Negotiated, SdpError> {
    let session = Session::parse(offer).map_err(|e| SdpError::Malformed(e.to_string()))?;
    let audio_index = session
        .medias
        .iter()
        .position(|m| m.media == "audio" && m.port != 0)
        .ok_or(SdpError::NoAudio)?;
    let media = &session.medias[audio_index];
    let secure = match media.proto.as_str() {
        "RTP/AVP" | "RTP/AVPF" => false,
        "RTP/SAVP" | "RTP/SAVPF" => true,
        other => return Err(SdpError::UnsupportedTransport(other.to_owned())),
    };
    let offered: Vec<u8> = media
        .fmt
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let maps: Vec<(u8, String, u32)> = media
        .get_attribute_values("rtpmap")
        .filter_map(|v| v.and_then(rtpmap))
        .collect();
    // Each offered payload type as a codec: by rtpmap, else by static assignment.
    let format = |pt: u8| -> Option<(String, u32)> {
        match maps.iter().find(|(p, ..)| *p == pt) {
            Some((_, name, clock)) => Some((name.clone(), *clock)),
            None => match pt {
                0 => Some(("PCMU".into(), 8000)),
                8 => Some(("PCMA".into(), 8000)),
                9 => Some(("G722".into(), 8000)),
                _ => None,
            },
        }
    };
    let (codec, payload_type) = preference
        .iter()
        .find_map(|want| {
            offered.iter().find_map(|&pt| {
                let (name, clock) = format(pt)?;
                (codec_of(&name, clock) == Some(*want)).then_some((*want, pt))
            })
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let events: Vec<(u8, u32)> = offered
        .iter()
        .filter_map(|&pt| {
            let (name, clock) = format(pt)?;
            name.eq_ignore_ascii_case("telephone-event")
                .then_some((pt, clock))
        })
        .collect();
    let telephone_event = events
        .iter()
        .find(|(_, c)| *c == codec.clock_rate())
        .or_else(|| events.iter().find(|(_, c)| *c == 8000))
        .or(events.first())
        .map(|&(payload_type, clock_rate)| TelephoneEventSpec {
            payload_type,
            clock_rate,
        });

    let connection = media
        .connections
        .first()
        .or(session.connection.as_ref())
        .ok_or_else(|| SdpError::Malformed("no c= line".into()))?;
    let ip: IpAddr = connection
        .connection_address
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|_| SdpError::Malformed("c= address is not an IP address".into()))?;
    let remote = SocketAddr::new(ip, media.port);
    let remote_rtcp = if media.has_attribute("rtcp-mux") {
        None
    } else {
        let explicit = media
            .get_first_attribute_value("rtcp")
            .flatten()
            .and_then(|v| {
                let mut parts = v.split_whitespace();
                let port: u16 = parts.next()?.parse().ok()?;
                let addr = parts.nth(2).and_then(|a| a.parse().ok()).unwrap_or(ip);
                Some(SocketAddr::new(addr, port))
            });
        Some(explicit.unwrap_or(SocketAddr::new(ip, media.port.saturating_add(1))))
    };
    let ptime = media
        .get_first_attribute_value("ptime")
        .flatten()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(20);
    let ptime_ms = match codec {
        Codec::Opus if matches!(ptime, 10 | 20 | 40 | 60) => ptime,
        Codec::Opus => 20,
        _ => (ptime.clamp(10, 60) / 10) * 10,
    };
    let direction = if media.has_attribute("sendonly") {
        Direction::SendOnly
    } else if media.has_attribute("recvonly") {
        Direction::RecvOnly
    } else if media.has_attribute("inactive") {
        Direction::Inactive
    } else {
        Direction::SendRecv
    };
    let extmap = |uri: &str| {
        media.get_attribute_values("extmap").find_map(|v| {
            let v = v?;
            let (id, rest) = v.split_once(' ')?;
            let id: u8 = id.split('/').next()?.parse().ok()?;
            (rest.split_whitespace().next() == Some(uri) && (1..=14).contains(&id)).then_some(id)
        })
    };
    let found = media
        .get_attribute_values("crypto")
        .filter_map(|v| v.and_then(crypto))
        .next();
    let srtp = srtp.decide(secure, found)?;
    let opus = if codec == Codec::Opus {
        fmtp_of(media, payload_type).map_or_else(OpusFmtp::default, OpusFmtp::parse)
    } else {
        OpusFmtp::default()
    };
    let other_media = session
        .medias
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != audio_index)
        .map(|(i, m)| (i, format!("{} 0 {} {}", m.media, m.proto, m.fmt)))
        .collect();
    Ok(Negotiated {
        codec,
        payload_type,
        ptime_ms,
        remote,
        remote_rtcp,
        telephone_event,
        srtp,
        direction,
        audio_level_id: extmap(SSRC_AUDIO_LEVEL),
        csrc_audio_level_id: extmap(CSRC_AUDIO_LEVEL),
        opus,
        other_media,
        audio_index,
        proto: media.proto.clone(),
    })
}

/// The parameters of `payload_type`'s fmtp line in `media`, if it has one.
fn fmtp_of(media: &sdp_types::Media, payload_type: u8) -> Option<&str> {
    media.get_attribute_values("fmtp").find_map(|v| {
        let (pt, params) = v?.trim().split_once(char::is_whitespace)?;
        (pt.parse::<u8>().ok()? == payload_type).then_some(params.trim())
    })
}

/// `TAG SUITE inline:KEY[|LIFETIME][|MKI:LEN]`, for the suites we take and without MKI.
fn crypto(v: &str) -> Option<(u32, SrtpSuite, KeyMaterial)> {
    let mut parts = v.split_whitespace();
    let tag = parts.next()?.parse().ok()?;
    let suite = match parts.next()? {
        "AES_CM_128_HMAC_SHA1_80" => SrtpSuite::AesCm128HmacSha1_80,
        "AES_CM_128_HMAC_SHA1_32" => SrtpSuite::AesCm128HmacSha1_32,
        _ => return None,
    };
    let key = parts.next()?.strip_prefix("inline:")?;
    let mut fields = key.split('|');
    let b64 = fields.next()?;
    // An MKI (a field with ':') is not supported by the SRTP layer.
    if fields.any(|f| f.contains(':')) {
        return None;
    }
    let bytes = base64_decode(b64)?;
    let material: KeyMaterial = bytes.try_into().ok()?;
    Some((tag, suite, material))
}

/// The answer to the offer that gave `n`, with our media at `local` and, for SRTP, our key.
pub fn answer(
    n: &Negotiated,
    local: SocketAddr,
    local_key: Option<&KeyMaterial>,
    session_id: u64,
    version: u64,
) -> String {
    let ip = local.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::new();
    let _ = write!(
        s,
        "v=0\r\no=confab {session_id} {version} IN {family} {ip}\r\ns=confab\r\nc=IN {family} {ip}\r\nt=0 0\r\n"
    );
    let total = n.other_media.len() + 1;
    for index in 0..total {
        if index != n.audio_index {
            if let Some((_, line)) = n.other_media.iter().find(|(i, _)| *i == index) {
                let _ = write!(s, "m={line}\r\n");
            }
            continue;
        }
        let _ = write!(s, "m=audio {} {} {}", local.port(), n.proto, n.payload_type);
        if let Some(te) = n.telephone_event {
            let _ = write!(s, " {}", te.payload_type);
        }
        s.push_str("\r\n");
        match n.codec {
            Codec::Opus => {
                let _ = write!(
                    s,
                    "a=rtpmap:{pt} opus/48000/2\r\na=fmtp:{pt} useinbandfec=1;stereo=0;sprop-stereo=0\r\n",
                    pt = n.payload_type
                );
            }
            c => {
                let _ = write!(s, "a=rtpmap:{} {}/8000\r\n", n.payload_type, c.name());
            }
        }
        if let Some(te) = n.telephone_event {
            let _ = write!(
                s,
                "a=rtpmap:{pt} telephone-event/{}\r\na=fmtp:{pt} 0-15\r\n",
                te.clock_rate,
                pt = te.payload_type
            );
        }
        let _ = write!(s, "a=ptime:{}\r\n", n.ptime_ms);
        if n.remote_rtcp.is_none() {
            s.push_str("a=rtcp-mux\r\n");
        } else {
            let _ = write!(s, "a=rtcp:{}\r\n", local.port() + 1);
        }
        if let (Some((tag, suite, _)), Some(key)) = (n.srtp, local_key) {
            let _ = write!(
                s,
                "a=crypto:{tag} {} inline:{}\r\n",
                suite.name(),
                base64_encode(key)
            );
        }
        if let Some(id) = n.audio_level_id {
            let _ = write!(s, "a=extmap:{id} {SSRC_AUDIO_LEVEL}\r\n");
        }
        if let Some(id) = n.csrc_audio_level_id {
            let _ = write!(s, "a=extmap:{id} {CSRC_AUDIO_LEVEL}\r\n");
        }
        let _ = write!(s, "a={}\r\n", n.direction.answer());
    }
    s
}

/// Our offer for a dial-out: every codec of `preference` (RTP/AVP, dynamic payload type 111
/// for Opus), telephone-event at 8000, RTCP on the port above `local`.
pub fn offer(local: SocketAddr, preference: &[Codec], session_id: u64) -> String {
    let ip = local.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::new();
    let _ = write!(
        s,
        "v=0\r\no=confab {session_id} 1 IN {family} {ip}\r\ns=confab\r\nc=IN {family} {ip}\r\nt=0 0\r\n"
    );
    let _ = write!(s, "m=audio {} RTP/AVP", local.port());
    for c in preference {
        let _ = write!(s, " {}", c.default_payload_type());
    }
    s.push_str(" 101\r\n");
    for c in preference {
        match c {
            Codec::Opus => s.push_str(
                "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1;stereo=0;sprop-stereo=0\r\n",
            ),
            c => {
                let _ = write!(s, "a=rtpmap:{} {}/8000\r\n", c.default_payload_type(), c.name());
            }
        }
    }
    let _ = write!(
        s,
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=rtcp:{}\r\na=sendrecv\r\n",
        local.port() + 1
    );
    s
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
#[path = "sdp_tests.rs"]
mod tests;
