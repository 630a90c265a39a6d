//! Automatic gain control in the mix, in fake time: a quiet phone and a loud one end up at about
//! one loudness for the others, measured on what a third phone decoded with a codec from
//! outside Confab; noise and steady tones keep their level.

use std::time::Duration;

use crate::media::codec::Codec;
use crate::media::leg::LegTimers;
use crate::testing::room::{JoinAs, Room};

/// The levels a listener hears of a talker at -40 dBov and one at -10 dBov, both talking in
/// bursts the speech detector takes for speech, after `seconds` of meeting.
fn quiet_and_loud(auto_gain: bool, seconds: u64) -> (f32, f32) {
    let mut room = Room::new(3, Duration::from_secs(60));
    let timers = LegTimers {
        auto_gain,
        ..LegTimers::default()
    };
    let quiet = room
        .join_as(JoinAs::new(Codec::G722, Some((440.0, -40.0))).timers(timers))
        .unwrap();
    let loud = room
        .join_as(JoinAs::new(Codec::Pcmu, Some((1000.0, -10.0))).timers(timers))
        .unwrap();
    let listener = room
        .join_as(JoinAs::new(Codec::G722, None).timers(timers))
        .unwrap();
    // Words and pauses: 500 ms on, 300 ms off, out of step with each other.
    room.members[quiet].phone.bursts = Some((25, 15));
    room.members[loud].phone.bursts = Some((23, 17));
    room.run(Duration::from_secs(seconds));
    (
        room.heard(listener, 440.0, 4.0),
        room.heard(listener, 1000.0, 4.0),
    )
}

/// Issue 18's test: talkers at -40 and -10 dBov end within 3 dB of each other in the mix; without
/// the gain control they stay 30 dB apart.
#[test]
fn a_quiet_and_a_loud_talker_end_within_3_db_of_each_other() {
    let (quiet, loud) = quiet_and_loud(false, 6);
    eprintln!("without gain control: quiet {quiet:.1}, loud {loud:.1} dBov");
    assert!(
        loud - quiet > 25.0,
        "without gain control: quiet {quiet:.1}, loud {loud:.1} dBov"
    );
    let (quiet, loud) = quiet_and_loud(true, 40);
    eprintln!("with gain control: quiet {quiet:.1}, loud {loud:.1} dBov");
    assert!(
        (loud - quiet).abs() <= 3.0,
        "with gain control: quiet {quiet:.1}, loud {loud:.1} dBov"
    );
    // Both brought toward -26 dBov of speech (the bursts' gaps make the 4 s mean lower).
    for level in [quiet, loud] {
        assert!((-34.0..=-22.0).contains(&level), "{quiet:.1} / {loud:.1}");
    }
}

/// A steady tone (music on a line, a test signal) is not speech: its level in the mix stays as
/// it came, with the gain control on.
#[test]
fn a_steady_tone_keeps_its_level() {
    let mut room = Room::new(3, Duration::from_secs(60));
    let tone = room.join(Codec::Pcmu, Some((440.0, -12.0)));
    let listener = room.join(Codec::Pcmu, None);
    room.run(Duration::from_secs(20));
    let level = room.heard(listener, 440.0, 4.0);
    assert!((level + 12.0).abs() <= 1.0, "tone heard at {level:.2} dBov");
    let _ = tone;
}
