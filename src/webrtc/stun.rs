//! Just enough STUN (RFC 5389) to route a stranger's datagram: a binding request's USERNAME
//! names the peer it is for (`<our ufrag>:<their ufrag>`), so the driver asks that one peer
//! instead of every peer whether the datagram is theirs.

/// The magic cookie of every RFC 5389 message.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const BINDING_REQUEST: u16 = 0x0001;
const USERNAME: u16 = 0x0006;
const HEADER: usize = 20;

/// Our ICE ufrag from a STUN binding request's USERNAME; `None` for anything else (not STUN,
/// not a binding request, no USERNAME, or a malformed message).
pub fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    let header = datagram.get(..HEADER)?;
    let kind = u16::from_be_bytes([header[0], header[1]]);
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if kind != BINDING_REQUEST || header[4..8] != MAGIC_COOKIE || length % 4 != 0 {
        return None;
    }
    let mut rest = datagram.get(HEADER..HEADER + length)?;
    // Each attribute takes at least 4 bytes, so this ends within length / 4 steps.
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next().filter(|u| !u.is_empty());
        }
        rest = rest.get(4 + len.div_ceil(4) * 4..)?;
    }
    None
}

/// Our ICE ufrag from our SDP answer's `a=ice-ufrag:` line.
pub fn answer_ufrag(answer: &str) -> Option<&str> {
    answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(str::trim)
        .filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in attributes {
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut m = vec![0, 1];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn the_username_names_our_ufrag() {
        let m = request(&[(0x8022, b"agent"), (USERNAME, b"abcd:wxyz")]);
        assert_eq!(local_ufrag(&m), Some("abcd"));
        assert_eq!(answer_ufrag("v=0\r\na=ice-ufrag:Q1w2\r\n"), Some("Q1w2"));
    }

    #[test]
    fn anything_else_names_nobody() {
        let good = request(&[(USERNAME, b"abcd:wxyz")]);
        // Not a binding request, no cookie, DTLS or RTP, truncated anywhere, lying lengths.
        let mut response = good.clone();
        response[1] = 0x01;
        response[0] = 0x01;
        assert_eq!(local_ufrag(&response), None);
        let mut no_cookie = good.clone();
        no_cookie[4] = 0;
        assert_eq!(local_ufrag(&no_cookie), None);
        assert_eq!(local_ufrag(&[22, 254, 253, 0, 0]), None);
        assert_eq!(local_ufrag(&[0x80, 0, 0, 1]), None);
        for n in 0..good.len() {
            assert_eq!(local_ufrag(&good[..n]), None, "{n}");
        }
        let mut long = good.clone();
        long[3] = 0xFC;
        assert_eq!(local_ufrag(&long), None);
        let mut attribute_too_long = good.clone();
        attribute_too_long[23] = 0xFF;
        assert_eq!(local_ufrag(&attribute_too_long), None);
        assert_eq!(local_ufrag(&request(&[(USERNAME, b":x")])), None);
        assert_eq!(local_ufrag(&request(&[(0x8022, b"a")])), None);
        assert_eq!(answer_ufrag("v=0\r\n"), None);
    }
}
