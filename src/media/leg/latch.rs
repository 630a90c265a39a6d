//! Symmetric RTP: which source a leg takes media from, and where it sends.
//!
//! The leg latches to the source of the first valid RTP packet and drops packets from anywhere
//! else (counted), until the latched source has been silent for `relatch_after` (hold, DTX, a
//! NAT rebinding). Before latching it sends to the address from signalling.
//!
//! Who may be latched: only a host that signalling named, unless the peer is behind a NAT that
//! signalling did not see through (`latch_any_source`, from the offer or the configuration): a
//! stranger spraying the port range is never latched, even before the peer's first packet.
//! After a quiet spell a new address takes over a plain-RTP leg only with the latched stream's
//! SSRC (under SRTP, a packet that authenticates may: it has the key). RTCP is taken from the
//! peer's host only, and only the peer's RTCP keeps a leg alive.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// What the latch says of an RTP-port datagram before it is authenticated and parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RtpSource {
    /// From the latched source, or the first from an allowed host.
    Peer,
    /// From a new address that may take over a quiet leg if the packet proves itself.
    Takeover,
    /// From a host or address the leg does not take media from.
    Foreign,
}

/// A leg's latching state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Latch {
    /// Where signalling said the peer receives (its host is where media may come from).
    signalled: SocketAddr,
    /// Any host may be latched (a peer behind an unseen NAT, or the configuration says so).
    any_source: bool,
    relatch_after: Duration,
    latched: Option<SocketAddr>,
    /// The SSRC of the last packet from the latched source.
    latched_ssrc: Option<u32>,
    /// Where the peer's RTCP comes from on a separate RTCP port.
    rtcp_latched: Option<SocketAddr>,
    /// Last RTP or RTCP from the peer (keeps the leg alive, e.g. on hold).
    last_rx: Option<Instant>,
}

impl Latch {
    pub(crate) fn new(signalled: SocketAddr, any_source: bool, relatch_after: Duration) -> Self {
        Latch {
            signalled,
            any_source,
            relatch_after,
            latched: None,
            latched_ssrc: None,
            rtcp_latched: None,
            last_rx: None,
        }
    }

    /// Signalling agreed again. A new address is a new source to latch to. An unspecified one
    /// (hold the old way, c=0.0.0.0) is no address: the latch stays, so the peer's RTCP keeps
    /// the held call alive and a stranger cannot take it over while it is quiet.
    pub(crate) fn respec(&mut self, signalled: SocketAddr, any_source: bool) {
        if signalled != self.signalled && !signalled.ip().is_unspecified() {
            self.latched = None;
            self.latched_ssrc = None;
        }
        self.signalled = signalled;
        self.any_source = any_source;
    }

    /// The peer was taken off hold: it may come back with a new stream (many phones start a
    /// new SSRC on resume), so the next source after a quiet spell may bring any SSRC.
    pub(crate) fn forget_ssrc(&mut self) {
        self.latched_ssrc = None;
    }

    pub(crate) fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    pub(crate) fn last_rx(&self) -> Option<Instant> {
        self.last_rx
    }

    /// Where our RTP goes: the latched source, else the signalled address.
    pub(crate) fn rtp_destination(&self) -> SocketAddr {
        self.latched.unwrap_or(self.signalled)
    }

    /// Where our RTCP goes on a separate RTCP port.
    pub(crate) fn rtcp_destination(&self, signalled_rtcp: Option<SocketAddr>) -> SocketAddr {
        self.rtcp_latched
            .or(signalled_rtcp)
            .unwrap_or(self.signalled)
    }

    /// Whether the latched source has been silent long enough for another to take over.
    pub(crate) fn stale(&self, now: Instant) -> bool {
        self.last_rx
            .is_none_or(|t| now.saturating_duration_since(t) >= self.relatch_after)
    }

    /// Whether `host` may be the peer before anything is latched.
    fn allowed_host(&self, host: IpAddr) -> bool {
        // Canonical: a dual-stack socket sees an IPv4 peer as ::ffff:a.b.c.d.
        let signalled = self.signalled.ip().to_canonical();
        self.any_source || signalled.is_unspecified() || signalled == host.to_canonical()
    }

