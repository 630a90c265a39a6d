//! RTP packets on the wire: parsing what arrives (with rtc-rtp's header parser) and writing what
//! we send (by hand: twelve bytes and the CSRC list, into a caller's buffer, no allocation).

use rtc_rtp::header::Header;
use shared::marshal::Unmarshal;

/// Largest datagram we read or write.
pub const MAX_PACKET: usize = 1500;

/// A parsed RTP packet borrowing its payload from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpView<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Why a datagram is not an RTP packet we can use. Each is dropped and counted by reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RtpError {
    #[error("datagram too short or header truncated")]
    Truncated,
    #[error("not RTP version 2")]
    Version,
    #[error("RTCP on the RTP port (rtcp-mux)")]
    Rtcp,
    #[error("invalid padding")]
    Padding,
    #[error("datagram larger than {MAX_PACKET} bytes")]
    Oversized,
}

impl RtpError {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            RtpError::Truncated => "truncated",
            RtpError::Version => "version",
            RtpError::Rtcp => "rtcp",
            RtpError::Padding => "padding",
            RtpError::Oversized => "oversized",
        }
    }
}

/// Whether a datagram on a multiplexed port is RTCP (RFC 5761: packet types 192..=223).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && (192..=223).contains(&datagram[1])
}

/// Parses an RTP datagram.
pub fn parse(datagram: &[u8]) -> Result<RtpView<'_>, RtpError> {
    if datagram.len() > MAX_PACKET {
        return Err(RtpError::Oversized);
    }
    if datagram.len() < 12 {
        return Err(RtpError::Truncated);
    }
    if datagram[0] >> 6 != 2 {
        return Err(RtpError::Version);
    }
    if is_rtcp(datagram) {
        return Err(RtpError::Rtcp);
    }
    let mut reader = datagram;
    let header = Header::unmarshal(&mut reader).map_err(|_| RtpError::Truncated)?;
    let mut payload = reader;
    if header.padding {
        let pad = usize::from(*payload.last().ok_or(RtpError::Padding)?);
        if pad == 0 || pad > payload.len() {
            return Err(RtpError::Padding);
        }
        payload = &payload[..payload.len() - pad];
    }
    Ok(RtpView {
        payload_type: header.payload_type,
        marker: header.marker,
        sequence: header.sequence_number,
        timestamp: header.timestamp,
        ssrc: header.ssrc,
        payload,
    })
}

/// The header fields of a packet we send.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Contributing sources (the talkers in the mix), at most 15.
    pub csrcs: &'a [u32],
}

/// Writes an RTP packet into `buf`; returns its length, or `None` if it does not fit.
pub fn write(buf: &mut [u8], header: Outgoing<'_>, payload: &[u8]) -> Option<usize> {
    let csrcs = &header.csrcs[..header.csrcs.len().min(15)];
    let len = 12 + 4 * csrcs.len() + payload.len();
    if buf.len() < len {
        return None;
    }
    buf[0] = 0x80 | csrcs.len() as u8;
    buf[1] = (u8::from(header.marker) << 7) | (header.payload_type & 0x7F);
    buf[2..4].copy_from_slice(&header.sequence.to_be_bytes());
    buf[4..8].copy_from_slice(&header.timestamp.to_be_bytes());
    buf[8..12].copy_from_slice(&header.ssrc.to_be_bytes());
    for (i, c) in csrcs.iter().enumerate() {
        buf[12 + 4 * i..16 + 4 * i].copy_from_slice(&c.to_be_bytes());
    }
    buf[12 + 4 * csrcs.len()..len].copy_from_slice(payload);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse() {
        let mut buf = [0u8; 200];
        let out = Outgoing {
            payload_type: 9,
            marker: true,
            sequence: 65535,
            timestamp: 0xDEAD_BEEF,
            ssrc: 42,
            csrcs: &[7, 8],
        };
        let n = write(&mut buf, out, &[1, 2, 3]).unwrap();
        assert_eq!(n, 12 + 8 + 3);
        let p = parse(&buf[..n]).unwrap();
        assert_eq!(
            (p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc),
            (9, true, 65535, 0xDEAD_BEEF, 42)
        );
        assert_eq!(p.payload, &[1, 2, 3]);
        assert_eq!(write(&mut buf[..10], out, &[1]), None);
    }

    #[test]
    fn hostile_datagrams_are_refused_not_panicked_on() {
        assert_eq!(parse(&[]), Err(RtpError::Truncated));
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::Truncated));
        assert_eq!(parse(&[0x40; 20]), Err(RtpError::Version));
        let mut rtcp = [0u8; 20];
        rtcp[0] = 0x80;
        rtcp[1] = 200;
        assert_eq!(parse(&rtcp), Err(RtpError::Rtcp));
        // CSRC count claims 15 sources in a 20-byte packet.
        let mut csrc = [0u8; 20];
        csrc[0] = 0x8F;
        assert_eq!(parse(&csrc), Err(RtpError::Truncated));
        // Padding longer than the payload.
        let mut pad = [0u8; 16];
        pad[0] = 0xA0;
        pad[15] = 9;
        assert_eq!(parse(&pad), Err(RtpError::Padding));
        assert_eq!(parse(&[0x80; 1600]), Err(RtpError::Oversized));
        // Extension header whose length runs past the end.
        let mut ext = [0u8; 20];
        ext[0] = 0x90;
        ext[12..16].copy_from_slice(&[0xBE, 0xDE, 0x00, 0x09]);
        assert_eq!(parse(&ext), Err(RtpError::Truncated));
        // Random bytes never panic.
        let mut state = 99u32;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let _ = parse(&bytes);
        }
    }
}
