//! `[webrtc]`: the ICE-lite address, join tokens, handshake limits.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

/// `[webrtc]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcConfig {
    /// The one UDP address every WebRTC peer uses (ICE-lite); port 0 picks a free one.
    pub listen: SocketAddr,
    /// The address put in our ICE candidate; unset: the listen address, or with a wildcard
    /// listen address the address of the interface that routes to each browser. (`public_ip`
    /// is the older name of this key, still read.)
    #[serde(alias = "public_ip")]
    pub advertise: Option<IpAddr>,
    /// Secret that signs join tokens (hex or text); random per start when unset, so tokens
    /// do not survive a restart.
    pub token_secret: Option<String>,
    /// WebRTC handshakes one client address may have in progress at once.
    pub max_handshakes_per_address: usize,
    /// Seconds without ICE consent (STUN from the peer) before it is disconnected.
    pub consent_timeout_secs: u64,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            advertise: None,
            token_secret: None,
            max_handshakes_per_address: 32,
            consent_timeout_secs: 30,
        }
    }
}
