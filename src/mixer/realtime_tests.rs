use std::cell::Cell;

use super::*;

const REFUSED: &str = "Operation not permitted (os error 1)";

#[test]
fn off_does_not_ask() {
    let asked = Cell::new(false);
    let s = ask(MixerRealtime::Off, || {
        asked.set(true);
        Ok(())
    });
    assert!(!asked.get());
    assert_eq!(s, Scheduling::NotAsked);
    assert!(!s.is_realtime());
    assert_eq!(s.check(MixerRealtime::Off), Ok(()));
    assert_eq!(
        s.describe(),
        "mixer threads run normal scheduling (mixer.realtime = off)"
    );
}

#[test]
fn auto_asks_and_falls_back_saying_why_and_what_grants_it() {
    let granted = ask(MixerRealtime::Auto, || Ok(()));
    assert_eq!(granted, Scheduling::Realtime);
    assert_eq!(granted.describe(), "mixer threads run SCHED_RR priority 10");
    assert_eq!(granted.check(MixerRealtime::Auto), Ok(()));

    let refused = ask(MixerRealtime::Auto, || Err(REFUSED.to_owned()));
    assert_eq!(refused, Scheduling::Refused(REFUSED.to_owned()));
    assert_eq!(refused.check(MixerRealtime::Auto), Ok(()));
    assert_eq!(
        refused.describe(),
        "mixer threads run normal scheduling: Operation not permitted (os error 1); grant \
         CAP_SYS_NICE or LimitRTPRIO=10 for real-time scheduling"
    );
}

#[test]
fn required_refused_stops_the_start_with_a_clear_error() {
    let refused = ask(MixerRealtime::Required, || Err(REFUSED.to_owned()));
    let err = refused
        .check(MixerRealtime::Required)
        .expect_err("required and refused must not start");
    assert!(err.contains("mixer.realtime is `required`"), "{err}");
    assert!(err.contains(REFUSED), "{err}");
    assert!(err.contains("CAP_SYS_NICE"), "{err}");
    assert!(err.contains("LimitRTPRIO=10"), "{err}");

    let granted = ask(MixerRealtime::Required, || Ok(()));
    assert_eq!(granted.check(MixerRealtime::Required), Ok(()));
}

#[test]
fn a_thread_and_its_helper_are_realtime_only_together() {
    let no = || Scheduling::Refused(REFUSED.to_owned());
    assert_eq!(
        Scheduling::Realtime.and(Scheduling::Realtime),
        Scheduling::Realtime
    );
    assert_eq!(Scheduling::Realtime.and(no()), no());
    assert_eq!(no().and(Scheduling::Realtime), no());
    // Under `required`, a helper refused is a refusal.
    assert!(
        Scheduling::Realtime
            .and(no())
            .check(MixerRealtime::Required)
            .is_err()
    );
}

#[test]
fn library_threads_do_not_ask_unless_told() {
    // No test sets the policy: engines started by tests run normally scheduled.
    assert_eq!(policy(), MixerRealtime::Off);
}

#[test]
fn the_request_gives_sched_rr_at_the_priority_or_says_why_not() {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadSchedulePolicy, thread_native_id,
        thread_schedule_policy_param,
    };
    // On a thread of its own that ends at once, so nothing of the test suite runs at
    // real-time priority.
    let (result, now) = std::thread::spawn(|| {
        let result = request_current_thread();
        (result, thread_schedule_policy_param(thread_native_id()))
    })
    .join()
    .expect("the probe thread");
    let (policy, param) = now.expect("the thread's scheduling");
    match result {
        Ok(()) => {
            assert_eq!(
                policy,
                ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::RoundRobin)
            );
            assert_eq!(param.sched_priority, i32::from(PRIORITY));
        }
        Err(why) => {
            // Refused: the error is in words, and the thread was left as it was.
            assert!(
                !why.is_empty() && !why.starts_with("the operating system"),
                "{why}"
            );
            assert!(!matches!(policy, ThreadSchedulePolicy::Realtime(_)));
        }
    }
}
