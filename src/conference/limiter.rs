//! Failed credential attempts (a wrong meeting ID, passcode, leader PIN or join token), counted
//! per caller and per conference with exponential back-off; shared by the SIP attendant and
//! WHIP. Sans-I/O: every call takes `now`, so tests drive it in fake time.
//!
//! Rule: `limit` failures of one key within `window` lock it for `base_lockout`; every further
//! failure after a lockout, before the key is forgotten, locks it again for twice as long (up
//! to `max_lockout`). A key is forgotten `window` after its last failure or the end of its last
//! lockout, whichever is later. Attempts refused because of a lockout are not failures (they
//! learn nothing), so they neither extend nor escalate it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Entries each map holds at most (callers; conferences). A stranger chooses the keys (a
/// caller's identity, an unknown meeting ID), so both are bounded: when one is full, expired
/// entries are pruned, and if it is still full the entry idle the longest goes.
pub const MAX_KEYS: usize = 4096;

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
    /// The last failure, or the end of the last lockout: `window` after it the entry goes.
    last: Instant,
}

impl Entry {
    fn expired(&self, now: Instant, window: Duration) -> bool {
        now.saturating_duration_since(self.last) >= window
            && self.locked_until.is_none_or(|u| now >= u)
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

/// Counts a failure of `key`; true when it begins a lockout.
fn fail(
    map: &mut HashMap<String, Entry>,
    settings: &LimitSettings,
    limit: u32,
    key: &str,
    now: Instant,
) -> bool {
    if remaining(map, key, now).is_some() {
        return false;
    }
    if !map.contains_key(key) && map.len() >= MAX_KEYS {
        map.retain(|_, e| !e.expired(now, settings.window));
        if map.len() >= MAX_KEYS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    let entry = map.entry(key.to_owned()).or_insert(Entry {
        failures: 0,
        lockouts: 0,
        locked_until: None,
        last: now,
    });
    if entry.expired(now, settings.window) {
        *entry = Entry {
            failures: 0,
            lockouts: 0,
            locked_until: None,
            last: now,
        };
    }
    entry.failures += 1;
    entry.last = now;
    if entry.failures < limit.max(1) {
        return false;
    }
    let lasts = lockout_of(settings, entry.lockouts);
    entry.lockouts = entry.lockouts.saturating_add(1);
    // After a lockout one more failure locks again (for twice as long).
    entry.failures = limit.max(1) - 1;
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
            counters: std::sync::Arc::default(),
        }
    }

    pub fn settings(&self) -> LimitSettings {
        self.settings
    }

    /// Whether `caller` (or, when given, `conference`) is locked out now.
    pub fn locked(&self, now: Instant, caller: &str, conference: Option<&str>) -> Option<Lockout> {
        if let Some(d) = remaining(&self.callers, caller, now) {
            return Some(Lockout::Caller(d));
        }
        conference
            .and_then(|c| remaining(&self.conferences, c, now))
            .map(Lockout::Conference)
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
        let mut began = fail(&mut self.callers, &s, s.per_caller, caller, now);
        if let Some(c) = conference {
            began |= fail(&mut self.conferences, &s, s.per_conference, c, now);
        }
        if began {
            self.counters.lockouts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops what has expired (call it now and then; `failure` also prunes a full map).
    pub fn prune(&mut self, now: Instant) {
        let window = self.settings.window;
        self.callers.retain(|_, e| !e.expired(now, window));
        self.conferences.retain(|_, e| !e.expired(now, window));
    }

    /// Entries held (callers, conferences).
    pub fn len(&self) -> (usize, usize) {
        (self.callers.len(), self.conferences.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> FailureLimiter {
        FailureLimiter::new(LimitSettings {
            per_caller: 3,
            per_conference: 5,
            ..LimitSettings::default()
        })
    }

    #[test]
    fn a_caller_is_locked_out_with_exponential_back_off() {
        let t0 = Instant::now();
        let mut l = limiter();
        for _ in 0..2 {
            l.failure(t0, Transport::Sip, "a", Some("1234"));
        }
        assert_eq!(l.locked(t0, "a", Some("1234")), None);
        l.failure(t0, Transport::Sip, "a", Some("1234"));
        assert_eq!(
            l.locked(t0, "a", None),
            Some(Lockout::Caller(Duration::from_secs(60)))
        );
        // Refused attempts while locked do not extend it.
        l.failure(t0 + Duration::from_secs(30), Transport::Sip, "a", None);
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(l.locked(t1, "a", None), None);
        // One more failure locks it again, twice as long; then four times.
        l.failure(t1, Transport::Sip, "a", None);
        assert_eq!(
            l.locked(t1, "a", None),
            Some(Lockout::Caller(Duration::from_secs(120)))
        );
        let t2 = t1 + Duration::from_secs(120);
        l.failure(t2, Transport::Whip, "a", None);
        assert_eq!(
            l.locked(t2, "a", None).map(|l| l.remaining()),
            Some(Duration::from_secs(240))
        );
        assert_eq!(l.counters.lockouts.load(Ordering::Relaxed), 3);
        // Another caller is not affected; a window after the lockout ends, it is forgotten.
        assert_eq!(l.locked(t2, "b", None), None);
        let later = t2 + Duration::from_secs(240) + Duration::from_secs(600);
        l.prune(later);
        assert_eq!(l.len().0, 0);
    }

    #[test]
    fn many_callers_lock_a_conference_but_not_others() {
        let t0 = Instant::now();
        let mut l = limiter();
        for i in 0..5 {
            l.failure(t0, Transport::Whip, &format!("caller{i}"), Some("1234"));
        }
        assert_eq!(
            l.locked(t0, "someone-new", Some("1234")),
            Some(Lockout::Conference(Duration::from_secs(60)))
        );
        assert_eq!(l.locked(t0, "someone-new", Some("5678")), None);
    }

    #[test]
    fn invented_keys_cannot_grow_the_maps() {
        let t0 = Instant::now();
        let mut l = limiter();
        for i in 0..(MAX_KEYS * 3) {
            let t = t0 + Duration::from_millis(i as u64);
            l.failure(t, Transport::Sip, &format!("c{i}"), Some(&format!("{i}")));
        }
        let (callers, conferences) = l.len();
        assert!(callers <= MAX_KEYS && conferences <= MAX_KEYS);
        // A caller locked recently survives the churn of one-off strangers.
        let t = t0 + Duration::from_secs(1000);
        for _ in 0..3 {
            l.failure(t, Transport::Sip, "persistent", None);
        }
        for i in 0..100 {
            l.failure(t, Transport::Sip, &format!("x{i}"), None);
        }
        assert!(l.locked(t, "persistent", None).is_some());
    }

    #[test]
    fn keys_name_the_real_caller_behind_a_gateway() {
        let gw: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        assert_ne!(
            caller_key(gw, Some("sip:+4930111@gw")),
            caller_key(gw, Some("sip:+4930222@gw"))
        );
        assert_eq!(caller_key(gw, Some("  ")), "10.0.0.1");
        assert_eq!(caller_key(gw, None), "10.0.0.1");
        assert!(caller_key(gw, Some(&"x".repeat(10_000))).len() < 300);
        // An IPv6 client is its /64: it cannot dodge the limit by changing address.
        let a = caller_key("2001:db8:1:2:aaaa::1".parse().unwrap(), None);
        let b = caller_key("2001:db8:1:2:bbbb::7".parse().unwrap(), None);
        assert_eq!(a, b);
    }
}
