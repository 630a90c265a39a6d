//! A conference's tick in fake time: phones on a simulated network, legs without sockets, the
//! tick driven as the mixer thread drives it. What each phone heard is measured with codecs from
//! outside Confab. A meeting-minute runs in a fraction of a second, and nothing sleeps.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::conference::{DisconnectReason, Event, State};
use crate::media::codec::Codec;
use crate::store::RecordEvent;
use crate::testing::room::Room;

#[test]
fn each_codec_hears_the_others_and_not_itself() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let tones = [
        (Codec::Pcmu, 440.0),
        (Codec::G722, 660.0),
        (Codec::Opus, 880.0),
    ];
    for (codec, hz) in tones {
        room.join(codec, Some((hz, -20.0)));
    }
    room.run(Duration::from_secs(3));
    for (i, (codec, own)) in tones.into_iter().enumerate() {
        for (_, other) in tones.iter().filter(|(c, _)| *c != codec) {
            let level = room.heard(i, *other, 1.0);
            assert!(
                (level + 20.0).abs() <= 1.0,
                "{codec:?} hears {other} Hz at {level:.2} dBov"
            );
        }
        let echo = room.heard(i, own, 1.0);
        assert!(echo < -50.0, "{codec:?} hears itself at {echo:.2} dBov");
    }
    assert!(
        room.conference
            .roster
            .participants()
            .iter()
            .all(|p| p.state == State::Connected),
        "{:?}",
        room.conference.roster.participants()
    );
}

#[test]
fn only_the_loudest_talkers_are_mixed_and_named() {
    let mut room = Room::new(2, Duration::from_secs(30));
    let talkers = [(500.0, -15.0), (700.0, -20.0), (1_300.0, -32.0)];
    for tone in talkers {
        room.join(Codec::Pcmu, Some(tone));
    }
    let listener = room.join(Codec::Pcmu, None);
    room.run(Duration::from_secs(3));
    for (hz, dbov) in &talkers[..2] {
        let level = room.heard(listener, *hz, 1.0);
        assert!((level - dbov).abs() <= 1.0, "{hz} Hz at {level:.2} dBov");
    }
    let quietest = room.heard(listener, 1_300.0, 1.0);
    assert!(
        quietest < -50.0,
        "the third talker got in at {quietest:.2} dBov"
    );
    // The listener's packets name the two talkers' streams (RFC 3550 CSRCs).
    let mut named = room.members[listener].phone.last_csrcs.clone();
    named.sort_unstable();
    let mut expected: Vec<u32> = (0..2)
        .map(|i| room.conference.leg_stats(room.members[i].id).unwrap().ssrc)
        .collect();
    expected.sort_unstable();
    assert_eq!(named, expected);
}

#[test]
fn a_town_hall_encodes_per_talker_not_per_listener() {
    let mut room = Room::new(3, Duration::from_secs(30));
    room.join(Codec::Pcmu, Some((440.0, -20.0)));
    room.join(Codec::Pcmu, Some((880.0, -20.0)));
    let listeners: Vec<usize> = (0..300).map(|_| room.join(Codec::Pcmu, None)).collect();
    room.run(Duration::from_secs(1));
    let counters = room.conference.counters.clone();
    let (t0, s0, o0) = (
        counters.ticks.load(Ordering::Relaxed),
        counters.encodes_shared.load(Ordering::Relaxed),
        counters.encodes_own.load(Ordering::Relaxed),
    );
    room.run(Duration::from_secs(2));
    let ticks = counters.ticks.load(Ordering::Relaxed) - t0;
    let shared = counters.encodes_shared.load(Ordering::Relaxed) - s0;
    let own = counters.encodes_own.load(Ordering::Relaxed) - o0;
    // One shared encode a tick for 300 listeners, and one own encode per talker.
    assert_eq!(ticks, 100);
    assert_eq!(shared, ticks, "shared encodes");
    assert_eq!(own, 2 * ticks, "own encodes");
    for &l in &listeners {
        for hz in [440.0, 880.0] {
            let level = room.heard(l, hz, 1.0);
            assert!(
                (level + 20.0).abs() <= 1.0,
                "listener {l}: {hz} Hz at {level:.2}"
            );
        }
    }
}

#[test]
fn a_participant_whose_media_stops_is_disconnected_for_media_timeout() {
    let mut room = Room::new(3, Duration::from_secs(5));
    room.join(Codec::Pcmu, Some((440.0, -20.0)));
    let quiet = room.join(Codec::Pcmu, Some((880.0, -20.0)));
    room.run(Duration::from_secs(2));
    let id = room.members[quiet].id;
    room.members[quiet].phone.silence_suppression = true;
    room.members[quiet].phone.bursts = Some((0, 1));
    room.run(Duration::from_millis(4_800));
    let gone = |room: &Room| {
        room.events.iter().any(|e| {
            e.event
                == Event::State {
                    participant: id,
                    state: State::Disconnected(DisconnectReason::MediaTimeout),
                }
        })
    };
    assert!(!gone(&room));
    room.run(Duration::from_millis(400));
    assert!(gone(&room), "{:?}", room.events);
    assert_eq!(room.conference.leg_count(), 1);
    // The record writer is told the facts, on the tick's clock: when it went, and why.
    let left = room.records.try_iter().find_map(|r| match r {
        RecordEvent::Leg {
            participant,
            open: false,
            facts,
        } if participant == id => Some(facts),
        _ => None,
    });
    let left = left.expect("the leg's closing facts");
    assert_eq!(left.reason, Some(DisconnectReason::MediaTimeout));
    assert!(left.at <= room.now && room.now - left.at <= Duration::from_millis(400));
    assert!(left.stats.is_some_and(|s| s.packets_in > 90));
}
