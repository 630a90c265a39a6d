//! Whom a leg takes media and reports from, in fake time: a second source of the same stream
//! while the first still sends, strangers before the peer's first packet, a gateway whose media
//! comes from another host, and RTCP from strangers. Each test drives a [`Call`] (the core, a
//! simulated phone and network) and measures what the phone decoded with a codec from outside
//! Confab and where the bridge sent. Seconds of call take milliseconds; nothing sleeps.

use std::time::{Duration, Instant};

use confab_dsp::signal::{sine, tone_level_dbov};

use super::*;
use crate::media::leg::{LegSpec, LegTimers};
use crate::testing::call::{Call, addr};
use crate::testing::phone::{SimPhone, receiver_report};

const PHONE: &str = "192.0.2.10:4000";
const TONE_HZ: f32 = 440.0;
const TONE_DBOV: f32 = -20.0;
/// The bridge's tone to the phone (whole cycles in 20 ms at 48 kHz).
const DOWN_HZ: f32 = 1000.0;

/// A call whose PCMU phone sends `tone_hz` with `ssrc` from `public`.
fn call_with(spec: LegSpec, timers: LegTimers, tone_hz: f32, ssrc: u32, public: &str) -> Call {
    let now = Instant::now();
    let phone = SimPhone::new(Codec::Pcmu, tone_hz, TONE_DBOV, ssrc, now);
    let mut call = Call::with(spec, timers, phone, addr(public), now);
    call.downlink_frame = Some(sine(48_000, DOWN_HZ, TONE_DBOV, 960));
    call
}

fn relatching() -> LegTimers {
    LegTimers {
        relatch_after: Duration::from_millis(400),
        ..LegTimers::default()
    }
}

/// The level of `hz` in the core's frame (the bridge's decode of the phone's stream).
fn frame_level(call: &Call, hz: f32) -> f32 {
    tone_level_dbov(call.core.frame(), 48_000, hz)
}

/// The same stream from a second port of the phone's host (a NAT's new binding) while the
/// first still sends is refused; once the first has been quiet for the relatch time, the new
/// one is latched and hears the bridge.
#[test]
fn a_second_source_is_latched_only_after_the_first_falls_silent() {
    let spec = LegSpec::new(Codec::Pcmu, addr(PHONE));
    let mut call = call_with(spec, relatching(), TONE_HZ, 41, PHONE);
    call.run(Duration::from_secs(1));
    assert!(call.phone.heard_level(DOWN_HZ, 0.5) > -22.0);

    let rebound_at = addr("192.0.2.10:4100");
    let mut rebound = SimPhone::new(Codec::Pcmu, TONE_HZ, TONE_DBOV, 41, call.now);
    for _ in 0..200 {
        if let Some(p) = rebound.poll_send(call.now) {
            call.inject(rebound_at, &p);
        }
        call.step();
    }
    let s = call.core.stats();
    assert!(s.dropped_foreign_source >= 40, "{s:?}");
    assert_eq!(call.core.latched(), Some(addr(PHONE)));
    assert!(
        !call.rtp_destinations.contains(&rebound_at),
        "the new source was answered while the old one was alive"
    );

    // The old binding falls silent: from now on the phone is the one behind the new binding.
    call.phone = rebound;
    call.nat.rebind(rebound_at);
    call.run(Duration::from_millis(1500));
    assert_eq!(call.core.latched(), Some(rebound_at));
    let heard = call.phone.heard_level(DOWN_HZ, 0.5);
    assert!(
        heard > -22.0,
        "the new source hears the bridge at {heard:.2}"
    );
    let level = frame_level(&call, TONE_HZ);
    assert!((level - TONE_DBOV).abs() < 1.5, "{level:.2}");
}

