//! `[media]`: RTP ports, latching, advertised address, the SRTP policy.

use std::net::IpAddr;

use serde::Deserialize;

/// `[media]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Address RTP sockets bind to.
    pub bind: IpAddr,
    /// Lowest RTP port.
    pub rtp_port_min: u16,
    /// Highest RTP port.
    pub rtp_port_max: u16,
    /// Seconds without RTP or RTCP after which a participant is disconnected (`media-timeout`).
    pub timeout_secs: u64,
    /// Milliseconds the latched RTP source must be silent before another may take over.
    pub relatch_after_ms: u64,
    /// Latch every leg to whoever sends first, not only to the host its offer names (for a
    /// gateway whose media comes from another address than its SDP says).
    pub latch_any_source: bool,
    /// The address put in SDP (`o=`, `c=`); unset: the bind address, or with a wildcard bind
    /// the address of the interface that routes to each peer.
    pub advertise: Option<IpAddr>,
    /// SDES-SRTP on SIP legs: `off` (plain RTP only; an offer that insists on SRTP gets 488),
    /// `optional` (SRTP when the caller offers it) or `required` (an offer without it gets 488).
    pub srtp: SrtpPolicy,
    /// Offer and accept SDES keys over SIP on UDP or TCP, where anyone who can read the
    /// signalling reads the keys (off: only over TLS).
    pub sdes_over_cleartext: bool,
    /// Automatic gain control on every participant's speech (toward -26 dBov, learnt only from
    /// speech, never from noise), so quiet and loud talkers meet in the mix at one loudness.
    pub auto_gain: bool,
    /// RNNoise on every participant's decoded audio (`on`) or on none unless switched on for
    /// one through the API (`off`).
    pub noise_suppression: NoiseSuppression,
}

/// `media.noise_suppression`: whether every leg's input is denoised from the start.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NoiseSuppression {
    /// Only participants switched on through the API.
    #[default]
    Off,
    /// Every participant (each can still be switched off through the API).
    On,
}

impl std::str::FromStr for NoiseSuppression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(NoiseSuppression::Off),
            "on" => Ok(NoiseSuppression::On),
            other => Err(format!("`{other}` is not one of off, on")),
        }
    }
}

/// `media.srtp`: whether SIP legs use SDES-SRTP.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SrtpPolicy {
    Off,
    #[default]
    Optional,
    Required,
}

impl SrtpPolicy {
    /// The name in the configuration, the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            SrtpPolicy::Off => "off",
            SrtpPolicy::Optional => "optional",
            SrtpPolicy::Required => "required",
        }
    }
}

impl std::str::FromStr for SrtpPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(SrtpPolicy::Off),
            "optional" => Ok(SrtpPolicy::Optional),
            "required" => Ok(SrtpPolicy::Required),
            other => Err(format!("`{other}` is not one of off, optional, required")),
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            rtp_port_min: 20000,
            rtp_port_max: 29999,
            timeout_secs: 30,
            relatch_after_ms: 2000,
            latch_any_source: false,
            advertise: None,
            srtp: SrtpPolicy::Optional,
            sdes_over_cleartext: false,
            auto_gain: true,
            noise_suppression: NoiseSuppression::Off,
        }
    }
}
