//! What the SIP shell counts for `/metrics`: requests received by method, responses sent by
//! code, failed credentials, panics and restarts. Only the message's first line (and CSeq) is
//! read, so counting costs no parse and a message the call core refuses still counts.

use std::sync::{Arc, Mutex};

/// SIP requests received by method and responses sent by code, for the metrics.
#[derive(Debug, Default)]
pub struct SipMetrics {
    /// By method: one of [`METHODS`] or `other`. Bound: `METHODS.len() + 1` keys.
    pub requests: Mutex<std::collections::BTreeMap<String, u64>>,
    /// By the method of the request answered (from CSeq; one of [`METHODS`] or `other`) and
    /// the code (ours: a few dozen). Bound: `(METHODS.len() + 1)` times the codes we send.
    pub responses: Mutex<std::collections::BTreeMap<(String, u16), u64>>,
    /// Failed credential attempts and lockouts (shared with WHIP).
    pub auth: Arc<crate::conference::limiter::LimitCounters>,
    /// Panics contained in the call core (each a bug; the message that caused it is lost),
    /// and in the SIP task itself.
    pub panics: std::sync::atomic::AtomicU64,
    /// Times the SIP task was started again after a panic.
    pub restarts: std::sync::atomic::AtomicU64,
    /// The presence publisher's figures, copied from it by the serving loop.
    pub presence: PresenceCounters,
}

/// What presence did (see `sip::presence::Stats`), and how many publications it holds.
#[derive(Debug, Default)]
pub struct PresenceCounters {
    pub published: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    pub refused: std::sync::atomic::AtomicU64,
    pub held: std::sync::atomic::AtomicU64,
}

impl PresenceCounters {
    pub(crate) fn set(&self, stats: crate::sip::presence::Stats, held: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.published.store(stats.published, Relaxed);
        self.failed.store(stats.failed, Relaxed);
        self.refused.store(stats.refused, Relaxed);
        self.held.store(held as u64, Relaxed);
    }
}

/// The methods counted under their own name; any other is `other`, so a stranger inventing
/// method names cannot grow the metrics.
pub const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "NOTIFY",
    "REGISTER",
    "SUBSCRIBE",
    "REFER",
    "MESSAGE",
    "PRACK",
    "PUBLISH",
];

/// A method's label: its name when it is one of [`METHODS`], else `other`.
fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

impl SipMetrics {
    /// Counts a received message if its first line parses as a request line
    /// (`METHOD Request-URI SIP/2.0`).
    pub(crate) fn received(&self, bytes: &[u8]) {
        let line_end = bytes
            .iter()
            .take(1024)
            .position(|b| *b == b'\r' || *b == b'\n')
            .unwrap_or(bytes.len().min(1024));
        let Ok(line) = std::str::from_utf8(&bytes[..line_end]) else {
            return;
        };
        let mut parts = line.split(' ');
        let (Some(method), Some(uri), Some("SIP/2.0"), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if method.is_empty() || uri.is_empty() {
            return;
        }
        if let Ok(mut map) = self.requests.lock() {
            *map.entry(method_label(method).to_owned()).or_default() += 1;
        }
    }

    /// Counts a sent message if it is a response.
    pub(crate) fn sent(&self, bytes: &[u8]) {
        let code = bytes
            .strip_prefix(b"SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u16>().ok());
        let Some(code) = code else { return };
        let method = std::str::from_utf8(&bytes[..bytes.len().min(2048)])
            .ok()
            .and_then(|text| {
                text.split("\r\n")
                    .find_map(|l| l.strip_prefix("CSeq: "))
                    .and_then(|v| v.split_whitespace().nth(1))
                    .map(|m| method_label(m).to_owned())
            })
            .unwrap_or_else(|| "other".to_owned());
        if let Ok(mut map) = self.responses.lock() {
            *map.entry((method, code)).or_default() += 1;
        }
    }
}