    /// Judges a datagram that came to the RTP port from `from`.
    pub(crate) fn rtp_source(&self, now: Instant, from: SocketAddr) -> RtpSource {
        if !self.allowed_host(from.ip()) {
            return RtpSource::Foreign;
        }
        match self.latched {
            Some(l) if l != from => {
                if self.stale(now) {
                    RtpSource::Takeover
                } else {
                    RtpSource::Foreign
                }
            }
            _ => RtpSource::Peer,
        }
    }

    /// Whether a takeover packet with `ssrc` may take a plain-RTP leg over: only the same
    /// stream from a new address, so spraying the port range does not capture a quiet call's mix.
    pub(crate) fn takeover_ssrc_ok(&self, ssrc: Option<u32>) -> bool {
        self.latched_ssrc.is_none() || ssrc == self.latched_ssrc
    }

    /// An RTP packet from `from` was accepted: it is the peer.
    pub(crate) fn on_rtp(&mut self, now: Instant, from: SocketAddr, ssrc: u32) {
        // A takeover to another host leaves the old host's RTCP source behind.
        if self
            .rtcp_latched
            .is_some_and(|r| r.ip().to_canonical() != from.ip().to_canonical())
        {
            self.rtcp_latched = None;
        }
        self.latched = Some(from);
        self.latched_ssrc = Some(ssrc);
        self.last_rx = Some(now);
    }

    /// RTCP from the peer was accepted (it keeps the leg alive).
    pub(crate) fn on_peer_rtcp(&mut self, now: Instant) {
        self.last_rx = Some(now);
    }

    /// Judges a datagram that came to the separate RTCP port: whether it is the peer's.
    pub(crate) fn rtcp_port_source(&self, now: Instant, from: SocketAddr) -> bool {
        if self.rtcp_latched.is_some_and(|l| l != from) && !self.stale(now) {
            return false;
        }
        // RTCP is taken from the peer's host only: the latched RTP source's, or before that the
        // signalled one (any, for a peer behind a NAT). A stranger's reports would take the
        // RTCP latch, and keep a dead call alive.
        match self.latched {
            Some(l) => l.ip().to_canonical() == from.ip().to_canonical(),
            None => self.allowed_host(from.ip()),
        }
    }

    /// Whether a plain report that passed [`Latch::rtcp_port_source`] may be the peer's: from
    /// the RTCP source already taken, or naming the latched stream's SSRC as its sender. The
    /// peer's host may be a NAT that others share (a home's, a carrier's): one of them
    /// reporting from another port must neither keep a dead call alive nor be sent our
    /// reports.
    pub(crate) fn rtcp_sender_ok(&self, from: SocketAddr, sender_ssrc: Option<u32>) -> bool {
        self.rtcp_latched == Some(from) || self.takeover_ssrc_ok(sender_ssrc)
    }

