//! The jitter buffer's own behaviour: reordering, duplicates and loss, a sender that stops,
//! sequence wrap and a new SSRC, garbage sequence numbers, long lossy runs, bursts and clock
//! drift.

use super::*;
use std::time::Duration;

fn arrival(sequence: u16, timestamp: u32, payload: &[u8]) -> Arrival<'_> {
    Arrival {
        ssrc: 7,
        sequence,
        timestamp,
        payload,
    }
}

fn payload_of(p: Playout<'_>) -> Option<u8> {
    match p {
        Playout::Packet { payload, .. } => payload.first().copied(),
        _ => None,
    }
}

#[test]
fn reorders_drops_duplicates_and_reports_loss() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterSettings::new(8000));
    assert_eq!(jb.pop(false), Playout::Waiting);
    assert_eq!(jb.insert(t0, arrival(10, 1600, &[10])), Insert::Stored);
    assert_eq!(jb.insert(t0, arrival(12, 1920, &[12])), Insert::Stored);
    assert_eq!(jb.insert(t0, arrival(11, 1760, &[11])), Insert::Stored);
    assert_eq!(jb.insert(t0, arrival(11, 1760, &[11])), Insert::Duplicate);
    assert_eq!(jb.insert(t0, arrival(14, 2240, &[14])), Insert::Stored);
    assert_eq!(payload_of(jb.pop(false)), Some(10));
    assert_eq!(payload_of(jb.pop(false)), Some(11));
    assert_eq!(payload_of(jb.pop(false)), Some(12));
    assert_eq!(jb.pop(false), Playout::Lost);
    assert_eq!(jb.insert(t0, arrival(13, 2080, &[13])), Insert::TooLate);
    assert_eq!(payload_of(jb.pop(false)), Some(14));
    for _ in 0..MAX_DRY_FRAMES {
        assert_eq!(jb.pop(false), Playout::Stretch);
    }
    // The sender stopped: wait, then refill when it resumes.
    assert_eq!(jb.pop(false), Playout::Waiting);
    assert_eq!(jb.pop(false), Playout::Waiting);
    let mut first = None;
    for k in 15u16..40 {
        assert_eq!(
            jb.insert(t0, arrival(k, 160 * u32::from(k), &[k as u8])),
            Insert::Stored
        );
        if let Some(p) = payload_of(jb.pop(false)) {
            first = Some(p);
            break;
        }
    }
    assert_eq!(first, Some(15));
    let s = jb.stats();
    assert_eq!((s.duplicates, s.too_late, s.lost), (1, 1, 1));
}

#[test]
fn a_stopped_sender_costs_nothing() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterSettings::new(8000));
    for k in 0..10u16 {
        let at = t0 + Duration::from_millis(20 * u64::from(k));
        jb.insert(at, arrival(k, 160 * u32::from(k), &[k as u8]));
        let _ = jb.pop(false);
    }
    let mut tail = Vec::new();
    for _ in 0..40 {
        tail.push(match jb.pop(false) {
            Playout::Waiting => 'w',
            Playout::Packet { .. } => 'p',
            Playout::Lost => 'l',
            Playout::Stretch => 's',
        });
    }
    // A few packets and concealments, then nothing but waiting: no endless concealment.
    assert!(tail[20..].iter().all(|&p| p == 'w'), "{tail:?}");
    assert!(jb.stats().stretched <= u64::from(MAX_DRY_FRAMES));
}

#[test]
fn sequence_wraps_and_new_ssrc_restarts() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterSettings::new(8000));
    for (i, seq) in [65534u16, 65535, 0, 1].into_iter().enumerate() {
        assert_eq!(
            jb.insert(t0, arrival(seq, 160 * i as u32, &[i as u8])),
            Insert::Stored
        );
    }
    for i in 0..4 {
        assert_eq!(payload_of(jb.pop(false)), Some(i));
    }
    let other = Arrival {
        ssrc: 8,
        sequence: 500,
        timestamp: 9,
        payload: &[42],
    };
    assert_eq!(jb.insert(t0, other), Insert::Restarted);
    assert_eq!(payload_of(jb.pop(false)), Some(42));
    // A big jump restarts as well.
    let jump = Arrival {
        ssrc: 8,
        sequence: 20_000,
        timestamp: 9_000_000,
        payload: &[43],
    };
    assert_eq!(jb.insert(t0, jump), Insert::Restarted);
    assert_eq!(payload_of(jb.pop(false)), Some(43));
    assert_eq!(jb.stats().restarts, 2);
}

