//! What a conference plays by itself, heard in fake time: music on hold while waiting for the
//! leader (and a prompt in its place), the enter and exit tones. What each phone heard is
//! decoded by codecs from outside Confab and measured: levels, and which tone came first.

use std::time::Duration;

use confab_dsp::mix::Gain;
use confab_dsp::resample::Rate;
use confab_dsp::signal::{level_dbov, sine, tone_level_dbov};

use crate::conference::roster::EntryExit;
use crate::conference::{DisconnectReason, ParticipantId, Policy, Role, State};
use crate::media::codec::Codec;
use crate::mixer::room_sounds::RoomSounds;
use crate::testing::room::{JoinAs, Room};

/// The enter tone is A5 then D6, 0.2 s each; the exit tone the same falling.
const LO: f32 = 880.0;
const HI: f32 = 1174.66;

fn waiting_room() -> Room {
    let policy = Policy {
        wait_for_leader: true,
        hold_music: true,
        ..Policy::default()
    };
    Room::with_policy(policy, 3, Duration::from_secs(60))
}

fn state_of(room: &Room, id: ParticipantId) -> State {
    room.conference.roster.participant(id).unwrap().state
}

/// The last `seconds` member `i` heard.
fn tail(room: &Room, i: usize, seconds: f32) -> &[i16] {
    let phone = &room.members[i].phone;
    let n = (seconds * phone.rate as f32) as usize;
    &phone.heard[phone.heard.len().saturating_sub(n)..]
}

/// What is left of `samples` without their tone at `hz`, in dBov: near silence when the tone
/// is all there is, the music's level when music plays under it.
fn besides(samples: &[i16], rate: u32, hz: f32) -> f32 {
    let total = 10f64.powf(f64::from(level_dbov(samples)) / 10.0);
    let tone = 10f64.powf(f64::from(tone_level_dbov(samples, rate, hz)) / 10.0);
    (10.0 * (total - tone).max(1e-13).log10()) as f32
}

#[test]
fn a_waiting_attendee_hears_music_on_hold_until_the_leader_comes() {
    let mut room = waiting_room();
    let b = room.join(Codec::Pcmu, None);
    let b_id = room.members[b].id;
    // More than one loop of the music, then exactly one loop's worth measured: its level.
    room.run(Duration::from_millis(17_500));
    assert_eq!(state_of(&room, b_id), State::Connecting);
    let sounds = RoomSounds::builtin();
    let music = &sounds.at(Rate::Hz8000).music;
    let source = level_dbov(music);
    let heard = level_dbov(tail(&room, b, music.len() as f32 / 8000.0));
    eprintln!("music on hold: {heard:.2} dBov heard, {source:.2} dBov played");
    assert!((-22.0..-18.0).contains(&heard), "music at {heard:.2} dBov");
    assert!((heard - source).abs() < 0.5, "{heard:.2} vs {source:.2}");

    // The leader comes: B is in the mix and hears the leader, and no music under it.
    let a = room
        .join_as(JoinAs::new(Codec::Pcmu, Some((1000.0, -20.0))).role(Role::Leader))
        .unwrap();
    room.run(Duration::from_millis(1500));
    assert_eq!(state_of(&room, b_id), State::Connected);
    let leader = room.heard(b, 1000.0, 0.5);
    assert!(
        (leader + 20.0).abs() < 1.0,
        "B hears the leader at {leader:.2}"
    );
    let rest = besides(tail(&room, b, 0.5), 8000, 1000.0);
    eprintln!("after the leader: leader {leader:.2} dBov, the rest {rest:.2} dBov");
    assert!(rest < -40.0, "B hears {rest:.2} dBov besides the leader");
    // The leader heard no music either.
    assert!(level_dbov(tail(&room, a, 0.5)) < -50.0);
}

