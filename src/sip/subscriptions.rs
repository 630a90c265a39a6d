//! Subscriptions to the conference event package (RFC 4575 over RFC 6665), sans-I/O.
//!
//! In: SUBSCRIBE requests (with what the shell knows of the subscriber's access), answers to
//! our NOTIFYs, the roster of a watched conference as it changes, a conference's end, and
//! `now` in `tick`. Out ([`Subscriptions::poll`]): messages to send and roster fetches to make.
//! The serving loop calls `tick` every few tens of milliseconds.
//!
//! A SUBSCRIBE is answered 200 with the granted Expires; the first NOTIFY carries the whole
//! roster (`state="full"`), each later one the users that changed since the subscriber was
//! last told (`state="partial"`, the version one higher). One NOTIFY per subscription is in
//! flight at a time (retransmitted over UDP, 64*T1 at most); changes meanwhile go into the
//! next one. A refresh gets a full document again; `Expires: 0`, the expiry, the conference's
//! end, a 481 or any failure to a NOTIFY end the subscription (RFC 6665 4.2).
//!
//! Notification details (documents, escaping) are in `conference_event`; the NOTIFY itself
//! and its transaction are beside this file in `subscriptions_notify.rs`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::conference_event::UserView;
use super::message::{self, Message};
use super::uas::Peer;
use crate::conference::ParticipantId;

#[path = "subscriptions_headers.rs"]
mod headers;
#[path = "subscriptions_notify.rs"]
mod notify;
use headers::{event, requested_expires, usable_uri};

/// Subscription durations (seconds): shorter is refused (423), longer is shortened.
pub const MIN_EXPIRES: u32 = 60;
pub const MAX_EXPIRES: u32 = 3600;
/// RFC 4575 3.3: what a SUBSCRIBE without Expires gets.
pub const DEFAULT_EXPIRES: u32 = 3600;
/// Subscriptions held at most, from one source outside `sip.trusted` (a participant's
/// phone), and from one trusted source (a gateway carries many subscribers).
pub const MAX_SUBSCRIPTIONS: usize = 1024;
pub const MAX_PER_SOURCE: usize = 8;
pub const MAX_PER_TRUSTED_SOURCE: usize = 256;
/// The package we serve.
pub const PACKAGE: &str = "conference";
/// RFC 3261 timers for our NOTIFY transactions.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TIMEOUT: Duration = Duration::from_secs(32);
/// The longest Contact or Record-Route kept, and how many routes.
const MAX_URI: usize = 256;
const MAX_ROUTES: usize = 8;

/// A SUBSCRIBE as the call core passes it on: the request, where it came from, and our
/// address and Contact as that peer sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeRequest {
    pub peer: Peer,
    pub msg: Message,
    pub local: SocketAddr,
    pub contact: String,
    /// The source is in `sip.trusted`.
    pub trusted: bool,
    /// Participants whose calls come from the subscriber's address.
    pub participants: Vec<ParticipantId>,
}

/// What the shell knows about a subscriber and the conference it names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// The conference runs here (and is a meeting, not the attendant's lobby).
    pub exists: bool,
    /// The source is in `sip.trusted`.
    pub trusted: bool,
    /// The conference's gate takes the identity the trusted source asserts.
    pub admitted: bool,
    /// The subscriber's address has a call in this conference.
    pub participant: bool,
}

impl Access {
    /// Who may watch a conference: its participants, and trusted sources for identities its
    /// gate takes. A passcode is never proven by a SUBSCRIBE, so nobody else may.
    pub fn allows(&self) -> bool {
        self.participant || (self.trusted && self.admitted)
    }
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Send {
        to: Peer,
        bytes: Vec<u8>,
    },
    /// Read this conference's roster and hand it to [`Subscriptions::roster`].
    FetchRoster(String),
}

/// Why a subscription ends, and whether its last NOTIFY carries the roster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct End {
    reason: &'static str,
    with_state: bool,
}

