//! The failure limiter in fake time: lockouts and their escalation, meetings a stranger
//! cannot keep locked, callers known good, and bounded maps.

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

/// A lockout is in force for a new caller at `t`.
fn meeting_locked(l: &FailureLimiter, t: Instant) -> bool {
    l.locked(t, "newcomer", Some("1234")).is_some()
}

/// 50 failures on meeting 1234 from 50 different callers at `t`.
fn fifty_failures(l: &mut FailureLimiter, t: Instant, round: usize) {
    for i in 0..50 {
        l.failure(
            t,
            Transport::Sip,
            &format!("guesser{round}-{i}"),
            Some("1234"),
        );
    }
}

#[test]
fn a_stranger_failing_now_and_then_cannot_keep_a_meeting_locked() {
    let t0 = Instant::now();
    let mut l = FailureLimiter::new(LimitSettings::default());
    fifty_failures(&mut l, t0, 0);
    assert!(meeting_locked(&l, t0));
    // One failure whenever the lockout ends (a few addresses, once each): before, each
    // one locked the meeting again, for twice as long; now nothing is locked again.
    let mut t = t0 + Duration::from_secs(60);
    for i in 0..24 {
        assert!(!meeting_locked(&l, t), "locked at the {i}th failure");
        l.failure(
            t,
            Transport::Sip,
            &format!("stranger{}", i % 3),
            Some("1234"),
        );
        assert!(!meeting_locked(&l, t), "locked by the {i}th failure");
        t += Duration::from_secs(3600);
    }
    // The same three addresses trying once a minute, whenever the attendant lets them (it
    // reads no entry from a locked-out caller): they lock themselves out, not the meeting.
    let mut locked = 0;
    for i in 0..24 * 60 {
        let t = t + Duration::from_secs(60 * i);
        let stranger = format!("stranger{}", i % 3);
        if meeting_locked(&l, t) {
            locked += 1;
        } else if l.locked(t, &stranger, Some("1234")).is_none() {
            l.failure(t, Transport::Sip, &stranger, Some("1234"));
        }
    }
    assert_eq!(locked, 0, "locked {locked} of 1440 minutes");
}

#[test]
fn fifty_failures_lock_a_meeting_again_for_longer() {
    let t0 = Instant::now();
    let mut l = FailureLimiter::new(LimitSettings::default());
    fifty_failures(&mut l, t0, 0);
    assert_eq!(
        l.locked(t0, "newcomer", Some("1234")),
        Some(Lockout::Conference(Duration::from_secs(60)))
    );
    // Waiting out a window forgets the failures, not the escalation: 49 do not lock it
    // again, the 50th does, for twice as long.
    let t1 = t0 + Duration::from_secs(60 + 900);
    for i in 0..49 {
        l.failure(t1, Transport::Sip, &format!("again{i}"), Some("1234"));
    }
    assert!(!meeting_locked(&l, t1));
    l.failure(t1, Transport::Sip, "again49", Some("1234"));
    assert_eq!(
        l.locked(t1, "newcomer", Some("1234")),
        Some(Lockout::Conference(Duration::from_secs(120)))
    );
    // Escalation is forgotten an hour (the longest lockout) after the last lockout.
    let t2 = t1 + Duration::from_secs(120 + 3600);
    l.prune(t2);
    assert_eq!(l.len().1, 0);
    fifty_failures(&mut l, t2, 1);
    assert_eq!(
        l.locked(t2, "newcomer", Some("1234")),
        Some(Lockout::Conference(Duration::from_secs(60)))
    );
}

