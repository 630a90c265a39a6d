//! Failed credential attempts (a wrong meeting ID, passcode, leader PIN or join token), counted
//! per caller and per conference with exponential back-off; shared by the SIP attendant and
//! WHIP. Sans-I/O: every call takes `now`, so tests drive it in fake time.
//!
//! Rule for a caller: `per_caller` failures lock it for `base_lockout`; every further failure
//! after a lockout, before the caller is forgotten, locks it again for twice as long (up to
//! `max_lockout`). A caller is forgotten `window` after its last failure or the end of its last
//! lockout, whichever is later.
//!
//! Rule for a conference (a meeting key): `per_conference` failures, from anyone, lock its
//! credentials for `base_lockout`; after a lockout a *fresh* `per_conference` failures are
//! needed to lock it again (a stranger failing once must not lock a meeting for everybody). The
//! count is forgotten `window` after the last failure or lockout end; the escalation (twice as
//! long each time, up to `max_lockout`) only after `max(window, max_lockout)`, so waiting out a
//! window does not reset it.
//!
//! Callers who gave a meeting's correct credentials in the last [`KNOWN_GOOD_FOR`]
//! ([`FailureLimiter::success`]) are not refused by that meeting's lockout (their own lockout
//! still applies) for that credential and weaker ones: one who gave the passcode passes it for
//! the passcode, never for the leader PIN, and joining a meeting that asks for nothing (or a
//! leader-PIN-only meeting as an attendee, by `#`) proves nothing. A wrong entry of theirs for
//! that meeting forgets it again. Attempts refused
//! because of a lockout are not failures (they learn nothing), so they neither extend nor
//! escalate it.
//!
//! What this costs, with the defaults (10 per caller, 50 per conference, a 10 min window,
//! 1 min to 1 h lockouts):
//! - Guessing one meeting's credentials from any number of callers: at most 50 guesses per
//!   lockout. Keeping on, the lockouts grow (1, 2, 4, 8, 16, 32 min, then 1 h): 300 guesses in
//!   the first hour, 50 an hour after. Resetting the escalation takes a 1 h pause after the
//!   last lockout: k lockouts and a pause give 50 k guesses per 60 s * (2^k - 1) + 3600 s, at
//!   best 250 per 91 min (k = 5), under 170 an hour. One caller (an address, an IPv6 /64, or
//!   an identity behind a trusted gateway) gets 10 guesses, then one per lockout of its own, or
//!   10 again after its lockout and a 10 min pause: about 55 an hour. So with N callers:
//!   at most min(55 N, 300) guesses in the first hour, min(55 N, 170) an hour after. A caller
//!   known good by the passcode gets one passcode guess past a meeting lockout per success
//!   and none at the leader PIN.
//! - Keeping a meeting locked: 50 failures after every lockout, 50 an hour at the very least,
//!   with no 10 min gap between them; one caller gets at most 14 of them in before its own
//!   lockouts outlast the window, so that is 4 or more callers an hour. And callers who gave
//!   the meeting's credentials in the last day get in regardless: only new callers are kept out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Entries each map holds at most (callers; conferences). A stranger chooses the keys (a
/// caller's identity, an unknown meeting ID), so both are bounded: when one is full, expired
/// entries are pruned, and if it is still full the entry idle the longest goes.
pub const MAX_KEYS: usize = 4096;

/// Callers and meetings remembered as known good at most. Bound: only a correct credential
/// adds one; when full, those older than [`KNOWN_GOOD_FOR`] are pruned, and if it is still full
/// the one that succeeded least recently goes.
pub const MAX_KNOWN_GOOD: usize = 4096;

/// Known-good callers one meeting holds at most: past it, that meeting's least recent goes, so
/// callers who can join one meeting cannot push out another meeting's.
pub const MAX_KNOWN_GOOD_PER_CONFERENCE: usize = 256;

