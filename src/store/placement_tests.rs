//! Placement leases in stepped time (ms since the epoch given to each call), on both databases.

use super::*;

fn node(name: &str) -> NodeAddress {
    NodeAddress {
        node: name.into(),
        sip: format!("{name}.example:5060"),
        api: format!("http://{name}.example:8080"),
    }
}

const LEASE: i64 = 10_000;

on_both!(
    a_meeting_has_one_owner_until_its_lease_expires,
    nodes_claiming_one_meeting_at_once_agree_on_its_owner,
    without_a_time_the_database_clock_decides,
);

fn a_meeting_has_one_owner_until_its_lease_expires(db: &Subject<'_>) {
    let store = (db.open)();
    let (a, b) = (node("a"), node("b"));
    let owner = |lease: Lease| (lease.owner.node, lease.expires_at);
    assert_eq!(
        owner(store.claim("1234", &a, Some(0), LEASE).unwrap()),
        ("a".into(), 10_000)
    );
    // Another node is told the owner, with its addresses.
    let seen = store.claim("1234", &b, Some(5_000), LEASE).unwrap();
    assert_eq!(seen.owner, a);
    // The owner claiming again renews.
    assert_eq!(
        owner(store.claim("1234", &a, Some(6_000), LEASE).unwrap()),
        ("a".into(), 16_000)
    );
    let held = ["1234".to_owned()];
    assert_eq!(
        store.renew("a", &held, Some(8_000), LEASE).unwrap(),
        [("1234".to_owned(), 18_000)]
    );
    assert_eq!(
        owner(store.claim("1234", &b, Some(17_999), LEASE).unwrap()),
        ("a".into(), 18_000)
    );
    // Not renewed in time (the owner died): the next claim takes it over.
    assert_eq!(
        owner(store.claim("1234", &b, Some(18_000), LEASE).unwrap()),
        ("b".into(), 28_000)
    );
    // The old owner's renewal finds it lost, and its claim is told the new owner.
    assert!(
        store
            .renew("a", &held, Some(19_000), LEASE)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        owner(store.claim("1234", &a, Some(19_000), LEASE).unwrap()).0,
        "b"
    );
    assert_eq!(store.leases(Some(19_000)).unwrap().len(), 1);
    // Only the owner releases; then anyone may claim.
    assert!(!store.release("1234", "a", None).unwrap());
    // A release of a lease since renewed or claimed again changes nothing.
    assert!(!store.release("1234", "b", Some(18_000)).unwrap());
    assert!(store.release("1234", "b", Some(28_000)).unwrap());
    assert!(store.leases(Some(19_000)).unwrap().is_empty());
    assert_eq!(
        owner(store.claim("1234", &a, Some(20_000), LEASE).unwrap()).0,
        "a"
    );
    // Other meetings are leased on their own.
    assert_eq!(
        owner(store.claim("5678", &b, Some(20_000), LEASE).unwrap()).0,
        "b"
    );
    let all: Vec<_> = store
        .leases(Some(20_000))
        .unwrap()
        .into_iter()
        .map(|l| (l.meeting, l.owner.node))
        .collect();
    assert_eq!(
        all,
        [("1234".into(), "a".into()), ("5678".into(), "b".into())]
    );
    // Expired leases are not listed.
    assert!(store.leases(Some(40_000)).unwrap().is_empty());
    // A renewal extends only the meetings named (a row the node no longer tracks runs out).
    assert!(
        store
            .renew("a", &[], Some(21_000), LEASE)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.leases(Some(30_000)).unwrap().len(), 0);
}

/// Nodes pass no time: leases follow the database's clock, one clock for every node.
fn without_a_time_the_database_clock_decides(db: &Subject<'_>) {
    let store = (db.open)();
    let wall = unix_ms(std::time::SystemTime::now());
    let lease = store.claim("1234", &node("a"), None, LEASE).unwrap();
    let drift = lease.expires_at - (wall + LEASE);
    assert!(drift.abs() < 5_000, "{drift} ms");
    assert_eq!(store.leases(None).unwrap().len(), 1);
    let renewed = store.renew("a", &["1234".into()], None, LEASE).unwrap();
    assert_eq!(renewed.len(), 1);
    assert!(renewed[0].1 >= lease.expires_at);
    assert_eq!(
        store
            .claim("1234", &node("b"), None, LEASE)
            .unwrap()
            .owner
            .node,
        "a"
    );
}

fn nodes_claiming_one_meeting_at_once_agree_on_its_owner(db: &Subject<'_>) {
    let store = (db.open)();
    for round in 0..20 {
        let meeting = format!("m{round}");
        // Half the rounds: all take over a lease that ran out, at once.
        if round % 2 == 1 {
            store.claim(&meeting, &node("gone"), Some(0), 500).unwrap();
        }
        let claims: Vec<_> = (0..4)
            .map(|i| {
                let (store, meeting) = (store.clone(), meeting.clone());
                std::thread::spawn(move || {
                    store
                        .claim(&meeting, &node(&format!("n{i}")), Some(1_000), LEASE)
                        .unwrap()
                        .owner
                        .node
                })
            })
            .collect();
        let owners: Vec<String> = claims.into_iter().map(|c| c.join().unwrap()).collect();
        assert!(owners.iter().all(|o| *o == owners[0]), "{owners:?}");
    }
}
