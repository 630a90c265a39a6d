//! What tells one server transaction from another (RFC 3261 17.2.3), made safe for answers
//! that carry secrets.

use std::net::SocketAddr;

use super::Peer;
use crate::sip::message::Message;

/// An INVITE (or other) server transaction, told apart as RFC 3261 17.2.3 does and made safe:
/// by the branch and the top Via's sent-by as the client wrote them, and by the source: over
/// UDP its address and port (a retransmission comes from where the request came, and another
/// program on the same host that learnt the branch must not redirect the answer, which may
/// carry our SDES key), over TCP or TLS its IP only, so the same client's CANCEL or
/// retransmission on a new connection finds its transaction. What came over TLS matches only
/// over TLS, so an answer given in secret is never repeated in the clear.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TransactionKey {
    branch: String,
    /// `host[:port]` of the top Via, its case folded (hosts compare without case).
    sent_by: String,
    /// The source's address; port 0 for a connection (TCP or TLS).
    source: SocketAddr,
    secure: bool,
}

impl TransactionKey {
    /// The key of a request from `peer`; none without a branch or a Via.
    pub(crate) fn of(msg: &Message, peer: Peer) -> Option<Self> {
        let via = msg.header_values("Via").next()?;
        let sent_by = via.split(';').next()?.split_whitespace().last()?;
        Some(TransactionKey {
            branch: msg.branch()?.to_owned(),
            sent_by: sent_by.to_ascii_lowercase(),
            source: SocketAddr::new(
                peer.addr.ip().to_canonical(),
                if peer.connection.is_some() {
                    0
                } else {
                    peer.addr.port()
                },
            ),
            secure: peer.secure(),
        })
    }

    /// This key with the source's port left out: how a UDP CANCEL finds its INVITE when it
    /// comes from another port of the same host (RFC 3261 9.1 has it sent like the INVITE, but
    /// an SBC cluster behind one address may send it from another socket). Only CANCEL is
    /// matched so: its answers are a 200 to itself and a 487 to the INVITE's own source, so a
    /// neighbour that learnt the branch can at most end a call still ringing, never read an
    /// answer.
    pub(crate) fn any_port(&self) -> Self {
        TransactionKey {
            source: SocketAddr::new(self.source.ip(), 0),
            ..self.clone()
        }
    }
}
