//! The delivery queue in fake time: the back-off schedule, the hour, the bound, a restart.

use super::*;

const T0: i64 = 1_800_000_000_000;

fn url(s: &str) -> Arc<str> {
    Arc::from(s)
}

/// Every action due at `now`, split into sends and the rest.
fn drain(q: &mut Queue, now: i64) -> (Vec<Delivery>, Vec<Action>) {
    let (mut sends, mut rest) = (Vec::new(), Vec::new());
    while let Some(a) = q.poll_action(now) {
        match a {
            Action::Send(d) => sends.push(d),
            other => rest.push(other),
        }
    }
    (sends, rest)
}

#[test]
fn a_new_delivery_is_saved_then_sent_at_once_and_forgotten_when_delivered() {
    let mut q = Queue::new(7);
    let id = q.enqueue(T0, url("http://a/"), Arc::from("{}"));
    assert!(matches!(q.poll_action(T0), Some(Action::Save(ref d)) if d.id == id));
    let Some(Action::Send(d)) = q.poll_action(T0) else {
        panic!("not sent")
    };
    assert_eq!((d.id, d.first_attempt_at), (id, Some(T0)));
    assert_eq!(q.poll_action(T0), None);
    assert_eq!(
        q.poll_timeout(),
        None,
        "nothing waits while it is in flight"
    );
    q.attempted(T0 + 50, id, Outcome::Delivered);
    assert_eq!(q.poll_action(T0 + 50), Some(Action::Forget(id)));
    assert_eq!(q.len(), 0);
    assert_eq!(q.tally().delivered, 1);
}

/// Fails every attempt, stepping to each wake-up: the delays, and the give-up.
fn fail_until_given_up(seed: u64) -> (Vec<i64>, i64, Tally) {
    let mut q = Queue::new(seed);
    let id = q.enqueue(T0, url("http://a/"), Arc::from("{}"));
    let mut now = T0;
    let mut attempts = Vec::new();
    loop {
        let (sends, _) = drain(&mut q, now);
        assert!(sends.len() <= 1);
        if let Some(d) = sends.first() {
            attempts.push(now);
            q.attempted(now + 10, d.id, Outcome::Failed);
            now += 10;
        }
        let (_, rest) = drain(&mut q, now);
        if rest.contains(&Action::Forget(id)) {
            return (attempts, now, q.tally());
        }
        now = q
            .poll_timeout()
            .expect("a failed delivery waits for its retry");
    }
}

#[test]
fn retries_back_off_from_a_second_doubling_to_five_minutes_with_jitter() {
    let (attempts, _, _) = fail_until_given_up(42);
    let delays: Vec<i64> = attempts.windows(2).map(|w| w[1] - w[0] - 10).collect();
    for (n, delay) in delays.iter().enumerate() {
        let base = backoff(n as u32 + 1);
        assert!(
            (base / 2..=base).contains(delay),
            "retry {n}: {delay} ms outside {}..={base}",
            base / 2
        );
    }
    // 1, 2, 4, … 256 s, then 300 s at most.
    assert_eq!(backoff(1), 1_000);
    assert_eq!(backoff(2), 2_000);
    assert_eq!(backoff(9), 256_000);
    assert_eq!(backoff(10), 300_000);
    assert_eq!(backoff(1000), 300_000);
    // Jitter: not every delay is the whole of its base.
    assert!(
        delays
            .iter()
            .enumerate()
            .any(|(n, d)| *d != backoff(n as u32 + 1))
    );
}

#[test]
fn a_delivery_that_keeps_failing_is_given_up_within_the_hour_of_its_first_attempt() {
    for seed in [1, 2, 3, 99] {
        let (attempts, gave_up_at, tally) = fail_until_given_up(seed);
        let first = attempts[0];
        let last = *attempts.last().unwrap();
        assert!(last - first <= GIVE_UP_AFTER_MS, "attempted past the hour");
        // The next retry (5 min at most) would have passed the hour.
        assert!(last - first > GIVE_UP_AFTER_MS - MAX_DELAY_MS - 10);
        assert!(gave_up_at - first <= GIVE_UP_AFTER_MS + 10);
        assert_eq!(tally.given_up, 1);
        assert_eq!(tally.attempts_failed, attempts.len() as u64);
        assert!(attempts.len() > 15, "{} attempts", attempts.len());
    }
}

#[test]
fn the_same_seed_gives_the_same_schedule() {
    assert_eq!(fail_until_given_up(5).0, fail_until_given_up(5).0);
    assert_ne!(fail_until_given_up(5).0, fail_until_given_up(6).0);
}

