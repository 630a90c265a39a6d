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

/// What a client sends after `challenge`.
fn answer(challenge: &str, password: &str, nc: u32) -> String {
    Challenge::parse(challenge)
        .expect("our challenge parses")
        .answer("INVITE", URI, "alice", password, "c0ffee", nc)
}

#[test]
fn a_right_answer_signs_in_and_is_not_replayed() {
    let t0 = Instant::now();
    let mut g = gate(5);
    assert_eq!(
        g.check(t0, ip(1), "INVITE", URI, std::iter::empty()),
        Verdict::Challenge { stale: false }
    );
    // One challenge, MD5: libre 1.x (baresip 1.0) gives up on a 401 that names any other
    // algorithm in any of its challenges.
    let challenges = g.challenges(t0, ip(1), false);
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    assert!(challenges[0].contains("algorithm=MD5"), "{challenges:?}");
    assert!(!challenges[0].contains("SHA-256"), "{challenges:?}");
    let a = answer(&challenges[0], "s3cret", 1);
    assert_eq!(
        g.check(t0, ip(1), "INVITE", URI, [a.as_str()].into_iter()),
        Verdict::Authenticated("alice".to_owned())
    );
    // The same count again is a replay.
    assert_eq!(
        g.check(t0, ip(1), "INVITE", URI, [a.as_str()].into_iter()),
        Verdict::Challenge { stale: false }
    );
    let again = answer(&challenges[0], "s3cret", 2);
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
fn a_sha256_answer_to_our_nonce_is_still_verified() {
    let t0 = Instant::now();
    let mut g = gate(5);
    let md5 = g.challenges(t0, ip(1), false).remove(0);
    let sha = md5.replace("algorithm=MD5", "algorithm=SHA-256");
    let a = answer(&sha, "s3cret", 1);
    assert!(a.contains("algorithm=SHA-256"), "{a}");
    assert_eq!(
        g.check(t0, ip(1), "INVITE", URI, [a.as_str()].into_iter()),
        Verdict::Authenticated("alice".to_owned())
    );
    let wrong = answer(&sha, "guess", 2);
    assert_eq!(
        g.check(t0, ip(1), "INVITE", URI, [wrong.as_str()].into_iter()),
        Verdict::Challenge { stale: false }
    );
    assert_eq!(g.failed, 1);
}

#[test]
fn a_retransmitted_wrong_answer_counts_once() {
    let t0 = Instant::now();
    let mut g = gate(3);
    let challenge = g.challenges(t0, ip(1), false).remove(0);
    let wrong = answer(&challenge, "guess", 1);
    // A client retransmitting its INVITE (timer A) sends the very same answer: five copies
    // are one attempt, not a lock-out.
    for _ in 0..5 {
        assert_eq!(
            g.check(t0, ip(1), "INVITE", URI, [wrong.as_str()].into_iter()),
            Verdict::Challenge { stale: false }
        );
    }
    assert_eq!(g.failed, 1);
    // Each new guess counts, and the third locks the source out.
    let second = answer(&challenge, "guess2", 2);
    assert_eq!(
        g.check(t0, ip(1), "INVITE", URI, [second.as_str()].into_iter()),
        Verdict::Challenge { stale: false }
    );
    // Going back to an earlier wrong answer is a new attempt too.
    assert_eq!(
        g.check(t0, ip(1), "INVITE", URI, [wrong.as_str()].into_iter()),
        Verdict::LockedOut
    );
    assert_eq!(g.failed, 3);
    let right = answer(&challenge, "s3cret", 3);
    assert_eq!(
        g.check(t0, ip(1), "INVITE", URI, [right.as_str()].into_iter()),
        Verdict::LockedOut
    );
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

/// The nonce `gate` gives 198.51.100.1 at its first challenge (issued at 0 s, HMAC-SHA-256
/// under the secret [7; 32]), computed outside confab.
const NONCE_0: &str = "00000000000000000f5a931fce0cff03fa52ffae863806d4";

/// Regression (baresip 1.0 against the bridge, issue 21): the `Authorization` baresip sent,
/// byte for byte, with our nonce put in and its response computed outside confab (Python's
/// hashlib): no `algorithm` (MD5 by default), `qop` unquoted, a 16-digit `cnonce`. The call
/// never got this far: the 401 also carried a SHA-256 challenge and libre gave up (ENOSYS).
#[test]
fn baresips_own_answer_signs_in_and_its_wrong_password_does_not() {
    let t0 = Instant::now();
    let mut g = gate(5);
    let challenges = g.challenges(t0, ip(1), false);
    assert_eq!(
        challenges,
        [format!(
            "Digest realm=\"confab.test\", nonce=\"{NONCE_0}\", algorithm=MD5, qop=\"auth\""
        )]
    );
    let uri = "sip:8101@127.0.0.1:45080";
    let header = |response: &str| {
        format!(
            "Digest username=\"alice\", realm=\"confab.test\", nonce=\"{NONCE_0}\", uri=\"{uri}\", response=\"{response}\", cnonce=\"9f2f9d99bd6a4239\", qop=auth, nc=00000001"
        )
    };
    let wrong = header("97769d29a3bace9e308123903cc5a9ed");
    assert_eq!(
        g.check(t0, ip(1), "INVITE", uri, [wrong.as_str()].into_iter()),
        Verdict::Challenge { stale: false }
    );
    let right = header("21fd3704ba1744c120c12e3fc62ccb7d");
    assert_eq!(
        g.check(t0, ip(1), "INVITE", uri, [right.as_str()].into_iter()),
        Verdict::Authenticated("alice".to_owned())
    );
    assert_eq!(g.failed, 1);
}

/// Regression (SIPp 3.6 `[authentication]`, issue 21): SIPp's header as it sent it (no space
/// after the commas). By default SIPp signs `sip:REMOTE_IP:REMOTE_PORT`, not the Request-URI
/// that RFC 3261 22.4 makes the digest-uri, so that answer is refused (it is bound to another
/// target); with `-auth_uri 8102@127.0.0.1:58153` it signs the Request-URI and gets in.
#[test]
fn sipps_answer_gets_in_only_when_it_signs_the_request_uri() {
    let t0 = Instant::now();
    let mut g = gate(5);
    g.challenges(t0, ip(1), false);
    let request_uri = "sip:8102@127.0.0.1:58153";
    let header = |uri: &str, response: &str| {
        format!(
            "Digest username=\"alice\",realm=\"confab.test\",cnonce=\"6b8b4567\",nc=00000001,qop=auth,uri=\"{uri}\",nonce=\"{NONCE_0}\",response=\"{response}\",algorithm=MD5"
        )
    };
    let default_uri = header("sip:127.0.0.1:58153", "f7f8a86929049ca1cc7fe8ee0d08e931");
    assert_eq!(
        g.check(
            t0,
            ip(1),
            "INVITE",
            request_uri,
            [default_uri.as_str()].into_iter()
        ),
        Verdict::Challenge { stale: false }
    );
    let signed = header(request_uri, "054c35790691f12371e68a1457aeb7e1");
    assert_eq!(
        g.check(
            t0,
            ip(1),
            "INVITE",
            request_uri,
            [signed.as_str()].into_iter()
        ),
        Verdict::Authenticated("alice".to_owned())
    );
}
