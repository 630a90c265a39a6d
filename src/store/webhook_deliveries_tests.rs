//! Webhook deliveries on both databases (scenarios run by `store_tests`' `on_both!`).

use super::Subject;
use crate::store::{DeliveryChange, PendingDelivery};

fn delivery(id: i64, next_at: i64) -> PendingDelivery {
    PendingDelivery {
        id,
        endpoint: "sha256:0123abcd".into(),
        body: format!(r#"{{"id":"e{id}","type":"conference.started"}}"#),
        created_at: 1_700_000_000_000 + id,
        first_attempt_at: None,
        attempts: 0,
        next_at,
    }
}

pub(super) fn pending_deliveries_survive_a_reopen_as_last_saved(s: &Subject<'_>) {
    let store = (s.open)();
    assert!(store.pending_deliveries().unwrap().is_empty());
    let (a, b, c) = (delivery(1, 10), delivery(2, 20), delivery(3, 30));
    store
        .apply_deliveries(&[
            DeliveryChange::Save(a.clone()),
            DeliveryChange::Save(b.clone()),
            DeliveryChange::Save(c.clone()),
        ])
        .unwrap();
    // `a` failed once and waits; `b` was delivered.
    let retried = PendingDelivery {
        first_attempt_at: Some(11),
        attempts: 1,
        next_at: 1_011,
        // A save never rewrites the body.
        body: "ignored".into(),
        // It does rewrite the endpoint: how a row an older version stored with the plain URL
        // is saved again under its key.
        endpoint: "sha256:4567ef".into(),
        ..a.clone()
    };
    store
        .apply_deliveries(&[DeliveryChange::Save(retried), DeliveryChange::Forget(2)])
        .unwrap();
    drop(store);
    let store = (s.open)();
    let kept = store.pending_deliveries().unwrap();
    let expected = PendingDelivery {
        first_attempt_at: Some(11),
        attempts: 1,
        next_at: 1_011,
        endpoint: "sha256:4567ef".into(),
        ..a
    };
    assert_eq!(kept, [expected, c]);
    // Forgetting what is not there is no error.
    store
        .apply_deliveries(&[DeliveryChange::Forget(99)])
        .unwrap();
}

pub(super) fn a_thousand_deliveries_are_saved_in_one_batch(s: &Subject<'_>) {
    let store = (s.open)();
    let changes: Vec<DeliveryChange> = (1..=1000)
        .map(|i| DeliveryChange::Save(delivery(i, i)))
        .collect();
    store.apply_deliveries(&changes).unwrap();
    let kept = store.pending_deliveries().unwrap();
    assert_eq!(kept.len(), 1000);
    assert!(kept.windows(2).all(|w| w[0].id < w[1].id));
}
