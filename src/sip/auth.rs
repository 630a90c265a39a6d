//! The inbound digest gate, sans-I/O: a new INVITE from outside `sip.trusted` is challenged
//! (401, MD5 with `qop=auth`, see [`AuthGate::challenges`]) when `[[sip.users]]` are
//! configured, and let in with the right credentials.
//!
//! Nonces are stateless: the issue time and an HMAC of it and the caller's address under a
//! secret made at start, so a challenge costs no memory. What is kept is bounded:
//! the highest nonce count seen per nonce that authenticated (a replay with the same count is
//! refused) and failed attempts per source address. A source with `max_failures` wrong answers
//! in ten minutes is refused (403) until the window passes (an attempt is an answer: the same
//! wrong answer retransmitted over UDP counts once), and the bridge as a whole checks at
//! most [`GLOBAL_FAILURES_PER_MINUTE`] wrong answers a minute (more wait with 503), so no
//! password can be guessed faster than that from any number of addresses.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::digest::{Algorithm, Credentials, constant_time_eq};
use crate::config::SipUser;

/// How long a nonce is good for; an older one with the right answer is `stale` (the client
/// retries at once with a fresh one, without asking the user).
pub(crate) const NONCE_LIFE: Duration = Duration::from_secs(300);
/// The window in which a source's failures count towards its lock-out.
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(600);
/// Wrong answers checked per minute across all sources.
pub(crate) const GLOBAL_FAILURES_PER_MINUTE: u32 = 60;
/// Most nonces whose count is remembered, and most sources whose failures are.
const MAX_TRACKED: usize = 4096;

/// What the gate's settings are (from `[sip]`).
#[derive(Clone, Debug, Default)]
pub struct AuthSettings {
    pub realm: String,
    pub users: Vec<SipUser>,
    /// Wrong answers from one source in [`FAILURE_WINDOW`] before it is locked out.
    pub max_failures: u32,
}

/// What to do with a new INVITE from an untrusted source.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The credentials are right: this user calls.
    Authenticated(String),
    /// Answer 401 with fresh challenges (`stale`: the answer was right, the nonce old).
    Challenge { stale: bool },
    /// Too many wrong answers from this source: 403.
    LockedOut,
    /// Too many wrong answers bridge-wide this minute: 503, try later.
    Busy,
}

/// One source's failed answers in the current window.
#[derive(Debug)]
struct Failures {
    since: Instant,
    count: u32,
    last_response: String,
}

#[derive(Debug)]
pub(crate) struct AuthGate {
    settings: AuthSettings,
    secret: [u8; 32],
    /// The instant nonce times count from (the first challenge).
    epoch: Option<Instant>,
    /// Highest nonce count accepted per nonce, and when the nonce expires. Bound:
    /// [`MAX_TRACKED`] (a full table refuses further sign-ins with 503 until `prune` frees
    /// expired nonces); entries go when their nonce expires. Only a right answer adds one.
    counts: HashMap<String, (u32, Instant)>,
    /// Failed answers per source: the window's start, the count and the last wrong
    /// `response` (its retransmissions are not counted again). Bound: [`MAX_TRACKED`] (and in
    /// practice the global limit: at most 600 sources can fail in one window); entries go when
    /// their window has passed. The response is at most a parameter's length (`digest.rs`).
    failures: HashMap<IpAddr, Failures>,
    /// Failed answers bridge-wide: the minute's start and the count.
    global: Option<(Instant, u32)>,
    pub(crate) failed: u64,
}

impl AuthGate {
    pub(crate) fn new(settings: AuthSettings, secret: [u8; 32]) -> Self {
        AuthGate {
            settings,
            secret,
            epoch: None,
            counts: HashMap::new(),
            failures: HashMap::new(),
            global: None,
            failed: 0,
        }
    }

    /// Whether untrusted callers may sign in at all.
    pub(crate) fn enabled(&self) -> bool {
        !self.settings.users.is_empty()
    }

    /// Entries held (bounded, see the fields).
    pub(crate) fn state_size(&self) -> usize {
        self.counts.len() + self.failures.len()
    }

    fn seconds(&mut self, now: Instant) -> u64 {
        now.saturating_duration_since(*self.epoch.get_or_insert(now))
            .as_secs()
    }