/// Our NOTIFY in flight.
#[derive(Debug)]
struct Pending {
    branch: String,
    bytes: Vec<u8>,
    retransmit_at: Option<Instant>,
    interval: Duration,
    deadline: Instant,
    /// It said `terminated`: the subscription goes once it is answered.
    last: bool,
}

#[derive(Debug)]
struct Sub {
    meeting: String,
    /// The conference's URI (the SUBSCRIBE's Request-URI).
    entity: String,
    peer: Peer,
    call_id: String,
    local_tag: String,
    /// The SUBSCRIBE's From and To: the NOTIFY's To and From.
    from: String,
    to: String,
    target: String,
    routes: Vec<String>,
    local: SocketAddr,
    contact: String,
    event_id: Option<String>,
    cseq: u32,
    expires_at: Instant,
    version: u32,
    /// What the subscriber was told of each user it knows. Bound: the users of the last
    /// documents (at most the roster's size); users that left are taken out once told.
    seen: HashMap<ParticipantId, u64>,
    full_due: bool,
    ending: Option<End>,
    pending: Option<Pending>,
    /// The last SUBSCRIBE's CSeq and our answer, for its retransmissions.
    answered: (u32, Vec<u8>),
}

/// The subscriptions of every conference.
#[derive(Debug)]
pub struct Subscriptions {
    random: fn(&mut [u8]),
    next: u64,
    /// Bound: [`MAX_SUBSCRIPTIONS`] (more get 503), at most [`MAX_PER_SOURCE`] (or
    /// [`MAX_PER_TRUSTED_SOURCE`]) per source address, counted in `per_source`. Pruned when
    /// they expire, end, or their NOTIFY fails or goes unanswered for 64*T1.
    subs: HashMap<u64, Sub>,
    /// Subscriptions per source address. Bound: one entry per source with a subscription;
    /// removed when its last one goes.
    per_source: HashMap<IpAddr, usize>,
    /// Subscriptions by Call-ID and the subscriber's tag, and by the branch of their NOTIFY in
    /// flight. Bound and pruning: one each per subscription, removed with it.
    by_dialog: HashMap<(String, String), u64>,
    by_branch: HashMap<String, u64>,
    /// The last roster read of each watched conference. Bound: conferences with
    /// subscriptions; removed with their last subscription or when they end.
    views: HashMap<String, Vec<UserView>>,
    /// Roster reads under way, and whether another is due after it. Bound: conferences with
    /// subscriptions (a read is asked only for one); removed when the read comes back.
    fetching: HashMap<String, bool>,
    out: VecDeque<Output>,
}

impl Subscriptions {
    /// `random` fills buffers with unpredictable bytes (tags, branches).
    pub fn new(random: fn(&mut [u8])) -> Subscriptions {
        Subscriptions {
            random,
            next: 1,
            subs: HashMap::new(),
            per_source: HashMap::new(),
            by_dialog: HashMap::new(),
            by_branch: HashMap::new(),
            views: HashMap::new(),
            fetching: HashMap::new(),
            out: VecDeque::new(),
        }
    }

    /// The next thing to do.
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Subscriptions held.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Everything held (bounded as documented on the fields).
    pub fn state_size(&self) -> usize {
        self.subs.len()
            + self.per_source.len()
            + self.by_dialog.len()
            + self.by_branch.len()
            + self.views.len()
            + self.fetching.len()
    }

    /// Whether anyone watches `meeting` (its roster changes are worth a read).
    pub fn watching(&self, meeting: &str) -> bool {
        self.subs.values().any(|s| s.meeting == meeting)
    }

