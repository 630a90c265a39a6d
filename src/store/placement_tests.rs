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
);

fn a_meeting_has_one_owner_until_its_lease_expires(db: &Subject<'_>) {
    let store = (db.open)();
    let (a, b) = (node("a"), node("b"));
    let owner = |lease: Lease| (lease.owner.node, lease.expires_at);
    assert_eq!(owner(store.claim("1234", &a, 0, LEASE).unwrap()), ("a".into(), 10_000));
    // Another node is told the owner, with its addresses.
    let seen = store.claim("1234", &b, 5_000, LEASE).unwrap();
    assert_eq!(seen.owner, a);
    // The owner claiming again renews.
    assert_eq!(owner(store.claim("1234", &a, 6_000, LEASE).unwrap()), ("a".into(), 16_000));
    assert_eq!(store.renew("a", 8_000, LEASE).unwrap(), ["1234"]);
    assert_eq!(owner(store.claim("1234", &b, 17_999, LEASE).unwrap()), ("a".into(), 18_000));
    // Not renewed in time (the owner died): the next claim takes it over.
    assert_eq!(owner(store.claim("1234", &b, 18_000, LEASE).unwrap()), ("b".into(), 28_000));
    // The old owner's renewal finds it lost, and its claim is told the new owner.
    assert!(store.renew("a", 19_000, LEASE).unwrap().is_empty());
    assert_eq!(owner(store.claim("1234", &a, 19_000, LEASE).unwrap()).0, "b");
    assert_eq!(store.leases(19_000).unwrap().len(), 1);
    // Only the owner releases; then anyone may claim.
    assert!(!store.release("1234", "a").unwrap());
    assert!(store.release("1234", "b").unwrap());
    assert!(store.leases(19_000).unwrap().is_empty());
    assert_eq!(owner(store.claim("1234", &a, 20_000, LEASE).unwrap()).0, "a");
    // Other meetings are leased on their own.
    assert_eq!(owner(store.claim("5678", &b, 20_000, LEASE).unwrap()).0, "b");
    let all: Vec<_> = store
        .leases(20_000)
        .unwrap()
        .into_iter()
        .map(|l| (l.meeting, l.owner.node))
        .collect();
    assert_eq!(all, [("1234".into(), "a".into()), ("5678".into(), "b".into())]);
    // Expired leases are not listed.
    assert!(store.leases(40_000).unwrap().is_empty());
}

fn nodes_claiming_one_meeting_at_once_agree_on_its_owner(db: &Subject<'_>) {
    let store = (db.open)();
    for round in 0..20 {
        let meeting = format!("m{round}");
        let claims: Vec<_> = (0..4)
            .map(|i| {
                let (store, meeting) = (store.clone(), meeting.clone());
                std::thread::spawn(move || {
                    store
                        .claim(&meeting, &node(&format!("n{i}")), 1_000, LEASE)
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