/// The offer names a routable host: only that host's packets are the peer's, even before its
/// first packet. Another host spraying the port first is never latched nor sent to.
#[test]
fn a_stranger_on_another_host_is_never_latched_even_before_the_peer_speaks() {
    let spec = LegSpec::new(Codec::Pcmu, addr(PHONE));
    let mut call = call_with(spec, LegTimers::default(), TONE_HZ, 71, PHONE);
    call.phone.sending = false;
    let stranger_at = addr("203.0.113.66:4000");
    // The same SSRC, as a stranger replaying the peer's stream would use.
    let mut stranger = SimPhone::new(Codec::Pcmu, 2_000.0, -3.0, 71, call.now);
    let spray = |call: &mut Call, stranger: &mut SimPhone, steps| {
        for _ in 0..steps {
            if let Some(p) = stranger.poll_send(call.now) {
                call.inject(stranger_at, &p);
            }
            call.step();
        }
    };
    spray(&mut call, &mut stranger, 200);
    assert_eq!(call.core.latched(), None);
    call.phone.sending = true;
    spray(&mut call, &mut stranger, 400);
    assert_eq!(call.core.latched(), Some(addr(PHONE)));
    assert_eq!(
        call.rtp_destinations.iter().copied().collect::<Vec<_>>(),
        vec![addr(PHONE)]
    );
    let intruder = frame_level(&call, 2_000.0);
    assert!(intruder < -50.0, "the stranger is mixed at {intruder:.2}");
    let level = frame_level(&call, TONE_HZ);
    assert!((level - TONE_DBOV).abs() < 1.5, "the peer at {level:.2}");
    let heard = call.phone.heard_level(DOWN_HZ, 1.0);
    assert!((heard - TONE_DBOV).abs() < 1.5, "the peer hears {heard:.2}");
    let s = call.core.stats();
    assert!(s.dropped_foreign_source >= 100, "{s:?}");
}

/// With `media.latch_any_source` (a gateway whose media comes from another host than its SDP
/// names), the first source is latched and media goes both ways.
#[test]
fn with_latch_any_source_configured_the_first_source_is_latched() {
    let spec = LegSpec::new(Codec::Pcmu, addr(PHONE));
    let timers = LegTimers {
        latch_any_source: true,
        ..LegTimers::default()
    };
    let elsewhere = "203.0.113.80:6000";
    let mut call = call_with(spec, timers, 300.0, 81, elsewhere);
    call.run(Duration::from_secs(1));
    assert_eq!(call.core.latched(), Some(addr(elsewhere)));
    assert_eq!(call.rtp_sent_to, Some(addr(elsewhere)));
    let level = frame_level(&call, 300.0);
    assert!(
        (level - TONE_DBOV).abs() < 1.5,
        "the gateway's media at {level:.2}"
    );
    let heard = call.phone.heard_level(DOWN_HZ, 0.5);
    assert!(heard > -22.0, "the gateway hears {heard:.2}");

    // Without it, the same call stays unlatched and silent.
    let mut strict = call_with(spec, LegTimers::default(), 300.0, 81, elsewhere);
    strict.run(Duration::from_secs(1));
    assert_eq!(strict.core.latched(), None);
    assert_eq!(strict.phone.heard_packets, 0);
}

/// Without rtcp-mux: a stranger on another host reporting to the bridge's RTCP port before the
/// peer's first report takes neither the RTCP latch nor counts as a report; the peer's report
/// from its own RTCP port does.
#[test]
fn a_strangers_rtcp_takes_neither_the_rtcp_latch_nor_the_reports() {
    let phone_rtcp = addr("192.0.2.10:4001");
    let spec = LegSpec {
        remote_rtcp: Some(phone_rtcp),
        ..LegSpec::new(Codec::Pcmu, addr(PHONE))
    };
    let mut call = call_with(spec, LegTimers::default(), TONE_HZ, 91, PHONE);
    let report = receiver_report(666, vec![]);
    for _ in 0..20 {
        call.core
            .handle_rtcp_datagram(call.now, addr("203.0.113.66:4001"), &report);
    }
    call.run(Duration::from_millis(500));
    call.core
        .handle_rtcp_datagram(call.now, phone_rtcp, &receiver_report(91, vec![]));
    let s = call.core.stats();
    assert_eq!(s.rtcp_in, 1, "{s:?}");
    assert!(s.dropped_foreign_source >= 20, "{s:?}");
}