    /// RTCP from `from` on the RTCP port was accepted. For a peer behind a NAT (any source
    /// latched) it becomes the RTCP source only once RTP has latched and named the peer's
    /// stream: before that, anyone behind the NAT (or anywhere) could take it and be sent our
    /// reports while the peer's own were refused. A peer at its signalled host may report
    /// first (a listen-only phone).
    pub(crate) fn on_rtcp_port(&mut self, from: SocketAddr) {
        if self.latched.is_some() || !self.any_source {
            self.rtcp_latched = Some(from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const RELATCH: Duration = Duration::from_secs(2);

    #[test]
    fn strangers_are_refused_before_and_after_the_latch() {
        let t0 = Instant::now();
        let mut latch = Latch::new(addr("192.0.2.10:4000"), false, RELATCH);
        assert_eq!(
            latch.rtp_source(t0, addr("198.51.100.1:4000")),
            RtpSource::Foreign
        );
        assert_eq!(
            latch.rtp_source(t0, addr("192.0.2.10:5000")),
            RtpSource::Peer
        );
        latch.on_rtp(t0, addr("192.0.2.10:5000"), 7);
        assert_eq!(latch.rtp_destination(), addr("192.0.2.10:5000"));
        // Another port of the same host while the peer talks: refused.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(
            latch.rtp_source(t1, addr("192.0.2.10:5002")),
            RtpSource::Foreign
        );
        // A stranger after a long silence is still refused: its host was never signalled.
        let t2 = t0 + Duration::from_secs(60);
        assert_eq!(
            latch.rtp_source(t2, addr("198.51.100.1:4000")),
            RtpSource::Foreign
        );
        // The peer's host on a new port after the silence may take over with the same stream.
        assert_eq!(
            latch.rtp_source(t2, addr("192.0.2.10:5002")),
            RtpSource::Takeover
        );
        assert!(latch.takeover_ssrc_ok(Some(7)));
        assert!(!latch.takeover_ssrc_ok(Some(8)));
        latch.forget_ssrc();
        assert!(latch.takeover_ssrc_ok(Some(8)));
    }

    #[test]
    fn any_source_latches_the_first_sender() {
        let t0 = Instant::now();
        let mut latch = Latch::new(addr("10.0.0.5:4000"), true, RELATCH);
        assert_eq!(
            latch.rtp_source(t0, addr("203.0.113.9:31000")),
            RtpSource::Peer
        );
        latch.on_rtp(t0, addr("203.0.113.9:31000"), 1);
        assert!(latch.rtcp_port_source(t0, addr("203.0.113.9:31001")));
        assert!(!latch.rtcp_port_source(t0, addr("203.0.113.10:31001")));
    }

    #[test]
    fn hold_with_an_unspecified_address_keeps_the_latch() {
        let t0 = Instant::now();
        let mut latch = Latch::new(addr("192.0.2.10:4000"), false, RELATCH);
        latch.on_rtp(t0, addr("192.0.2.10:4000"), 7);
        latch.respec(addr("0.0.0.0:4000"), false);
        assert_eq!(latch.latched(), Some(addr("192.0.2.10:4000")));
        latch.respec(addr("192.0.2.11:4000"), false);
        assert_eq!(latch.latched(), None);
        assert_eq!(latch.rtp_destination(), addr("192.0.2.11:4000"));
    }

    #[test]
    fn rtcp_port_latches_and_relatches_after_silence() {
        let t0 = Instant::now();
        let mut latch = Latch::new(addr("192.0.2.10:4000"), false, RELATCH);
        assert!(latch.rtcp_port_source(t0, addr("192.0.2.10:4001")));
        latch.on_rtcp_port(addr("192.0.2.10:4001"));
        latch.on_peer_rtcp(t0);
        assert_eq!(latch.rtcp_destination(None), addr("192.0.2.10:4001"));
        assert!(!latch.rtcp_port_source(t0, addr("192.0.2.10:4003")));
        assert!(latch.rtcp_port_source(t0 + RELATCH, addr("192.0.2.10:4003")));
        // A dual-stack socket's view of the same IPv4 host is the same host.
        assert!(latch.rtcp_port_source(t0 + RELATCH, addr("[::ffff:192.0.2.10]:4003")));
    }

    #[test]
    fn a_new_rtcp_source_must_name_the_latched_stream() {
        let t0 = Instant::now();
        let mut latch = Latch::new(addr("10.0.0.5:4000"), true, RELATCH);
        latch.on_rtp(t0, addr("203.0.113.9:31000"), 7);
        // Another port of the NAT's address, another stream: not the peer's reports.
        assert!(!latch.rtcp_sender_ok(addr("203.0.113.9:40001"), Some(8)));
        assert!(!latch.rtcp_sender_ok(addr("203.0.113.9:40001"), None));
        assert!(latch.rtcp_sender_ok(addr("203.0.113.9:31001"), Some(7)));
        latch.on_rtcp_port(addr("203.0.113.9:31001"));
        // The RTCP source taken may report about anything (a new stream after a hold).
        assert!(latch.rtcp_sender_ok(addr("203.0.113.9:31001"), Some(9)));
        // Off hold, a new stream may come from anywhere the latch allows.
        latch.forget_ssrc();
        assert!(latch.rtcp_sender_ok(addr("203.0.113.9:40001"), Some(8)));
    }
}
