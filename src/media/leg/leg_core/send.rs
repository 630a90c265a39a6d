//! What the leg sends: its own encoding of the mix, a group's shared packets, and RTCP reports,
//! written (and sealed, under SRTP) into a small outbox that the I/O layer drains.
//!
//! The outbox is fixed at the leg's creation and never grows: a tick writes at most two audio
//! packets (10 ms ptime) and one report, and the I/O layer drains it after every call. Should it
//! be full anyway, the packet is dropped and counted, as a full socket buffer would drop it.

use std::net::SocketAddr;
use std::time::Instant;

use super::{LegCore, Route};
use crate::media::leg::RELAY_SOURCE;
use crate::media::leg::secure::Kind;
use crate::media::relay::RelayPacket;
use crate::media::rtcp::Sent;
use crate::media::rtp::{self, MAX_PACKET, Outgoing};

/// Packets that may wait in the outbox.
const OUTBOX_SLOTS: usize = 4;
/// Room for the largest packet we write with SRTP's tag (and SRTCP's index).
const SLOT: usize = MAX_PACKET + 32;
/// Largest RTCP report we write.
const RTCP_BUFFER: usize = 256;
/// CSRCs an RTP header can name.
const MAX_CSRCS: usize = 15;

/// A packet for the I/O layer to send.
pub enum Transmit<'a> {
    /// Bytes from the leg's RTP socket to `to` (from its RTCP socket when `rtcp_port`).
    Datagram {
        to: SocketAddr,
        rtcp_port: bool,
        data: &'a [u8],
    },
    /// A packet for the WebRTC driver to protect and send.
    Relay(&'a RelayPacket),
}

/// What a waiting packet is.
#[derive(Clone, Copy, Debug)]
struct Entry {
    to: SocketAddr,
    rtcp_port: bool,
    kind: Kind,
    len: usize,
}

/// Where waiting packets are kept: bytes for a direct leg, packets for a relayed one.
enum Slots {
    /// `OUTBOX_SLOTS` slots of `SLOT` bytes each (zeroed lazily by the allocator: a leg whose
    /// outbox is drained at once only ever touches its first slots).
    Datagrams(Box<[u8]>),
    Relay(Box<[RelayPacket]>),
}

/// A leg's waiting packets, oldest first.
pub(super) struct Outbox {
    slots: Slots,
    entries: [Option<Entry>; OUTBOX_SLOTS],
    head: usize,
    count: usize,
    /// The packet last handed out, until the I/O layer says how sending it went.
    in_flight: Option<Entry>,
}

impl Outbox {
    pub(super) fn new(route: Route) -> Self {
        let slots = match route {
            Route::Direct { .. } => Slots::Datagrams(vec![0; SLOT * OUTBOX_SLOTS].into()),
            Route::Relayed => Slots::Relay(vec![RelayPacket::new(0, 0, 0, 0); OUTBOX_SLOTS].into()),
        };
        Outbox {
            slots,
            entries: [None; OUTBOX_SLOTS],
            head: 0,
            count: 0,
            in_flight: None,
        }
    }

    /// The index of the next free slot, if any.
    fn vacant(&self) -> Option<usize> {
        (self.count < OUTBOX_SLOTS).then_some((self.head + self.count) % OUTBOX_SLOTS)
    }

    fn datagram_slot(&mut self, index: usize) -> Option<&mut [u8]> {
        match &mut self.slots {
            Slots::Datagrams(bytes) => bytes.get_mut(index * SLOT..(index + 1) * SLOT),
            Slots::Relay(_) => None,
        }
    }

    fn relay_slot(&mut self, index: usize) -> Option<&mut RelayPacket> {
        match &mut self.slots {
            Slots::Relay(packets) => packets.get_mut(index),
            Slots::Datagrams(_) => None,
        }
    }

    fn commit(&mut self, index: usize, entry: Entry) {
        self.entries[index] = Some(entry);
        self.count += 1;
    }

