//! What signalling agreed for a leg, and the configured timing of legs.

use std::net::SocketAddr;
use std::time::Duration;

use crate::media::codec::Codec;
use crate::media::opus_path::OpusFmtp;
use crate::media::srtp::SrtpKeys;

/// What signalling agreed for a leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegSpec {
    pub codec: Codec,
    /// Payload type of the codec on this leg (both directions).
    pub payload_type: u8,
    /// Outgoing packet time.
    pub ptime_ms: u32,
    /// Where the peer said it receives.
    pub remote: SocketAddr,
    /// Where the peer receives RTCP; `None` is rtcp-mux (RTCP on the RTP port both ways).
    pub remote_rtcp: Option<SocketAddr>,
    /// RFC 4733 telephone-event, if negotiated.
    pub telephone_event: Option<TelephoneEventSpec>,
    /// Extension id of the RFC 6464 client-to-mixer audio level, if negotiated.
    pub audio_level_id: Option<u8>,
    /// Extension id of the RFC 6465 mixer-to-client audio levels, if negotiated.
    pub csrc_audio_level_id: Option<u8>,
    /// SDES-SRTP keys; `None` is plain RTP.
    pub srtp: Option<SrtpKeys>,
    /// The peer may send from another host than `remote` names (it is behind a NAT that
    /// signalling did not see through): the leg latches to whoever sends first. Otherwise it
    /// takes media only from `remote`'s host, so a stranger spraying the port range is never
    /// latched, even before the peer's first packet.
    pub latch_any_source: bool,
    /// What the peer's fmtp asked of the Opus toward it (FEC, bitrate cap, DTX).
    pub opus: OpusFmtp,
}

/// The negotiated telephone-event format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEventSpec {
    pub payload_type: u8,
    /// 8000 or 48000 (linphone offers it at the Opus rate only).
    pub clock_rate: u32,
}

impl LegSpec {
    /// Plain RTP with `codec` at its default payload type, 20 ms, rtcp-mux, nothing else.
    pub fn new(codec: Codec, remote: SocketAddr) -> Self {
        LegSpec {
            codec,
            payload_type: codec.default_payload_type(),
            ptime_ms: 20,
            remote,
            remote_rtcp: None,
            telephone_event: None,
            audio_level_id: None,
            csrc_audio_level_id: None,
            srtp: None,
            latch_any_source: false,
            opus: OpusFmtp::default(),
        }
    }
}

/// Timing settings of legs (from the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegTimers {
    /// Silence of the latched source after which another source may take over.
    pub relatch_after: Duration,
    /// RFC 3550 T_min of the RTCP report interval.
    pub rtcp_interval: Duration,
    /// Every leg latches to the first source, whatever its offer said (`media.latch_any_source`).
    pub latch_any_source: bool,
    /// The participant's speech is brought toward one loudness (`media.auto_gain`).
    pub auto_gain: bool,
    /// Every participant's input is denoised from the start (`media.noise_suppression`).
    pub noise_suppression: bool,
}

impl Default for LegTimers {
    fn default() -> Self {
        LegTimers {
            relatch_after: Duration::from_secs(2),
            rtcp_interval: Duration::from_secs(5),
            latch_any_source: false,
            auto_gain: true,
            noise_suppression: false,
        }
    }
}
