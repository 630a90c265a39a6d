//! Presence: "in a conference" for the participants the bridge can name, published to a
//! presence server (RFC 3903 PUBLISH of an RFC 3863 PIDF document with the RPID activity
//! `meeting`, RFC 4480), sans-I/O.
//!
//! In: a participant connected (`connected`), who it is once the roster has been read
//! (`identified`), that it left (`left`), answers to our PUBLISHes (`response`) and `now`
//! (`tick`). Out ([`Presence::poll`]): datagrams for the presence server.
//!
//! One publication per identity (a caller on two phones is one presentity): opened when its
//! first participant connects, refreshed before the granted Expires runs out (`SIP-If-Match`
//! with the server's entity tag, no body), removed (`Expires: 0`) when its last one leaves.
//! One PUBLISH per identity is in flight at a time, retransmitted over UDP (RFC 3261 17.1.2)
//! and given up after 32 s; what changed meanwhile is sent once it is answered. A 412 (the
//! server forgot the entity tag) publishes the document afresh; a 423 takes the server's
//! Min-Expires; any other failure retries after a back-off while the identity is present.
//!
//! Only answers from the server's address with a branch of ours count, so nobody else can
//! end or move a publication.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::message::{Message, Method, StartLine};
use crate::conference::ParticipantId;

#[path = "presence_pidf.rs"]
mod pidf;
pub use pidf::{CONTENT_TYPE, NOTE, document, presentity};

/// Publications held at most. Each is keyed by an identity that a trusted gateway, a
/// signed-in account or a join token we signed asserted, and lives only while one of its
/// participants is connected (or its removal is in flight); past the cap an identity is not
/// published (counted in [`Stats::refused`]).
pub const MAX_PUBLICATIONS: usize = 4096;
/// Granted Expires below which a 2xx's value is not believed (refreshing every few seconds
/// would flood the server), and the longest we ask for.
pub const MIN_EXPIRES: u32 = 60;
pub const MAX_EXPIRES: u32 = 86_400;
/// RFC 3261 timers for our PUBLISH transactions.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TIMEOUT: Duration = Duration::from_secs(32);
/// After a failure, the next attempt waits this long, doubled per failure up to the cap.
const BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Entity tags longer than this are not kept (the publication starts afresh next time).
const MAX_ETAG: usize = 128;

/// Where and how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresenceSettings {
    /// The presence server (UDP).
    pub server: SocketAddr,
    /// Our address in the Via of each PUBLISH (where the server answers).
    pub local: SocketAddr,
    /// The Expires asked for, seconds (`MIN_EXPIRES..=MAX_EXPIRES`).
    pub expires: u32,
}

/// Counts for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// PUBLISH requests sent (retransmissions not counted).
    pub published: u64,
    /// Answered with a failure, or never answered.
    pub failed: u64,
    /// Identities not published: not a usable SIP URI, or past [`MAX_PUBLICATIONS`].
    pub refused: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// With the document (a new publication, or one the server forgot).
    Initial,
    /// `SIP-If-Match`, no body.
    Refresh,
    /// `SIP-If-Match`, `Expires: 0`.
    Remove,
}

/// Our PUBLISH in flight.
#[derive(Debug)]
struct Pending {
    branch: String,
    bytes: Vec<u8>,
    kind: Kind,
    retransmit_at: Instant,
    interval: Duration,
    deadline: Instant,
}

/// One identity's publication.
#[derive(Debug)]
struct Publication {
    /// Its connected participants. Bound: those the engine admitted; each is taken out when
    /// it leaves.
    participants: Vec<ParticipantId>,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// The server's entity tag of what it holds (none: nothing published, or forgotten).
    etag: Option<String>,
    /// The Expires this publication asks for (a 423 may raise it).
    expires: u32,
    pending: Option<Pending>,
    /// When the next PUBLISH is due without a change (a refresh, or a retry).
    due_at: Option<Instant>,
    failures: u32,
    /// Failures answered 423 in a row (a server that keeps raising its minimum is given up).
    too_brief: u32,
}

/// The presence publisher.
pub struct Presence {
    settings: PresenceSettings,
    random: fn(&mut [u8]),
    /// Bound: [`MAX_PUBLICATIONS`]; a publication goes when it has no participant and
    /// nothing (or nothing any more) is published for it.
    publications: HashMap<String, Publication>,
    /// Which identity each published participant has. Bound and pruning: the participants of
    /// `publications`, each removed when it leaves.
    identities: HashMap<ParticipantId, String>,
    /// Participants that connected and whose identity is being read. Bound: connected
    /// participants (the engine's caps); removed when identified or when they leave.
    awaiting: HashSet<ParticipantId>,
    /// Our PUBLISHes in flight. Bound and pruning: one per publication, removed with its
    /// answer, its timeout or its publication.
    by_branch: HashMap<String, String>,
    out: VecDeque<Vec<u8>>,
    stats: Stats,
}