#[test]
fn a_caller_who_knew_the_passcode_passes_the_meetings_lockout() {
    let t0 = Instant::now();
    let mut l = FailureLimiter::new(LimitSettings::default());
    l.success(t0, "regular", "1234", Credential::Passcode);
    let t1 = t0 + Duration::from_secs(3600);
    fifty_failures(&mut l, t1, 0);
    assert!(meeting_locked(&l, t1));
    assert_eq!(l.locked(t1, "regular", Some("1234")), None);
    // Only for that meeting, only for a day.
    l.failure(t1, Transport::Sip, "x", Some("5678"));
    for i in 0..50 {
        l.failure(t1, Transport::Sip, &format!("y{i}"), Some("5678"));
    }
    assert!(l.locked(t1, "regular", Some("5678")).is_some());
    let day = t0 + KNOWN_GOOD_FOR;
    fifty_failures(&mut l, day, 1);
    assert!(l.locked(day, "regular", Some("1234")).is_some());
    // A wrong entry forgets it: a name that is known good gives one guess per success.
    let t2 = day + Duration::from_secs(3600);
    l.success(t2, "regular", "1234", Credential::Passcode);
    fifty_failures(&mut l, t2, 2);
    assert_eq!(l.locked(t2, "regular", Some("1234")), None);
    l.failure(t2, Transport::Sip, "regular", Some("1234"));
    assert!(l.locked(t2, "regular", Some("1234")).is_some());
    // Its own lockout still holds.
    let t3 = t2 + Duration::from_secs(7200);
    l.success(t3, "regular", "1234", Credential::Passcode);
    for _ in 0..10 {
        l.failure(t3, Transport::Sip, "regular", None);
    }
    assert!(matches!(
        l.locked(t3, "regular", Some("1234")),
        Some(Lockout::Caller(_))
    ));
}

#[test]
fn the_known_good_set_is_bounded() {
    let t0 = Instant::now();
    let mut l = FailureLimiter::new(LimitSettings::default());
    l.success(t0, "early", "1234", Credential::Passcode);
    for i in 0..3 * MAX_KNOWN_GOOD as u64 {
        let t = t0 + Duration::from_millis(i + 1);
        l.success(t, &format!("caller{i}"), "1234", Credential::Passcode);
        assert!(l.known_good_len() <= MAX_KNOWN_GOOD);
    }
    let t = t0 + Duration::from_secs(200);
    fifty_failures(&mut l, t, 0);
    // The least recent went first; the latest are still known.
    assert!(l.locked(t, "early", Some("1234")).is_some());
    let latest = format!("caller{}", 3 * MAX_KNOWN_GOOD - 1);
    assert_eq!(l.locked(t, &latest, Some("1234")), None);
    l.prune(t0 + KNOWN_GOOD_FOR + Duration::from_secs(200));
    assert_eq!(l.known_good_len(), 0);
}

/// Knowing the passcode is no licence to guess the leader PIN past the meeting's lockout; a
/// caller who gave the PIN passes for both.
#[test]
fn a_passcode_known_caller_gets_no_leader_pin_guesses_past_the_lockout() {
    let t0 = Instant::now();
    let mut l = FailureLimiter::new(LimitSettings::default());
    l.success(t0, "attendee", "1234", Credential::Passcode);
    l.success(t0, "leader", "1234", Credential::LeaderPin);
    fifty_failures(&mut l, t0, 0);
    let try_pin = |l: &FailureLimiter, who: &str| {
        l.locked_for(t0, who, Some(("1234", Credential::LeaderPin)))
    };
    assert_eq!(l.locked(t0, "attendee", Some("1234")), None);
    assert!(matches!(
        try_pin(&l, "attendee"),
        Some(Lockout::Conference(_))
    ));
    assert_eq!(try_pin(&l, "leader"), None);
    assert_eq!(l.locked(t0, "leader", Some("1234")), None);
    // A later passcode entry does not take the leader's PIN proof away.
    l.success(t0, "leader", "1234", Credential::Passcode);
    assert_eq!(try_pin(&l, "leader"), None);
}

/// Callers who can join one meeting cannot push another meeting's known-good callers out.
#[test]
fn one_meetings_known_good_callers_cannot_evict_anothers() {
    let t0 = Instant::now();
    let mut l = FailureLimiter::new(LimitSettings::default());
    l.success(t0, "member", "5678", Credential::Passcode);
    for i in 0..MAX_KNOWN_GOOD as u64 {
        let t = t0 + Duration::from_millis(i + 1);
        l.success(t, &format!("flooder{i}"), "1234", Credential::Passcode);
    }
    assert!(l.known_good_len() <= MAX_KNOWN_GOOD_PER_CONFERENCE + 1);
    let t = t0 + Duration::from_secs(10);
    for i in 0..50 {
        l.failure(t, Transport::Sip, &format!("guesser-{i}"), Some("5678"));
    }
    assert!(l.locked(t, "newcomer", Some("5678")).is_some());
    assert_eq!(l.locked(t, "member", Some("5678")), None);
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