    /// Whether packets wait.
    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl LegCore {
    /// Encodes `frame` (at the mix rate) with the leg's own encoder and queues what it yields,
    /// naming the talkers in it (`csrcs`, with their levels in -dBov). Returns the packets
    /// encoded.
    pub fn encode_own(&mut self, frame: &[i16], csrcs: &[u32], levels: &[u8]) -> u32 {
        self.own.push_frame(frame);
        let mut payload = [0u8; MAX_PACKET];
        let mut encoded = 0;
        while let Some(n) = self.own.pull_packet(&mut payload) {
            encoded += 1;
            let ticks = self.own.packet_ticks();
            self.queue_payload(&payload[..n], ticks, csrcs, levels);
        }
        encoded
    }

    /// Queues an already encoded payload (a group's shared packet) of `ticks` RTP timestamp
    /// units.
    pub fn queue_payload(&mut self, payload: &[u8], ticks: u32, csrcs: &[u32], levels: &[u8]) {
        let header = Outgoing {
            payload_type: self.spec.payload_type,
            marker: false,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            csrcs,
            csrc_levels: self.spec.csrc_audio_level_id.map(|id| (id, levels)),
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(ticks);
        let Some(index) = self.outbox.vacant() else {
            self.stats.send_errors += 1;
            return;
        };
        if let Route::Relayed = self.route {
            let Some(packet) = self.outbox.relay_slot(index) else {
                return;
            };
            *packet = RelayPacket::new(
                header.payload_type,
                header.sequence,
                header.timestamp,
                self.ssrc,
            );
            let n = csrcs.len().min(MAX_CSRCS);
            packet.csrcs[..n].copy_from_slice(&csrcs[..n]);
            packet.csrc_count = n as u8;
            if !packet.set_payload(payload) {
                self.stats.send_errors += 1;
                return;
            }
            let len = 12 + 4 * n + payload.len();
            let entry = Entry {
                to: RELAY_SOURCE,
                rtcp_port: false,
                kind: Kind::Rtp,
                len,
            };
            self.outbox.commit(index, entry);
            return;
        }
        let to = self.latch.rtp_destination();
        let Some(slot) = self.outbox.datagram_slot(index) else {
            return;
        };
        let Some(len) = rtp::write(slot, header, payload) else {
            self.stats.send_errors += 1;
            return;
        };
        if to.ip().is_unspecified() || to.port() == 0 {
            // No address yet (an offerless call before its answer, or c=0.0.0.0 hold).
            return;
        }
        let Ok(len) = self.secure.seal(Kind::Rtp, slot, len) else {
            self.stats.send_errors += 1;
            return;
        };
        let entry = Entry {
            to,
            rtcp_port: false,
            kind: Kind::Rtp,
            len,
        };
        self.outbox.commit(index, entry);
    }

    /// Keeps time: ends DTMF digits whose end packets never came, and queues our RTCP report
    /// when it is due. Costs two comparisons when there is nothing to do.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(events) = &mut self.telephone_events
            && let Some(d) = events.poll(now)
        {
            self.queue_dtmf(d);
        }
        let Route::Direct { separate_rtcp } = self.route else {
            // Relayed legs: str0m writes the RTCP of WebRTC peers.
            return;
        };
        if !self.rtcp.due(now) {
            return;
        }
        let sent = (self.stats.packets_out > 0).then_some(Sent {
            packets: self.stats.packets_out as u32,
            octets: self.stats.bytes_out as u32,
            rtp_timestamp: self.timestamp,
        });
        let to = if separate_rtcp {
            self.latch.rtcp_destination(self.spec.remote_rtcp)
        } else {
            self.latch.rtp_destination()
        };
        let Some(index) = self.outbox.vacant() else {
            self.stats.send_errors += 1;
            return;
        };
        let Some(slot) = self.outbox.datagram_slot(index) else {
            return;
        };
        let Some(len) = self
            .rtcp
            .write_report(now, sent, &self.cname, &mut slot[..RTCP_BUFFER])
        else {
            return;
        };
        if to.ip().is_unspecified() || to.port() == 0 {
            // Nowhere to send it (0.0.0.0 as a destination would be this host).
            return;
        }
        let Ok(len) = self.secure.seal(Kind::Rtcp, slot, len) else {
            self.stats.send_errors += 1;
            return;
        };
        let entry = Entry {
            to,
            rtcp_port: separate_rtcp,
            kind: Kind::Rtcp,
            len,
        };
        self.outbox.commit(index, entry);
    }

    /// The next packet to send, oldest first. Say how sending it went with
    /// [`LegCore::transmitted`] before asking for the next (if not, it counts as sent).
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        if self.outbox.in_flight.is_some() {
            self.transmitted(true);
        }
        if self.outbox.is_empty() {
            // Start again at the first slot: a drained outbox keeps using the same memory.
            self.outbox.head = 0;
            return None;
        }
        let index = self.outbox.head;
        let entry = self.outbox.entries[index].take()?;
        self.outbox.head = (index + 1) % OUTBOX_SLOTS;
        self.outbox.count -= 1;
        self.outbox.in_flight = Some(entry);
        match &self.outbox.slots {
            Slots::Datagrams(bytes) => Some(Transmit::Datagram {
                to: entry.to,
                rtcp_port: entry.rtcp_port,
                data: bytes.get(index * SLOT..index * SLOT + entry.len)?,
            }),
            Slots::Relay(packets) => packets.get(index).map(Transmit::Relay),
        }
    }

    /// How sending the packet last handed out by [`LegCore::poll_transmit`] went.
    pub fn transmitted(&mut self, ok: bool) {
        let Some(entry) = self.outbox.in_flight.take() else {
            return;
        };
        match (ok, entry.kind) {
            (false, _) => self.stats.send_errors += 1,
            (true, Kind::Rtp) => {
                self.stats.packets_out += 1;
                self.stats.bytes_out += entry.len as u64;
            }
            (true, Kind::Rtcp) => self.stats.rtcp_out += 1,
        }
    }
}
