//! Where the generator's own legs live when the bridge is on another host: the address its
//! sockets are bound to, the address its offers name for its media (a NAT's public address, say),
//! and the bridge's media host when its answers name one the generator cannot reach.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use anyhow::{Context, anyhow};

/// The generator's addresses for one run, resolved (`Local::resolve`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    /// What the legs' and the SIP client's sockets are bound to.
    pub bind: IpAddr,
    /// Our address as we name it: in SDP `o=`/`c=` (unless `media` says otherwise), Via and
    /// Contact. The bound address, or with a wildcard bind the one that routes to the bridge.
    pub own: IpAddr,
    /// The address SDP offers name for our media.
    pub media: IpAddr,
    /// Send the bridge's media here instead of the host its answers name (the port stays).
    pub bridge_media: Option<IpAddr>,
}

impl Default for Local {
    fn default() -> Self {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Local {
            bind: lo,
            own: lo,
            media: lo,
            bridge_media: None,
        }
    }
}

impl Local {
    /// From the options: `bind` (none: the address that routes to `bridge`), `media` (none:
    /// our own address) and `bridge_media`.
    pub fn resolve(
        bridge: IpAddr,
        bind: Option<IpAddr>,
        media: Option<IpAddr>,
        bridge_media: Option<IpAddr>,
    ) -> anyhow::Result<Self> {
        let bind = match bind {
            Some(ip) => ip,
            None => route_to(bridge)?,
        };
        if bind.is_multicast() {
            return Err(anyhow!("--bind {bind}: not a unicast address"));
        }
        let own = if bind.is_unspecified() {
            route_to(bridge)?
        } else {
            bind
        };
        let media = media.unwrap_or(own);
        if media.is_unspecified() || media.is_multicast() {
            return Err(anyhow!(
                "--media-advertise {media}: an address the bridge can send to"
            ));
        }
        if let Some(ip) = bridge_media
            && (ip.is_unspecified() || ip.is_multicast())
        {
            return Err(anyhow!(
                "--bridge-media {ip}: an address media can be sent to"
            ));
        }
        Ok(Local {
            bind,
            own,
            media,
            bridge_media,
        })
    }

    /// A UDP socket on our bind address, any port.
    pub fn udp(&self) -> anyhow::Result<UdpSocket> {
        UdpSocket::bind(SocketAddr::new(self.bind, 0))
            .with_context(|| format!("bind a UDP socket on {}", self.bind))
    }

    /// Where to send the bridge's media for an answer that named `answered`.
    pub fn bridge_media(&self, answered: SocketAddr) -> SocketAddr {
        match self.bridge_media {
            Some(ip) => SocketAddr::new(ip, answered.port()),
            None => answered,
        }
    }
}

/// The local address the kernel picks to reach `dest` (a connected UDP socket sends nothing).
pub fn route_to(dest: IpAddr) -> anyhow::Result<IpAddr> {
    let any: IpAddr = if dest.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0))?;
    socket
        .connect(SocketAddr::new(dest, 9))
        .with_context(|| format!("no route to {dest}"))?;
    Ok(socket.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_bridges_are_reached_from_loopback() {
        let l = Local::resolve("127.0.0.1".parse().unwrap(), None, None, None).unwrap();
        assert_eq!(l, Local::default());
        assert!(l.udp().unwrap().local_addr().unwrap().ip().is_loopback());
    }

    #[test]
    fn an_ipv6_bridge_is_reached_from_ipv6() {
        let lo6: IpAddr = "::1".parse().unwrap();
        let l = Local::resolve(lo6, None, None, None).unwrap();
        assert_eq!((l.bind, l.own, l.media), (lo6, lo6, lo6));
        assert_eq!(l.udp().unwrap().local_addr().unwrap().ip(), lo6);
        // The API over IPv4, SIP and media over IPv6.
        let l = Local::resolve("127.0.0.1".parse().unwrap(), Some(lo6), None, None).unwrap();
        assert_eq!(l.own, lo6);
    }

    #[test]
    fn a_wildcard_bind_names_the_routed_address_and_media_can_be_advertised() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let public: IpAddr = "203.0.113.1".parse().unwrap();
        let l = Local::resolve(lo, Some("0.0.0.0".parse().unwrap()), Some(public), None).unwrap();
        assert_eq!(
            (l.bind.is_unspecified(), l.own, l.media),
            (true, lo, public)
        );
        assert!(Local::resolve(lo, None, Some("0.0.0.0".parse().unwrap()), None).is_err());
        assert!(Local::resolve(lo, Some("224.0.0.1".parse().unwrap()), None, None).is_err());
    }

    #[test]
    fn the_bridges_media_host_can_be_replaced_keeping_the_port() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let answered: SocketAddr = "192.0.2.7:20002".parse().unwrap();
        let keep = Local::resolve(lo, None, None, None).unwrap();
        assert_eq!(keep.bridge_media(answered), answered);
        let replace = Local::resolve(lo, None, None, Some("198.18.0.10".parse().unwrap())).unwrap();
        assert_eq!(
            replace.bridge_media(answered),
            "198.18.0.10:20002".parse::<SocketAddr>().unwrap()
        );
    }
}
