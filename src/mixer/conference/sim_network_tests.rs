//! A conference under a hostile or bad network, in fake time: forged and malformed packets,
//! loss with jitter and reordering, silence suppression and timestamps that jump anywhere.
//! Levels are measured on what the simulated phones decoded with codecs from outside Confab.
//! Seconds of meeting run in well under a second of wall time; the network is seeded.

use std::time::Duration;

use crate::conference::State;
use crate::media::codec::Codec;
use crate::media::leg::LegTimers;
use crate::testing::call::addr;
use crate::testing::net::{Impairments, Link};
use crate::testing::room::{JoinAs, Room};

/// An attacker sprays one participant's port with loud forged RTP and junk, and the participant
/// itself sends junk now and then: all of it is dropped and counted, and the other participant
/// hears the first one, and nothing else.
#[test]
fn forged_and_malformed_packets_are_dropped_and_counted() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let a = room.join(Codec::Pcmu, Some((500.0, -20.0)));
    let b = room.join(Codec::Pcmu, Some((700.0, -20.0)));
    room.run(Duration::from_millis(800));

    let attacker = addr("203.0.113.66:5000");
    // Loud µ-law (0x00 is near full scale): heard at once if it got in.
    let mut forged = vec![0x80, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 9];
    forged.extend_from_slice(&[0x00; 160]);
    let junk: Vec<Vec<u8>> = vec![
        vec![0x80; 5],
        vec![0x80; 1600],
        vec![0x40; 40],
        vec![0x8F; 20],
        vec![],
    ];
    let own = room.members[a].addr;
    for tick in 0..75 {
        for _ in 0..3 {
            room.inject(a, attacker, false, forged.clone());
        }
        for j in &junk {
            room.inject(a, attacker, false, j.clone());
            if tick % 5 == 0 {
                room.inject(a, own, false, j.clone());
            }
        }
        for _ in 0..4 {
            room.step();
        }
    }
    let s = room.stats(a).unwrap();
    assert!(s.dropped_foreign_source >= 600, "{s:?}");
    assert!(s.dropped_malformed >= 10, "{s:?}");
    let level = room.heard(b, 500.0, 1.0);
    assert!((level + 20.0).abs() < 1.0, "B hears A at {level:.2}");
    let heard = &room.members[b].phone.heard;
    let total = confab_dsp::signal::level_dbov(&heard[heard.len() - 8000..]);
    assert!(
        (total - level).abs() < 0.5,
        "B hears more than A: {total:.2} dBov in all"
    );
}

/// 10 % loss with up to 40 ms of jitter (so reordering) on every phone's path to the bridge:
/// the bridge conceals what is lost (Opus in-band FEC where the packet after carries it, PLC
/// otherwise), so every tone reaches every listener near its level, and each leg counts the
/// loss its path made. Ten seconds of meeting, a fraction of a second of wall time.
#[test]
fn loss_jitter_and_reordering_are_concealed_for_every_codec() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let parties = [
        (Codec::Pcmu, 440.0),
        (Codec::G722, 660.0),
        (Codec::Opus, 880.0),
    ];
    // Concealment is measured alone: the gain control would take a lossy tone's broken-up
    // onsets for speech and bring it toward its target.
    let timers = LegTimers {
        auto_gain: false,
        ..LegTimers::default()
    };
    for (i, (codec, hz)) in parties.into_iter().enumerate() {
        let m = room
            .join_as(JoinAs::new(codec, Some((hz, -20.0))).timers(timers))
            .unwrap();
        room.members[m].up = Link::new(
            17 + i as u64,
            Impairments {
                loss: 0.10,
                base_delay: Duration::from_millis(20),
                jitter: Duration::from_millis(40),
                ..Impairments::default()
            },
        );
    }
    room.members[2].phone.enable_fec(10);
    room.run(Duration::from_secs(10));
    for (i, (codec, _)) in parties.into_iter().enumerate() {
        for (other_codec, other) in parties.iter().filter(|(c, _)| *c != codec) {
            // Concealment repeats and fades audio, and its phase drifts from the tone's, so a
            // lossy stream's tone loses a little of its (single-bin) level. libopus conceals
            // a pure tone about 9 dB down (its FEC data gives the same as its PLC for it):
            // 2 to 3 dB over a stream with 10 % loss.
            let allowed = if *other_codec == Codec::Opus {
                3.5
            } else {
                1.5
            };
            let level = room.heard(i, *other, 5.0);
            assert!(
                (level + 20.0).abs() <= allowed,
                "{codec:?} hears {other} Hz ({other_codec:?}) at {level:.2} dBov"
            );
        }
        // The path really lost about 10 %, and the leg counted what it lost.
        let path = room.members[i].up.stats;
        let made = path.lost as f64 / path.sent as f64;
        assert!((0.07..=0.13).contains(&made), "{codec:?}: {path:?}");
        let s = room.stats(i).unwrap();
        let counted = s.packets_lost as f64 / s.packets_expected as f64;
        assert!(
            (counted - made).abs() < 0.01,
            "{codec:?}: {counted} vs {made}"
        );
    }
}

/// Talkers that pause between bursts and send nothing meanwhile (silence suppression, DTX: the
/// sequence goes on, the timestamp jumps by each pause), one per codec, and a participant whose
/// timestamps jump anywhere while its sequence stays contiguous: every talker is heard, and
/// everyone stays connected. (Through the engine such media once killed a mixer thread; here a
/// panic fails the test.)
#[test]
fn silence_suppression_and_hostile_timestamps_stop_nobody() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let talkers = [
        (Codec::Pcmu, 500.0),
        (Codec::G722, 700.0),
        (Codec::Opus, 900.0),
    ];
    for (i, (codec, hz)) in talkers.into_iter().enumerate() {
        let t = room.join(codec, Some((hz, -20.0)));
        room.members[t].phone.bursts = Some((25, 15 + 5 * i as u64));
        room.members[t].phone.silence_suppression = true;
    }
    let listener = room.join(Codec::Opus, Some((1200.0, -90.0)));
    let attacker = room.join(Codec::Pcmu, None);
    room.members[attacker].phone.sending = false;
    let from = room.members[attacker].addr;
    let jumps = [2000u32, 1 << 31, 80_000, u32::MAX, 7, 16_000, 3];
    let mut timestamp = 0u32;
    for tick in 0..200u16 {
        timestamp = timestamp.wrapping_add(jumps[usize::from(tick) % jumps.len()]);
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&tick.to_be_bytes());
        p.extend_from_slice(&timestamp.to_be_bytes());
        p.extend_from_slice(&0xA77Au32.to_be_bytes());
        p.extend_from_slice(&[0xFF; 160]);
        room.inject(attacker, from, false, p);
        for _ in 0..4 {
            room.step();
        }
    }
    // On for 25 frames of every 40 to 50: about -22 to -23 dBov on average over two seconds.
    for (_, hz) in talkers {
        let level = room.heard(listener, hz, 2.0);
        assert!(level > -28.0, "the listener hears {hz} Hz at {level:.2}");
    }
    assert!(room.stats(attacker).unwrap().packets_in >= 190);
    let roster = room.conference.roster.participants();
    assert!(
        roster.iter().all(|p| p.state == State::Connected),
        "{roster:?}"
    );
}