    /// A SUBSCRIBE: answered at once; the first NOTIFY follows the roster read it asks for.
    pub fn subscribe(&mut self, now: Instant, req: &SubscribeRequest, access: Access) {
        let msg = &req.msg;
        let Some(event_id) = event(msg) else {
            return self.refuse(req, 489, "Bad Event", &[("Allow-Events", PACKAGE)]);
        };
        let Some(remote_tag) = msg.from_tag().filter(|t| !t.is_empty()) else {
            return self.refuse(req, 400, "Bad Request (no From tag)", &[]);
        };
        let key = (msg.call_id().to_owned(), remote_tag.to_owned());
        let cseq = msg.cseq().map_or(0, |(n, _)| n);
        if let Some(&id) = self.by_dialog.get(&key) {
            return self.refresh(now, req, id, cseq);
        }
        if msg.to_tag().is_some() {
            return self.refuse(req, 481, "Subscription Does Not Exist", &[]);
        }
        // A stranger learns nothing, not even whether the meeting exists.
        if !(access.trusted || access.participant) {
            return self.refuse(req, 403, "Forbidden", &[]);
        }
        if !access.exists {
            return self.refuse(req, 404, "Not Found", &[]);
        }
        if !access.allows() {
            return self.refuse(req, 403, "Forbidden", &[]);
        }
        let accepts = msg.header_values("Accept").all(|a| {
            let a = a.split(';').next().unwrap_or_default().trim();
            a.eq_ignore_ascii_case(super::conference_event::CONTENT_TYPE)
                || a == "*/*"
                || a.eq_ignore_ascii_case("application/*")
        });
        if !accepts {
            return self.refuse(req, 406, "Not Acceptable", &[]);
        }
        let expires = match requested_expires(msg) {
            Ok(e) => e,
            Err(()) => return self.refuse(req, 400, "Bad Request (Expires)", &[]),
        };
        if expires != 0 && expires < MIN_EXPIRES {
            let min = MIN_EXPIRES.to_string();
            return self.refuse(req, 423, "Interval Too Brief", &[("Min-Expires", &min)]);
        }
        let Some(target) = msg
            .header("Contact")
            .map(message::addr_uri)
            .filter(|c| usable_uri(c))
        else {
            return self.refuse(req, 400, "Bad Request (Contact)", &[]);
        };
        let source = req.peer.addr.ip().to_canonical();
        let cap = if req.trusted {
            MAX_PER_TRUSTED_SOURCE
        } else {
            MAX_PER_SOURCE
        };
        let from_source = self.per_source.get(&source).copied().unwrap_or(0);
        if self.subs.len() >= MAX_SUBSCRIPTIONS || from_source >= cap {
            return self.refuse(
                req,
                503,
                "Service Unavailable (too many subscriptions)",
                &[("Retry-After", "60")],
            );
        }
        let (entity, meeting) = match &msg.start {
            message::StartLine::Request { uri, .. } => (uri.clone(), msg.request_user()),
            message::StartLine::Response { .. } => (String::new(), None),
        };
        let Some(meeting) = meeting.map(str::to_owned) else {
            return self.refuse(req, 404, "Not Found", &[]);
        };
        let granted = expires.min(MAX_EXPIRES);
        let local_tag = self.token(8);
        let mut sub = Sub {
            meeting: meeting.clone(),
            entity,
            peer: req.peer,
            call_id: key.0.clone(),
            local_tag,
            from: msg.header("From").unwrap_or_default().to_owned(),
            to: msg.header("To").unwrap_or_default().to_owned(),
            target: target.to_owned(),
            routes: msg
                .header_values("Record-Route")
                .filter(|r| r.len() <= MAX_URI)
                .take(MAX_ROUTES)
                .map(str::to_owned)
                .collect(),
            local: req.local,
            contact: req.contact.clone(),
            event_id,
            cseq: 0,
            expires_at: now + Duration::from_secs(u64::from(granted)),
            version: 0,
            seen: HashMap::new(),
            full_due: true,
            // A fetch (RFC 6665 4.4.3): one NOTIFY with the roster, then the end.
            ending: (granted == 0).then_some(End {
                reason: "timeout",
                with_state: true,
            }),
            pending: None,
            answered: (cseq, Vec::new()),
        };
        sub.answered.1 = self.answer(req, &sub.local_tag, &sub.contact, granted);
        let id = self.next;
        self.next += 1;
        self.subs.insert(id, sub);
        self.by_dialog.insert(key, id);
        *self.per_source.entry(source).or_insert(0) += 1;
        self.fetch(&meeting);
    }

