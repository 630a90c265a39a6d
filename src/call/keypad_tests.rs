use std::time::{Duration, Instant};

use super::*;

fn keyed(map: &KeyMap, keys: &str, gap: Duration) -> Vec<KeyAction> {
    let mut entry = KeyEntry::default();
    let mut now = Instant::now();
    let mut out = Vec::new();
    for k in keys.chars() {
        now += gap;
        out.extend(entry.key(now, k, map));
    }
    out
}

#[test]
fn the_default_sequences_do_what_they_say() {
    let map = KeyMap::default();
    let gap = Duration::from_millis(300);
    assert_eq!(keyed(&map, "*6", gap), [KeyAction::Mute]);
    assert_eq!(
        keyed(&map, "*6*6*5*9*0*1*4*7*8", gap),
        [
            KeyAction::Mute,
            KeyAction::Mute,
            KeyAction::Lock,
            KeyAction::End,
            KeyAction::HeadCount,
            KeyAction::Help,
            KeyAction::VolumeDown,
            KeyAction::VolumeUp,
            KeyAction::MuteAll,
        ]
    );
}

#[test]
fn stray_keys_start_over_and_never_get_stuck() {
    let map = KeyMap::default();
    let gap = Duration::from_millis(300);
    // Digits alone, `#`, `*2` (no such action), `**6` (the second star starts again).
    assert_eq!(keyed(&map, "1234#", gap), []);
    assert_eq!(keyed(&map, "*2*6", gap), [KeyAction::Mute]);
    assert_eq!(keyed(&map, "**6", gap), [KeyAction::Mute]);
    assert_eq!(keyed(&map, "9*#*6", gap), [KeyAction::Mute]);
    // Not keys at all: ignored, the sequence goes on.
    let mut entry = KeyEntry::default();
    let now = Instant::now();
    assert_eq!(entry.key(now, '*', &map), None);
    assert_eq!(entry.key(now, 'A', &map), None);
    assert_eq!(entry.key(now, '\u{1F600}', &map), None);
    assert_eq!(entry.key(now, '6', &map), Some(KeyAction::Mute));
}

#[test]
fn a_pause_longer_than_the_gap_abandons_the_sequence() {
    let map = KeyMap::default();
    assert_eq!(
        keyed(&map, "*6", SEQUENCE_GAP + Duration::from_millis(1)),
        []
    );
    assert_eq!(keyed(&map, "*6", SEQUENCE_GAP), [KeyAction::Mute]);
}

#[test]
fn a_map_is_checked_for_bad_keys_and_overlaps() {
    let ok = KeyMap::new([(KeyAction::Mute, "##1"), (KeyAction::Help, "0")]).unwrap();
    assert_eq!(ok.keys(KeyAction::Mute), Some("##1"));
    assert_eq!(ok.keys(KeyAction::End), None);
    assert_eq!(keyed(&ok, "5##1", Duration::ZERO), [KeyAction::Mute]);
    // Off: an empty sequence.
    let off = KeyMap::new([(KeyAction::Mute, ""), (KeyAction::Help, "*1")]).unwrap();
    assert_eq!(off.keys(KeyAction::Mute), None);
    for bad in ["", "*12345", "*a", "* 6", "６"] {
        if bad.is_empty() {
            continue;
        }
        let e = KeyMap::new([(KeyAction::Mute, bad)]).unwrap_err();
        assert_eq!(e.action(), "mute", "{bad:?}: {e}");
        assert!(e.to_string().contains("0-9, * and #"), "{e}");
    }
    let e = KeyMap::new([(KeyAction::Mute, "*6"), (KeyAction::End, "*6")]).unwrap_err();
    assert!(matches!(e, KeyMapError::Overlap { .. }), "{e}");
    let e = KeyMap::new([(KeyAction::Mute, "*6"), (KeyAction::End, "*")]).unwrap_err();
    assert_eq!(e.action(), "end", "{e}");
    assert!(e.to_string().contains("keypad.mute"), "{e}");
}

fn attendee() -> Situation {
    Situation {
        role: Role::Attendee,
        muted: false,
        locked: false,
        present: 3,
        volume: 0,
    }
}

#[test]
fn mute_toggles_and_says_which() {
    let d = decide(KeyAction::Mute, attendee());
    assert_eq!(d.effect, Some(Effect::Mute(true)));
    assert_eq!(d.say, [Prompt::Muted]);
    let d = decide(
        KeyAction::Mute,
        Situation {
            muted: true,
            ..attendee()
        },
    );
    assert_eq!(d.effect, Some(Effect::Mute(false)));
    assert_eq!(d.say, [Prompt::Unmuted]);
}

#[test]
fn leader_actions_are_refused_to_attendees_with_a_reason() {
    for action in [KeyAction::Lock, KeyAction::MuteAll, KeyAction::End] {
        let d = decide(action, attendee());
        assert_eq!(d.effect, None, "{action:?}");
        assert_eq!(d.say, [Prompt::LeadersOnly]);
    }
    let leader = Situation {
        role: Role::Leader,
        ..attendee()
    };
    assert_eq!(
        decide(KeyAction::Lock, leader).effect,
        Some(Effect::Lock(true))
    );
    let d = decide(
        KeyAction::Lock,
        Situation {
            locked: true,
            ..leader
        },
    );
    assert_eq!(
        (d.effect, d.say),
        (Some(Effect::Lock(false)), vec![Prompt::Unlocked])
    );
    assert_eq!(
        decide(KeyAction::MuteAll, leader).effect,
        Some(Effect::MuteAll)
    );
    assert_eq!(decide(KeyAction::End, leader).effect, Some(Effect::End));
}

#[test]
fn volume_stays_within_its_steps() {
    let mut s = attendee();
    for _ in 0..10 {
        if let Some(Effect::Volume(v)) = decide(KeyAction::VolumeUp, s).effect {
            s.volume = v;
        }
    }
    assert_eq!(s.volume, MAX_VOLUME_STEPS);
    for _ in 0..20 {
        if let Some(Effect::Volume(v)) = decide(KeyAction::VolumeDown, s).effect {
            s.volume = v;
        }
    }
    assert_eq!(s.volume, -MAX_VOLUME_STEPS);
    s.volume = i8::MIN;
    assert_eq!(
        decide(KeyAction::VolumeDown, s).effect,
        Some(Effect::Volume(-MAX_VOLUME_STEPS))
    );
}

#[test]
fn the_head_count_is_said_in_words() {
    assert_eq!(head_count(0), [Prompt::OnlyYou]);
    assert_eq!(head_count(1), [Prompt::OnlyYou]);
    assert_eq!(
        head_count(2),
        [
            Prompt::ThereAre,
            Prompt::number(2).unwrap(),
            Prompt::Participants
        ]
    );
    assert_eq!(
        head_count(20),
        [
            Prompt::ThereAre,
            Prompt::number(20).unwrap(),
            Prompt::Participants
        ]
    );
    assert_eq!(
        head_count(21),
        [
            Prompt::ThereAre,
            Prompt::MoreThanTwenty,
            Prompt::Participants
        ]
    );
    assert_eq!(head_count(usize::MAX)[1], Prompt::MoreThanTwenty);
}