/// The NAT's public address the phone of [`behind_a_nat`] sends from.
const NAT: &str = "198.51.100.7:31000";

/// A call whose phone offered a private address (RTP and RTCP on separate ports) and sends
/// from [`NAT`] with SSRC 93: the first source is latched.
fn behind_a_nat() -> Call {
    let spec = LegSpec {
        remote_rtcp: Some(addr("10.0.0.5:4001")),
        latch_any_source: true,
        ..LegSpec::new(Codec::Pcmu, addr("10.0.0.5:4000"))
    };
    call_with(spec, LegTimers::default(), TONE_HZ, 93, NAT)
}

/// Behind a NAT (a private address offered: the first source is latched), a stranger sharing
/// the NAT's public address reports to the RTCP port from another port of it, with a stream of
/// its own, while the peer is silent: its reports neither keep the leg alive nor take our
/// reports. The peer's own report from a new binding (its SSRC) still does.
#[test]
fn a_stranger_behind_the_same_nat_cannot_keep_a_silent_leg_alive_with_rtcp() {
    let mut call = behind_a_nat();
    let nat = NAT;
    call.run(Duration::from_secs(1));
    assert_eq!(call.core.latched(), Some(addr(nat)));
    call.phone.sending = false;
    // Let the packets already on the way arrive: the leg is silent from then on.
    call.run(Duration::from_millis(100));
    let stranger = addr("198.51.100.7:40001");
    let report = receiver_report(666, vec![]);
    let quiet_since = call.now;
    for step in 0..500 {
        if step % 10 == 0 {
            call.core.handle_rtcp_datagram(call.now, stranger, &report);
        }
        call.step();
    }
    let s = call.core.stats();
    assert_eq!(s.rtcp_in, 0, "{s:?}");
    assert!(s.dropped_foreign_source >= 40, "{s:?}");
    assert!(call.core.silent_for(call.now) >= call.now - quiet_since);
    assert!(
        call.rtcp_sent_to.iter().all(|&(to, _)| to != stranger),
        "our reports went to the stranger"
    );
    // The peer's report from a new binding of the NAT, naming its stream: taken.
    call.core.handle_rtcp_datagram(
        call.now,
        addr("198.51.100.7:31003"),
        &receiver_report(93, vec![]),
    );
    assert_eq!(call.core.stats().rtcp_in, 1);
    assert_eq!(call.core.silent_for(call.now), Duration::ZERO);
}

/// Behind a NAT, a stranger on the NAT's address reports to the RTCP port before the peer's
/// first RTP: that takes no RTCP latch, so once the peer talks its own reports are taken and
/// ours never go to the stranger.
#[test]
fn rtcp_before_the_first_rtp_latches_nothing() {
    let mut call = behind_a_nat();
    let nat = NAT;
    let stranger = addr("198.51.100.7:40001");
    for _ in 0..5 {
        call.core
            .handle_rtcp_datagram(call.now, stranger, &receiver_report(666, vec![]));
    }
    call.run(Duration::from_secs(1));
    assert_eq!(call.core.latched(), Some(addr(nat)));
    let before = call.core.stats().rtcp_in;
    call.core.handle_rtcp_datagram(
        call.now,
        addr("198.51.100.7:31001"),
        &receiver_report(93, vec![]),
    );
    assert_eq!(
        call.core.stats().rtcp_in,
        before + 1,
        "the peer's report refused"
    );
    call.run(Duration::from_secs(12));
    assert!(!call.rtcp_sent_to.is_empty());
    assert!(
        call.rtcp_sent_to.iter().all(|&(to, _)| to != stranger),
        "our reports went to the stranger: {:?}",
        call.rtcp_sent_to
    );
}
