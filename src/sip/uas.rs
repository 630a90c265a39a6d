//! Dial-in calls, sans-I/O: SIP requests and responses in (with the source and `now`), actions
//! out (messages to send, joins to ask of the engine, participants that left). The shell
//! (`sip::server`) owns the sockets and the engine; tests drive this with bytes and fake time.
//!
//! What it does: INVITE -> 100 Trying, offer/answer, a join request; the join's result -> 200
//! with the answer (retransmitted until ACK, RFC 3261 13.3.1.4) or the refusal's status
//! (retransmitted until ACK, 17.2.1). BYE both ways, CANCEL (487), OPTIONS (503 while draining),
//! re-INVITE and UPDATE in a dialog (hold, session refresh), INFO with DTMF, session timers
//! (RFC 4028), 405/501 for what we do not serve, 400 for malformed requests, 403 for untrusted
//! sources, 503 for a flood from one caller or source. Retransmitted requests get the same
//! answer from a response cache; every call, dialog and cache entry is removed after at most
//! 64*T1.
//!
//! This file holds the types and the dispatch of what arrives; beside it: `invite` (a new
//! call, up to its ACK or CANCEL), `dialog` (requests inside a call), `dialout` (calls the
//! bridge places), `transfer` (302 and REFER) and `timers` (`Uas::tick`: retransmissions,
//! timeouts and expiry).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::message::{Malformed, Message, Method, StartLine};
use super::sdp::Negotiated;
use crate::conference::ParticipantId;
use crate::media::srtp::KeyMaterial;

/// RFC 3261 timers.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TIMEOUT: Duration = Duration::from_secs(32);
/// RFC 4028's floor for Session-Expires.
pub const MIN_SE: u32 = 90;
/// The longest session interval we keep: a peer asking for more is given this (RFC 4028 lets
/// the UAS lower it). Bounds every `now + interval` taken from the wire.
pub const MAX_SE: u32 = 86_400;
/// The longest caller URI or asserted identity kept (bytes).
const MAX_URI: usize = 256;
/// Cached responses to non-INVITE requests at most (see `Uas::cache`).
const MAX_CACHED: usize = 65_536;
/// Sources (and callers behind trusted sources) whose INVITEs are counted at most (see
/// `Uas::flood_sources` and `Uas::flood_callers`).
const MAX_FLOOD_SOURCES: usize = 65_536;
const MAX_FLOOD_CALLERS: usize = 16_384;
/// A trusted source (a gateway or proxy) may send this many times `invites_per_second`: it
/// carries many callers, each limited to `invites_per_second` on its own, so one noisy caller
/// cannot get everyone behind it refused; ten of them at full rate still fit, while what one
/// address can make the bridge do stays capped.
const GATEWAY_FACTOR: u32 = 10;
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, SUBSCRIBE";

#[path = "dialog.rs"]
mod dialog;
#[path = "dialout.rs"]
mod dialout;
#[path = "invite.rs"]
mod invite;
#[path = "known_callers.rs"]
mod known_callers;
#[path = "uas_subscribe.rs"]
mod subscribe;
#[path = "uas_timers.rs"]
mod timers;
#[path = "transfer.rs"]
mod transfer;
#[path = "untrusted.rs"]
mod untrusted;
use dialog::in_dialog_request;
pub use dialout::{DialAnswer, RING_TIMEOUT, safe_uri, srtp::offer_kind as dial_offer_kind};
use untrusted::Untrusted;

#[path = "uas_peer.rs"]
mod peer;
pub use peer::Peer;

#[path = "transaction.rs"]
mod transaction;
pub(crate) use transaction::TransactionKey;