#[test]
fn a_full_queue_drops_its_oldest_and_counts_it() {
    let mut q = Queue::new(1);
    let e = url("http://a/");
    let ids: Vec<u64> = (0..MAX_PENDING + 3)
        .map(|i| q.enqueue(T0 + i as i64, e.clone(), Arc::from("{}")))
        .collect();
    assert_eq!(q.len(), MAX_PENDING);
    assert_eq!(q.tally().dropped, 3);
    let (sends, rest) = drain(&mut q, T0 + MAX_PENDING as i64 + 3);
    let forgotten: Vec<u64> = rest
        .iter()
        .filter_map(|a| match a {
            Action::Forget(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(forgotten, ids[..3]);
    // The survivors are the newest; the oldest of them is sent first.
    assert_eq!(sends.first().map(|d| d.id), Some(ids[3]));
}

#[test]
fn a_receiver_gets_a_bounded_number_of_attempts_at_once_and_others_go_on() {
    let mut q = Queue::new(1);
    for _ in 0..10 {
        q.enqueue(T0, url("http://slow/"), Arc::from("{}"));
    }
    q.enqueue(T0, url("http://fast/"), Arc::from("{}"));
    let (sends, _) = drain(&mut q, T0);
    let slow = sends
        .iter()
        .filter(|d| &*d.endpoint == "http://slow/")
        .count();
    let fast = sends
        .iter()
        .filter(|d| &*d.endpoint == "http://fast/")
        .count();
    assert_eq!((slow, fast), (MAX_IN_FLIGHT, 1));
    // One answer frees one place.
    q.attempted(T0 + 5, sends[0].id, Outcome::Delivered);
    let (more, _) = drain(&mut q, T0 + 5);
    assert_eq!(more.len(), 1);
}

#[test]
fn a_restart_takes_the_stored_deliveries_back_with_their_schedule() {
    let mut q = Queue::new(3);
    let e = url("http://a/");
    let a = q.enqueue(T0, e.clone(), Arc::from(r#"{"n":1}"#));
    let b = q.enqueue(T0, e.clone(), Arc::from(r#"{"n":2}"#));
    // What the store holds: every row saved and not forgotten, as last saved.
    let mut rows: BTreeMap<u64, Delivery> = BTreeMap::new();
    let mut apply = |q: &mut Queue, now: i64| {
        let mut sends = Vec::new();
        while let Some(act) = q.poll_action(now) {
            match act {
                Action::Save(d) => {
                    rows.insert(d.id, d);
                }
                Action::Forget(id) => {
                    rows.remove(&id);
                }
                Action::Send(d) => sends.push(d.id),
            }
        }
        sends
    };
    assert_eq!(apply(&mut q, T0), [a, b]);
    q.attempted(T0 + 20, a, Outcome::Failed);
    q.attempted(T0 + 20, b, Outcome::Delivered);
    apply(&mut q, T0 + 20);
    assert_eq!(rows.keys().copied().collect::<Vec<_>>(), [a]);
    let kept = rows[&a].clone();
    assert_eq!((kept.attempts, kept.first_attempt_at), (1, Some(T0)));
    // The process ends here; a new one restores the rows.
    let mut q = Queue::new(4);
    q.restore(rows.values().cloned());
    assert_eq!(q.len(), 1);
    assert_eq!(q.poll_timeout(), Some(kept.next_at));
    assert_eq!(q.poll_action(kept.next_at - 1), None);
    let Some(Action::Send(d)) = q.poll_action(kept.next_at) else {
        panic!("not sent after the restart")
    };
    assert_eq!((d.id, &*d.body, d.attempts), (a, r#"{"n":1}"#, 1));
    // New ids follow the restored ones.
    assert!(q.enqueue(T0 + 5_000, e, Arc::from("{}")) > a);
}

#[test]
fn a_delivery_overdue_after_a_long_stop_is_attempted_once_more() {
    let mut q = Queue::new(3);
    q.restore([Delivery {
        id: 9,
        endpoint: url("http://a/"),
        body: Arc::from("{}"),
        created_at: T0,
        first_attempt_at: Some(T0),
        attempts: 3,
        next_at: T0 + 8_000,
    }]);
    let later = T0 + 2 * GIVE_UP_AFTER_MS;
    let (sends, _) = drain(&mut q, later);
    assert_eq!(sends.len(), 1);
    q.attempted(later + 1, 9, Outcome::Failed);
    let (_, rest) = drain(&mut q, later + 1);
    assert_eq!(rest, [Action::Forget(9)]);
    assert_eq!(q.tally().given_up, 1);
}

#[test]
fn an_answer_for_a_pruned_delivery_is_ignored() {
    let mut q = Queue::new(1);
    let e = url("http://a/");
    let first = q.enqueue(T0, e.clone(), Arc::from("{}"));
    let (sends, _) = drain(&mut q, T0);
    assert_eq!(sends[0].id, first);
    for _ in 0..MAX_PENDING {
        q.enqueue(T0, e.clone(), Arc::from("{}"));
    }
    q.attempted(T0 + 1, first, Outcome::Failed);
    assert_eq!(q.len(), MAX_PENDING);
    assert_eq!(q.tally().attempts_failed, 0);
}

#[test]
fn a_pruned_delivery_keeps_its_connection_slot_until_its_attempt_ends() {
    let mut q = Queue::new(5);
    let hung = url("http://hung/");
    for _ in 0..MAX_PENDING {
        q.enqueue(T0, hung.clone(), Arc::from("{}"));
    }
    let (sends, _) = drain(&mut q, T0);
    assert_eq!(sends.len(), MAX_IN_FLIGHT);
    // The receiver never answers; more events prune the oldest, which are the ones in flight:
    // no new attempt may start while those connections are still open.
    for _ in 0..2 * MAX_IN_FLIGHT {
        q.enqueue(T0 + 1, hung.clone(), Arc::from("{}"));
    }
    let (more, _) = drain(&mut q, T0 + 1);
    assert!(
        more.is_empty(),
        "{} more attempts while {MAX_IN_FLIGHT} hang",
        more.len()
    );
    // When they end (timed out), their slots are free again, though they were pruned.
    for d in &sends {
        q.attempted(T0 + 10_000, d.id, Outcome::Failed);
    }
    let (after, _) = drain(&mut q, T0 + 10_000);
    assert_eq!(after.len(), MAX_IN_FLIGHT);
    assert!(q.len() <= MAX_PENDING);
}