#[test]
fn without_hold_music_a_waiting_attendee_hears_silence() {
    let policy = Policy {
        wait_for_leader: true,
        ..Policy::default()
    };
    let mut room = Room::with_policy(policy, 3, Duration::from_secs(30));
    let b = room.join(Codec::Pcmu, None);
    room.run(Duration::from_secs(2));
    let heard = level_dbov(tail(&room, b, 1.5));
    assert!(heard < -90.0, "B hears {heard:.2} dBov");
}

#[test]
fn a_prompt_to_a_waiting_leg_plays_instead_of_the_music() {
    let mut room = waiting_room();
    // A G.722 leg: a 16 kHz mix, and the music's 16 kHz copy.
    let b = room.join(Codec::G722, None);
    let b_id = room.members[b].id;
    room.run(Duration::from_secs(3));
    let before = level_dbov(tail(&room, b, 1.0));
    assert!((-26.0..-15.0).contains(&before), "music at {before:.2}");

    // One second of 1 kHz at -10 dBov, as the SIP shell plays "the leader has not yet arrived".
    let prompt = sine(48_000, 1000.0, -10.0, 48_000);
    room.conference
        .leg_mut(b_id)
        .unwrap()
        .play(Some(prompt.into()));
    room.run(Duration::from_millis(700));
    let spoken = room.heard(b, 1000.0, 0.5);
    let rest = besides(tail(&room, b, 0.5), 16_000, 1000.0);
    eprintln!("prompt over music: prompt {spoken:.2} dBov, the rest {rest:.2} dBov");
    assert!((spoken + 10.0).abs() < 1.0, "the prompt at {spoken:.2}");
    assert!(rest < -40.0, "music under the prompt at {rest:.2}");

    // The prompt is over: the music again.
    room.run(Duration::from_millis(1500));
    let after = level_dbov(tail(&room, b, 1.0));
    let prompt_left = room.heard(b, 1000.0, 1.0);
    eprintln!("after the prompt: {after:.2} dBov");
    assert!((-26.0..-15.0).contains(&after), "music after at {after:.2}");
    assert!(prompt_left < -50.0, "the prompt still at {prompt_left:.2}");
    assert_eq!(state_of(&room, b_id), State::Connecting);
}

/// Which of the tone's two notes comes first in `heard` (at `rate`), in 40 ms blocks: when
/// each note first passes -30 dBov, and the loudest block of each.
struct Chime {
    lo_at: Option<f32>,
    hi_at: Option<f32>,
    lo_peak: f32,
    hi_peak: f32,
}

fn chime(heard: &[i16], rate: u32) -> Chime {
    let block = rate as usize / 25;
    let mut c = Chime {
        lo_at: None,
        hi_at: None,
        lo_peak: -127.0,
        hi_peak: -127.0,
    };
    for (k, b) in heard.chunks_exact(block).enumerate() {
        let t = k as f32 * 0.04;
        let (lo, hi) = (tone_level_dbov(b, rate, LO), tone_level_dbov(b, rate, HI));
        c.lo_peak = c.lo_peak.max(lo);
        c.hi_peak = c.hi_peak.max(hi);
        if lo > -30.0 && c.lo_at.is_none() {
            c.lo_at = Some(t);
        }
        if hi > -30.0 && c.hi_at.is_none() {
            c.hi_at = Some(t);
        }
    }
    c
}

/// Members' heard lengths, to look at what came after.
fn marks(room: &Room) -> Vec<usize> {
    room.members.iter().map(|m| m.phone.heard.len()).collect()
}

fn since(room: &Room, i: usize, marks: &[usize]) -> Chime {
    let phone = &room.members[i].phone;
    chime(&phone.heard[marks[i]..], phone.rate)
}

