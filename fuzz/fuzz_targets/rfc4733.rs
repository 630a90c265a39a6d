//! RFC 4733 telephone events: a sequence of RTP datagrams, each parsed by `media::rtp::parse`
//! and its payload given to `TelephoneEvents::packet` at a time that moves on, with polls.
//!
//! Input: `[clock][records]`, a record `[step][len][len bytes of datagram]`: `step`'s low
//! seven bits advance the clock by that many 10 ms, its top bit polls instead of sending.
//! Properties: no panic; every digit reported is a DTMF digit whose duration fits the 16-bit
//! duration field; no more digits are reported than packets were taken (each packet starts
//! at most one event, and an event is reported once).
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use confab::media::rtp;
use confab::media::telephone_event::{Dtmf, TelephoneEvents};
use libfuzzer_sys::fuzz_target;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    let Some((&clock, mut rest)) = data.split_first() else {
        return;
    };
    let clock_rate = [8000, 16000, 48000, 8000][usize::from(clock % 4)];
    let mut events = TelephoneEvents::new(clock_rate);
    let mut now = base();
    let mut taken = 0usize;
    let mut reported = 0usize;
    let mut check = |d: Option<Dtmf>, taken: usize| {
        if let Some(d) = d {
            assert!("0123456789*#ABCD".contains(d.digit), "{d:?}");
            let longest = Duration::from_secs_f64(65_536.0 / f64::from(clock_rate));
            assert!(d.duration <= longest, "{d:?}");
            reported += 1;
            assert!(reported <= taken, "{reported} digits from {taken} packets");
        }
    };
    while let [step, tail @ ..] = rest {
        now += Duration::from_millis(10 * u64::from(step & 0x7F));
        if step & 0x80 != 0 {
            check(events.poll(now), taken);
            rest = tail;
            continue;
        }
        let Some((&len, tail)) = tail.split_first() else {
            break;
        };
        let (datagram, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        let Ok(view) = rtp::parse(datagram) else {
            continue;
        };
        if view.payload.len() >= 4 {
            taken += 1;
        }
        match events.packet(now, view.timestamp, view.payload) {
            Ok(d) => check(d, taken),
            Err(_) => assert!(view.payload.len() < 4),
        }
    }
    check(events.poll(now + Duration::from_secs(1)), taken);
});
