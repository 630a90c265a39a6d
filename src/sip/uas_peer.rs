//! Where a SIP message came from or goes to: an address, and the connection (TCP or TLS)
//! when it travels on one.

use std::net::SocketAddr;

/// Where a message came from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: SocketAddr,
    /// `None`: UDP; `Some(n)`: connection `n`, over TLS when `n` has [`Peer::TLS`] set.
    pub connection: Option<u64>,
}

impl Peer {
    /// The bit that marks a connection id as a TLS connection's (TCP ids never reach it).
    pub const TLS: u64 = 1 << 63;

    pub(super) fn reliable(&self) -> bool {
        self.connection.is_some()
    }

    /// Whether what is said to this peer is secret from the network (SIP over TLS).
    pub(crate) fn secure(&self) -> bool {
        self.connection.is_some_and(|id| id & Self::TLS != 0)
    }

    /// The transport's name in a Via header.
    pub(crate) fn via_transport(&self) -> &'static str {
        match self.connection {
            None => "UDP",
            Some(_) if self.secure() => "TLS",
            Some(_) => "TCP",
        }
    }
}
