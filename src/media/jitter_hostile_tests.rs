//! The jitter buffer against what real senders and hostile ones send: pauses in the timestamp
//! with contiguous sequence numbers (silence suppression, DTX), and arbitrary sequences.

use super::*;

const PAYLOAD: [u8; 4] = [1, 2, 3, 4];

fn cap_ticks(clock_rate: u32) -> u64 {
    let frame = u64::from(clock_rate) / 50;
    (u64::from(clock_rate) / 5).max(frame)
}

/// A talk spurt, a pause of `pause_ms` (the sequence goes on, the timestamp jumps), a second
/// spurt; packets arrive in real time and a frame is asked for every 20 ms. Returns the
/// spurt-2 packets played (their payload's first byte is 2).
fn spurts(clock_rate: u32, pause_ms: u32) -> (usize, JitterBuffer) {
    let per_packet = clock_rate / 50;
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterSettings::new(clock_rate));
    let mut played_second = 0;
    let mut sequence: u16 = 65_500; // wraps during the call
    let mut timestamp: u32 = u32::MAX - 10 * per_packet; // so does the timestamp
    let mut now = t0;
    let send = |jb: &mut JitterBuffer, now: Instant, spurt: u8, seq: u16, ts: u32| {
        let payload = [spurt, 0, 0, 0];
        jb.insert(
            now,
            Arrival {
                ssrc: 9,
                sequence: seq,
                timestamp: ts,
                payload: &payload,
            },
        );
    };
    let pop = |jb: &mut JitterBuffer, played: &mut usize| {
        if let Playout::Packet { payload, .. } = jb.pop(true)
            && payload[0] == 2
        {
            *played += 1;
        }
    };
    for _ in 0..50 {
        send(&mut jb, now, 1, sequence, timestamp);
        pop(&mut jb, &mut played_second);
        sequence = sequence.wrapping_add(1);
        timestamp = timestamp.wrapping_add(per_packet);
        now += Duration::from_millis(20);
    }
    // The pause: nothing is sent, frames are still asked for.
    let pause_ticks = pause_ms / 20;
    for _ in 0..pause_ticks {
        pop(&mut jb, &mut played_second);
        now += Duration::from_millis(20);
    }
    timestamp = timestamp.wrapping_add(pause_ms * clock_rate / 1000);
    for _ in 0..50 {
        send(&mut jb, now, 2, sequence, timestamp);
        pop(&mut jb, &mut played_second);
        assert!(jb.target_ticks() <= cap_ticks(clock_rate));
        sequence = sequence.wrapping_add(1);
        timestamp = timestamp.wrapping_add(per_packet);
        now += Duration::from_millis(20);
    }
    for _ in 0..20 {
        pop(&mut jb, &mut played_second);
    }
    (played_second, jb)
}

#[test]
fn silence_suppression_and_dtx_pauses_are_normal_traffic() {
    // 8 kHz: G.711 and G.722 (whose RTP clock is 8 kHz); 48 kHz: Opus DTX.
    for clock_rate in [8000, 48_000] {
        for pause_ms in [40, 100, 240, 2000, 9000] {
            let (played, jb) = spurts(clock_rate, pause_ms);
            assert_eq!(
                played,
                50,
                "{clock_rate} Hz, {pause_ms} ms pause: {:?}",
                jb.stats()
            );
            // The pause was not learned as the packet's length.
            assert_eq!(jb.packet_ticks, u64::from(clock_rate) / 50);
        }
    }
}

#[test]
fn two_adjacent_packets_far_apart_in_time_do_not_panic() {
    // The packet that killed a mixer thread: sequence + 1, timestamp + 2,000 (250 ms of PCMU).
    let t0 = Instant::now();
    for gap in [2000u32, 8000, 80_000, 1 << 31, u32::MAX] {
        let mut jb = JitterBuffer::new(JitterSettings::new(8000));
        for (i, ts) in [0u32, gap].into_iter().enumerate() {
            jb.insert(
                t0,
                Arrival {
                    ssrc: 1,
                    sequence: 10 + i as u16,
                    timestamp: ts,
                    payload: &PAYLOAD,
                },
            );
        }
        for _ in 0..20 {
            let _ = jb.pop(false);
            let _ = jb.depth();
            assert!(jb.target_ticks() <= cap_ticks(8000), "gap {gap}");
        }
    }
}

