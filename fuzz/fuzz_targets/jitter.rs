//! A leg's jitter buffer (`media::jitter::JitterBuffer`) fed an arbitrary sequence of packets
//! and playout requests on a fake clock.
//!
//! Each operation moves the clock by its offset, then inserts a packet (from one of two SSRCs,
//! its sequence number and timestamp either stepped from the previous packet's or taken whole)
//! or asks for the next frame, saying whether the last one was silent. Payloads carry their
//! own sequence number and timestamp. Properties: no panic; what is played is a packet that
//! was inserted, with the timestamp it was inserted with; the figures stay readable.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use confab::media::jitter::{Arrival, JitterBuffer, JitterSettings, Playout, Pressure};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    /// 8000 (G.711, G.722), 16000 or 48000 (Opus).
    clock: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// The next packet, relative to the previous one.
    Step {
        other_ssrc: bool,
        sequence_step: i8,
        timestamp_step: i32,
        advance_ms: u8,
        payload_len: u8,
    },
    /// A packet with arbitrary numbers.
    Jump {
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        advance_ms: u16,
        payload_len: u8,
    },
    /// The mixer's tick asks for a frame, the caller holding `held` ticks decoded; when the
    /// buffer asks for a stretch, the caller says it did one (or not).
    Pop {
        silent: bool,
        advance_ms: u8,
        held: u32,
        stretched: bool,
    },
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// A payload that says which packet it is: sequence number and timestamp, then filler.
fn payload(sequence: u16, timestamp: u32, len: u8) -> Vec<u8> {
    let mut p = Vec::with_capacity(usize::from(len).max(6));
    p.extend_from_slice(&sequence.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.resize(usize::from(len).max(6), 0xA5);
    p
}

fuzz_target!(|input: Input| {
    let clock_rate = [8000, 16000, 48000][usize::from(input.clock % 3)];
    let mut jb = JitterBuffer::new(JitterSettings::new(clock_rate));
    let mut now = base();
    let (mut ssrc, mut sequence, mut timestamp) = (0x1234_5678u32, 1000u16, 160_000u32);
    for op in input.ops {
        match op {
            Op::Step {
                other_ssrc,
                sequence_step,
                timestamp_step,
                advance_ms,
                payload_len,
            } => {
                now += Duration::from_millis(u64::from(advance_ms));
                if other_ssrc {
                    ssrc ^= 1;
                }
                sequence = sequence.wrapping_add_signed(i16::from(sequence_step));
                timestamp = timestamp.wrapping_add_signed(timestamp_step);
                insert(&mut jb, now, ssrc, sequence, timestamp, payload_len);
            }
            Op::Jump {
                ssrc: s,
                sequence: q,
                timestamp: t,
                advance_ms,
                payload_len,
            } => {
                now += Duration::from_millis(u64::from(advance_ms));
                (ssrc, sequence, timestamp) = (s, q, t);
                insert(&mut jb, now, ssrc, sequence, timestamp, payload_len);
            }
            Op::Pop {
                silent,
                advance_ms,
                held,
                stretched,
            } => {
                now += Duration::from_millis(u64::from(advance_ms));
                jb.set_held(u64::from(held));
                if let Playout::Packet { payload, timestamp } = jb.pop(silent) {
                    assert!(payload.len() >= 6, "a payload that was never inserted");
                    let carried =
                        u32::from_be_bytes([payload[2], payload[3], payload[4], payload[5]]);
                    assert_eq!(timestamp, carried, "played with another packet's timestamp");
                }
                let _ = jb.peek_next();
                match jb.pressure() {
                    Pressure::Steady => {}
                    p if stretched => jb.stretched_audio(p == Pressure::Shed),
                    _ => {}
                }
            }
        }
        let _ = (jb.stats(), jb.jitter_ticks(), jb.target_ticks());
        let _ = (jb.depth_ticks(), jb.depth());
    }
});

fn insert(jb: &mut JitterBuffer, now: Instant, ssrc: u32, sequence: u16, timestamp: u32, len: u8) {
    let payload = payload(sequence, timestamp, len);
    let _ = jb.insert(
        now,
        Arrival {
            ssrc,
            sequence,
            timestamp,
            payload: &payload,
        },
    );
}
