//! What the dial-in core asks the engine (a caller to join a meeting) and what it is told.

use std::net::{IpAddr, SocketAddr};

use crate::conference::ParticipantId;
use crate::media::srtp::KeyMaterial;
use crate::sip::sdp::Negotiated;

/// A call's handle in join requests and results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallRef(pub u64);

/// A caller asking to join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    pub call: CallRef,
    pub meeting: String,
    pub display_name: String,
    pub uri: String,
    pub negotiated: Negotiated,
    /// Our SDES key when the leg is secured.
    pub local_key: Option<KeyMaterial>,
    /// The caller's address (the attendant limits failed attempts per source).
    pub source: IpAddr,
    /// The identity the gateway asserts (P-Asserted-Identity), if any (an empty one is none).
    pub asserted_identity: Option<String>,
    /// The caller's User-Agent and the INVITE's source, for the call record.
    pub origin: crate::store::Origin,
    /// The pass another node's attendant gave the caller (the Request-URI's `confab-pass`,
    /// unchecked here: see [`crate::sip::hand_off`]).
    pub pass: Option<String>,
}

impl JoinRequest {
    /// Who is calling, as the failure limiter and the INVITE flood limit count callers.
    pub(crate) fn caller_key(&self) -> String {
        caller_of(self.source, self.asserted_identity.as_deref(), &self.uri)
    }
}

/// The key of a caller from a trusted source (a gateway or proxy): the caller is who it says is
/// calling, the asserted identity, else the From URI.
pub(super) fn caller_of(source: IpAddr, asserted_identity: Option<&str>, uri: &str) -> String {
    crate::conference::limiter::caller_key(source, asserted_identity.or(Some(uri)))
}

/// The engine's answer to a join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinResult {
    Joined {
        participant: ParticipantId,
        local: SocketAddr,
    },
    NoConference,
    Locked,
    Full,
    Ended,
    Unavailable,
    /// Too many failed attendant attempts from this source.
    Forbidden,
    /// The conference does not take this caller (not authenticated, not an attendee).
    NotAllowed,
    /// Another node runs the meeting: answered 302 to its SIP address (`host:port`).
    Moved {
        to: String,
    },
}
