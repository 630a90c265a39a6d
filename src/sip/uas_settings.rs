//! The call core's settings: addresses (what we advertise to each peer, over which transport),
//! limits, and the SRTP policy as it applies to a peer's transport.

use std::net::{IpAddr, SocketAddr};

use super::Peer;
use crate::addr::Advertise;
use crate::config::SrtpPolicy;
use crate::media::codec::Codec;
use crate::sip::message::Message;
use crate::sip::sdp::SrtpRule;

/// Settings of the dial-in side.
#[derive(Clone, Debug)]
pub struct UasSettings {
    /// Our SIP address (Contact, Via of our requests).
    pub local: SocketAddr,
    pub trusted: Vec<crate::config::Network>,
    pub access_user: String,
    pub codecs: Vec<Codec>,
    /// Where dial-outs go (`sip:host:port`); none: straight to the target.
    pub outbound_proxy: Option<String>,
    /// The SIP dispatcher in front of the nodes: a meeting this node does not have is sent
    /// there (302, or REFER from the attendant); none: 404.
    pub dispatcher: Option<SocketAddr>,
    pub max_calls: usize,
    /// New INVITEs accepted per second from one caller behind a trusted source (ten times that
    /// from the source), or from one address outside `trusted`; more get 503.
    pub invites_per_second: u32,
    /// The address put in our Via and Contact (`sip.advertise`); unset: the bound address, or
    /// with a wildcard bind the interface's towards the peer (see `crate::addr`).
    pub advertise: Option<IpAddr>,
    /// The same for SDP's `o=` and `c=` (`media.advertise`).
    pub media_advertise: Option<IpAddr>,
    /// The route lookup behind both (the kernel's; a table in tests).
    pub route: fn(IpAddr) -> Option<IpAddr>,
    /// SIP over TLS, when it is on (the shell binds it and puts the bound address here).
    pub tls: Option<TlsListener>,
    /// `media.srtp`.
    pub srtp: SrtpPolicy,
    /// `media.sdes_over_cleartext`: SDES keys may travel over SIP on UDP or TCP.
    pub sdes_over_cleartext: bool,
    /// Conferences' own SRTP policies, over `srtp` for calls to them (set through the API).
    pub conference_srtp: crate::sip::conference_srtp::ConferenceSrtp,
    /// Digest sign-in of callers from outside `trusted` (`[[sip.users]]`; none: 403).
    pub auth: super::AuthSettings,
    /// Our answers to trunks' digest challenges on dial-outs (`[[sip.credentials]]`).
    pub credentials: Vec<crate::config::TrunkCredentials>,
    /// The meetings a draining node still takes callers for.
    pub kept_while_draining: KeptMeetings,
    /// `[presence]`: where and for how long participants are published (none: off). Its
    /// `local` is filled in by the shell from the bound socket.
    pub presence: Option<crate::sip::presence::PresenceSettings>,
}

/// The meetings a draining node still takes new callers for: those it runs under a lease.
/// With several nodes, their lease points here and every other node sends their latecomers
/// here, so refusing them would leave those callers nowhere until the meeting ends. No new
/// meeting starts on a draining node. Alone (no placement): none.
#[derive(Clone, Default)]
pub struct KeptMeetings(Option<std::sync::Arc<KeepsMeeting>>);

/// Whether a meeting is one this node runs.
type KeepsMeeting = dyn Fn(&str) -> bool + Send + Sync;

impl KeptMeetings {
    pub fn new(keeps: impl Fn(&str) -> bool + Send + Sync + 'static) -> KeptMeetings {
        KeptMeetings(Some(std::sync::Arc::new(keeps)))
    }

    /// Whether a draining node takes a new caller for `meeting`.
    pub fn keeps(&self, meeting: &str) -> bool {
        self.0.as_ref().is_some_and(|keeps| keeps(meeting))
    }
}

impl std::fmt::Debug for KeptMeetings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "KeptMeetings(placement)"
        } else {
            "KeptMeetings(none)"
        })
    }
}

/// Where SIP over TLS listens, and with what certificate.
#[derive(Clone, Debug)]
pub struct TlsListener {
    pub listen: SocketAddr,
    pub config: std::sync::Arc<rustls::ServerConfig>,
    /// What peers we dial over TLS must prove (`sip.tls_ca`); none: no dial-out over TLS.
    pub client: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl UasSettings {
    /// Our SIP address as `peer` should see it (Via, Contact): never a wildcard; the TLS
    /// listener's for a peer on TLS.
    pub(crate) fn sip_addr(&self, peer: &Peer) -> SocketAddr {
        match &self.tls {
            Some(tls) if peer.secure() => self.advertised(tls.listen, peer.addr.ip()),
            _ => self.advertised(self.local, peer.addr.ip()),
        }
    }

    /// Our listening socket `bound` as `peer` should see it.
    fn advertised(&self, bound: SocketAddr, peer: IpAddr) -> SocketAddr {
        Advertise {
            fixed: self.advertise,
            bound: bound.ip(),
            route: self.route,
        }
        .socket_for_peer(bound, peer)
    }

    /// Our Contact for a dialog with `peer`, on the transport it came by (RFC 3261 8.1.1.8):
    /// over TLS the TLS port with `transport=tls` (a `sips:` URI when the request was one),
    /// over TCP `transport=tcp`, so the far end's requests come back the same way.
    pub(crate) fn contact(&self, peer: &Peer, sips: bool) -> String {
        let addr = self.sip_addr(peer);
        match peer.connection {
            Some(_) if peer.secure() => {
                let scheme = if sips { "sips" } else { "sip" };
                format!("<{scheme}:confab@{addr};transport=tls>")
            }
            Some(_) => format!("<sip:confab@{addr};transport=tcp>"),
            None => format!("<sip:confab@{addr}>"),
        }
    }

    /// What SDES-SRTP answers may do for an offer from `peer` to `meeting` (the Request-URI's
    /// user: a conference's own policy applies when it names one, else `media.srtp`).
    pub(crate) fn srtp_rule(&self, peer: &Peer, meeting: &str, request: &Message) -> SrtpRule {
        let policy = self.conference_srtp.policy(meeting, self.srtp);
        self.srtp_rule_under(peer.secure() && request.every_via_secure(), policy)
    }

    /// The SRTP rule under `policy` when the path the keys would travel is `secure`.
    pub(crate) fn srtp_rule_under(&self, secure: bool, policy: SrtpPolicy) -> SrtpRule {
        SrtpRule {
            policy,
            keys_may_travel: secure || self.sdes_over_cleartext,
        }
    }

    /// Our media socket `bound` as a peer should see it in SDP: routed towards the peer's media
    /// address `remote`, or its signalling address `signalling` while it has given none.
    pub(crate) fn media_addr(
        &self,
        bound: SocketAddr,
        remote: SocketAddr,
        signalling: IpAddr,
    ) -> SocketAddr {
        let peer = if remote.ip().is_unspecified() {
            signalling
        } else {
            remote.ip()
        };
        Advertise {
            fixed: self.media_advertise,
            bound: bound.ip(),
            route: self.route,
        }
        .socket_for_peer(bound, peer)
    }
}
