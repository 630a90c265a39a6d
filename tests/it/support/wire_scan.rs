//! The suite-wide scan of what the bridge writes: no address Confab gives a peer is unspecified
//! (`0.0.0.0`, `::`, `[::]`). Every SIP message the bridge sends is logged whole at `trace` under
//! `confab::sip::wire` (src/sip/server.rs); a bridge started by `server::Server` logs them to
//! the stderr it reads, an in-process `clients::SipBridge` to the subscriber installed here.
//! Each guard scans what its bridge sent when it is dropped and fails the test then (a panic in
//! drop only when the test is not already panicking). `server::http_raw` scans the SDP the API
//! answers with (API-leg answers, WHIP answers) as it reads them.
//!
//! What is ours in a message we send: Contact (requests and responses), the top Via and any
//! Record-Route of our requests (in responses both are the peer's, echoed), and in SDP `o=`,
//! `c=`, `a=rtcp:` and ICE candidates.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};

/// The log filter a bridge under test runs with: the usual lines and every message it sends.
pub const TRACE_FILTER: &str = "info,confab::sip::wire=trace";

/// The wire trace's target.
const TARGET: &str = "confab::sip::wire";

/// Whether a token names the unspecified address, alone or with a port, bracketed or not.
fn unspecified(token: &str) -> bool {
    let lower = token.to_ascii_lowercase();
    let t = lower
        .strip_prefix("sips:")
        .or_else(|| lower.strip_prefix("sip:"))
        .unwrap_or(&lower);
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return sa.ip().is_unspecified();
    }
    t.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

/// Whether a header value or SDP line holds an unspecified address anywhere.
fn holds_unspecified(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']')))
        .any(unspecified)
}

/// The SDP lines (`o=`, `c=`, `a=rtcp:`, `a=candidate:`) naming an unspecified address.
pub fn scan_sdp(sdp: &str) -> Vec<String> {
    sdp.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| {
            ["o=", "c=", "a=rtcp:", "a=candidate:"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .filter(|l| holds_unspecified(l))
        .map(|l| format!("SDP `{l}`"))
        .collect()
}

/// The headers of ours and SDP lines in one SIP message we sent that name an unspecified address.
pub fn scan_sip(message: &str) -> Vec<String> {
    let (head, body) = message
        .split_once("\r\n\r\n")
        .or_else(|| message.split_once("\n\n"))
        .unwrap_or((message, ""));
    let mut lines = head.lines().map(|l| l.trim_end_matches('\r'));
    let response = lines.next().is_some_and(|l| l.starts_with("SIP/2.0"));
    let mut problems = Vec::new();
    let mut top_via = true;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let ours = match name.trim().to_ascii_lowercase().as_str() {
            "contact" | "m" => true,
            "via" | "v" => !response && std::mem::replace(&mut top_via, false),
            "record-route" => !response,
            _ => false,
        };
        if ours && holds_unspecified(value) {
            problems.push(format!("header `{line}`"));
        }
    }
    if body.starts_with("v=0") || body.contains("\nv=0") {
        problems.extend(scan_sdp(body));
    }
    problems
}

/// Every SDP in an HTTP answer's body (raw `application/sdp`, or any JSON string holding one).
pub fn scan_http_body(body: &str) -> Vec<String> {
    fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
            serde_json::Value::Object(o) => o.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let mut texts = Vec::new();
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => strings(&v, &mut texts),
        Err(_) => texts.push(body.to_owned()),
    }
    texts
        .iter()
        .filter(|t| t.starts_with("v=0"))
        .flat_map(|t| scan_sdp(t))
        .collect()
}

