//! The engine's calls against a mixer thread that is far behind: its full queue refuses
//! them at once (never blocking the caller), a refused control comes back to be tried again,
//! and an end that was never queued leaves its conference placed and running.

use super::*;

fn engine() -> Engine {
    Engine::start(EngineSettings::loopback(1, 45_040)).unwrap()
}

#[test]
fn a_full_queue_refuses_at_once_hands_back_the_control_and_keeps_an_unsent_end_placed() {
    let engine = engine();
    engine
        .create_conference("5001", Policy::default())
        .wait()
        .unwrap();
    engine.stall_mixer(0, Duration::from_millis(1500));
    // Fill the stalled thread's queue.
    let mut queued = Vec::new();
    let refused = loop {
        assert!(queued.len() <= 2048, "the queue never filled");
        let started = Instant::now();
        match engine.try_control("5001", Control::Lock(true)) {
            Ok(sent) => queued.push(sent),
            Err(refused) => break refused,
        }
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "a send blocked"
        );
    };
    assert!(
        matches!(refused, (EngineError::Busy, Some(Control::Lock(true)))),
        "{refused:?}"
    );
    assert!(queued.len() >= 1000, "{} queued", queued.len());
    // An end that cannot be queued leaves the conference as it was: placed and running.
    assert!(matches!(
        engine.control("5001", Control::End).wait(),
        Err(EngineError::Busy)
    ));
    assert!(engine.admission("5001").is_some());
    // The thread catches up: everything queued is answered, and the end goes through.
    for sent in queued {
        sent.wait().unwrap();
    }
    assert!(engine.policy("5001").wait().unwrap().locked);
    engine.control("5001", Control::End).wait().unwrap();
    assert!(engine.admission("5001").is_none());
}

#[test]
fn a_conference_is_placed_once_even_when_created_twice_at_once() {
    let engine = engine();
    let first = engine.create_conference("5002", Policy::default());
    let second = engine.create_conference("5002", Policy::default());
    assert!(first.wait().is_ok());
    assert!(matches!(
        second.wait(),
        Err(EngineError::Command(CommandError::ConferenceExists))
    ));
    assert_eq!(engine.conference_ids(), vec!["5002".to_owned()]);
}
