//! The spoken notice that a conference is being recorded, heard in fake time: each phone hears
//! it in its leg's language as a recording starts and as it enters later, and the recording
//! opens with it in the default language; a talker hears it over the others, not instead of
//! them. What the phones heard (decoded by codecs from outside
//! Confab) is lined up with the notice's own samples and compared.

use std::time::Duration;

use confab_dsp::resample::Rate;
use confab_dsp::signal::{level_dbov, tone_level_dbov};

use crate::media::codec::Codec;
use crate::mixer::room_sounds::RoomSounds;
use crate::recording::{RecordingTap, TapQueue};
use crate::testing::room::Room;

/// 20 ms at 8 kHz: the frames in which a sound's start is looked for.
const FRAME: usize = 160;

/// The notice in `language` as an 8 kHz mix plays it.
fn notice(language: &str) -> Vec<i16> {
    let sounds = RoomSounds::builtin();
    let i = sounds.notice_index(Some(language));
    sounds.at(Rate::Hz8000).notice(i).to_vec()
}

/// Where sound first rises above -45 dBov (comfort noise is at -70), by 20 ms frames.
fn onset(samples: &[i16]) -> Option<usize> {
    samples
        .chunks_exact(FRAME)
        .position(|f| level_dbov(f) > -45.0)
        .map(|i| i * FRAME)
}

/// How closely `heard` holds `said` from where its sound starts: the best normalised
/// correlation over 40 ms either side (1.0 is the same waveform at any level).
fn likeness(heard: &[i16], said: &[i16]) -> f64 {
    let (Some(h), Some(s)) = (onset(heard), onset(said)) else {
        return 0.0;
    };
    let around = h.saturating_sub(2 * FRAME)..h + 2 * FRAME;
    likeness_at(heard, &said[s..], around)
}

/// The best normalised correlation of `said` with `heard` from any sample of `starts`.
fn likeness_at(heard: &[i16], said: &[i16], starts: std::ops::Range<usize>) -> f64 {
    let mut best = 0.0f64;
    for from in starts {
        let Some(part) = heard.get(from..) else {
            continue;
        };
        let n = part.len().min(said.len());
        let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
        for (&x, &y) in part[..n].iter().zip(&said[..n]) {
            let (x, y) = (f64::from(x), f64::from(y));
            xy += x * y;
            xx += x * x;
            yy += y * y;
        }
        if xx > 0.0 && yy > 0.0 {
            best = best.max(xy / (xx * yy).sqrt());
        }
    }
    best
}

/// How long `samples` hold sound (frames above -45 dBov), in seconds.
fn sounding(samples: &[i16]) -> f32 {
    let frames = samples
        .chunks_exact(FRAME)
        .filter(|f| level_dbov(f) > -45.0)
        .count();
    frames as f32 * 0.02
}

/// What member `i` heard from sample `from` on.
fn heard_since(room: &Room, i: usize, from: usize) -> &[i16] {
    let heard = &room.members[i].phone.heard;
    &heard[from.min(heard.len())..]
}

/// A room of silent phones that have settled in the mix, the second one German.
fn room_of_two() -> (Room, usize, usize) {
    let mut room = Room::new(3, Duration::from_secs(60));
    let en = room.join(Codec::Pcmu, None);
    let de = room.join(Codec::Pcmu, None);
    let id = room.members[de].id;
    room.conference.leg_mut(id).unwrap().language = Some("de".into());
    room.run(Duration::from_secs(1));
    (room, en, de)
}

fn start_recording(room: &mut Room) -> TapQueue {
    let (tap, queue) = RecordingTap::unwritten(1024);
    assert!(room.conference.set_recording(Some(tap)).is_none());
    queue
}