#[test]
fn garbage_sequence_numbers_do_not_break_it() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterSettings::new(8000));
    let mut state = 0x1234_5678u32;
    for i in 0..10_000u32 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let p = Arrival {
            ssrc: state % 3,
            sequence: state as u16,
            timestamp: state.rotate_left(7),
            payload: &[1, 2, 3],
        };
        jb.insert(t0 + Duration::from_millis(u64::from(i)), p);
        if i % 2 == 0 {
            let _ = jb.pop(i % 7 == 0);
        }
        assert!(
            jb.depth() <= Duration::from_secs(20),
            "depth {:?}",
            jb.depth()
        );
    }
}

/// A seeded network: sender clock `drift` fast, uniform extra delay up to `jitter_ms`,
/// `loss` probability. Runs `minutes` of 20 ms packets with a receiver popping every 20 ms
/// of real time; returns the buffer's stats and the largest depth seen after the first second.
fn simulate(
    minutes: u64,
    drift: f64,
    jitter_ms: u64,
    loss: f64,
    seed: u64,
) -> (JitterStats, Duration, u64, u64) {
    let t0 = Instant::now();
    let mut rng = seed | 1;
    let mut random = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let packets = minutes * 60 * 50;
    // (arrival time in µs, sequence index)
    let mut arrivals: Vec<(u64, u64)> = Vec::new();
    for k in 0..packets {
        if random() < loss {
            continue;
        }
        let sent = (k as f64 * 20_000.0 / (1.0 + drift)) as u64;
        let delay = 30_000 + (random() * jitter_ms as f64 * 1000.0) as u64;
        arrivals.push((sent + delay, k));
    }
    arrivals.sort_unstable();
    let mut jb = JitterBuffer::new(JitterSettings::new(8000));
    let mut next_arrival = 0;
    let mut max_depth = Duration::ZERO;
    let (mut played, mut concealed) = (0u64, 0u64);
    let end = packets * 20_000 + 1_000_000;
    let mut tick = 0u64;
    while tick * 20_000 < end {
        let now_us = tick * 20_000;
        while next_arrival < arrivals.len() && arrivals[next_arrival].0 <= now_us {
            let (at, k) = arrivals[next_arrival];
            let payload = [0u8; 160];
            jb.insert(
                t0 + Duration::from_micros(at),
                Arrival {
                    ssrc: 1,
                    sequence: k as u16,
                    timestamp: (k * 160) as u32,
                    payload: &payload,
                },
            );
            next_arrival += 1;
        }
        // Talk spurts: one second of silence in every three.
        let silent = (tick / 50).is_multiple_of(3);
        match jb.pop(silent) {
            Playout::Packet { .. } => played += 1,
            Playout::Lost | Playout::Stretch => concealed += 1,
            Playout::Waiting => {}
        }
        if tick > 50 {
            max_depth = max_depth.max(jb.depth());
        }
        tick += 1;
    }
    (jb.stats(), max_depth, played, concealed)
}

#[test]
fn ten_lossy_jittery_minutes_stay_bounded() {
    let (stats, max_depth, played, concealed) = simulate(10, 0.0, 40, 0.10, 42);
    let sent = 10 * 60 * 50;
    assert!(
        max_depth <= Duration::from_millis(220),
        "depth reached {max_depth:?}"
    );
    // Everything that arrived in time was played: losses are the network's 10 % plus a
    // small share of packets that came later than the adaptive target allowed.
    let missing = sent - played;
    assert!(
        missing as f64 <= sent as f64 * 0.13,
        "{missing} of {sent} not played: {stats:?}"
    );
    assert!(stats.too_late as f64 <= sent as f64 * 0.03, "{stats:?}");
    assert!(concealed >= missing - stats.skipped, "gaps are concealed");
}

#[test]
fn a_burst_does_not_leave_a_talker_who_never_pauses_late() {
    // A steady tone (never silent) whose packets 50..60 were held up 150 ms and came in a
    // burst: the buffer grew to hold them. It gives the excess back a frame a second at
    // most, while audio plays, until it is near the target again.
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterSettings::new(8000));
    let payload = [0u8; 160];
    let mut skipped_early = 0;
    for tick in 0..1500u64 {
        let now = t0 + Duration::from_millis(20 * tick);
        let arriving: Vec<u64> = match tick {
            50..=57 => vec![],
            58 => (50..=58).collect(),
            t => vec![t],
        };
        for k in arriving {
            jb.insert(
                now,
                Arrival {
                    ssrc: 1,
                    sequence: k as u16,
                    timestamp: (k * 160) as u32,
                    payload: &payload,
                },
            );
        }
        let _ = jb.pop(false);
        if tick == 100 {
            skipped_early = jb.stats().skipped;
        }
    }
    let stats = jb.stats();
    let depth = jb.depth();
    let target = Duration::from_micros(jb.target_ticks() * 1_000_000 / 8000);
    // Within a frame of it (with three frames tolerated, it stayed 40 ms above).
    assert!(
        depth <= target + Duration::from_millis(20),
        "depth {depth:?} against a target of {target:?}: {stats:?}"
    );
    // Not all at once: no more than one skip a second.
    assert!(skipped_early <= 2, "{stats:?}");
    assert!(stats.skipped >= 1 && stats.skipped <= 30, "{stats:?}");
}

