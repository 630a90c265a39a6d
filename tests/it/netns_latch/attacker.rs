//! The attacker of the latch tests: one socket in a namespace of its own on the caller's link,
//! sending RTP with a tone of its own to every port of the bridge's range, or RTCP receiver
//! reports as someone else.

use std::net::UdpSocket;

use audio_codec::Encoder as _;

use super::{ATTACKER_TONE, BRIDGE_IP, PORT_MAX, PORT_MIN};
use crate::support::netns;

/// The attacker: one socket in its namespace, sending a tone of its own as PCMU RTP (encoded
/// once per 20 ms, by an encoder that is not Confab's) or RTCP receiver reports.
pub(super) struct Attacker {
    socket: UdpSocket,
    encoder: audio_codec::pcmu::PcmuEncoder,
    phase: u64,
    sequence: u16,
    timestamp: u32,
    /// Datagrams sent.
    pub(super) sent: u64,
}

impl Attacker {
    pub(super) fn new(ns: &str) -> Attacker {
        let socket = netns::in_namespace(ns, || UdpSocket::bind("0.0.0.0:31000").unwrap());
        socket.set_nonblocking(true).unwrap();
        Attacker {
            socket,
            encoder: audio_codec::pcmu::PcmuEncoder::new(),
            phase: 0,
            sequence: 7000,
            timestamp: 90_000,
            sent: 0,
        }
    }

    /// The next 20 ms of its tone, with `ssrc`, to every port of the bridge's range.
    pub(super) fn spray_rtp(&mut self, ssrc: u32) {
        let step = 2.0 * std::f64::consts::PI * f64::from(ATTACKER_TONE) / 8000.0;
        let pcm: Vec<i16> = (0..160u64)
            .map(|i| (8000.0 * (step * (self.phase + i) as f64).sin()) as i16)
            .collect();
        self.phase += 160;
        let mut payload = [0u8; 160];
        let n = self.encoder.encode_into(&pcm, &mut payload).unwrap();
        let mut packet = vec![0x80, 0];
        packet.extend_from_slice(&self.sequence.to_be_bytes());
        packet.extend_from_slice(&self.timestamp.to_be_bytes());
        packet.extend_from_slice(&ssrc.to_be_bytes());
        packet.extend_from_slice(&payload[..n]);
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(160);
        for port in PORT_MIN..=PORT_MAX {
            let _ = self.socket.send_to(&packet, (BRIDGE_IP, port));
            self.sent += 1;
        }
    }

    /// An RTCP receiver report as `ssrc` to `port` of the bridge.
    pub(super) fn rtcp(&mut self, ssrc: u32, port: u16) {
        let _ = self
            .socket
            .send_to(&receiver_report(ssrc), (BRIDGE_IP, port));
        self.sent += 1;
    }
}

/// An RTCP receiver report from `ssrc` with no report block (written by rtc-rtcp).
pub(super) fn receiver_report(ssrc: u32) -> Vec<u8> {
    use rtc_rtcp::packet::Packet;
    let rr = rtc_rtcp::receiver_report::ReceiverReport {
        ssrc,
        reports: Vec::new(),
        profile_extensions: bytes::Bytes::new(),
    };
    rtc_rtcp::packet::marshal(&[Box::new(rr) as Box<dyn Packet>])
        .unwrap()
        .to_vec()
}