/// A meeting's credential a caller gives (ordered: the leader PIN proves more).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Credential {
    Passcode,
    LeaderPin,
}

/// How long a caller who gave a meeting's credentials passes that meeting's lockout.
pub const KNOWN_GOOD_FOR: Duration = Duration::from_secs(24 * 3600);

/// How failures are limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitSettings {
    /// Failures of one caller (within `window`) before it is locked out.
    pub per_caller: u32,
    /// Failures on one conference, from anyone, before its credentials are locked.
    pub per_conference: u32,
    pub window: Duration,
    pub base_lockout: Duration,
    pub max_lockout: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            per_caller: 10,
            per_conference: 50,
            window: Duration::from_secs(600),
            base_lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(3600),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    /// Lockouts so far (the next lasts `base_lockout * 2^lockouts`).
    lockouts: u32,
    locked_until: Option<Instant>,
    /// The last failure, or the end of the last lockout: the failures are forgotten `window`
    /// after it, the whole entry `memory` after it.
    last: Instant,
}

impl Entry {
    fn fresh(now: Instant) -> Self {
        Entry {
            failures: 0,
            lockouts: 0,
            locked_until: None,
            last: now,
        }
    }

    /// Whether `span` has passed since `last`, outside a lockout.
    fn idle(&self, now: Instant, span: Duration) -> bool {
        now.saturating_duration_since(self.last) >= span
            && self.locked_until.is_none_or(|u| now >= u)
    }
}

/// How one map counts (callers and conferences differ after a lockout).
#[derive(Clone, Copy, Debug)]
struct Rule {
    limit: u32,
    /// Failures still counted when a lockout begins: `limit - 1` (one more locks again) or 0.
    kept: u32,
    /// Failures are forgotten this long after `Entry::last`.
    window: Duration,
    /// The escalation is forgotten (the entry goes) this long after `Entry::last`.
    memory: Duration,
}

impl Rule {
    fn caller(s: &LimitSettings) -> Self {
        let limit = s.per_caller.max(1);
        Rule {
            limit,
            kept: limit - 1,
            window: s.window,
            memory: s.window,
        }
    }

    fn conference(s: &LimitSettings) -> Self {
        Rule {
            limit: s.per_conference.max(1),
            kept: 0,
            window: s.window,
            memory: s.window.max(s.max_lockout),
        }
    }
}

/// Who is refused, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lockout {
    Caller(Duration),
    Conference(Duration),
}

impl Lockout {
    /// How long the refusal lasts (for Retry-After).
    pub fn remaining(&self) -> Duration {
        match self {
            Lockout::Caller(d) | Lockout::Conference(d) => *d,
        }
    }
}

/// Cumulative counts for the metrics.
#[derive(Debug, Default)]
pub struct LimitCounters {
    /// Failures by transport: `[sip, whip]`.
    pub failures: [AtomicU64; 2],
    /// Lockouts begun (callers and conferences).
    pub lockouts: AtomicU64,
}

/// The transport a failure came by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Sip,
    Whip,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Sip, Transport::Whip];

    pub fn name(self) -> &'static str {
        match self {
            Transport::Sip => "sip",
            Transport::Whip => "whip",
        }
    }
}

/// The failure limiter.
#[derive(Debug)]
pub struct FailureLimiter {
    settings: LimitSettings,
    /// By caller key (see [`caller_key`]). Bound: [`MAX_KEYS`]; pruning: see the module docs.
    callers: HashMap<String, Entry>,
    /// By meeting ID, known or not (an unknown one must look like a known one). Bound:
    /// [`MAX_KEYS`]; pruning: see the module docs.
    conferences: HashMap<String, Entry>,
    /// When each (caller key, meeting) last gave the meeting's correct credentials. Bound:
    /// [`MAX_KNOWN_GOOD`]; pruned [`KNOWN_GOOD_FOR`] after the success, least recent first
    /// when full, and on a wrong entry of that caller for that meeting.
    known_good: HashMap<(String, String), (Instant, Credential)>,
    /// Shared with the metrics.
    pub counters: std::sync::Arc<LimitCounters>,
}