    fn mac(&self, issued: u64, ip: IpAddr) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.secret);
        let mut data = issued.to_be_bytes().to_vec();
        match ip {
            IpAddr::V4(v4) => data.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => data.extend_from_slice(&v6.octets()),
        }
        let tag = aws_lc_rs::hmac::sign(&key, &data);
        let mut out = String::with_capacity(32);
        for b in tag.as_ref().iter().take(16) {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// A nonce for `ip` issued now.
    fn nonce(&mut self, now: Instant, ip: IpAddr) -> String {
        let issued = self.seconds(now);
        format!("{issued:016x}{}", self.mac(issued, ip))
    }

    /// How old a nonce we made for `ip` is; none if we did not make it (or made it for
    /// another address, or before a restart).
    fn nonce_age(&mut self, now: Instant, ip: IpAddr, nonce: &str) -> Option<Duration> {
        if nonce.len() != 48 {
            return None;
        }
        let issued = u64::from_str_radix(nonce.get(..16)?, 16).ok()?;
        let mac = self.mac(issued, ip);
        if !constant_time_eq(mac.as_bytes(), nonce.get(16..)?.as_bytes()) {
            return None;
        }
        let age = self.seconds(now).checked_sub(issued)?;
        Some(Duration::from_secs(age))
    }

    /// The `WWW-Authenticate` values of a 401 for `ip`: one MD5 challenge with `qop=auth`.
    ///
    /// No SHA-256 challenge (RFC 8760) beside it: libre before 2.x (baresip 1.0, as Debian
    /// ships it) reads every challenge of a 401 and abandons the call (ENOSYS) if any of them
    /// names an algorithm other than MD5, whatever the order, so a second challenge locks those
    /// clients out. Offering MD5 at all already lets an active attacker strip a SHA-256 one, so
    /// the pair never raised the floor above MD5; what protects the password is its strength,
    /// the lock-outs and the global limit below. SHA-256 answers are still verified.
    pub(crate) fn challenges(&mut self, now: Instant, ip: IpAddr, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now, ip);
        let stale = if stale { ", stale=true" } else { "" };
        vec![format!(
            "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
            self.settings.realm,
            Algorithm::Md5.name(false)
        )]
    }

    fn locked(&self, now: Instant, ip: IpAddr) -> bool {
        self.failures.get(&ip).is_some_and(|f| {
            now.saturating_duration_since(f.since) < FAILURE_WINDOW
                && f.count >= self.settings.max_failures
        })
    }

    /// Counts a wrong answer (`response`, its value); the verdict that follows it. The same
    /// wrong answer again from the same source in the window (a UDP retransmission of the
    /// INVITE, which carries it unchanged) is challenged again but not counted: it guesses
    /// nothing new. A replayed right answer is counted (`response` none).
    fn fail(&mut self, now: Instant, ip: IpAddr, response: Option<&str>) -> Verdict {
        let repeated = response.filter(|r| !r.is_empty()).is_some_and(|r| {
            self.failures.get(&ip).is_some_and(|f| {
                now.saturating_duration_since(f.since) < FAILURE_WINDOW && f.last_response == r
            })
        });
        if repeated {
            return Verdict::Challenge { stale: false };
        }
        self.failed += 1;
        if let Some((_, n)) = &mut self.global {
            *n = n.saturating_add(1);
        }
        if !self.failures.contains_key(&ip) && self.failures.len() >= MAX_TRACKED {
            return Verdict::Busy;
        }
        let entry = self.failures.entry(ip).or_insert(Failures {
            since: now,
            count: 0,
            last_response: String::new(),
        });
        if now.saturating_duration_since(entry.since) >= FAILURE_WINDOW {
            entry.since = now;
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last_response.clear();
        entry.last_response.push_str(response.unwrap_or_default());
        if self.locked(now, ip) {
            Verdict::LockedOut
        } else {
            Verdict::Challenge { stale: false }
        }
    }

    /// The verdict on a new INVITE from `ip` for `uri` carrying `authorizations` (the values
    /// of its `Authorization` headers).
    pub(crate) fn check<'a>(
        &mut self,
        now: Instant,
        ip: IpAddr,
        method: &str,
        uri: &str,
        authorizations: impl Iterator<Item = &'a str>,
    ) -> Verdict {
        if self.locked(now, ip) {
            return Verdict::LockedOut;
        }
        let global = self.global.get_or_insert((now, 0));
        if now.saturating_duration_since(global.0) >= Duration::from_secs(60) {
            *global = (now, 0);
        }
        let over_global = global.1 >= GLOBAL_FAILURES_PER_MINUTE;
        // Ours is the credentials for our realm; others' (a proxy's) are not ours to judge.
        let ours = authorizations
            .filter_map(Credentials::parse)
            .find(|c| c.realm == self.settings.realm);
        let Some(creds) = ours else {
            return Verdict::Challenge { stale: false };
        };
        let Some(age) = self.nonce_age(now, ip, &creds.nonce) else {
            // Not a nonce of ours for this address (or from before a restart): a fresh one.
            return Verdict::Challenge { stale: false };
        };
        if over_global {
            return Verdict::Busy;
        }
        // Every user's check costs the same whether the name exists or not.
        let user = self
            .settings
            .users
            .iter()
            .find(|u| u.username == creds.username);
        let password = user.map_or("\u{0}no such user", |u| u.password.as_str());
        let right = creds.verify(method, password) && user.is_some() && creds.uri == uri;
        if !right {
            return self.fail(now, ip, Some(&creds.response));
        }
        if age > NONCE_LIFE {
            return Verdict::Challenge { stale: true };
        }
        let nc = creds.nc.as_ref().map_or(0, |n| n.1);
        let full = self.counts.len() >= MAX_TRACKED;
        match self.counts.get_mut(&creds.nonce) {
            Some((seen, _)) if nc <= *seen => return self.fail(now, ip, None),
            Some((seen, _)) => *seen = nc,
            None if full => return Verdict::Busy,
            None => {
                let expires = now + NONCE_LIFE.saturating_sub(age);
                self.counts.insert(creds.nonce.clone(), (nc, expires));
            }
        }
        Verdict::Authenticated(creds.username)
    }

    /// Forgets expired nonces and failure windows that have passed.
    pub(crate) fn prune(&mut self, now: Instant) {
        self.counts.retain(|_, (_, expires)| *expires > now);
        self.failures
            .retain(|_, f| now.saturating_duration_since(f.since) < FAILURE_WINDOW);
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