    /// A SUBSCRIBE in an existing subscription: a retransmission, a refresh or an end.
    fn refresh(&mut self, now: Instant, req: &SubscribeRequest, id: u64, cseq: u32) {
        let msg = &req.msg;
        let Some(sub) = self.subs.get(&id) else {
            return self.refuse(req, 481, "Subscription Does Not Exist", &[]);
        };
        let same_source = sub.peer.addr.ip().to_canonical() == req.peer.addr.ip().to_canonical();
        let our_tag = msg.to_tag().is_none_or(|t| t == sub.local_tag);
        if !same_source || !our_tag {
            return self.refuse(req, 481, "Subscription Does Not Exist", &[]);
        }
        if cseq == sub.answered.0 && !sub.answered.1.is_empty() {
            let bytes = sub.answered.1.clone();
            self.out.push_back(Output::Send {
                to: req.peer,
                bytes,
            });
            return;
        }
        let expires = match requested_expires(msg) {
            Ok(e) => e,
            Err(()) => return self.refuse(req, 400, "Bad Request (Expires)", &[]),
        };
        if expires != 0 && expires < MIN_EXPIRES {
            let min = MIN_EXPIRES.to_string();
            return self.refuse(req, 423, "Interval Too Brief", &[("Min-Expires", &min)]);
        }
        let granted = expires.min(MAX_EXPIRES);
        let (tag, contact) = (sub.local_tag.clone(), sub.contact.clone());
        let bytes = self.answer(req, &tag, &contact, granted);
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        sub.answered = (cseq, bytes);
        sub.peer = req.peer;
        if granted == 0 {
            sub.ending.get_or_insert(End {
                reason: "timeout",
                with_state: true,
            });
        } else {
            sub.expires_at = now + Duration::from_secs(u64::from(granted));
            sub.full_due = true;
        }
        self.flush(now, id);
    }

    /// The 200 to a SUBSCRIBE (sent; its bytes kept for retransmissions).
    fn answer(
        &mut self,
        req: &SubscribeRequest,
        tag: &str,
        contact: &str,
        granted: u32,
    ) -> Vec<u8> {
        let mut r = req.msg.response(200, "OK", Some(tag));
        r.push_header("Server", "confab");
        r.push_header("Contact", contact);
        r.push_header("Expires", granted.to_string());
        r.push_header("Allow-Events", PACKAGE);
        let bytes = r.to_bytes();
        self.out.push_back(Output::Send {
            to: req.peer,
            bytes: bytes.clone(),
        });
        bytes
    }

    fn refuse(
        &mut self,
        req: &SubscribeRequest,
        code: u16,
        reason: &str,
        headers: &[(&str, &str)],
    ) {
        let tag = self.token(8);
        let mut r = req.msg.response(code, reason, Some(&tag));
        r.push_header("Server", "confab");
        for (name, value) in headers {
            r.push_header(name, *value);
        }
        self.out.push_back(Output::Send {
            to: req.peer,
            bytes: r.to_bytes(),
        });
    }

    /// A new SUBSCRIBE for a meeting another node runs (`to`: its SIP `host:port`): 302 to
    /// that node, which the subscriber asks instead (RFC 3261 8.1.3.4). Nothing is kept here.
    /// The shell sends only subscribers [`Access::allows`] here, so a stranger still learns
    /// nothing (403 first).
    pub fn redirect(&mut self, req: &SubscribeRequest, to: &str) {
        let user = req.msg.request_user().unwrap_or_default();
        let contact = format!("<sip:{user}@{to}>");
        self.refuse(req, 302, "Moved Temporarily", &[("Contact", &contact)]);
    }

    /// A SUBSCRIBE that cannot be looked at now (too many placement reads under way): 503,
    /// to be tried again in a few seconds.
    pub fn busy(&mut self, req: &SubscribeRequest) {
        self.refuse(req, 503, "Service Unavailable", &[("Retry-After", "5")]);
    }