#[test]
fn sender_clock_drift_is_corrected() {
    for drift in [0.005, -0.005, 0.01, -0.01] {
        let (stats, max_depth, _, _) = simulate(5, drift, 10, 0.0, 7);
        assert!(
            max_depth <= Duration::from_millis(150),
            "{drift}: depth reached {max_depth:?}"
        );
        if drift > 0.0 {
            assert!(stats.skipped > 0, "{drift}: {stats:?}");
        } else {
            assert!(stats.stretched > 0, "{drift}: {stats:?}");
        }
    }
}

/// Payloads up to a slot's share of the shared block and longer ones (kept in the slot's
/// overflow) come out whole, and a short one after a long one in the same slot is not
/// mixed up with what the overflow still holds.
#[test]
fn payloads_of_every_length_come_out_whole() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterSettings::new(8000));
    let lengths = [0, 1, 160, SLOT_BYTES - 1, SLOT_BYTES, SLOT_BYTES + 1, 1500];
    let payload = |k: usize, len: usize| (0..len).map(|i| (k * 7 + i) as u8).collect::<Vec<u8>>();
    // Twice round the ring, so that every slot holds a long payload, then a short one.
    let mut played = 0;
    for k in 0..(2 * SLOTS) {
        let len = lengths[(k / SLOTS + k) % lengths.len()];
        let sent = payload(k, len);
        let sequence = k as u16;
        assert_eq!(
            jb.insert(t0, arrival(sequence, 160 * u32::from(sequence), &sent)),
            Insert::Stored
        );
        if k >= 3 {
            let expected_len = lengths[(played / SLOTS + played) % lengths.len()];
            if k > 3 {
                assert_eq!(
                    jb.peek_next(),
                    Some(payload(played, expected_len).as_slice())
                );
            }
            match jb.pop(false) {
                Playout::Packet { payload: got, .. } => {
                    assert_eq!(
                        got,
                        payload(played, expected_len).as_slice(),
                        "packet {played}"
                    );
                }
                other => panic!("packet {played}: {other:?}"),
            }
            played += 1;
        }
    }
    assert!(played > SLOTS, "both rounds played: {played}");
}

/// While audio plays (never `silent`), drift is not corrected by a skip or a held frame but
/// asked of the caller: a sender whose clock is slow brings the depth under the target and the
/// buffer asks to build (lengthen the audio); once told it was done, it asks no more until the
/// deficit has lasted again. A fast one asks to shed.
#[test]
fn drift_under_audio_asks_the_caller_to_stretch() {
    for (spacing_us, wanted) in [(21_000u64, Pressure::Build), (19_000, Pressure::Shed)] {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterSettings::new(8000));
        let mut sent = 0u64;
        let mut asked = None;
        for frame in 0..400u64 {
            // Packets come every `spacing_us` with 40 ms of jitter on every other one (so the
            // target holds several packets and a deficit shows before the buffer runs dry).
            let now = t0 + Duration::from_millis(20 * frame);
            while sent * spacing_us + (sent % 2) * 40_000 <= frame * 20_000 {
                let p = [1u8; 160];
                jb.insert(now, arrival(sent as u16, (sent * 160) as u32, &p));
                sent += 1;
            }
            let played = jb.pop(false);
            if frame <= 100 {
                // Filling, and learning the jitter.
                continue;
            }
            assert_ne!(
                played,
                Playout::Stretch,
                "frame {frame}: held while audio played"
            );
            if jb.pressure() == wanted {
                asked = Some(frame);
                break;
            }
        }
        let stats = jb.stats();
        assert!(asked.is_some(), "{wanted:?} never asked: {stats:?}");
        assert_eq!(stats.skipped, 0, "{stats:?}");
        jb.stretched_audio(wanted == Pressure::Shed);
        assert_eq!(jb.pressure(), Pressure::Steady);
        let stats = jb.stats();
        assert_eq!(stats.accelerated + stats.expanded, 1, "{stats:?}");
    }
}