impl Presence {
    /// `random` fills buffers with unpredictable bytes (tags, branches, Call-IDs).
    pub fn new(settings: PresenceSettings, random: fn(&mut [u8])) -> Presence {
        let expires = settings.expires.clamp(MIN_EXPIRES, MAX_EXPIRES);
        Presence {
            settings: PresenceSettings {
                expires,
                ..settings
            },
            random,
            publications: HashMap::new(),
            identities: HashMap::new(),
            awaiting: HashSet::new(),
            by_branch: HashMap::new(),
            out: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// The next datagram for the presence server.
    pub fn poll(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    pub fn server(&self) -> SocketAddr {
        self.settings.server
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Everything held (bounded as documented on the fields).
    pub fn state_size(&self) -> usize {
        self.publications.len() + self.identities.len() + self.awaiting.len() + self.by_branch.len()
    }

    /// Publications held (those published, and those being removed).
    pub fn held(&self) -> usize {
        self.publications.len()
    }

    /// Identities published or being published.
    pub fn published(&self) -> impl Iterator<Item = &str> {
        self.publications
            .iter()
            .filter(|(_, p)| !p.participants.is_empty())
            .map(|(k, _)| k.as_str())
    }

    /// A participant connected: its identity is read next (see [`Presence::identified`]).
    pub fn connected(&mut self, participant: ParticipantId) {
        if !self.identities.contains_key(&participant) {
            self.awaiting.insert(participant);
        }
    }

    /// What the roster says of a connected participant: the identity it can be named by, if
    /// any. Ignored unless it is still connected and not yet identified.
    pub fn identified(&mut self, now: Instant, participant: ParticipantId, identity: Option<&str>) {
        if !self.awaiting.remove(&participant) {
            return;
        }
        let Some(identity) = identity else { return };
        let Some(key) = presentity(identity) else {
            self.stats.refused += 1;
            return;
        };
        if !self.publications.contains_key(&key) {
            if self.publications.len() >= MAX_PUBLICATIONS {
                self.stats.refused += 1;
                return;
            }
            let publication = Publication {
                participants: Vec::new(),
                call_id: format!("{}@confab", self.token(12)),
                from_tag: self.token(8),
                cseq: 0,
                etag: None,
                expires: self.settings.expires,
                pending: None,
                due_at: None,
                failures: 0,
                too_brief: 0,
            };
            self.publications.insert(key.clone(), publication);
        }
        let Some(p) = self.publications.get_mut(&key) else {
            return;
        };
        let first = p.participants.is_empty();
        p.participants.push(participant);
        self.identities.insert(participant, key.clone());
        if first {
            // Reopened while its removal is in flight: that answer decides what comes next.
            p.due_at = None;
            p.failures = 0;
            self.flush(now, &key);
        }
    }

    /// A participant left (or was never connected): its identity's publication ends with
    /// its last participant.
    pub fn left(&mut self, now: Instant, participant: ParticipantId) {
        self.awaiting.remove(&participant);
        let Some(key) = self.identities.remove(&participant) else {
            return;
        };
        let Some(p) = self.publications.get_mut(&key) else {
            return;
        };
        p.participants.retain(|&q| q != participant);
        if p.participants.is_empty() {
            p.due_at = None;
            p.failures = 0;
            self.flush(now, &key);
        }
    }

    /// An answer to a PUBLISH, from `from`.
    pub fn response(&mut self, now: Instant, from: SocketAddr, msg: &Message) {
        // A dual-stack socket sees an IPv4 server as `::ffff:a.b.c.d`.
        let server = self.settings.server;
        if from.ip().to_canonical() != server.ip().to_canonical() || from.port() != server.port() {
            return;
        }
        let (Some(status), Some(branch)) = (msg.status(), msg.branch()) else {
            return;
        };
        if status < 200 {
            return;
        }
        let Some(key) = self.by_branch.remove(branch) else {
            return;
        };
        let Some(p) = self.publications.get_mut(&key) else {
            return;
        };
        let Some(pending) = p.pending.take() else {
            return;
        };
        match status {
            200..=299 => {
                p.failures = 0;
                p.too_brief = 0;
                if pending.kind == Kind::Remove {
                    p.etag = None;
                } else {
                    p.etag = msg
                        .header("SIP-ETag")
                        .map(str::trim)
                        .filter(|t| usable_etag(t))
                        .map(str::to_owned);
                    // RFC 3903 6: the Expires of the 2xx is what the server keeps it for.
                    // Never believed longer than asked (a server that says a day and keeps
                    // ten minutes would leave a gap), nor shorter than a minute.
                    let granted = msg
                        .header("Expires")
                        .and_then(|v| v.trim().parse::<u32>().ok())
                        .unwrap_or(p.expires)
                        .min(p.expires)
                        .max(MIN_EXPIRES);
                    // Refreshed with a margin: a quarter of the interval, a minute at most.
                    let margin = (granted / 4).min(60);
                    p.due_at = Some(now + Duration::from_secs(u64::from(granted - margin)));
                }
            }
            // A removal that failed is not retried: the server lets it expire by itself.
            _ if pending.kind == Kind::Remove => {
                p.etag = None;
                fail(&mut self.stats, p, now);
            }
            412 if pending.kind == Kind::Refresh => {
                // The server no longer knows our entity tag: what it held is gone.
                p.etag = None;
                p.due_at = None;
            }
            423 => {
                let min = msg
                    .header("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .filter(|&m| m > p.expires && m <= MAX_EXPIRES);
                p.too_brief += 1;
                match min {
                    Some(m) if p.too_brief <= 3 => {
                        p.expires = m;
                        p.due_at = None;
                    }
                    _ => fail(&mut self.stats, p, now),
                }
            }
            _ => fail(&mut self.stats, p, now),
        }
        self.flush(now, &key);
    }

    /// The bridge stops: every publication the server holds is removed now (best effort:
    /// one whose PUBLISH is still in flight, or that the server gave no tag we can name it
    /// by, expires there by itself), and nothing more is published.
    pub fn shutdown(&mut self, now: Instant) {
        self.awaiting.clear();
        self.identities.clear();
        let keys: Vec<String> = self.publications.keys().cloned().collect();
        for key in keys {
            if let Some(p) = self.publications.get_mut(&key) {
                p.participants.clear();
                p.due_at = None;
            }
            self.flush(now, &key);
        }
    }

    /// Retransmissions, timeouts, refreshes and retries that are due.
    pub fn tick(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (key, p) in &mut self.publications {
            match &mut p.pending {
                Some(pending) if now >= pending.deadline => {
                    self.by_branch.remove(&pending.branch);
                    let kind = pending.kind;
                    p.pending = None;
                    if kind == Kind::Remove {
                        p.etag = None;
                    }
                    fail(&mut self.stats, p, now);
                    due.push(key.clone());
                }
                Some(pending) if now >= pending.retransmit_at => {
                    pending.interval = (pending.interval * 2).min(T2);
                    pending.retransmit_at = now + pending.interval;
                    self.out.push_back(pending.bytes.clone());
                }
                Some(_) => {}
                None if p.due_at.is_some_and(|at| now >= at) => {
                    p.due_at = None;
                    due.push(key.clone());
                }
                None => {}
            }
        }
        for key in due {
            self.flush(now, &key);
        }
    }

    /// Sends what publication `key` needs next, if nothing is in flight; forgets it once it
    /// has no participant and nothing published.
    fn flush(&mut self, now: Instant, key: &str) {
        let branch = format!("z9hG4bK{}", self.token(8));
        let Some(p) = self.publications.get_mut(key) else {
            return;
        };
        if p.pending.is_some() {
            return;
        }
        let present = !p.participants.is_empty();
        let kind = match (present, &p.etag) {
            (false, None) => {
                self.publications.remove(key);
                return;
            }
            (false, Some(_)) => Kind::Remove,
            // Published until then (a 2xx without a tag we can send back is published
            // afresh then), or a retry after a failure waits for its time.
            (true, _) if p.due_at.is_some_and(|at| now < at) => return,
            (true, None) => Kind::Initial,
            (true, Some(_)) => Kind::Refresh,
        };
        p.cseq += 1;
        let mut m = Message {
            start: StartLine::Request {
                method: Method::Publish,
                uri: key.to_owned(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        m.push_header(
            "Via",
            format!("SIP/2.0/UDP {};branch={branch};rport", self.settings.local),
        );
        m.push_header("Max-Forwards", "70");
        m.push_header("From", format!("<{key}>;tag={}", p.from_tag));
        m.push_header("To", format!("<{key}>"));
        m.push_header("Call-ID", p.call_id.clone());
        m.push_header("CSeq", format!("{} PUBLISH", p.cseq));
        m.push_header("Event", "presence");
        let expires = if kind == Kind::Remove { 0 } else { p.expires };
        m.push_header("Expires", expires.to_string());
        if let (Kind::Refresh | Kind::Remove, Some(etag)) = (kind, &p.etag) {
            m.push_header("SIP-If-Match", etag.clone());
        }
        m.push_header("User-Agent", "confab");
        if kind == Kind::Initial {
            m.push_header("Content-Type", CONTENT_TYPE);
            m.body = document(key).into_bytes();
        }
        let bytes = m.to_bytes();
        p.due_at = None;
        p.pending = Some(Pending {
            branch: branch.clone(),
            bytes: bytes.clone(),
            kind,
            retransmit_at: now + T1,
            interval: T1,
            deadline: now + TIMEOUT,
        });
        self.stats.published += 1;
        self.by_branch.insert(branch, key.to_owned());
        self.out.push_back(bytes);
    }

    fn token(&self, bytes: usize) -> String {
        let mut b = [0u8; 16];
        let b = &mut b[..bytes.min(16)];
        (self.random)(b);
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}

/// A failed PUBLISH: counted, and the next attempt backed off.
fn fail(stats: &mut Stats, p: &mut Publication, now: Instant) {
    stats.failed += 1;
    p.failures = p.failures.saturating_add(1);
    let backoff = BACKOFF
        .saturating_mul(1 << p.failures.saturating_sub(1).min(8))
        .min(MAX_BACKOFF);
    p.due_at = Some(now + backoff);
}

/// An entity tag we can send back in a header: printable, short.
fn usable_etag(t: &str) -> bool {
    !t.is_empty() && t.len() <= MAX_ETAG && t.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
#[path = "presence_tests.rs"]
mod tests;