/// A string as `{:?}` wrote it (quoted, escaped) back to its text.
fn unescape_debug(quoted: &str) -> Option<(String, usize)> {
    let mut chars = quoted.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => match chars.next()?.1 {
                'r' => out.push('\r'),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '0' => out.push('\0'),
                'u' => {
                    let mut hex = String::new();
                    for (_, h) in chars.by_ref() {
                        match h {
                            '{' => {}
                            '}' => break,
                            h => hex.push(h),
                        }
                    }
                    out.push(
                        u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .unwrap_or('\u{fffd}'),
                    );
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// A log line without its terminal colours.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for e in chars.by_ref() {
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The SIP message a wire-trace line of the bridge's log holds (text or JSON format).
pub fn wire_message(line: &str) -> Option<String> {
    if !line.contains(TARGET) {
        return None;
    }
    if line.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let field = v.get("fields")?.get("sip")?.as_str()?;
        return unescape_debug(field).map(|(m, _)| m);
    }
    let line = strip_ansi(line);
    let at = line.find(" sip=\"")? + " sip=".len();
    unescape_debug(&line[at..]).map(|(m, _)| m)
}

/// What one bridge sent: how many messages and the problems found in them.
#[derive(Default)]
pub struct WireLog {
    seen: Mutex<(usize, Vec<String>)>,
}

impl WireLog {
    /// Takes one line of the bridge's log; true when it was a wire-trace line.
    pub fn feed_line(&self, line: &str) -> bool {
        match wire_message(line) {
            Some(message) => {
                self.feed_message(&message);
                true
            }
            None => false,
        }
    }

    pub fn feed_message(&self, message: &str) {
        let problems = scan_sip(message);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.0 += 1;
        for p in problems {
            // One example message per problem is enough to see it; keep the memory bounded.
            if seen.1.len() < 20 {
                seen.1.push(format!("{p} in:\n{message}"));
            }
        }
    }

    /// The number of messages scanned, or what was wrong.
    pub fn verdict(&self) -> Result<usize, String> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.1.is_empty() {
            Ok(seen.0)
        } else {
            Err(seen.1.join("\n----\n"))
        }
    }

    /// Fails the test (from a guard's drop) when the bridge wrote an unspecified address.
    pub fn check(&self, who: &str) {
        match self.verdict() {
            Ok(0) => {}
            Ok(n) => eprintln!("wire scan: {n} SIP messages from {who}, no unspecified address"),
            Err(problems) => {
                let text =
                    format!("{who} wrote an unspecified address (0.0.0.0 or ::):\n{problems}");
                if std::thread::panicking() {
                    eprintln!("{text}");
                } else {
                    panic!("{text}");
                }
            }
        }
    }
}

/// Messages sent by in-process SIP servers, by the UDP address they listen on.
type ByBridge = Mutex<HashMap<SocketAddr, Arc<WireLog>>>;

fn in_process() -> &'static ByBridge {
    static LOGS: OnceLock<ByBridge> = OnceLock::new();
    LOGS.get_or_init(ByBridge::default)
}

/// Reads the wire trace's fields: the bridge's UDP address and the message.
#[derive(Default)]
struct Fields {
    local: Option<SocketAddr>,
    sip: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "local" => {
                self.local = text
                    .strip_prefix("Some(")
                    .and_then(|t| t.strip_suffix(')'))
                    .and_then(|t| t.parse().ok());
            }
            "sip" => self.sip = unescape_debug(&text).map(|(m, _)| m),
            _ => {}
        }
    }
}

struct WireLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for WireLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let (Some(local), Some(message)) = (fields.local, fields.sip) {
            let log = Arc::clone(
                in_process()
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(local)
                    .or_default(),
            );
            log.feed_message(&message);
        }
    }
}

/// Installs (once per test process) the subscriber that gives in-process SIP servers' wire
/// trace to the scan. Nothing else is enabled by it.
pub fn install_in_process() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let filter =
            tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::TRACE);
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::Layer::with_filter(WireLayer, filter));
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            eprintln!(
                "wire scan: another tracing subscriber is installed; in-process SIP is not scanned"
            );
        }
    });
}