/// The source an address counts as: an IPv4 address, or the /64 of an IPv6 one (a single host
/// usually has a whole /64 to pick addresses from); IPv4-mapped IPv6 is IPv4.
pub fn source_of(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::IpAddr;
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

/// The key of a caller: the identity a trusted gateway passes on (P-Asserted-Identity, else the
/// From URI) together with the gateway's address; the address (its /64 for IPv6) alone when
/// there is none.
pub fn caller_key(source: std::net::IpAddr, identity: Option<&str>) -> String {
    let source = source_of(source);
    match identity.map(str::trim).filter(|i| !i.is_empty()) {
        Some(id) => {
            // Identities are short; a long one is cut (at a char boundary) so a key stays small.
            let cut = crate::conference::clean_text(id, 256);
            format!("{source} {cut}")
        }
        None => source.to_string(),
    }
}

fn lockout_of(settings: &LimitSettings, lockouts: u32) -> Duration {
    let factor = 1u32 << lockouts.min(16);
    settings
        .base_lockout
        .saturating_mul(factor)
        .min(settings.max_lockout)
}

fn remaining(map: &HashMap<String, Entry>, key: &str, now: Instant) -> Option<Duration> {
    map.get(key)
        .and_then(|e| e.locked_until)
        .filter(|u| *u > now)
        .map(|u| u.saturating_duration_since(now))
}

/// Counts a failure of `key` under `rule`; true when it begins a lockout.
fn fail(
    map: &mut HashMap<String, Entry>,
    settings: &LimitSettings,
    rule: Rule,
    key: &str,
    now: Instant,
) -> bool {
    if remaining(map, key, now).is_some() {
        return false;
    }
    if !map.contains_key(key) && map.len() >= MAX_KEYS {
        map.retain(|_, e| !e.idle(now, rule.memory));
        if map.len() >= MAX_KEYS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    let entry = map
        .entry(key.to_owned())
        .or_insert_with(|| Entry::fresh(now));
    if entry.idle(now, rule.memory) {
        *entry = Entry::fresh(now);
    } else if entry.idle(now, rule.window) {
        entry.failures = 0;
    }
    entry.failures += 1;
    entry.last = now;
    if entry.failures < rule.limit {
        return false;
    }
    let lasts = lockout_of(settings, entry.lockouts);
    entry.lockouts = entry.lockouts.saturating_add(1);
    entry.failures = rule.kept;
    let until = now + lasts;
    entry.locked_until = Some(until);
    entry.last = until;
    true
}

impl FailureLimiter {
    pub fn new(settings: LimitSettings) -> Self {
        FailureLimiter {
            settings,
            callers: HashMap::new(),
            conferences: HashMap::new(),
            known_good: HashMap::new(),
            counters: std::sync::Arc::default(),
        }
    }

    pub fn settings(&self) -> LimitSettings {
        self.settings
    }

    /// Whether `caller` (or, when given, its passcode for `conference`) is locked out now. A
    /// conference's lockout does not refuse a caller who recently gave its credentials.
    pub fn locked(&self, now: Instant, caller: &str, conference: Option<&str>) -> Option<Lockout> {
        self.locked_for(now, caller, conference.map(|c| (c, Credential::Passcode)))
    }

    /// Whether `caller` (or, when given, its entry of the credential for the conference) is
    /// locked out now. A conference's lockout does not refuse a caller who recently gave that
    /// credential or a stronger one.
    pub fn locked_for(
        &self,
        now: Instant,
        caller: &str,
        attempt: Option<(&str, Credential)>,
    ) -> Option<Lockout> {
        if let Some(d) = remaining(&self.callers, caller, now) {
            return Some(Lockout::Caller(d));
        }
        let (conference, credential) = attempt?;
        if self
            .known_good(now, caller, conference)
            .is_some_and(|proven| proven >= credential)
        {
            return None;
        }
        remaining(&self.conferences, conference, now).map(Lockout::Conference)
    }

    /// The strongest credential `caller` gave for `conference` in the last [`KNOWN_GOOD_FOR`].
    fn known_good(&self, now: Instant, caller: &str, conference: &str) -> Option<Credential> {
        self.known_good
            .get(&(caller.to_owned(), conference.to_owned()))
            .filter(|(at, _)| now.saturating_duration_since(*at) < KNOWN_GOOD_FOR)
            .map(|(_, proven)| *proven)
    }

    /// `caller` gave `conference`'s `proven` credential (compared and matched: never a join
    /// that asked for none): that conference's lockouts do not refuse its entries of that
    /// credential or weaker ones for [`KNOWN_GOOD_FOR`].
    pub fn success(&mut self, now: Instant, caller: &str, conference: &str, proven: Credential) {
        let key = (caller.to_owned(), conference.to_owned());
        if let Some((at, had)) = self.known_good.get_mut(&key) {
            *at = now;
            *had = (*had).max(proven);
            return;
        }
        // One meeting's callers push out only that meeting's least recent.
        let mut mine = 0;
        let mut oldest_mine: Option<(&(String, String), Instant)> = None;
        for (k, (at, _)) in &self.known_good {
            if k.1 == conference {
                mine += 1;
                if oldest_mine.is_none_or(|(_, o)| *at < o) {
                    oldest_mine = Some((k, *at));
                }
            }
        }
        if mine >= MAX_KNOWN_GOOD_PER_CONFERENCE
            && let Some(oldest) = oldest_mine.map(|(k, _)| k.clone())
        {
            self.known_good.remove(&oldest);
        }
        if self.known_good.len() >= MAX_KNOWN_GOOD {
            self.known_good
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < KNOWN_GOOD_FOR);
            if self.known_good.len() >= MAX_KNOWN_GOOD
                && let Some(oldest) = self
                    .known_good
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
            {
                self.known_good.remove(&oldest);
            }
        }
        self.known_good.insert(key, (now, proven));
    }

    /// A failed attempt by `caller`, on `conference` when one was named.
    pub fn failure(
        &mut self,
        now: Instant,
        transport: Transport,
        caller: &str,
        conference: Option<&str>,
    ) {
        let i = Transport::ALL
            .iter()
            .position(|t| *t == transport)
            .unwrap_or(0);
        self.counters.failures[i].fetch_add(1, Ordering::Relaxed);
        let s = self.settings;
        let mut began = fail(&mut self.callers, &s, Rule::caller(&s), caller, now);
        if let Some(c) = conference {
            // A wrong entry is no proof of knowing the credentials: one guess per success at
            // most gets past the meeting's lockout under a caller's name.
            self.known_good.remove(&(caller.to_owned(), c.to_owned()));
            began |= fail(&mut self.conferences, &s, Rule::conference(&s), c, now);
        }
        if began {
            self.counters.lockouts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops what has expired (call it now and then; `failure` and `success` also prune a
    /// full map).
    pub fn prune(&mut self, now: Instant) {
        let s = self.settings;
        let (caller, conference) = (Rule::caller(&s), Rule::conference(&s));
        self.callers.retain(|_, e| !e.idle(now, caller.memory));
        self.conferences
            .retain(|_, e| !e.idle(now, conference.memory));
        self.known_good
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < KNOWN_GOOD_FOR);
    }

    /// Entries held (callers, conferences).
    pub fn len(&self) -> (usize, usize) {
        (self.callers.len(), self.conferences.len())
    }

    /// Callers remembered as knowing a meeting's credentials.
    pub fn known_good_len(&self) -> usize {
        self.known_good.len()
    }
}

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;