#[path = "uas_join.rs"]
mod join;
use join::caller_of;
pub use join::{CallRef, JoinRequest, JoinResult};

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Send {
        to: Peer,
        bytes: Vec<u8>,
    },
    Join(Box<JoinRequest>),
    /// The caller is gone (BYE, CANCEL, no ACK, session expired): remove the participant.
    Leave {
        participant: ParticipantId,
    },
    /// The caller put us on hold or resumed.
    Hold {
        participant: ParticipantId,
        on: bool,
    },
    Dtmf {
        participant: ParticipantId,
        digit: char,
    },
    /// Signalling changed the leg (a re-INVITE's new codec, an offerless call's answer).
    Renegotiated {
        participant: ParticipantId,
        spec: Box<crate::media::leg::LegSpec>,
    },
    /// A dial-out's provisional response (180 ringing, 183 progress).
    Progress {
        participant: ParticipantId,
        code: u16,
    },
    /// A dial-out was answered, with an SDP answer the SRTP policy accepts.
    Answered {
        participant: ParticipantId,
        answer: Box<DialAnswer>,
    },
    /// A dial-out failed with this final status (408 when nobody answered).
    Failed {
        participant: ParticipantId,
        code: u16,
    },
    /// A SUBSCRIBE, and an answer to our NOTIFY, for `sip::subscriptions` (see `subscribe`).
    Subscribe(Box<crate::sip::subscriptions::SubscribeRequest>),
    NotifyAnswered(Box<Message>),
    /// An answer to one of our PUBLISHes, for `sip::presence`, and where it came from.
    PublishAnswered {
        from: std::net::SocketAddr,
        msg: Box<Message>,
    },
}

#[path = "uas_settings.rs"]
mod settings;
pub use crate::sip::auth::AuthSettings;
pub use settings::{KeptMeetings, TlsListener, UasSettings};

/// What the core has counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UasStats {
    pub malformed: u64,
    pub dropped: u64,
    pub untrusted: u64,
    pub flood: u64,
    /// Wrong digest answers (and replays) from untrusted callers.
    pub auth_failures: u64,
}

#[derive(Debug)]
enum CallState {
    /// Waiting for the engine's answer to the join.
    Admitting,
    /// 200 sent, ACK awaited (the 200 is retransmitted over UDP).
    Answered,
    Confirmed,
    /// A final error sent, ACK awaited.
    Rejected,
    /// Our BYE sent, its answer awaited.
    Closing,
}

#[derive(Debug)]
struct Call {
    call_id: String,
    local_tag: String,
    invite: Message,
    /// The INVITE's transaction, for a dial-in (a dial-out's is ours, in `outcalls`).
    transaction: Option<TransactionKey>,
    peer: Peer,
    state: CallState,
    participant: Option<ParticipantId>,
    /// Answer SDP and the session id/version it carries.
    negotiated: Option<Negotiated>,
    local_media: Option<SocketAddr>,
    local_key: Option<KeyMaterial>,
    sdp_version: u64,
    /// The last final response to the INVITE (retransmitted until ACK).
    final_response: Option<Vec<u8>>,
    retransmit_at: Option<Instant>,
    interval: Duration,
    deadline: Instant,
    /// Our BYE, while unanswered.
    bye: Option<(String, Vec<u8>)>,
    /// Our REFER's branch and how long we wait for the caller to go, while it is pending.
    refer: Option<(String, Instant)>,
    local_cseq: u32,
    session_expires: Option<(Duration, Instant)>,
    on_hold: bool,
    /// The INVITE had no offer: our 200 carries one and the ACK the answer.
    offerless: bool,
    /// A dial-out's SRTP policy (a dial-in's is its meeting's, looked up by its INVITE).
    srtp_policy: Option<crate::config::SrtpPolicy>,
}

impl Call {
    /// A call in `state` with nothing negotiated, answered or sent yet.
    fn new(
        call_id: String,
        local_tag: String,
        invite: Message,
        transaction: Option<TransactionKey>,
        peer: Peer,
        state: CallState,
        now: Instant,
    ) -> Self {
        Call {
            call_id,
            local_tag,
            invite,
            transaction,
            peer,
            state,
            participant: None,
            negotiated: None,
            local_media: None,
            local_key: None,
            sdp_version: 1,
            final_response: None,
            retransmit_at: None,
            interval: T1,
            deadline: now + TIMEOUT,
            bye: None,
            refer: None,
            local_cseq: 1,
            session_expires: None,
            on_hold: false,
            offerless: false,
            srtp_policy: None,
        }
    }

