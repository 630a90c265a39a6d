//! SIP over TCP (and TLS) is a byte stream: [`StreamFramer`] cuts it into messages.

use super::{MAX_MESSAGE, ParseError, find};

/// Splits a byte stream (SIP over TCP) into messages by Content-Length (RFC 3261 18.3).
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no end of the header section: each read searches
    /// only what it added (a header sent a byte at a time once cost a scan of the whole
    /// buffer per byte, ~10^8 comparisons for 16 KB; found by fuzz/sip_message).
    pub(super) searched: usize,
}

impl StreamFramer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if one is buffered. An error means the stream cannot be
    /// framed any more (no or a bad Content-Length, or a header section that never ends):
    /// the connection should be closed.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, ParseError> {
        // Keep-alive CRLFs between messages (RFC 5626) are skipped.
        let skip = self
            .buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        self.buf.drain(..skip);
        self.searched = self.searched.saturating_sub(skip);
        // The end may straddle what was searched and what came since.
        let from = self.searched.saturating_sub(3);
        let Some(end) = find(&self.buf[from..], b"\r\n\r\n").map(|i| from + i) else {
            self.searched = self.buf.len();
            if self.buf.len() > MAX_MESSAGE {
                return Err(ParseError::TooLarge);
            }
            return Ok(None);
        };
        self.searched = end;
        let head = std::str::from_utf8(&self.buf[..end]).map_err(|_| ParseError::Encoding)?;
        let length = head
            .split("\r\n")
            .skip(1)
            // A folded line continues the header above it (as the parser reads it): a
            // " Content-Length:" there is no length, or the two would frame differently.
            .filter(|l| !l.starts_with([' ', '\t']))
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                matches!(
                    n.trim().to_ascii_lowercase().as_str(),
                    "content-length" | "l"
                )
                .then(|| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| ParseError::ContentLength)
                })
            })
            .unwrap_or(Err(ParseError::ContentLength))?;
        // Checked: a Content-Length of up to usize::MAX digits' worth wrapped the sum (found by
        // fuzz/sip_message) and framed a message short.
        let total = length
            .checked_add(end + 4)
            .filter(|&t| t <= MAX_MESSAGE)
            .ok_or(ParseError::TooLarge)?;
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        self.searched = 0;
        Ok(Some(std::mem::replace(&mut self.buf, rest)))
    }
}
