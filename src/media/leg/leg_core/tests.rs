//! The leg's core in fake time: no socket, no sleep. Each test drives a [`Call`] (the core, a
//! simulated phone and a simulated network) or the core alone, and measures what came out.

use std::time::{Duration, Instant, SystemTime};

use confab_dsp::signal::{sine, tone_level_dbov};

use super::*;
use crate::media::leg::{LegSpec, LegTimers, TelephoneEventSpec, Transmit};
use crate::media::relay::RelayPacket;
use crate::media::srtp::{SrtpKeys, SrtpSuite};
use crate::testing::call::{BRIDGE_RTCP, Call, TICK, addr};
use crate::testing::net::{Impairments, Link};
use crate::testing::phone::SimPhone;
use crate::testing::rng::Rng;

const PHONE: &str = "192.0.2.10:4000";
const TONE_HZ: f32 = 400.0;
const TONE_DBOV: f32 = -20.0;
/// The bridge's tone to the phone: 1 kHz is whole cycles in 20 ms at 48 kHz, so one frame
/// repeated is a steady tone.
const DOWN_HZ: f32 = 1000.0;

const CODECS: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

fn phone(codec: Codec, now: Instant) -> SimPhone {
    SimPhone::new(codec, TONE_HZ, TONE_DBOV, 0xA11CE, now)
}

fn call(codec: Codec) -> Call {
    let now = Instant::now();
    let spec = LegSpec::new(codec, addr(PHONE));
    let mut call = Call::new(spec, phone(codec, now), addr(PHONE), now);
    call.downlink_frame = Some(sine(48_000, DOWN_HZ, TONE_DBOV, 960));
    call
}

/// The level of the phone's tone in the core's frame, at the mix rate.
fn frame_level(call: &Call) -> f32 {
    tone_level_dbov(call.core.frame(), 48_000, TONE_HZ)
}

#[test]
fn a_tone_plays_out_both_ways_at_its_level_for_every_codec() {
    for codec in CODECS {
        let mut call = call(codec);
        call.run(Duration::from_secs(3));
        let level = frame_level(&call);
        assert!(
            (level - TONE_DBOV).abs() < 1.5,
            "{codec:?}: the bridge decoded the phone's tone at {level:.1} dBov"
        );
        let heard = call.phone.heard_level(DOWN_HZ, 1.0);
        assert!(
            (heard - TONE_DBOV).abs() < 1.5,
            "{codec:?}: the phone heard the bridge's tone at {heard:.1} dBov"
        );
        assert_eq!(call.core.latched(), Some(addr(PHONE)));
        let s = call.core.stats();
        assert!(s.packets_in >= 140, "{codec:?}: {s:?}");
        assert!(s.packets_out >= 140, "{codec:?}: {s:?}");
        assert_eq!(s.dropped_foreign_source + s.dropped_malformed, 0, "{s:?}");
        assert_eq!(call.phone.srtp_failures, 0);
    }
}

#[test]
fn strangers_and_garbage_never_take_the_leg() {
    let mut call = call(Codec::Pcmu);
    call.run(Duration::from_secs(1));
    let mut rng = Rng::new(3);
    let stranger = addr("203.0.113.66:5000");
    let mut stranger_phone = SimPhone::new(Codec::Pcmu, 2_000.0, -3.0, 0xBAD, call.now);
    for _ in 0..250 {
        // A stranger's valid RTP, and random bytes, from another host; random bytes from the
        // phone's own host on another port.
        if let Some(p) = stranger_phone.poll_send(call.now) {
            call.inject(stranger, &p);
        }
        let len = rng.below(300) as usize;
        let junk = rng.bytes(len);
        call.inject(stranger, &junk);
        call.inject(addr("192.0.2.10:4002"), &junk);
        call.step();
    }
    call.run(Duration::from_secs(1));
    let s = call.core.stats();
    assert!(s.dropped_foreign_source >= 500, "{s:?}");
    assert_eq!(call.core.latched(), Some(addr(PHONE)));
    assert_eq!(call.rtp_sent_to, Some(addr(PHONE)));
    let level = frame_level(&call);
    assert!((level - TONE_DBOV).abs() < 1.5, "{level}");
    let intruder = tone_level_dbov(call.core.frame(), 48_000, 2_000.0);
    assert!(
        intruder < -60.0,
        "the stranger's tone got in at {intruder:.1} dBov"
    );
}