/// A small deterministic generator (xorshift64*).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn arbitrary_sequences_keep_the_buffer_within_its_bounds() {
    for (seed, clock_rate) in [(1u64, 8000u32), (2, 48_000), (3, 8000), (4, 48_000)] {
        let mut noise = Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let t0 = Instant::now();
        let mut now = t0;
        let mut jb = JitterBuffer::new(JitterSettings::new(clock_rate));
        let mut sequence: u16 = 0;
        let mut timestamp: u32 = 0;
        let payload = [0u8; 160];
        for _ in 0..50_000 {
            let r = noise.next();
            // Mostly plausible steps, sometimes anything at all.
            sequence = match r % 8 {
                0 => (r >> 8) as u16,
                1 => sequence.wrapping_sub((r >> 8) as u16 % 200),
                _ => sequence.wrapping_add((r >> 8) as u16 % 3),
            };
            timestamp = match (r >> 24) % 8 {
                0 => (r >> 32) as u32,
                1 => timestamp.wrapping_add((r >> 32) as u32 % 100_000),
                _ => timestamp.wrapping_add(clock_rate / 50),
            };
            now += Duration::from_millis((r >> 40) % 45);
            let ssrc = if (r >> 48).is_multiple_of(500) { 2 } else { 1 };
            let len = ((r >> 52) % 161) as usize;
            jb.insert(
                now,
                Arrival {
                    ssrc,
                    sequence,
                    timestamp,
                    payload: &payload[..len],
                },
            );
            if (r >> 60).is_multiple_of(2) {
                let _ = jb.pop((r >> 62).is_multiple_of(2));
            }
            let target = jb.target_ticks();
            assert!(target >= u64::from(clock_rate) / 50);
            assert!(target <= cap_ticks(clock_rate).max(jb.packet_ticks));
            assert!(jb.packet_ticks <= MAX_PACKET_MS * u64::from(clock_rate) / 1000);
            let _ = jb.depth();
            let _ = jb.jitter_ticks();
        }
    }
}

#[test]
fn a_stalled_node_gives_back_the_delay_in_the_next_pauses() {
    // Speech in bursts (400 ms on, 400 ms off); the node stalls for 500 ms: nothing is read
    // or played, then the 25 packets the kernel queued arrive at once.
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterSettings::new(8000));
    let mut now = t0;
    let mut silent = true;
    let mut k: u32 = 0;
    let mut step = |jb: &mut JitterBuffer, now: Instant, play: bool, k: &mut u32| {
        let on = (*k / 20).is_multiple_of(2);
        let payload = [u8::from(on); 160];
        jb.insert(
            now,
            Arrival {
                ssrc: 3,
                sequence: *k as u16,
                timestamp: *k * 160,
                payload: &payload,
            },
        );
        *k += 1;
        if play {
            silent = !matches!(jb.pop(silent), Playout::Packet { payload, .. } if payload[0] == 1);
        }
    };
    for _ in 0..100 {
        step(&mut jb, now, true, &mut k);
        now += Duration::from_millis(20);
    }
    let settled = jb.depth();
    now += Duration::from_millis(500);
    for _ in 0..25 {
        step(&mut jb, now, false, &mut k);
    }
    assert!(jb.depth() >= settled + Duration::from_millis(400));
    for _ in 0..250 {
        step(&mut jb, now, true, &mut k);
        now += Duration::from_millis(20);
    }
    assert!(
        jb.depth() <= settled + Duration::from_millis(20),
        "depth {:?} five seconds after the stall, {settled:?} before: {:?}",
        jb.depth(),
        jb.stats()
    );
}