    /// The dialog of an answered dial-out, held as a confirmed dial-in call.
    fn confirmed(
        call_id: String,
        local_tag: String,
        invite: Message,
        peer: Peer,
        participant: ParticipantId,
        now: Instant,
    ) -> Self {
        Call {
            participant: Some(participant),
            ..Call::new(
                call_id,
                local_tag,
                invite,
                None,
                peer,
                CallState::Confirmed,
                now,
            )
        }
    }
}

/// The dial-in state machine.
#[derive(Debug)]
pub struct Uas {
    settings: UasSettings,
    random: fn(&mut [u8]),
    next_call: u64,
    /// Calls by our id. Bound: `max_calls` (more INVITEs get 503); a call goes when it ends,
    /// is refused and acknowledged, or 64*T1 after its last unanswered message.
    calls: HashMap<u64, Call>,
    /// INVITE transactions (see [`TransactionKey`]: another host reusing a branch is another
    /// transaction, and never gets this one's answer). Bound: one per call (`calls` is capped
    /// by `max_calls`); pruned with the call.
    by_branch: HashMap<TransactionKey, u64>,
    /// UDP INVITE transactions by their key without the source port, for a CANCEL from another
    /// port of the caller's host ([`TransactionKey::any_port`]). Bound: one per call, the
    /// first call wins a shared key; pruned with the call that holds it.
    by_host_branch: HashMap<TransactionKey, u64>,
    /// Calls by Call-ID and our tag; `by_participant` by participant. Bound and pruning: one
    /// each per call, removed with it.
    by_dialog: HashMap<(String, String), u64>,
    by_participant: HashMap<ParticipantId, u64>,
    /// Final responses to trusted sources' non-INVITE requests, for their retransmissions, by
    /// transaction and method. Bound: [`MAX_CACHED`] entries (more are answered without being
    /// cached); each is pruned by `tick` 64*T1 after it was made. Untrusted sources' requests
    /// are never cached.
    cache: HashMap<(TransactionKey, String), (Vec<u8>, Instant)>,
    /// New INVITEs taken per source (an address, an IPv6 /64: `limiter::source_of`) in its
    /// current second. Bound: [`MAX_FLOOD_SOURCES`]; an entry counts for a second and `tick`
    /// prunes it after that; when the map is full of live entries, a new source gets 503.
    /// Keyed also by whether the caller is known (`known_callers`): known callers behind a
    /// trusted source count apart from the rest.
    flood_sources: HashMap<(IpAddr, bool), (Instant, u32)>,
    /// New INVITEs per caller behind a trusted source (`limiter::caller_key`, as the failure
    /// limiter counts it) in its current second. Bound: [`MAX_FLOOD_CALLERS`], and only callers
    /// whose source is within its own limit are added; pruned as `flood_sources`; when full of
    /// live entries, a new caller is limited by its source's count alone.
    flood_callers: HashMap<String, (Instant, u32)>,
    /// Callers let into a meeting lately: not refused for their gateway's total (bound and
    /// pruning in [`known_callers::KnownCallers`]).
    known_callers: known_callers::KnownCallers,
    /// Where the request being handled came from (the cache keys its answer by it).
    source: Option<Peer>,
    /// Dial-outs by the branch of their INVITE (ours, random), and which participant has which.
    /// Bound: the dial-outs the API started (each a participant the engine admitted); removed
    /// when the dial-out is answered, fails or its ring timeout passes.
    outcalls: HashMap<String, dialout::OutCall>,
    by_participant_out: HashMap<ParticipantId, String>,
    draining: bool,
    /// Digest sign-in of untrusted callers (its state is bounded, see `auth.rs`).
    auth: crate::sip::auth::AuthGate,
    actions: VecDeque<Action>,
    pub stats: UasStats,
}

impl Uas {
    /// `random` fills buffers with unpredictable bytes (tags, branches, SRTP keys).
    pub fn new(settings: UasSettings, random: fn(&mut [u8])) -> Self {
        let mut secret = [0u8; 32];
        random(&mut secret);
        let auth = crate::sip::auth::AuthGate::new(settings.auth.clone(), secret);
        Uas {
            auth,
            settings,
            random,
            next_call: 1,
            calls: HashMap::new(),
            by_branch: HashMap::new(),
            by_host_branch: HashMap::new(),
            by_dialog: HashMap::new(),
            by_participant: HashMap::new(),
            cache: HashMap::new(),
            flood_sources: HashMap::new(),
            flood_callers: HashMap::new(),
            known_callers: Default::default(),
            source: None,
            outcalls: HashMap::new(),
            by_participant_out: HashMap::new(),
            draining: false,
            actions: VecDeque::new(),
            stats: UasStats::default(),
        }
    }