#[test]
fn a_nat_rebinding_moves_media_after_the_relatch_time() {
    let now = Instant::now();
    // The phone signalled a private address: behind a NAT, whoever sends first is latched.
    let spec = LegSpec {
        latch_any_source: true,
        ..LegSpec::new(Codec::Pcmu, addr("10.0.0.5:4000"))
    };
    let public = addr("203.0.113.20:31000");
    let mut call = Call::new(spec, phone(Codec::Pcmu, now), public, now);
    call.downlink_frame = Some(sine(48_000, DOWN_HZ, TONE_DBOV, 960));
    call.run(Duration::from_secs(2));
    assert_eq!(call.core.latched(), Some(public));
    assert_eq!(call.rtp_sent_to, Some(public));
    let heard_before = call.phone.heard_packets;
    assert!(heard_before >= 90, "{heard_before}");

    // The NAT gives the phone a new port: until the old one has been quiet for the relatch
    // time, the new one is refused; then it takes over (same SSRC), and media follows it.
    let rebound = addr("203.0.113.20:31999");
    call.nat.rebind(rebound);
    call.run(Duration::from_millis(1_500));
    assert_eq!(call.core.latched(), Some(public));
    call.run(Duration::from_millis(1_000));
    assert_eq!(call.core.latched(), Some(rebound));
    assert_eq!(call.rtp_sent_to, Some(rebound));
    let heard_at_rebinding = call.phone.heard_packets;
    call.run(Duration::from_secs(1));
    assert!(call.phone.heard_packets >= heard_at_rebinding + 45);
    let level = frame_level(&call);
    assert!((level - TONE_DBOV).abs() < 1.5, "{level}");

    // After a quiet spell a new address with another stream (SSRC) is refused on plain RTP.
    call.phone = SimPhone::new(Codec::Pcmu, TONE_HZ, TONE_DBOV, 0xD1FF, call.now);
    call.nat.rebind(addr("203.0.113.21:40000"));
    call.run(Duration::from_secs(4));
    assert_eq!(call.core.latched(), Some(rebound));
    // Unless signalling said the phone came back from hold (a new stream is expected then).
    call.core.forget_ssrc();
    call.run(Duration::from_millis(200));
    assert_eq!(call.core.latched(), Some(addr("203.0.113.21:40000")));
}

fn srtp_keys() -> SrtpKeys {
    SrtpKeys {
        suite: SrtpSuite::AesCm128HmacSha1_80,
        local: std::array::from_fn(|i| i as u8 * 3),
        remote: std::array::from_fn(|i| 200 - i as u8),
    }
}

#[test]
fn srtp_both_ways_with_forgeries_refused() {
    let now = Instant::now();
    let keys = srtp_keys();
    let spec = LegSpec {
        srtp: Some(keys),
        ..LegSpec::new(Codec::G722, addr(PHONE))
    };
    let mut phone = phone(Codec::G722, now);
    phone.use_srtp(&keys);
    let mut call = Call::new(spec, phone, addr(PHONE), now);
    call.downlink_frame = Some(sine(48_000, DOWN_HZ, TONE_DBOV, 960));
    call.run(Duration::from_secs(1));
    // Forged packets from the phone's own address: random bytes, and a real packet with
    // a flipped bit in its tag.
    let mut rng = Rng::new(9);
    let mut forger = SimPhone::new(Codec::G722, 2_000.0, -3.0, 0xA11CE, call.now);
    for _ in 0..100 {
        let junk = [&[0x80u8, 9][..], &rng.bytes(150)].concat();
        call.inject(addr(PHONE), &junk);
        if let Some(mut p) = forger.poll_send(call.now + Duration::from_secs(1)) {
            let last = p.len() - 1;
            p[last] ^= 1;
            call.inject(addr(PHONE), &p);
        }
        call.step();
    }
    call.run(Duration::from_secs(5));
    let s = call.core.stats();
    assert!(s.dropped_srtp_auth >= 150, "{s:?}");
    assert!(s.srtp);
    let level = frame_level(&call);
    assert!((level - TONE_DBOV).abs() < 1.5, "{level}");
    let heard = call.phone.heard_level(DOWN_HZ, 1.0);
    assert!((heard - TONE_DBOV).abs() < 1.5, "{heard}");
    assert_eq!(call.phone.srtp_failures, 0);
    // Our reports went out as SRTCP the phone could open.
    assert!(call.phone.rtcp_heard >= 1, "{s:?}");
}