/// Scans what the in-process SIP server on `local` sent (and forgets it: the port may be used
/// again); fails the test when it wrote an unspecified address.
pub fn check_in_process(local: SocketAddr) {
    let log = in_process()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&local);
    if let Some(log) = log {
        log.check(&format!("the in-process SIP server on {local}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR_INVITE: &str = "INVITE sip:bob@198.51.100.7 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK1\r\n\
        Contact: <sip:confab@203.0.113.10:5060>\r\n\
        Content-Type: application/sdp\r\n\r\n\
        v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\n\
        t=0 0\r\nm=audio 20000 RTP/AVP 0\r\n";

    #[test]
    fn a_clean_message_passes_and_each_unspecified_address_is_flagged() {
        assert!(
            scan_sip(OUR_INVITE).is_empty(),
            "{:?}",
            scan_sip(OUR_INVITE)
        );
        for (from, to) in [
            ("c=IN IP4 203.0.113.10", "c=IN IP4 0.0.0.0"),
            ("o=- 1 1 IN IP4 203.0.113.10", "o=- 1 1 IN IP6 ::"),
            (
                "<sip:confab@203.0.113.10:5060>",
                "<sip:confab@0.0.0.0:5060>",
            ),
            (
                "<sip:confab@203.0.113.10:5060>",
                "<sip:[::]:5060;transport=tcp>",
            ),
            ("UDP 203.0.113.10:5060", "UDP 0.0.0.0:5060"),
            (
                "m=audio 20000 RTP/AVP 0\r\n",
                "m=audio 1 RTP/AVP 0\r\na=rtcp:2 IN IP4 0.0.0.0\r\n",
            ),
        ] {
            let bad = OUR_INVITE.replacen(from, to, 1);
            let problems = scan_sip(&bad);
            assert_eq!(problems.len(), 1, "{to}: {problems:?}");
        }
        let candidate = "v=0\r\na=candidate:1 1 udp 2130706431 0.0.0.0 8443 typ host\r\n";
        assert_eq!(scan_http_body(candidate).len(), 1);
        let json = serde_json::json!({"id": "p1", "sdp": "v=0\r\nc=IN IP4 0.0.0.0\r\n"});
        assert_eq!(scan_http_body(&json.to_string()).len(), 1);
    }

    #[test]
    fn echoed_headers_of_the_peer_are_not_ours() {
        let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 0.0.0.0:5070;branch=z9hG4bK2\r\n\
            Record-Route: <sip:0.0.0.0;lr>\r\nFrom: <sip:a@0.0.0.0>\r\n\
            Contact: <sip:confab@203.0.113.10:5060>\r\n\r\n";
        assert!(scan_sip(response).is_empty());
        // A request's second Via is not ours; its top one is.
        let request = "BYE sip:a@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.10\r\n\
            Via: SIP/2.0/UDP 0.0.0.0\r\n\r\n";
        assert!(scan_sip(request).is_empty());
        // Numbers that are not addresses.
        assert!(scan_sdp("o=- 0 0 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1/127\r\n").is_empty());
    }

    #[test]
    fn the_bridge_log_lines_are_read_back_to_the_message_and_a_bad_one_fails_the_guard() {
        let escaped = format!(
            "{:?}",
            OUR_INVITE.replace("c=IN IP4 203.0.113.10", "c=IN IP4 0.0.0.0")
        );
        let text = format!(
            "2026-12-05T08:00:00Z \u{1b}[35mTRACE\u{1b}[0m \u{1b}[2mconfab::sip::wire\u{1b}[0m: sent \
             \u{1b}[3mlocal\u{1b}[0m\u{1b}[2m=\u{1b}[0mSome(127.0.0.1:5060) \u{1b}[3mto\u{1b}[0m\
             \u{1b}[2m=\u{1b}[0m198.51.100.7:5060 \u{1b}[3msip\u{1b}[0m\u{1b}[2m=\u{1b}[0m{escaped}"
        );
        let json = serde_json::json!({
            "level": "TRACE", "target": TARGET,
            "fields": {"message": "sent", "sip": escaped},
        })
        .to_string();
        for line in [text, json] {
            let log = WireLog::default();
            assert!(log.feed_line(&line), "{line}");
            assert!(!log.feed_line("INFO confab: confab started"));
            let problems = log.verdict().expect_err("c=IN IP4 0.0.0.0 is flagged");
            assert!(problems.contains("SDP `c=IN IP4 0.0.0.0`"), "{problems}");
            let failed = std::panic::catch_unwind(|| log.check("a bridge"));
            assert!(failed.is_err(), "the guard's check must fail the test");
        }
        let log = WireLog::default();
        log.feed_message(OUR_INVITE);
        assert_eq!(log.verdict(), Ok(1));
        log.check("a clean bridge");
    }
}