/// A meeting of a PCMU talker, a G.722 listener (a 16 kHz mix, shared encodes) and a PCMU
/// listener at its own volume (its own encode); then C enters, and later leaves.
fn enter_and_leave(entry_exit: EntryExit) -> (Vec<Chime>, Chime, Vec<Chime>) {
    let policy = Policy {
        entry_exit,
        ..Policy::default()
    };
    let mut room = Room::with_policy(policy, 3, Duration::from_secs(30));
    let a = room.join(Codec::Pcmu, Some((400.0, -20.0)));
    let b = room.join(Codec::G722, None);
    let d = room.join(Codec::Pcmu, None);
    room.run(Duration::from_millis(200));
    let d_id = room.members[d].id;
    room.conference
        .leg_mut(d_id)
        .unwrap()
        .set_listen_gain(Gain::from_db(-6.0));
    room.run(Duration::from_millis(1500));

    let at = marks(&room);
    let c = room.join(Codec::Pcmu, None);
    room.run(Duration::from_secs(1));
    let entered: Vec<Chime> = [a, b, d].iter().map(|&i| since(&room, i, &at)).collect();
    let joiner = chime(&room.members[c].phone.heard, 8000);
    // The exit with nobody talking: the tone alone is the mix.
    let a_id = room.members[a].id;
    room.conference.roster.set_muted(a_id, true).unwrap();
    room.run(Duration::from_millis(500));
    let at = marks(&room);
    let c_id = room.members[c].id;
    room.conference
        .roster
        .disconnect(c_id, DisconnectReason::Hangup)
        .unwrap();
    room.run(Duration::from_secs(1));
    let left: Vec<Chime> = [a, b, d].iter().map(|&i| since(&room, i, &at)).collect();
    (entered, joiner, left)
}

#[test]
fn with_tones_an_entry_rises_and_an_exit_falls_for_everyone_in_the_mix() {
    let (entered, joiner, left) = enter_and_leave(EntryExit::Tones);
    for (who, c) in ["talker A", "G.722 B", "quieter D"].iter().zip(&entered) {
        eprintln!(
            "{who} hears the enter tone: {LO} Hz at {:?} s, peak {:.1} dBov; {HI} Hz at {:?} s, peak {:.1} dBov",
            c.lo_at, c.lo_peak, c.hi_at, c.hi_peak
        );
        let (lo, hi) = (c.lo_at.unwrap(), c.hi_at.unwrap());
        // Heard within a few ticks of the entry (a packet's way each way, a tick or two).
        assert!(lo < 0.2, "{who}: the tone starts {lo} s after the entry");
        assert!((0.12..0.3).contains(&(hi - lo)), "{who}: rising? {lo} {hi}");
    }
    // Full level for A and B; D listens 6 dB down.
    for c in &entered[..2] {
        assert!((-13.0..-5.0).contains(&c.lo_peak), "{}", c.lo_peak);
    }
    let quieter = entered[0].lo_peak - entered[2].lo_peak;
    assert!((quieter - 6.0).abs() < 1.5, "D is {quieter:.1} dB down");
    // The one entering does not hear its own entry.
    assert!(
        joiner.lo_peak < -45.0 && joiner.hi_peak < -45.0,
        "C heard {:.1} / {:.1}",
        joiner.lo_peak,
        joiner.hi_peak
    );
    for (who, c) in ["muted A", "G.722 B", "quieter D"].iter().zip(&left) {
        eprintln!(
            "{who} hears the exit tone: {HI} Hz at {:?} s, peak {:.1} dBov; {LO} Hz at {:?} s, peak {:.1} dBov",
            c.hi_at, c.hi_peak, c.lo_at, c.lo_peak
        );
        let (lo, hi) = (c.lo_at.unwrap(), c.hi_at.unwrap());
        assert!(hi < 0.2, "{who}: the tone starts {hi} s after the exit");
        assert!(
            (0.12..0.3).contains(&(lo - hi)),
            "{who}: falling? {hi} {lo}"
        );
    }
}

#[test]
fn without_tones_entries_and_exits_are_silent() {
    let (entered, joiner, left) = enter_and_leave(EntryExit::Off);
    for c in entered.iter().chain([&joiner]).chain(&left) {
        assert!(
            c.lo_peak < -45.0 && c.hi_peak < -45.0,
            "heard {:.1} / {:.1}",
            c.lo_peak,
            c.hi_peak
        );
    }
}