    /// The next thing to do.
    pub fn poll(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// A caller (its [`JoinRequest::caller_key`]) proved a meeting's passcode or leader PIN:
    /// behind a trusted gateway it draws on a flood budget apart from strangers' for a while.
    pub fn admitted_to_meeting(&mut self, now: Instant, caller: &str) {
        self.known_callers.admitted(now, caller);
    }

    pub fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    /// Calls, dialogs and cached responses held (all bounded in time).
    pub fn state_size(&self) -> usize {
        self.calls.len()
            + self.by_branch.len()
            + self.by_host_branch.len()
            + self.known_callers.len()
            + self.by_dialog.len()
            + self.cache.len()
            + self.outcalls.len()
            + self.by_participant_out.len()
            + self.auth.state_size()
    }

    fn token(&self, bytes: usize) -> String {
        let mut b = vec![0u8; bytes];
        (self.random)(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn send(&mut self, to: Peer, msg: &Message) -> Vec<u8> {
        let bytes = msg.to_bytes();
        self.actions.push_back(Action::Send {
            to,
            bytes: bytes.clone(),
        });
        bytes
    }

    fn reply(&mut self, now: Instant, peer: Peer, req: &Message, code: u16, reason: &str) {
        let mut r = req.response(code, reason, Some("confab"));
        r.push_header("Server", "confab");
        if code == 405 || code == 200 && req.method() == Some(&Method::Options) {
            r.push_header("Allow", ALLOW);
        }
        if code == 503 {
            r.push_header("Retry-After", "30");
        }
        let bytes = self.send(peer, &r);
        self.remember(now, req, bytes);
    }

    fn remember(&mut self, now: Instant, req: &Message, bytes: Vec<u8>) {
        if let (Some(method), Some(source)) = (req.method(), self.source)
            && *method != Method::Invite
            && *method != Method::Ack
            && self.cache.len() < MAX_CACHED
            && let Some(key) = TransactionKey::of(req, source)
        {
            self.cache
                .insert((key, method.as_str().to_owned()), (bytes, now + TIMEOUT));
        }
    }

    /// A datagram or TCP frame from `peer`.
    pub fn handle(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        let mut msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(Malformed { error, partial }) => {
                self.stats.malformed += 1;
                if let Some(mut req) = partial
                    && req.method() != Some(&Method::Ack)
                    && req.header("Via").is_some_and(|v| !v.is_empty())
                {
                    req.stamp_received(peer.addr);
                    let reason = format!("Bad Request ({error})");
                    let mut r = req.response(400, &reason, Some("confab"));
                    r.push_header("Server", "confab");
                    self.send(peer, &r);
                } else {
                    self.stats.dropped += 1;
                }
                return;
            }
        };
        match &msg.start {
            StartLine::Response { .. } => self.response(now, peer, &msg),
            StartLine::Request { method, .. } => {
                let method = method.clone();
                msg.stamp_received(peer.addr);
                self.request(now, peer, &msg, &method);
            }
        }
    }

    /// The sent-by host of a request's only Via, if it came straight from its client.
    fn lone_via_host(msg: &Message) -> Option<IpAddr> {
        let mut vias = msg.header_values("Via");
        let only = vias.next()?;
        if vias.next().is_some() || only.contains(',') {
            return None;
        }
        super::message::sent_by_host(only.split(';').next()?)
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.settings.trusted.iter().any(|n| n.contains(ip))
    }

    fn request(&mut self, now: Instant, peer: Peer, msg: &Message, method: &Method) {
        if *method == Method::Subscribe {
            return self.subscribe(peer, msg);
        }
        let mut signed_in = None;
        if !self.trusted(peer.addr.ip()) {
            match self.untrusted(now, peer, msg, method) {
                Untrusted::Refused => return,
                Untrusted::InDialog => {}
                Untrusted::SignedIn(user) => signed_in = Some(user),
            }
        }
        self.source = Some(peer);
        // A retransmitted non-INVITE request: the same answer again.
        if let Some(key) = TransactionKey::of(msg, peer)
            && let Some((bytes, _)) = self.cache.get(&(key, method.as_str().to_owned()))
        {
            let bytes = bytes.clone();
            self.actions.push_back(Action::Send { to: peer, bytes });
            return;
        }
        match method {
            Method::Invite if msg.to_tag().is_some() => self.reinvite(now, peer, msg),
            Method::Invite => self.invite(now, peer, msg, signed_in),
            Method::Ack => self.ack(now, peer, msg),
            Method::Cancel => self.cancel(now, peer, msg),
            Method::Bye => self.bye(now, peer, msg),
            Method::Options => {
                if self.draining {
                    self.reply(now, peer, msg, 503, "Draining");
                } else {
                    self.reply(now, peer, msg, 200, "OK");
                }
            }
            Method::Info => self.info(now, peer, msg),
            Method::Update => match self.dialog_of(msg) {
                Some(id) => {
                    self.refresh_session(now, id, msg);
                    // A refresh is answered with the interval granted (RFC 4028).
                    let mut r = msg.response(200, "OK", Some("confab"));
                    r.push_header("Server", "confab");
                    if let Some((d, _)) = self.calls.get(&id).and_then(|c| c.session_expires) {
                        r.push_header("Session-Expires", format!("{};refresher=uac", d.as_secs()));
                    }
                    let bytes = self.send(peer, &r);
                    self.remember(now, msg, bytes);
                }
                None => self.reply(now, peer, msg, 481, "Call/Transaction Does Not Exist"),
            },
            Method::Notify => self.notify(now, peer, msg),
            Method::Register
            | Method::Subscribe
            | Method::Refer
            | Method::Message
            | Method::Prack
            | Method::Publish => self.reply(now, peer, msg, 405, "Method Not Allowed"),
            Method::Other(_) => self.reply(now, peer, msg, 501, "Not Implemented"),
        }
    }

    /// The dial-in call whose INVITE transaction `msg` (a retransmission, its CANCEL or the
    /// ACK of a refusal) belongs to. A client that sent it on a new connection (its old one
    /// closed) is answered on the new one from now on.
    fn transaction_of(&mut self, msg: &Message, peer: Peer) -> Option<u64> {
        let id = *self.by_branch.get(&TransactionKey::of(msg, peer)?)?;
        if let Some(c) = self.calls.get_mut(&id)
            && c.peer != peer
        {
            c.peer = peer;
        }
        Some(id)
    }

    fn dialog_of(&self, msg: &Message) -> Option<u64> {
        let tag = msg.to_tag()?;
        self.by_dialog
            .get(&(msg.call_id().to_owned(), tag.to_owned()))
            .copied()
    }

    fn response(&mut self, now: Instant, peer: Peer, msg: &Message) {
        if self.notify_response(msg)
            || self.publish_response(peer, msg)
            || self.dial_response(now, msg)
            || self.refer_response(now, msg)
        {
            return;
        }
        // Answers to our BYEs.
        let Some(branch) = msg.branch() else { return };
        let found = self
            .calls
            .iter()
            .find(|(_, c)| c.bye.as_ref().is_some_and(|(b, _)| b == branch))
            .map(|(id, _)| *id);
        match found {
            Some(id) if msg.status().is_some_and(|s| s >= 200) => self.remove(id),
            Some(_) => {}
            None => self.stats.dropped += 1,
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(c) = self.calls.remove(&id) {
            if let Some(key) = c.transaction {
                self.by_branch.remove(&key);
                let host_key = key.any_port();
                if self.by_host_branch.get(&host_key) == Some(&id) {
                    self.by_host_branch.remove(&host_key);
                }
            }
            self.by_dialog.remove(&(c.call_id, c.local_tag));
            if let Some(p) = c.participant {
                self.by_participant.remove(&p);
            }
        }
    }
}

#[cfg(test)]
#[path = "uas_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "uas_hostile_tests.rs"]
mod hostile_tests;

#[cfg(test)]
#[path = "uas_transaction_tests.rs"]
mod transaction_tests;
