//! The conference event package's document (RFC 4575, `application/conference-info+xml`),
//! built as text: a roster view in (what each participant looks like to a subscriber), a
//! `conference-info` document out. Pure: no I/O, no clock; `sip::subscriptions` decides which
//! users a document lists and with which version.
//!
//! Every string a participant chose (display names, URIs) is hostile: it is escaped (`& < > "
//! '`) and its control characters dropped before it reaches the document, and a URI is only
//! used where the schema wants one when it is made of URI characters alone.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use crate::conference::{DisconnectReason, Participant, ParticipantId, Role, State};
use crate::media::leg::LegStats;

/// The body's media type.
pub const CONTENT_TYPE: &str = "application/conference-info+xml";
/// The longest display name or URI put in a document (bytes, before escaping).
const MAX_TEXT: usize = 256;

/// What an endpoint's `<status>` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// A dial-out not answered yet (the roster's `inviting`).
    DialingOut,
    /// Answered or accepted, not yet in the mix (`connecting`).
    Pending,
    Connected,
    /// Connected, and the caller put the call on hold.
    OnHold,
    Disconnected(DisconnectReason),
}

/// One participant as subscribers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserView {
    pub id: ParticipantId,
    pub display_name: String,
    pub uri: String,
    pub leader: bool,
    pub status: Status,
    /// The others do not hear it / it does not hear them.
    pub muted: bool,
    pub deaf: bool,
    /// The SSRC its audio carries in the mix (the CSRC naming it), when its leg is up.
    pub ssrc: Option<u32>,
}

impl UserView {
    /// A roster entry and its leg's figures (none while it has no leg).
    pub fn of(p: &Participant, stats: Option<&LegStats>) -> UserView {
        let status = match p.state {
            State::Inviting => Status::DialingOut,
            State::Connecting => Status::Pending,
            State::Connected if p.on_hold => Status::OnHold,
            State::Connected => Status::Connected,
            State::Disconnected(reason) => Status::Disconnected(reason),
        };
        UserView {
            id: p.id,
            display_name: p.display_name.clone(),
            uri: p.uri.clone(),
            leader: p.role == Role::Leader,
            status,
            muted: p.muted,
            deaf: p.deaf,
            ssrc: stats.map(|s| s.ssrc).filter(|s| *s != 0),
        }
    }

    /// Whether the participant is in the conference (or on its way in).
    pub fn present(&self) -> bool {
        !matches!(self.status, Status::Disconnected(_))
    }

    /// The most bytes this user can take in a document: every character of its name and
    /// URI escaped to six (the URI is written twice), plus the markup.
    pub fn max_len(&self) -> usize {
        640 + 6 * self.display_name.len().min(MAX_TEXT) + 12 * self.uri.len().min(MAX_TEXT)
    }

    /// A digest of everything a document says about it: a subscriber is told again when
    /// this changes.
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.id.hash(&mut h);
        self.display_name.hash(&mut h);
        self.uri.hash(&mut h);
        (self.leader, self.muted, self.deaf, self.ssrc).hash(&mut h);
        status_name(self.status).hash(&mut h);
        if let Status::Disconnected(reason) = self.status {
            reason.as_str().hash(&mut h);
        }
        h.finish()
    }
}

/// A user element of a document.
#[derive(Clone, Copy, Debug)]
pub enum Entry<'a> {
    /// The user as it is now (`state="full"`: it replaces what the subscriber had).
    User(&'a UserView),
    /// A user the subscriber knew that is no longer in the roster at all.
    Deleted(ParticipantId),
}

/// The conference-wide part of a document.
#[derive(Clone, Copy, Debug)]
pub struct ConferenceState {
    /// Participants present (not disconnected), whether listed or not.
    pub user_count: usize,
}

/// A user's entity: unique and stable per participant, whatever URI it called from (two
/// calls from one phone are two users; the caller's URI is its endpoint and associated AOR).
pub fn user_entity(id: ParticipantId) -> String {
    format!("urn:x-confab:participant:{}", id.0)
}

