use super::*;
use crate::sip::digest::Challenge;

const URI: &str = "sip:1234@192.0.2.10";

fn gate(max_failures: u32) -> AuthGate {
    AuthGate::new(
        AuthSettings {
            realm: "confab.test".to_owned(),
            users: vec![SipUser {
                username: "alice".to_owned(),
                password: "s3cret".to_owned(),
            }],
            max_failures,
        },
        [7; 32],
    )
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([198, 51, 100, last])
}

/// What a client sends after `challenge` (the first one, SHA-256, or the second, MD5).
fn answer(challenge: &str, password: &str, nc: u32) -> String {
    Challenge::parse(challenge)
        .expect("our challenge parses")
        .answer("INVITE", URI, "alice", password, "c0ffee", nc)
}

#[test]
fn a_right_answer_signs_in_with_either_hash_and_is_not_replayed() {
    let t0 = Instant::now();
    let mut g = gate(5);
    assert_eq!(
        g.check(t0, ip(1), "INVITE", URI, std::iter::empty()),
        Verdict::Challenge { stale: false }
    );
    let challenges = g.challenges(t0, ip(1), false);
    assert_eq!(challenges.len(), 2);
    assert!(challenges[0].contains("algorithm=MD5") && challenges[1].contains("algorithm=SHA-256"));
    for (i, challenge) in challenges.iter().enumerate() {
        let a = answer(challenge, "s3cret", 1);
        let verdict = g.check(t0, ip(1), "INVITE", URI, [a.as_str()].into_iter());
        // Both challenges carry the same nonce: the MD5 answer with count 1 is a replay.
        let expected = if i == 0 {
            Verdict::Authenticated("alice".to_owned())
        } else {
            Verdict::Challenge { stale: false }
        };
        assert_eq!(verdict, expected, "{challenge}");
    }
    let again = answer(&challenges[1], "s3cret", 2);
    assert_eq!(
        g.check(t0, ip(1), "INVITE", URI, [again.as_str()].into_iter()),
        Verdict::Authenticated("alice".to_owned())
    );
    // The same answer again (a replay by someone who saw it) is refused and counted.
    assert_eq!(
        g.check(t0, ip(1), "INVITE", URI, [again.as_str()].into_iter()),
        Verdict::Challenge { stale: false }
    );
    assert_eq!(g.failed, 2);
}

#[test]
fn wrong_answers_lock_the_source_out_and_not_others() {
    let t0 = Instant::now();
    let mut g = gate(3);
    let challenge = g.challenges(t0, ip(1), false).remove(0);
    for n in 1..=3 {
        let wrong = answer(&challenge, "guess", n);
        let verdict = g.check(t0, ip(1), "INVITE", URI, [wrong.as_str()].into_iter());
        let expected = if n < 3 {
            Verdict::Challenge { stale: false }
        } else {
            Verdict::LockedOut
        };
        assert_eq!(verdict, expected, "attempt {n}");
    }
    // Locked out even with the right password now, until the window passes.
    let right = answer(&challenge, "s3cret", 9);
    assert_eq!(
        g.check(t0, ip(1), "INVITE", URI, [right.as_str()].into_iter()),
        Verdict::LockedOut
    );
    let other = g.challenges(t0, ip(2), false).remove(0);
    let theirs = answer(&other, "s3cret", 1);
    assert_eq!(
        g.check(t0, ip(2), "INVITE", URI, [theirs.as_str()].into_iter()),
        Verdict::Authenticated("alice".to_owned())
    );
    let later = t0 + FAILURE_WINDOW;
    g.prune(later);
    let fresh = g.challenges(later, ip(1), false).remove(0);
    let right = answer(&fresh, "s3cret", 1);
    assert_eq!(
        g.check(later, ip(1), "INVITE", URI, [right.as_str()].into_iter()),
        Verdict::Authenticated("alice".to_owned())
    );
}

#[test]
fn nonces_are_bound_to_the_address_and_expire() {
    let t0 = Instant::now();
    let mut g = gate(5);
    let challenge = g.challenges(t0, ip(1), false).remove(0);
    let a = answer(&challenge, "s3cret", 1);
    // Someone else presenting that answer gets a fresh challenge, nothing counted.
    assert_eq!(
        g.check(t0, ip(2), "INVITE", URI, [a.as_str()].into_iter()),
        Verdict::Challenge { stale: false }
    );
    assert_eq!(g.failed, 0);
    let late = t0 + NONCE_LIFE + Duration::from_secs(1);
    assert_eq!(
        g.check(late, ip(1), "INVITE", URI, [a.as_str()].into_iter()),
        Verdict::Challenge { stale: true }
    );
    assert!(g.challenges(late, ip(1), true)[0].ends_with("stale=true"));
    // A forged nonce (our format, wrong MAC) is not ours.
    let forged = a.replace(&challenge_nonce(&challenge)[16..], &"0".repeat(32));
    assert_eq!(
        g.check(t0, ip(1), "INVITE", URI, [forged.as_str()].into_iter()),
        Verdict::Challenge { stale: false }
    );
}

fn challenge_nonce(challenge: &str) -> String {
    Challenge::parse(challenge).expect("parses").nonce
}

#[test]
fn an_answer_for_another_uri_or_user_fails() {
    let t0 = Instant::now();
    let mut g = gate(10);
    let ch = Challenge::parse(&g.challenges(t0, ip(1), false)[0]).expect("parses");
    let other_uri = ch.answer("INVITE", "sip:9999@192.0.2.10", "alice", "s3cret", "c", 1);
    let other_user = ch.answer("INVITE", URI, "mallory", "s3cret", "c", 2);
    let other_method = ch.answer("BYE", URI, "alice", "s3cret", "c", 3);
    for a in [other_uri, other_user, other_method] {
        assert_eq!(
            g.check(t0, ip(1), "INVITE", URI, [a.as_str()].into_iter()),
            Verdict::Challenge { stale: false },
            "{a}"
        );
    }
    assert_eq!(g.failed, 3);
}

#[test]
fn the_bridge_checks_a_bounded_number_of_wrong_answers_a_minute() {
    let t0 = Instant::now();
    let mut g = gate(1_000);
    let mut verdicts = Vec::new();
    for i in 0..(GLOBAL_FAILURES_PER_MINUTE + 5) {
        let source = IpAddr::from([203, 0, 113, (i % 250) as u8]);
        let ch = g.challenges(t0, source, false).remove(0);
        let wrong = answer(&ch, "guess", i + 1);
        verdicts.push(g.check(t0, source, "INVITE", URI, [wrong.as_str()].into_iter()));
    }
    let busy = verdicts.iter().filter(|v| **v == Verdict::Busy).count();
    assert_eq!(busy, 5, "{verdicts:?}");
    assert_eq!(g.failed, u64::from(GLOBAL_FAILURES_PER_MINUTE));
    // A minute later answers are checked again.
    let later = t0 + Duration::from_secs(60);
    let ch = g.challenges(later, ip(1), false).remove(0);
    let right = answer(&ch, "s3cret", 1);
    assert_eq!(
        g.check(later, ip(1), "INVITE", URI, [right.as_str()].into_iter()),
        Verdict::Authenticated("alice".to_owned())
    );
    g.prune(later + FAILURE_WINDOW);
    assert_eq!(g.state_size(), 0, "everything held expires");
}