    /// Asks for a read of `meeting`'s roster, or for one more after the read under way.
    fn fetch(&mut self, meeting: &str) {
        match self.fetching.get_mut(meeting) {
            Some(again) => *again = true,
            None => {
                self.fetching.insert(meeting.to_owned(), false);
                self.out.push_back(Output::FetchRoster(meeting.to_owned()));
            }
        }
    }

    /// `meeting`'s roster changed: subscribers are told once it is read.
    pub fn changed(&mut self, meeting: &str) {
        if self.watching(meeting) {
            self.fetch(meeting);
        }
    }

    /// A roster read came back: `None` when the conference is gone.
    pub fn roster(&mut self, now: Instant, meeting: &str, users: Option<Vec<UserView>>) {
        if self.fetching.remove(meeting) == Some(true) && users.is_some() && self.watching(meeting)
        {
            self.fetch(meeting);
        }
        let Some(users) = users else {
            return self.ended(now, meeting);
        };
        let ids: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| s.meeting == meeting)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        self.views.insert(meeting.to_owned(), users);
        for id in ids {
            self.flush(now, id);
        }
    }

    /// The conference ended: every subscription to it ends (`noresource`).
    pub fn ended(&mut self, now: Instant, meeting: &str) {
        self.views.remove(meeting);
        let ids: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| s.meeting == meeting)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(s) = self.subs.get_mut(&id) {
                s.ending = Some(End {
                    reason: "noresource",
                    with_state: false,
                });
            }
            self.flush(now, id);
        }
    }

    /// Expiry, retransmissions and NOTIFYs nobody answered.
    pub fn tick(&mut self, now: Instant) {
        let mut due = Vec::new();
        let mut dead = Vec::new();
        for (&id, s) in &mut self.subs {
            if let Some(p) = &mut s.pending {
                if now >= p.deadline {
                    dead.push(id);
                    continue;
                }
                if let Some(at) = p.retransmit_at.filter(|at| now >= *at) {
                    self.out.push_back(Output::Send {
                        to: s.peer,
                        bytes: p.bytes.clone(),
                    });
                    p.interval = (p.interval * 2).min(T2);
                    p.retransmit_at = Some(at.max(now) + p.interval);
                }
            }
            if now >= s.expires_at && s.ending.is_none() {
                s.ending = Some(End {
                    reason: "timeout",
                    with_state: false,
                });
                due.push(id);
            }
        }
        for id in dead {
            self.remove(id);
        }
        for id in due {
            self.flush(now, id);
        }
    }

    /// An answer to one of our NOTIFYs; false if it is none of ours.
    pub fn notify_answer(&mut self, now: Instant, msg: &Message) -> bool {
        let (Some(branch), Some(code)) = (msg.branch(), msg.status()) else {
            return false;
        };
        let Some(&id) = self.by_branch.get(branch) else {
            return false;
        };
        if code < 200 {
            return true;
        }
        self.by_branch.remove(branch);
        let last = self
            .subs
            .get_mut(&id)
            .and_then(|s| s.pending.take())
            .is_none_or(|p| p.last);
        // 481: the subscriber has forgotten it; any other failure ends it too (RFC 6665 4.2.2).
        if code >= 300 || last {
            self.remove(id);
        } else {
            self.flush(now, id);
        }
        true
    }

    fn remove(&mut self, id: u64) {
        let Some(s) = self.subs.remove(&id) else {
            return;
        };
        self.by_dialog.retain(|_, v| *v != id);
        if let Some(p) = &s.pending {
            self.by_branch.remove(&p.branch);
        }
        let source = s.peer.addr.ip().to_canonical();
        if let Some(n) = self.per_source.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
        if !self.watching(&s.meeting) {
            self.views.remove(&s.meeting);
            // A read under way is dropped when it comes back.
            self.fetching.remove(&s.meeting);
        }
    }

    fn token(&self, bytes: usize) -> String {
        let mut b = vec![0u8; bytes];
        (self.random)(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}

#[cfg(test)]
#[path = "subscriptions_tests.rs"]
mod tests;
