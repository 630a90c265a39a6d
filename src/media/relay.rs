//! A leg whose packets pass through another part of the process instead of a socket of its own:
//! WebRTC peers share one UDP port, and their ICE, DTLS and SRTP live in the WebRTC driver
//! thread. The driver hands the leg plain RTP (already decrypted) and takes the leg's plain RTP
//! to protect and send.
//!
//! Both directions are bounded channels of fixed-size packets, so the mixer's side neither
//! allocates nor blocks: a full queue drops the packet (counted), as a full socket buffer would.
//! The driver says why it let a peer go (DELETE, ICE timeout, DTLS failure) in `closed` before
//! it drops its end; the leg finds it when the channel reports the other end gone. The mixer
//! lets the driver know a tick wrote packets through `doorbell`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};

use crate::conference::DisconnectReason;

/// Largest payload carried (an RTP payload from a browser is far smaller).
pub const RELAY_PAYLOAD: usize = 1200;
/// Packets queued each way per peer (a second and more of 20 ms audio).
const RELAY_QUEUE: usize = 64;

/// One RTP packet without its transport.
#[derive(Clone, Copy)]
pub struct RelayPacket {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Inbound: the RFC 6464 level the client sent (-dBov), if any.
    pub audio_level: Option<u8>,
    /// Outbound: the talkers in the mix.
    pub csrc_count: u8,
    pub csrcs: [u32; 15],
    pub len: u16,
    pub payload: [u8; RELAY_PAYLOAD],
}

impl RelayPacket {
    pub fn new(payload_type: u8, sequence: u16, timestamp: u32, ssrc: u32) -> Self {
        RelayPacket {
            payload_type,
            marker: false,
            sequence,
            timestamp,
            ssrc,
            audio_level: None,
            csrc_count: 0,
            csrcs: [0; 15],
            len: 0,
            payload: [0; RELAY_PAYLOAD],
        }
    }

    /// Copies `payload` in; false if it is too large.
    pub fn set_payload(&mut self, payload: &[u8]) -> bool {
        if payload.len() > RELAY_PAYLOAD {
            return false;
        }
        self.payload[..payload.len()].copy_from_slice(payload);
        self.len = payload.len() as u16;
        true
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload[..usize::from(self.len)]
    }

    pub fn csrcs(&self) -> &[u32] {
        &self.csrcs[..usize::from(self.csrc_count).min(15)]
    }
}

/// Wakes the driver when the mixer queued packets (tokio's Notify keeps one permit).
pub type Doorbell = Arc<tokio::sync::Notify>;

/// The leg's end.
pub struct RelayPort {
    inbound: Receiver<RelayPacket>,
    outbound: SyncSender<RelayPacket>,
    closed: Arc<AtomicU8>,
    loss: Arc<AtomicU16>,
    doorbell: Doorbell,
}

/// The driver's end.
pub struct RelayPeer {
    pub inbound: SyncSender<RelayPacket>,
    pub outbound: Receiver<RelayPacket>,
    closed: Arc<AtomicU8>,
    /// The peer's loss of our stream from its receiver reports, in hundredths of a percent
    /// plus one (0: no report yet).
    loss: Arc<AtomicU16>,
}

/// A connected pair of ends.
pub fn relay_pair(doorbell: Doorbell) -> (RelayPort, RelayPeer) {
    let (in_tx, in_rx) = sync_channel(RELAY_QUEUE);
    let (out_tx, out_rx) = sync_channel(RELAY_QUEUE);
    let closed = Arc::new(AtomicU8::new(0));
    let loss = Arc::new(AtomicU16::new(0));
    (
        RelayPort {
            inbound: in_rx,
            outbound: out_tx,
            closed: closed.clone(),
            loss: loss.clone(),
            doorbell,
        },
        RelayPeer {
            inbound: in_tx,
            outbound: out_rx,
            closed,
            loss,
        },
    )
}

/// Close reasons as they cross the atomic (0 is "open").
const CLOSE_REASONS: [DisconnectReason; 5] = [
    DisconnectReason::Hangup,
    DisconnectReason::IceTimeout,
    DisconnectReason::DtlsFailed,
    DisconnectReason::MediaTimeout,
    DisconnectReason::InternalError,
];

