//! Which of our addresses a peer is given: in SIP's Via and Contact, SDP's `o=` and `c=`, and
//! ICE candidates. A peer must never be told 0.0.0.0 or `::` (phones read `c=0.0.0.0` as hold,
//! and a Contact of 0.0.0.0 makes every in-dialog request fail).
//!
//! The rule is the same for SIP, RTP and WebRTC: the configured `advertise` address when there
//! is one (a public address in front of a NAT, a load balancer's); else the bound address when it
//! is a specific one; else, bound to a wildcard, the address of the interface that routes to the
//! peer, asked of the kernel per peer (a UDP socket connected to the peer sends nothing, and its
//! local address is the source the kernel would choose).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// The kernel's choice of our source address towards `peer`, if it has a route there.
pub fn route_source(peer: IpAddr) -> Option<IpAddr> {
    let any: SocketAddr = match peer {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).ok()?;
    // The port only has to be non-zero for connect; nothing is sent.
    socket.connect(SocketAddr::new(peer, 9)).ok()?;
    let local = socket.local_addr().ok()?.ip();
    (!local.is_unspecified()).then_some(local)
}

/// How our address is chosen for one kind of traffic (SIP or media).
#[derive(Clone, Copy, Debug)]
pub struct Advertise {
    /// The configured address (`sip.advertise`, `media.advertise`, `webrtc.advertise`).
    pub fixed: Option<IpAddr>,
    /// Where the socket is bound.
    pub bound: IpAddr,
    /// The route lookup (the kernel's in the bridge; a fixed table in tests).
    pub route: fn(IpAddr) -> Option<IpAddr>,
}

impl Advertise {
    /// Bound to `bound`, with `fixed` from the configuration.
    pub fn new(fixed: Option<IpAddr>, bound: IpAddr) -> Self {
        Advertise {
            fixed,
            bound,
            route: route_source,
        }
    }

    /// Our address as `peer` should see it. Never unspecified: with no advertise address, a
    /// wildcard bind and no route to the peer, it is the loopback address of the peer's family
    /// (a peer we have no route to cannot reach us anyway).
    pub fn for_peer(&self, peer: IpAddr) -> IpAddr {
        if let Some(ip) = self.fixed {
            return ip;
        }
        if !self.bound.is_unspecified() {
            return self.bound;
        }
        let peer = peer.to_canonical();
        if !peer.is_unspecified()
            && let Some(ip) = (self.route)(peer)
        {
            return ip;
        }
        match peer {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        }
    }

    /// `bound_addr` (a socket's own address) with its IP replaced by the one `peer` should see.
    pub fn socket_for_peer(&self, bound_addr: SocketAddr, peer: IpAddr) -> SocketAddr {
        let fixed = Advertise {
            bound: bound_addr.ip(),
            ..*self
        };
        SocketAddr::new(fixed.for_peer(peer), bound_addr.port())
    }
}

/// Whether an address may be configured as the one we advertise.
pub fn advertisable(ip: IpAddr) -> bool {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    !(ip.is_unspecified() || ip.is_multicast() || broadcast)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Two interfaces: 198.51.100.7 towards 198.51.100.0/24, 203.0.113.7 for the rest.
    fn table(peer: IpAddr) -> Option<IpAddr> {
        match peer {
            IpAddr::V4(v4) if v4.octets()[..3] == [198, 51, 100] => Some(ip("198.51.100.7")),
            IpAddr::V4(v4) if v4.is_loopback() => Some(ip("127.0.0.1")),
            IpAddr::V4(_) => Some(ip("203.0.113.7")),
            IpAddr::V6(_) => None,
        }
    }

    #[test]
    fn the_configured_address_wins_then_the_bound_one_then_the_route() {
        let fixed = Advertise {
            fixed: Some(ip("192.0.2.50")),
            bound: ip("0.0.0.0"),
            route: table,
        };
        assert_eq!(fixed.for_peer(ip("198.51.100.9")), ip("192.0.2.50"));
        let bound = Advertise {
            fixed: None,
            bound: ip("203.0.113.8"),
            route: table,
        };
        assert_eq!(bound.for_peer(ip("198.51.100.9")), ip("203.0.113.8"));
        let wildcard = Advertise {
            fixed: None,
            bound: ip("0.0.0.0"),
            route: table,
        };
        assert_eq!(wildcard.for_peer(ip("198.51.100.9")), ip("198.51.100.7"));
        assert_eq!(wildcard.for_peer(ip("192.0.2.1")), ip("203.0.113.7"));
        // A dual-stack socket's view of an IPv4 peer is routed as IPv4.
        assert_eq!(
            wildcard.for_peer(ip("::ffff:198.51.100.9")),
            ip("198.51.100.7")
        );
        // No route, or no peer address yet: never the wildcard.
        for peer in ["2001:db8::1", "0.0.0.0", "::"] {
            let got = wildcard.for_peer(ip(peer));
            assert!(
                !got.is_unspecified() && got.is_loopback(),
                "{peer} -> {got}"
            );
        }
        assert_eq!(
            wildcard.socket_for_peer("0.0.0.0:20002".parse().unwrap(), ip("192.0.2.1")),
            "203.0.113.7:20002".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn the_kernel_routes_loopback_to_loopback() {
        assert_eq!(route_source(ip("127.0.0.1")), Some(ip("127.0.0.1")));
        let wildcard = Advertise::new(None, ip("0.0.0.0"));
        assert_eq!(wildcard.for_peer(ip("127.0.0.5")), ip("127.0.0.1"));
    }

    #[test]
    fn only_a_unicast_address_may_be_advertised() {
        for bad in ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"] {
            assert!(!advertisable(ip(bad)), "{bad}");
        }
        for good in ["203.0.113.7", "2001:db8::7", "127.0.0.1"] {
            assert!(advertisable(ip(good)), "{good}");
        }
    }
}