/// The `conference-info` document for the conference `entity` (its SIP URI), `version` as
/// RFC 4575 4.7 counts them per subscription, `full` or partial, listing `entries`.
pub fn document(
    entity: &str,
    version: u32,
    full: bool,
    conference: ConferenceState,
    entries: &[Entry<'_>],
) -> String {
    let mut x = String::with_capacity(256 + entries.len() * 512);
    let state = if full { "full" } else { "partial" };
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<conference-info xmlns=\"urn:ietf:params:xml:ns:conference-info\" entity=\"{}\" \
         state=\"{state}\" version=\"{version}\">",
        escape(&uri_or(entity, "sip:conference@invalid"))
    );
    let _ = writeln!(
        x,
        "  <conference-state>\n    <user-count>{}</user-count>\n    <active>true</active>\n  \
         </conference-state>",
        conference.user_count
    );
    let _ = writeln!(x, "  <users state=\"{state}\">");
    for entry in entries {
        match entry {
            Entry::User(u) => user(&mut x, u),
            Entry::Deleted(id) => {
                let _ = writeln!(
                    x,
                    "    <user entity=\"{}\" state=\"deleted\"/>",
                    user_entity(*id)
                );
            }
        }
    }
    x.push_str("  </users>\n</conference-info>\n");
    x
}

fn user(x: &mut String, u: &UserView) {
    let _ = writeln!(
        x,
        "    <user entity=\"{}\" state=\"full\">",
        user_entity(u.id)
    );
    let name = clean(&u.display_name);
    if !name.is_empty() {
        let _ = writeln!(x, "      <display-text>{}</display-text>", escape(&name));
    }
    let uri = safe_uri(&u.uri);
    if let Some(uri) = &uri {
        let _ = writeln!(
            x,
            "      <associated-aors>\n        <entry>\n          <uri>{}</uri>\n        \
             </entry>\n      </associated-aors>",
            escape(uri)
        );
    }
    let role = if u.leader { "leader" } else { "attendee" };
    let _ = writeln!(
        x,
        "      <roles>\n        <entry>{role}</entry>\n      </roles>"
    );
    let endpoint = uri.unwrap_or_else(|| format!("urn:x-confab:leg:{}", u.id.0));
    let _ = writeln!(
        x,
        "      <endpoint entity=\"{}\" state=\"full\">",
        escape(&endpoint)
    );
    let _ = writeln!(x, "        <status>{}</status>", status_name(u.status));
    if let Status::Disconnected(reason) = u.status {
        let _ = writeln!(
            x,
            "        <disconnection-method>{}</disconnection-method>",
            disconnection_method(reason)
        );
    } else {
        // The participant's audio: muted = the others do not hear it (it only receives).
        let direction = match (u.muted, u.deaf) {
            (false, false) => "sendrecv",
            (true, false) => "recvonly",
            (false, true) => "sendonly",
            (true, true) => "inactive",
        };
        let _ = writeln!(
            x,
            "        <media id=\"audio-{}\">\n          <type>audio</type>",
            u.id.0
        );
        if let Some(ssrc) = u.ssrc {
            let _ = writeln!(x, "          <src-id>{ssrc}</src-id>");
        }
        let _ = writeln!(
            x,
            "          <status>{direction}</status>\n        </media>"
        );
    }
    x.push_str("      </endpoint>\n    </user>\n");
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::DialingOut => "dialing-out",
        Status::Pending => "pending",
        Status::Connected => "connected",
        Status::OnHold => "on-hold",
        Status::Disconnected(_) => "disconnected",
    }
}

fn disconnection_method(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::Ejected => "booted",
        DisconnectReason::Busy => "busy",
        DisconnectReason::Hangup
        | DisconnectReason::ConferenceEnded
        | DisconnectReason::Transferred => "departed",
        _ => "failed",
    }
}

/// `text` without control characters, at most [`MAX_TEXT`] bytes (cut at a char boundary).
fn clean(text: &str) -> String {
    crate::conference::clean_text(text, MAX_TEXT)
}

/// The URI if it is one a document may carry: a `sip:`, `sips:` or `tel:` URI of URI
/// characters only (no spaces, quotes, angle brackets or anything outside ASCII).
pub fn safe_uri(uri: &str) -> Option<String> {
    let uri = clean(uri);
    let lower = uri.to_ascii_lowercase();
    let scheme = ["sip:", "sips:", "tel:"]
        .iter()
        .any(|s| lower.starts_with(s) && lower.len() > s.len());
    let chars = uri
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b));
    (scheme && chars).then_some(uri)
}

fn uri_or(uri: &str, fallback: &str) -> String {
    safe_uri(uri).unwrap_or_else(|| fallback.to_owned())
}

/// Text for XML character data or an attribute value: the five metacharacters escaped,
/// control characters (and the few others XML 1.0 forbids) dropped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}') => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "conference_event_tests.rs"]
pub(crate) mod tests;