impl RelayPort {
    /// The next packet from the peer, into `into` (no allocation: the packet is copied).
    pub fn receive(&self, into: &mut RelayPacket) -> Option<Result<(), DisconnectReason>> {
        match self.inbound.try_recv() {
            Ok(p) => {
                *into = p;
                Some(Ok(()))
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(self.close_reason())),
        }
    }

    fn close_reason(&self) -> DisconnectReason {
        let code = usize::from(self.closed.load(Ordering::Acquire));
        code.checked_sub(1)
            .and_then(|i| CLOSE_REASONS.get(i).copied())
            .unwrap_or(DisconnectReason::Hangup)
    }

    /// Queues a packet for the peer; false when the queue is full or the peer is gone.
    pub fn send(&self, packet: RelayPacket) -> bool {
        match self.outbound.try_send(packet) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// The loss (percent) the peer last reported of our stream, if it has.
    pub fn reported_loss(&self) -> Option<f32> {
        let code = self.loss.load(Ordering::Relaxed);
        code.checked_sub(1).map(|h| f32::from(h) / 100.0)
    }

    /// Tells the driver packets are waiting.
    pub fn ring(&self) {
        self.doorbell.notify_one();
    }
}

impl RelayPeer {
    /// The fraction (0 to 1) of our stream the peer reported lost (str0m's egress stats).
    pub fn report_loss(&self, fraction: f32) {
        if fraction.is_finite() {
            let hundredths = (fraction.clamp(0.0, 1.0) * 10_000.0).round() as u16;
            self.loss.store(hundredths + 1, Ordering::Relaxed);
        }
    }

    /// Records why the peer goes; the leg sees it once this end is dropped.
    pub fn close(&self, reason: DisconnectReason) {
        let code = CLOSE_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(1, |i| i as u8 + 1);
        self.closed.store(code, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_cross_and_the_close_reason_arrives() {
        let doorbell: Doorbell = Arc::default();
        let (port, peer) = relay_pair(doorbell);
        let mut p = RelayPacket::new(111, 7, 960, 42);
        assert!(p.set_payload(&[1, 2, 3]));
        assert!(peer.inbound.try_send(p).is_ok());
        let mut got = RelayPacket::new(0, 0, 0, 0);
        assert!(matches!(port.receive(&mut got), Some(Ok(()))));
        assert_eq!((got.sequence, got.payload()), (7, &[1u8, 2, 3][..]));
        assert!(port.receive(&mut got).is_none());
        assert!(port.send(p));
        assert_eq!(
            peer.outbound.try_recv().map(|p| p.timestamp).ok(),
            Some(960)
        );
        peer.close(DisconnectReason::IceTimeout);
        drop(peer);
        assert!(matches!(
            port.receive(&mut got),
            Some(Err(DisconnectReason::IceTimeout))
        ));
        assert!(!port.send(p));
    }

    #[test]
    fn the_peers_loss_report_crosses() {
        let (port, peer) = relay_pair(Arc::default());
        assert_eq!(port.reported_loss(), None);
        peer.report_loss(0.05);
        assert_eq!(port.reported_loss(), Some(5.0));
        peer.report_loss(f32::NAN);
        assert_eq!(port.reported_loss(), Some(5.0), "nonsense is not taken");
        peer.report_loss(7.0);
        assert_eq!(port.reported_loss(), Some(100.0));
        peer.report_loss(0.0);
        assert_eq!(port.reported_loss(), Some(0.0));
    }

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        let (port, _peer) = relay_pair(Arc::default());
        let p = RelayPacket::new(0, 0, 0, 0);
        let sent = (0..RELAY_QUEUE + 5).filter(|_| port.send(p)).count();
        assert_eq!(sent, RELAY_QUEUE);
    }

    #[test]
    fn oversized_payload_refused() {
        let mut p = RelayPacket::new(0, 0, 0, 0);
        assert!(!p.set_payload(&[0; RELAY_PAYLOAD + 1]));
        assert!(p.payload().is_empty());
    }
}
