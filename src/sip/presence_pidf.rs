//! What presence publishes: the presentity (the identity a participant is known by, reduced
//! to a `sip:user@host` address of record) and its PIDF document (RFC 3863) with the RPID
//! activity `meeting` (RFC 4480), which phones and softclients show as "In a meeting".

use crate::sip::conference_event::escape;
use crate::sip::message;

pub const CONTENT_TYPE: &str = "application/pidf+xml";
/// The note shown beside the status. It names no meeting: whoever watches a person's
/// presence is not told which conference they are in.
pub const NOTE: &str = "In a conference";
/// Longest presentity published.
const MAX_URI: usize = 256;

/// The address of record an identity names (`"Alice" <sip:Alice@Example.COM;user=phone>` ->
/// `sip:Alice@example.com`), or `None` when it is not a `sip:`/`sips:` URI with a user and a
/// host of the characters RFC 3261 allows there. Nothing else reaches a request line or a
/// document.
pub fn presentity(identity: &str) -> Option<String> {
    let uri = message::addr_uri(identity.trim()).trim();
    let (scheme, rest) = uri.split_once(':')?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "sip" && scheme != "sips" {
        return None;
    }
    // Parameters and headers name no one.
    let aor = rest.split([';', '?']).next()?;
    let (user, host) = aor.rsplit_once('@')?;
    let user_ok = !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()%&=+$,/".contains(&b));
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    let out = format!("{scheme}:{user}@{}", host.to_ascii_lowercase());
    (user_ok && host_ok && out.len() <= MAX_URI).then_some(out)
}

/// The PIDF document for `entity` (a [`presentity`]): open, in a meeting.
pub fn document(entity: &str) -> String {
    let entity = escape(entity);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
         xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
         xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"{entity}\">\n\
         <tuple id=\"confab\">\n\
         <status><basic>open</basic></status>\n\
         <note>{NOTE}</note>\n\
         </tuple>\n\
         <dm:person id=\"confab-person\">\n\
         <rpid:activities><rpid:meeting/></rpid:activities>\n\
         <dm:note>{NOTE}</dm:note>\n\
         </dm:person>\n\
         </presence>\n"
    )
}