#[test]
fn rtcp_is_sent_when_due_to_the_right_port_with_the_right_figures() {
    let now = Instant::now();
    let spec = LegSpec {
        remote_rtcp: Some(addr("192.0.2.10:4001")),
        ..LegSpec::new(Codec::Pcmu, addr(PHONE))
    };
    let timers = LegTimers {
        rtcp_interval: Duration::from_secs(1),
        ..LegTimers::default()
    };
    let mut call = Call::with(spec, timers, phone(Codec::Pcmu, now), addr(PHONE), now);
    call.up = Link::new(
        11,
        Impairments {
            loss: 0.05,
            base_delay: Duration::from_millis(20),
            jitter: Duration::from_millis(30),
            ..Impairments::default()
        },
    );
    let due = call.core.poll_timeout().unwrap();
    assert!(due > now && due <= now + Duration::from_secs(1), "{due:?}");
    call.run(Duration::from_secs(30));
    // Every report went to the signalled RTCP port, from our RTCP socket.
    assert!(
        call.rtcp_sent_to.len() >= 20,
        "{:?}",
        call.rtcp_sent_to.len()
    );
    assert!(
        call.rtcp_sent_to
            .iter()
            .all(|&(to, rtcp_port)| to == addr("192.0.2.10:4001") && rtcp_port)
    );
    // The loss the core counts is the loss the network made (packets still on the way
    // are not lost yet, and every other packet arrived).
    let s = call.core.stats();
    let lost_on_path = call.up.stats.lost as i64;
    assert!(
        (s.packets_lost - lost_on_path).abs() <= 1,
        "counted {} lost, the path lost {lost_on_path}",
        s.packets_lost
    );
    assert!(s.jitter_ms > 1.0 && s.jitter_ms < 30.0, "{s:?}");
    // A report from the phone's RTCP port is taken; one from a stranger is not.
    let rr = [0x80u8, 201, 0, 1, 0, 0x0A, 0x11, 0xCE];
    let before = call.core.stats().rtcp_in;
    call.core
        .handle_rtcp_datagram(call.now, addr("192.0.2.10:4001"), &rr);
    call.core
        .handle_rtcp_datagram(call.now, addr("203.0.113.66:4001"), &rr);
    let s = call.core.stats();
    assert_eq!(s.rtcp_in, before + 1, "{s:?}");
    assert_eq!(addr(BRIDGE_RTCP).port(), 40001);
}

#[test]
fn rfc4733_digits_end_with_or_without_their_end_packets() {
    let now = Instant::now();
    let spec = LegSpec {
        telephone_event: Some(TelephoneEventSpec {
            payload_type: 101,
            clock_rate: 8000,
        }),
        ..LegSpec::new(Codec::Pcmu, addr(PHONE))
    };
    let mut phone = phone(Codec::Pcmu, now);
    phone.telephone_event = Some(101);
    let mut call = Call::new(spec, phone, addr(PHONE), now);
    call.run(Duration::from_millis(500));
    call.phone.press(5, 5, false);
    call.run(Duration::from_millis(400));
    let d = call
        .core
        .take_dtmf()
        .expect("the digit with its end packets");
    assert_eq!(d.digit, '5');
    assert_eq!(d.duration, Duration::from_millis(100));
    // '#' whose end packets were lost: it ends when its packets stop for 400 ms, and the core
    // says when it wants to be asked.
    call.phone.press(11, 4, true);
    call.run(Duration::from_millis(200));
    assert_eq!(call.core.take_dtmf(), None);
    let deadline = call.core.poll_timeout().unwrap();
    assert!(
        deadline <= call.now + Duration::from_millis(400),
        "{deadline:?}"
    );
    call.run(Duration::from_millis(400));
    let d = call
        .core
        .take_dtmf()
        .expect("the digit without end packets");
    assert_eq!(d.digit, '#');
    assert_eq!(call.core.stats().dtmf_in, 2);
}

