//! `entry_exit: names` heard in fake time: a name recorded from a caller's own frames, then
//! said to everyone in the mix with "has joined" when it enters and "has left" when it goes;
//! a participant with no recorded name gets the enter tone. What the phones heard is decoded
//! by a codec from outside Confab and measured.

use std::sync::Arc;
use std::time::Duration;

use confab_dsp::resample::Rate;
use confab_dsp::signal::{level_dbov, sine, tone_level_dbov};

use crate::conference::roster::EntryExit;
use crate::conference::{DisconnectReason, Policy};
use crate::media::codec::Codec;
use crate::media::leg::name::{LegName, NameClip};
use crate::mixer::room_sounds::RoomSounds;
use crate::testing::room::Room;

/// The "name" the tests say: a 700 Hz tone, so that it can be told from the phrase and tones.
const NAME_HZ: f32 = 700.0;
/// The enter tone's first note.
const ENTER_HZ: f32 = 880.0;

#[test]
fn a_callers_name_is_recorded_from_its_own_frames() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let a = room.join(Codec::Pcmu, Some((NAME_HZ, -20.0)));
    room.run(Duration::from_millis(300));
    let a_id = room.members[a].id;
    room.conference
        .record_name(a_id, Duration::from_secs(2))
        .unwrap();
    room.run(Duration::from_millis(2500));
    let leg = room.conference.leg_mut(a_id).unwrap();
    assert!(!leg.name.recording());
    leg.name.finish();
    let clip = leg.name.clip().unwrap();
    assert_eq!(clip.rate, Rate::Hz8000);
    let secs = clip.samples.len() as f32 / 8000.0;
    let level = tone_level_dbov(&clip.samples, 8000, NAME_HZ);
    eprintln!("recorded {secs:.2} s, the name at {level:.2} dBov");
    assert!((1.9..=2.0).contains(&secs), "{secs} s");
    assert!((level + 20.0).abs() < 1.0, "{level:.2} dBov");
}

/// When (seconds from the start of `heard`) `hz` is first heard above -30 dBov in a 20 ms
/// window, and its loudest window.
fn onset(heard: &[i16], rate: u32, hz: f32) -> (Option<f32>, f32) {
    let n = rate as usize / 50;
    let mut first = None;
    let mut peak = -120.0f32;
    for (k, w) in heard.chunks(n).enumerate() {
        let level = tone_level_dbov(w, rate, hz);
        peak = peak.max(level);
        if level > -30.0 && first.is_none() {
            first = Some(k as f32 * 0.02);
        }
    }
    (first, peak)
}

#[test]
fn with_names_each_recorded_name_is_said_on_entry_and_exit() {
    let policy = Policy {
        entry_exit: EntryExit::Names,
        ..Policy::default()
    };
    let mut room = Room::with_policy(policy, 3, Duration::from_secs(30));
    let b = room.join(Codec::Pcmu, None);
    room.run(Duration::from_millis(1500));
    let name = NameClip {
        samples: Arc::from(sine(8000, NAME_HZ, -20.0, 6400)),
        rate: Rate::Hz8000,
    };
    let sounds = RoomSounds::builtin();
    let joined = sounds.at(Rate::Hz8000).has_joined.len() as f32 / 8000.0;
    let left = sounds.at(Rate::Hz8000).has_left.len() as f32 / 8000.0;

    // A enters with a recorded name: B hears it, then the phrase, and no tone.
    let mark = room.members[b].phone.heard.len();
    let a = room.join(Codec::Pcmu, None);
    let a_id = room.members[a].id;
    room.conference.leg_mut(a_id).unwrap().name = LegName::recorded(name.clone());
    room.run(Duration::from_secs(4));
    let heard = &room.members[b].phone.heard[mark..];
    let (at, peak) = onset(heard, 8000, NAME_HZ);
    let at = at.expect("B never heard A's name");
    let phrase_start = ((at + 0.8 + 0.12) * 8000.0) as usize;
    let phrase = &heard[phrase_start..phrase_start + (joined * 8000.0) as usize];
    let phrase_level = level_dbov(phrase);
    let name_in_phrase = tone_level_dbov(phrase, 8000, NAME_HZ);
    let (tone, _) = onset(heard, 8000, ENTER_HZ);
    eprintln!(
        "entry: the name at {at:.2} s, {peak:.1} dBov; then the phrase ({joined:.2} s) at \
         {phrase_level:.1} dBov (the name's tone in it {name_in_phrase:.1}); enter tone {tone:?}"
    );
    assert!(at < 0.3, "the name came {at} s after the entry");
    assert!((peak + 20.0).abs() < 1.5, "{peak:.1} dBov");
    assert!(phrase_level > -35.0, "{phrase_level:.1}");
    assert!(name_in_phrase < -45.0, "{name_in_phrase:.1}");
    assert_eq!(tone, None);

    // C has no recorded name: the enter tone for it.
    let mark = room.members[b].phone.heard.len();
    let c = room.join(Codec::Pcmu, None);
    room.run(Duration::from_secs(1));
    let (tone, tone_peak) = onset(&room.members[b].phone.heard[mark..], 8000, ENTER_HZ);
    eprintln!("C without a name: the enter tone at {tone:?} s, {tone_peak:.1} dBov");
    assert!(tone.is_some_and(|t| t < 0.3), "{tone:?}");
    let _ = c;

    // A leaves: its name again, then the other phrase.
    let mark = room.members[b].phone.heard.len();
    room.conference
        .roster
        .disconnect(a_id, DisconnectReason::Hangup)
        .unwrap();
    room.run(Duration::from_secs(4));
    let heard = &room.members[b].phone.heard[mark..];
    let (at, peak) = onset(heard, 8000, NAME_HZ);
    let at = at.expect("B never heard A's name as it left");
    let phrase_start = ((at + 0.8 + 0.12) * 8000.0) as usize;
    let phrase = &heard[phrase_start..phrase_start + (left * 8000.0) as usize];
    let phrase_level = level_dbov(phrase);
    eprintln!(
        "exit: the name at {at:.2} s, {peak:.1} dBov; then the phrase at {phrase_level:.1} dBov"
    );
    assert!(at < 0.3, "{at}");
    assert!((peak + 20.0).abs() < 1.5, "{peak:.1} dBov");
    assert!(phrase_level > -35.0, "{phrase_level:.1}");
}

#[test]
fn without_names_a_recorded_name_is_not_said() {
    let policy = Policy {
        entry_exit: EntryExit::Tones,
        ..Policy::default()
    };
    let mut room = Room::with_policy(policy, 3, Duration::from_secs(30));
    let b = room.join(Codec::Pcmu, None);
    room.run(Duration::from_millis(1500));
    let mark = room.members[b].phone.heard.len();
    let a = room.join(Codec::Pcmu, None);
    let a_id = room.members[a].id;
    room.conference.leg_mut(a_id).unwrap().name = LegName::recorded(NameClip {
        samples: Arc::from(sine(8000, NAME_HZ, -20.0, 6400)),
        rate: Rate::Hz8000,
    });
    room.run(Duration::from_secs(2));
    let heard = &room.members[b].phone.heard[mark..];
    assert_eq!(onset(heard, 8000, NAME_HZ).0, None);
    assert!(onset(heard, 8000, ENTER_HZ).0.is_some());
}
