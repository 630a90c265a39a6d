//! What a SUBSCRIBE asks for, read from headers a stranger wrote: the event package (and
//! its `id`), the Expires, and a Contact we can send NOTIFYs to. Every value is checked before
//! it is kept or written into a request of ours.

use super::{DEFAULT_EXPIRES, MAX_URI, PACKAGE};
use crate::sip::message::{self, Message};

/// For a SUBSCRIBE to our package, its `id` parameter when it has a usable one (`Some(None)`
/// without); none for a missing Event header or another package.
pub(super) fn event(msg: &Message) -> Option<Option<String>> {
    let event = msg.header("Event").or_else(|| msg.header("o"))?;
    let package = event.split(';').next().unwrap_or_default().trim();
    if !package.eq_ignore_ascii_case(PACKAGE) {
        return None;
    }
    Some(
        message::param(event, "id")
            .filter(|i| !i.is_empty() && i.len() <= 64)
            .filter(|i| {
                i.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            })
            .map(str::to_owned),
    )
}

/// The Expires a SUBSCRIBE asks for: the default without one, any number of digits
/// (saturating), and an error for anything else.
pub(super) fn requested_expires(msg: &Message) -> Result<u32, ()> {
    let Some(v) = msg.header("Expires") else {
        return Ok(DEFAULT_EXPIRES);
    };
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    let digits = v.trim_start_matches('0');
    if digits.len() > 10 {
        return Ok(u32::MAX);
    }
    Ok(digits
        .parse::<u64>()
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)))
}

/// A remote target we can put in a request line: a SIP URI without spaces, quotes or
/// brackets, not too long.
pub(super) fn usable_uri(uri: &str) -> bool {
    let lower = uri
        .get(..5)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    (lower.starts_with("sip:") || lower.starts_with("sips:"))
        && uri.len() <= MAX_URI
        && uri
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>\"".contains(&b))
}