#[test]
fn relayed_packets_are_taken_as_parsed_and_sent_as_packets() {
    let now = Instant::now();
    let spec = LegSpec::new(Codec::Opus, crate::media::leg::RELAY_SOURCE);
    let mut core = LegCore::new(
        spec,
        Route::Relayed,
        now,
        SystemTime::now(),
        77,
        LegTimers::default(),
    )
    .unwrap();
    let mut phone = phone(Codec::Opus, now);
    let mut t = now;
    let mut sent = 0;
    for _ in 0..100 {
        t += TICK;
        while let Some(p) = phone.poll_send(t) {
            sent += 1;
            let mut packet = RelayPacket::new(111, 0, 0, 0);
            packet.sequence = u16::from_be_bytes([p[2], p[3]]);
            packet.timestamp = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            packet.ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
            packet.audio_level = Some(20);
            assert!(packet.set_payload(&p[12..]));
            core.handle_relayed(t, &packet);
        }
        core.produce_frame();
    }
    let level = tone_level_dbov(core.frame(), 48_000, TONE_HZ);
    assert!((level - TONE_DBOV).abs() < 1.5, "{level}");
    let s = core.stats();
    assert_eq!(s.packets_in, sent);
    assert_eq!(s.client_level, Some(20));
    assert!(s.webrtc && s.srtp);
    core.queue_payload(&[1, 2, 3], 960, &[10, 20], &[30, 40]);
    match core.poll_transmit() {
        Some(Transmit::Relay(p)) => {
            assert_eq!(p.payload(), &[1, 2, 3]);
            assert_eq!(p.csrcs(), &[10, 20]);
            assert_eq!(p.ssrc, 77);
        }
        Some(Transmit::Datagram { to, .. }) => panic!("a relayed leg sent a datagram to {to}"),
        None => panic!("nothing to send"),
    }
    core.transmitted(true);
    assert_eq!(core.stats().packets_out, 1);
    // Relayed legs write no RTCP of their own: the driver does.
    assert_eq!(core.poll_timeout(), None);
}

#[test]
fn the_outbox_is_bounded_and_counts_what_it_drops() {
    let now = Instant::now();
    let mut core = LegCore::new(
        LegSpec::new(Codec::Pcmu, addr(PHONE)),
        Route::Direct {
            separate_rtcp: false,
        },
        now,
        SystemTime::now(),
        5,
        LegTimers::default(),
    )
    .unwrap();
    for _ in 0..6 {
        core.queue_payload(&[0xFF; 160], 160, &[], &[]);
    }
    let mut sent = 0;
    while let Some(t) = core.poll_transmit() {
        assert!(matches!(t, Transmit::Datagram { to, .. } if to == addr(PHONE)));
        sent += 1;
        core.transmitted(sent % 2 == 0);
    }
    let s = core.stats();
    assert_eq!(sent, 4);
    assert_eq!(s.packets_out, 2);
    // Two dropped for a full outbox, two failed to send.
    assert_eq!(s.send_errors, 4);
    // Nothing goes to an address the peer has not given (hold the old way).
    core.respec(LegSpec::new(Codec::Pcmu, addr("0.0.0.0:4000")))
        .unwrap();
    core.queue_payload(&[0xFF; 160], 160, &[], &[]);
    assert!(core.poll_transmit().is_none());
}

#[test]
fn hostile_datagrams_never_panic_the_core() {
    let now = Instant::now();
    let mut rng = Rng::new(0xF00D);
    for secured in [false, true] {
        let spec = LegSpec {
            srtp: secured.then(srtp_keys),
            telephone_event: Some(TelephoneEventSpec {
                payload_type: 101,
                clock_rate: 8000,
            }),
            audio_level_id: Some(1),
            ..LegSpec::new(Codec::Opus, addr(PHONE))
        };
        let mut core = LegCore::new(
            spec,
            Route::Direct {
                separate_rtcp: true,
            },
            now,
            SystemTime::now(),
            5,
            LegTimers::default(),
        )
        .unwrap();
        let mut t = now;
        for i in 0..50_000u32 {
            t += Duration::from_micros(u64::from(rng.below(3_000) as u32));
            let len = rng.below(400) as usize;
            let mut d = rng.bytes(len);
            // Mostly RTP-looking: version 2, a payload type we take, wild fields.
            if d.len() >= 12 && i % 4 != 0 {
                d[0] = 0x80 | (d[0] & 0x1F);
                d[1] = [111, 101, 0, 200][(i % 4) as usize];
            }
            if i % 3 == 0 {
                core.handle_rtcp_datagram(t, addr("192.0.2.10:4001"), &d);
            } else {
                core.handle_datagram(t, addr(PHONE), &d);
            }
            if i % 10 == 0 {
                core.handle_timeout(t);
                core.produce_frame();
                assert_eq!(core.frame().len(), 960);
                while core.poll_transmit().is_some() {
                    core.transmitted(true);
                }
            }
        }
    }
}

