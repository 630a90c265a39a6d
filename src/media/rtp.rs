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
    /// The header extension: its profile (0xBEDE one-byte, 0x100x two-byte) and data.
    pub extension: Option<(u16, &'a [u8])>,
    pub payload: &'a [u8],
}

impl RtpView<'_> {
    /// The data of header extension element `id` (RFC 8285, one- or two-byte form).
    pub fn extension_element(&self, id: u8) -> Option<&[u8]> {
        let (profile, mut data) = self.extension?;
        let two_byte = profile & 0xFFF0 == 0x1000;
        if profile != 0xBEDE && !two_byte {
            return None;
        }
        while let Some(&first) = data.first() {
            if first == 0 {
                // Padding.
                data = &data[1..];
                continue;
            }
            let (element, len, header) = if two_byte {
                (first, usize::from(*data.get(1)?), 2)
            } else {
                if first >> 4 == 15 {
                    return None;
                }
                (first >> 4, usize::from(first & 0x0F) + 1, 1)
            };
            let body = data.get(header..header + len)?;
            if element == id {
                return Some(body);
            }
            data = &data[header + len..];
        }
        None
    }

    /// The RFC 6464 client-to-mixer audio level: voice activity and level in -dBov (0..=127).
    pub fn audio_level(&self, id: u8) -> Option<(bool, u8)> {
        let b = *self.extension_element(id)?.first()?;
        Some((b & 0x80 != 0, b & 0x7F))
    }
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

/// The SSRC of an RTP datagram (bytes 8-11), read before anything else is trusted.
pub fn ssrc_of(datagram: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = datagram.get(8..12)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
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
    let extension = if header.extension {
        // Header::unmarshal checked that the extension fits.
        let at = 12 + 4 * usize::from(datagram[0] & 0x0F);
        let words = usize::from(u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]));
        let profile = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
        datagram
            .get(at + 4..at + 4 + 4 * words)
            .map(|data| (profile, data))
    } else {
        None
    };
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
        extension,
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
    /// RFC 6465 mixer-to-client audio levels, one per CSRC (-dBov), with the extension id
    /// negotiated for them; not written when `None` or when there are no CSRCs.
    pub csrc_levels: Option<(u8, &'a [u8])>,
}

/// Writes an RTP packet into `buf`; returns its length, or `None` if it does not fit.
pub fn write(buf: &mut [u8], header: Outgoing<'_>, payload: &[u8]) -> Option<usize> {
    let csrcs = &header.csrcs[..header.csrcs.len().min(15)];
    let levels = header
        .csrc_levels
        .filter(|(id, l)| (1..=14).contains(id) && !l.is_empty() && !csrcs.is_empty())
        .map(|(id, l)| (id, &l[..l.len().min(csrcs.len())]));
    // One-byte form: 4-byte extension header, one element byte, a level per CSRC, padding.
    let ext_len = levels.map_or(0, |(_, l)| 4 + (1 + l.len()).div_ceil(4) * 4);
    let head = 12 + 4 * csrcs.len();
    let len = head + ext_len + payload.len();
    if buf.len() < len {
        return None;
    }
    buf[0] = 0x80 | (u8::from(levels.is_some()) << 4) | csrcs.len() as u8;
    buf[1] = (u8::from(header.marker) << 7) | (header.payload_type & 0x7F);
    buf[2..4].copy_from_slice(&header.sequence.to_be_bytes());
    buf[4..8].copy_from_slice(&header.timestamp.to_be_bytes());
    buf[8..12].copy_from_slice(&header.ssrc.to_be_bytes());
    for (i, c) in csrcs.iter().enumerate() {
        buf[12 + 4 * i..16 + 4 * i].copy_from_slice(&c.to_be_bytes());
    }
    if let Some((id, l)) = levels {
        let ext = &mut buf[head..head + ext_len];
        ext.fill(0);
        ext[0..2].copy_from_slice(&0xBEDEu16.to_be_bytes());
        ext[2..4].copy_from_slice(&((ext_len / 4 - 1) as u16).to_be_bytes());
        ext[4] = (id << 4) | (l.len() as u8 - 1);
        for (slot, level) in ext[5..5 + l.len()].iter_mut().zip(l) {
            *slot = level & 0x7F;
        }
    }
    buf[head + ext_len..len].copy_from_slice(payload);
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
            csrc_levels: None,
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
    fn csrc_levels_written_per_rfc6465_and_read_back() {
        let mut buf = [0u8; 200];
        let out = Outgoing {
            payload_type: 0,
            marker: false,
            sequence: 1,
            timestamp: 2,
            ssrc: 3,
            csrcs: &[10, 11, 12],
            csrc_levels: Some((7, &[20, 35, 127])),
        };
        let n = write(&mut buf, out, &[9; 5]).unwrap();
        assert_eq!(n, 12 + 12 + 8 + 5);
        // rtc-rtp reads our extension the same way.
        let mut reader = &buf[..n];
        let header = Header::unmarshal(&mut reader).unwrap();
        assert_eq!(header.csrc, vec![10, 11, 12]);
        assert_eq!(
            header.get_extension(7).as_deref(),
            Some(&[20u8, 35, 127][..])
        );
        let p = parse(&buf[..n]).unwrap();
        assert_eq!(p.extension_element(7), Some(&[20u8, 35, 127][..]));
        assert_eq!(p.payload, &[9; 5]);
        // No CSRCs: no extension.
        let n = write(&mut buf, Outgoing { csrcs: &[], ..out }, &[1]).unwrap();
        assert_eq!(n, 13);
    }

    #[test]
    fn rfc6464_levels_in_both_extension_forms() {
        // One-byte form: id 1, level 42 with the voice bit; after a padding byte, id 3.
        let mut one = vec![0x90, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        one.extend_from_slice(&[0xBE, 0xDE, 0, 2, 0x10, 0x80 | 42, 0, 0x30, 5, 0, 0, 0]);
        one.extend_from_slice(&[0xAA; 4]);
        let p = parse(&one).unwrap();
        assert_eq!(p.audio_level(1), Some((true, 42)));
        assert_eq!(p.audio_level(3), Some((false, 5)));
        assert_eq!(p.audio_level(2), None);
        assert_eq!(p.payload, &[0xAA; 4]);
        // Two-byte form: id 1, length 1.
        let mut two = vec![0x90, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        two.extend_from_slice(&[0x10, 0x00, 0, 1, 1, 1, 60, 0]);
        let p = parse(&two).unwrap();
        assert_eq!(p.audio_level(1), Some((false, 60)));
        // An element claiming more than is there: the packet is refused (by rtc-rtp's parser)
        // or the level is absent; never a panic.
        let mut bad = vec![0x90, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        bad.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x1F, 0, 0, 0]);
        assert!(parse(&bad).map_or(true, |p| p.audio_level(1).is_none()));
        // Our own element walk on a view with a short element: none.
        let view = RtpView {
            extension: Some((0xBEDE, &[0x1F, 0, 0, 0])),
            ..parse(&two).unwrap()
        };
        assert_eq!(view.audio_level(1), None);
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
