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

#[test]
fn an_overloaded_thread_gives_real_time_back_and_takes_it_after_calm() {
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    let tick = Duration::from_millis(20);
    let mut o = Overload::default();
    // Busy but not overloaded: nothing changes.
    for i in 0..500 {
        assert_eq!(o.after_tick(t0 + tick * i, 0.89), None);
    }
    assert!(!o.demoted());
    // Overloaded: demoted at once, and stays so while the load is high or only a little lower.
    let t1 = t0 + tick * 500;
    assert_eq!(o.after_tick(t1, 0.95), Some(Shift::Demote));
    assert!(o.demoted());
    assert_eq!(o.after_tick(t1 + tick, 1.4), None);
    assert_eq!(o.after_tick(t1 + CALM_FOR * 2, 0.7), None);
    // Calm, but not for long enough: a spike starts the wait over.
    let t2 = t1 + CALM_FOR * 3;
    assert_eq!(o.after_tick(t2, 0.3), None);
    assert_eq!(o.after_tick(t2 + CALM_FOR - tick, 0.3), None);
    assert_eq!(o.after_tick(t2 + CALM_FOR - tick / 2, 0.65), None);
    assert_eq!(o.after_tick(t2 + CALM_FOR, 0.3), None);
    // Calm for CALM_FOR from then: promoted again, once.
    let t3 = t2 + CALM_FOR * 2;
    assert_eq!(o.after_tick(t3, 0.3), Some(Shift::Promote));
    assert!(!o.demoted());
    assert_eq!(o.after_tick(t3 + tick, 0.3), None);
    // A clock that goes backwards (it cannot, but) does not promote early.
    assert_eq!(o.after_tick(t3 + tick * 2, 0.95), Some(Shift::Demote));
    assert_eq!(o.after_tick(t3, 0.1), None);
    assert_eq!(o.after_tick(t3 - tick, 0.1), None);
    assert!(o.demoted());
}

#[test]
fn a_refused_change_leaves_the_thread_as_it_was_and_is_tried_again_later() {
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    let tick = Duration::from_millis(20);
    let mut o = Overload::default();
    assert_eq!(o.after_tick(t0, 0.95), Some(Shift::Demote));
    o.refused(t0);
    assert!(!o.demoted());
    // Not every tick: only after CALM_FOR.
    assert_eq!(o.after_tick(t0 + tick, 0.95), None);
    assert_eq!(o.after_tick(t0 + CALM_FOR - tick, 0.95), None);
    assert_eq!(o.after_tick(t0 + CALM_FOR, 0.95), Some(Shift::Demote));
    assert!(o.demoted());
}

#[test]
fn a_demoted_thread_runs_normally_and_a_promoted_one_real_time_again() {
    use thread_priority::{ThreadSchedulePolicy, thread_schedule_policy};
    // On a thread of its own: the test harness's threads keep their scheduling.
    std::thread::spawn(|| {
        if let Err(why) = request_current_thread() {
            // Without CAP_SYS_NICE or RLIMIT_RTPRIO there is nothing to give back (CI runs as
            // root, where this must work).
            assert!(
                std::env::var_os("CI").is_none(),
                "no real-time scheduling under CI: {why}"
            );
            eprintln!("skipped: no real-time scheduling here ({why})");
            return;
        }
        let realtime = || {
            matches!(
                thread_schedule_policy(),
                Ok(ThreadSchedulePolicy::Realtime(_))
            )
        };
        assert!(realtime());
        let counters = crate::mixer::MixerCounters::default();
        counters
            .realtime
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(shift(0, Shift::Demote, 0.95, None, &counters));
        assert!(!realtime());
        assert!(!counters.realtime.load(std::sync::atomic::Ordering::Relaxed));
        assert_eq!(
            counters
                .demotions
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert!(shift(0, Shift::Promote, 0.2, None, &counters));
        assert!(realtime());
        assert!(counters.realtime.load(std::sync::atomic::Ordering::Relaxed));
        assert_eq!(
            counters
                .demotions
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    })
    .join()
    .unwrap();
}