/// An hour of call per codec on a bad network in fake time: 5 % loss, 40 ms of jitter, late
/// outliers and duplicates, and a phone whose clock drifts. Playout must stay bounded and
/// steady (no drift, no growth), conceal what was lost, and count the loss right.
#[test]
fn an_hour_on_a_bad_network_per_codec() {
    for (i, codec) in CODECS.into_iter().enumerate() {
        let now = Instant::now();
        // Fast and slow clocks in turn: the buffer must shed and stretch.
        let ppm = if i % 2 == 0 { 80.0 } else { -80.0 };
        let mut phone = phone(codec, now).drift(ppm);
        // Opus costs the most to encode; its decoder takes the repeated packets as a steady
        // stream. (ADPCM would not: G.722's predictor state must follow the encoder's.)
        if codec == Codec::Opus {
            phone.repeat_after = Some(50);
        }
        let spec = LegSpec::new(codec, addr(PHONE));
        let mut call = Call::new(spec, phone, addr(PHONE), now);
        call.up = Link::new(
            100 + i as u64,
            Impairments {
                loss: 0.05,
                base_delay: Duration::from_millis(40),
                jitter: Duration::from_millis(40),
                late: 0.005,
                late_by: Duration::from_millis(120),
                duplicate: 0.01,
            },
        );
        call.run(Duration::from_secs(10));
        let (ticks_before, sound_before) = (call.ticks, call.ticks_with_audio);
        let mut depths = Vec::new();
        let mut max_depth = Duration::ZERO;
        for minute in 0..60 {
            let mut sum = Duration::ZERO;
            for _ in 0..(60 * 50) {
                for _ in 0..4 {
                    call.step();
                }
                let d = call.core.jitter_depth();
                max_depth = max_depth.max(d);
                sum += d;
            }
            depths.push(sum / (60 * 50));
            if minute == 30 {
                let level = frame_level(&call);
                assert!(
                    (level - TONE_DBOV).abs() < 3.0,
                    "{codec:?}: {level:.1} dBov"
                );
            }
        }
        let first = depths[1..11].iter().sum::<Duration>() / 10;
        let last = depths[50..60].iter().sum::<Duration>() / 10;
        let s = call.core.stats();
        let j = call.core.jitter_stats();
        let context = format!(
            "{codec:?} {ppm} ppm: depths {:?} ms, max {max_depth:?}, {s:?}, {j:?}",
            depths.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
        );
        assert!(max_depth <= Duration::from_millis(250), "{context}");
        assert!(
            last.abs_diff(first) <= Duration::from_millis(20),
            "the depth moved: {context}"
        );
        // The hour had sound throughout: losses concealed, and the buffer ran dry (a tick of
        // silence while it waits) at most once in 2,000 ticks.
        let ticks = call.ticks - ticks_before;
        let quiet = ticks - (call.ticks_with_audio - sound_before);
        assert!(quiet * 2_000 <= ticks, "{quiet} silent ticks: {context}");
        // Drift was corrected by small steps, not by restarts.
        assert!(j.restarts <= 1, "{context}");
        // The loss the core counts is the loss the path made, less its duplicates (RFC 3550
        // counts a duplicate as received), give or take the packets still on the way.
        let path = call.up.stats;
        let counted = s.packets_lost as f64 / s.packets_expected as f64;
        let made = (path.lost as f64 - path.duplicated as f64) / path.sent as f64;
        assert!(
            (counted - made).abs() < 0.002,
            "{counted} vs {made}: {context}"
        );
    }
}