#[test]
fn each_hears_the_notice_in_its_own_language_and_the_recording_in_the_default() {
    let (mut room, en, de) = room_of_two();
    let english = notice("en");
    let german = notice("de");
    let marks = [
        room.members[en].phone.heard.len(),
        room.members[de].phone.heard.len(),
    ];
    let recorded = start_recording(&mut room);
    room.run(Duration::from_secs(4));

    let heard_en = heard_since(&room, en, marks[0]);
    let heard_de = heard_since(&room, de, marks[1]);
    let record = recorded.samples();
    let seen = [
        (likeness(heard_en, &english), likeness(heard_en, &german)),
        (likeness(heard_de, &german), likeness(heard_de, &english)),
        (likeness(&record, &english), likeness(&record, &german)),
    ];
    eprintln!("own language vs the other (English phone, German phone, recording): {seen:.3?}");
    for (own, other) in seen {
        assert!(own > 0.9, "{seen:.3?}");
        assert!(other < 0.5, "{seen:.3?}");
    }
    // Speech as long as the prompt (about 2 s), once: not the old 0.55 s of beeps, and no
    // 1.4 kHz tone.
    for (heard, said) in [
        (heard_en, &english),
        (heard_de, &german),
        (&record[..], &english),
    ] {
        let (got, want) = (sounding(heard), sounding(said));
        assert!(want > 1.2, "the prompt sounds {want:.2} s");
        assert!(
            (got - want).abs() < 0.2,
            "{got:.2} s heard, {want:.2} s said"
        );
        let beeps = tone_level_dbov(heard, 8000, 1400.0);
        assert!(beeps < -40.0, "1.4 kHz at {beeps:.1} dBov");
    }
}

#[test]
fn one_who_enters_while_recording_is_told_alone_in_its_language() {
    let (mut room, en, de) = room_of_two();
    let _recorded = start_recording(&mut room);
    room.run(Duration::from_secs(4));
    let marks = [
        room.members[en].phone.heard.len(),
        room.members[de].phone.heard.len(),
    ];
    let fr = room.join(Codec::Pcmu, None);
    let id = room.members[fr].id;
    room.conference.leg_mut(id).unwrap().language = Some("fr-CA".into());
    room.run(Duration::from_secs(4));

    let heard = &room.members[fr].phone.heard;
    let french = notice("fr");
    let (own, other) = (likeness(heard, &french), likeness(heard, &notice("en")));
    eprintln!("the newcomer: French {own:.3}, English {other:.3}");
    assert!(own > 0.9 && other < 0.5, "{own:.3} {other:.3}");
    let (got, want) = (sounding(heard), sounding(&french));
    assert!(
        (got - want).abs() < 0.2,
        "{got:.2} s heard, {want:.2} s said"
    );
    // Those already told hear nothing of it again.
    for (i, from) in [(en, marks[0]), (de, marks[1])] {
        let level = level_dbov(heard_since(&room, i, from));
        assert!(level < -60.0, "member {i} heard {level:.1} dBov");
    }
}

#[test]
fn a_talker_is_told_over_the_conference_not_instead_of_it() {
    let mut room = Room::new(3, Duration::from_secs(60));
    room.join(Codec::Pcmu, Some((440.0, -20.0)));
    let de = room.join(Codec::Pcmu, Some((1000.0, -20.0)));
    let id = room.members[de].id;
    room.conference.leg_mut(id).unwrap().language = Some("de".into());
    room.run(Duration::from_secs(1));
    let mark = room.members[de].phone.heard.len();
    let _recorded = start_recording(&mut room);
    room.run(Duration::from_secs(3));

    // The German talker hears the other talker all along, at its level, and the German notice
    // over it (found within the first 300 ms of the recording; about 0.6 alike where alone it
    // is 1.0, as the tone under it takes its share of the power).
    let heard = heard_since(&room, de, mark);
    let german = notice("de");
    let english = notice("en");
    let n = german.len().min(english.len());
    let (own, other) = (
        likeness_at(heard, &german[..n], 0..2400),
        likeness_at(heard, &english[..n], 0..2400),
    );
    let other_talker = tone_level_dbov(&heard[..8000], 8000, 440.0);
    eprintln!("the talker: German {own:.3}, English {other:.3}; 440 Hz at {other_talker:.1}");
    assert!(own > 0.5 && other < 0.2, "{own:.3} {other:.3}");
    assert!(
        (other_talker + 20.0).abs() < 1.5,
        "440 Hz at {other_talker:.1}"
    );
    // And not its own voice.
    let itself = tone_level_dbov(heard, 8000, 1000.0);
    assert!(itself < -45.0, "1 kHz at {itself:.1}");
}

#[test]
fn without_a_recording_nobody_is_told() {
    let (mut room, en, _) = room_of_two();
    let mark = room.members[en].phone.heard.len();
    room.join(Codec::Pcmu, None);
    room.run(Duration::from_secs(3));
    for i in 0..room.members.len() {
        let from = if i == en { mark } else { 0 };
        let level = level_dbov(heard_since(&room, i, from));
        assert!(level < -60.0, "member {i} heard {level:.1} dBov");
    }
}
