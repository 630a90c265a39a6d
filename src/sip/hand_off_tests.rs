//! Passes of handed-on callers: made by one node, checked by another with the same secret;
//! anything else is ignored.

use super::*;
use crate::sip::message::param;

const NOW: u64 = 1_800_000_000;

fn leader_in_german() -> Handed {
    Handed {
        role: Role::Leader,
        language: Some("de".into()),
    }
}

fn pass_of(target: &str) -> &str {
    param(target, PARAM).unwrap()
}

#[test]
fn a_pass_made_by_one_node_lets_its_caller_in_at_another_as_what_it_was() {
    let a = TokenSigner::new(Some("the same on every node")).unwrap();
    let b = TokenSigner::new(Some("the same on every node")).unwrap();
    let target = refer_target(Some(&a), "1234", "10.0.0.2:5060", &leader_in_german(), NOW);
    assert!(
        target.starts_with("sip:1234@10.0.0.2:5060;confab-pass="),
        "{target}"
    );
    // The meeting is still the Request-URI's user.
    assert_eq!(crate::sip::message::uri_user(&target), Some("1234"));
    let pass = pass_of(&target);
    assert_eq!(check(&b, pass, "1234", NOW), Some(leader_in_german()));
    assert_eq!(
        check(&b, pass, "1234", NOW + VALID_FOR_SECS - 1),
        Some(leader_in_german())
    );
    let attendee = Handed {
        role: Role::Attendee,
        language: None,
    };
    let target = refer_target(Some(&a), "1234", "10.0.0.2:5060", &attendee, NOW);
    assert_eq!(check(&b, pass_of(&target), "1234", NOW), Some(attendee));
}

#[test]
fn without_a_secret_the_caller_is_referred_plainly() {
    let target = refer_target(None, "1234", "[2001:db8::2]:5060", &leader_in_german(), NOW);
    assert_eq!(target, "sip:1234@[2001:db8::2]:5060");
}

#[test]
fn passes_for_another_meeting_expired_forged_or_under_another_secret_are_ignored() {
    let a = TokenSigner::new(Some("cluster secret")).unwrap();
    let target = refer_target(Some(&a), "1234", "b", &leader_in_german(), NOW);
    let pass = pass_of(&target);
    assert_eq!(check(&a, pass, "9999", NOW), None, "another meeting");
    assert_eq!(
        check(&a, pass, "1234", NOW + VALID_FOR_SECS),
        None,
        "expired"
    );
    let other = TokenSigner::new(Some("another secret")).unwrap();
    assert_eq!(check(&other, pass, "1234", NOW), None, "another secret");
    // A random secret (none configured) on either side: never valid on another node.
    let random = TokenSigner::new(None).unwrap();
    assert_eq!(check(&random, pass, "1234", NOW), None);
    // Tampered: an attendee's pass made a leader's keeps the attendee's MAC.
    let attendee = Handed {
        role: Role::Attendee,
        language: None,
    };
    let attendee_pass = refer_target(Some(&a), "1234", "b", &attendee, NOW);
    let (_, mac) = pass_of(&attendee_pass).split_once('.').unwrap();
    let (body, _) = pass.split_once('.').unwrap();
    assert_eq!(check(&a, &format!("{body}.{mac}"), "1234", NOW), None);
    for junk in ["", ".", "x", "zz.zz", &"a".repeat(MAX_PASS + 2)] {
        assert_eq!(check(&a, junk, "1234", NOW), None, "{junk:.20}");
    }
}

#[test]
fn a_join_token_is_not_a_pass_and_a_pass_lives_a_minute() {
    let a = TokenSigner::new(Some("cluster secret")).unwrap();
    // A WHIP join token (not a pass) in its last seconds: still not a pass.
    let join = a.sign(&Claims {
        cid: "1234".into(),
        name: "Eve".into(),
        role: "leader".into(),
        exp: NOW + 10,
        identity: None,
        language: None,
        pass: false,
    });
    assert!(a.verify(&join, "1234", NOW).is_ok());
    assert_eq!(check(&a, &join, "1234", NOW), None);
}

#[test]
fn a_long_lived_pass_is_refused() {
    let a = TokenSigner::new(Some("cluster secret")).unwrap();
    let token = a.sign(&Claims {
        cid: "1234".into(),
        name: "Eve".into(),
        role: "leader".into(),
        exp: NOW + 3600,
        identity: None,
        language: None,
        pass: true,
    });
    assert_eq!(check(&a, &token, "1234", NOW), None);
    // Within the nodes' clock skew it is.
    let token = a.sign(&Claims {
        cid: "1234".into(),
        name: String::new(),
        role: "attendee".into(),
        exp: NOW + VALID_FOR_SECS + CLOCK_SKEW_SECS,
        identity: None,
        language: None,
        pass: true,
    });
    assert!(check(&a, &token, "1234", NOW).is_some());
}
