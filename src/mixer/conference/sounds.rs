//! What a conference plays by itself, in the tick: music on hold to each leg waiting for the
//! leader (from where that leg left it; a prompt to the leg plays instead, and the music goes
//! on after), and with `entry_exit: tones` the enter and exit tones, mixed into the sum as one
//! more input so that every listener's mix carries them (recorded names, `entry_exit: names`,
//! are in `names`): the shared encodes, talkers'
//! mix-minus, own-volume listeners. The spoken notice that the conference is being recorded is
//! not in the sum: each leg hears it in its own language over its own mix (an own encode while
//! it plays), and the recording gets it in the default language. Nothing here allocates: the
//! sounds are the shared [`RoomSounds`] at the mix rate, the positions are counters.

use confab_dsp::mix::{Gain, Mixer, soft_limit};
use confab_dsp::resample::Rate;

use super::ConferenceMedia;
use super::names::Said;
use crate::conference::State;
use crate::conference::roster::EntryExit;
use crate::mixer::room_sounds::RateSounds;

/// A leg's part in the conference's own sounds, kept beside the leg (in `leg_sounds`, in the
/// order of `legs`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct LegSound {
    /// In the mix (connected) at the last look: its leaving is heard.
    connected: bool,
    /// Where it is in the music while it waits (samples at the mix rate).
    pub(super) music_at: usize,
    /// It entered while the enter tone plays: it does not hear the tone that announces it.
    pub(super) skip_enter: bool,
    /// The recording notice said to it: in which language (an index of the room's notices)
    /// and where it is (samples at the mix rate). It moves on only while the leg hears the mix,
    /// so a prompt or deafness puts it off rather than swallowing it.
    pub(super) notice: Option<(usize, usize)>,
}

/// The enter and exit tones playing to the conference (positions at the mix rate).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Chimes {
    enter: Option<usize>,
    exit: Option<usize>,
    /// "This conference is being recorded" in the default language, into the recording
    /// itself, from its start.
    pub(super) recording: Option<usize>,
    /// A recording is on: each leg that enters the mix is told so.
    pub(super) recording_on: bool,
    /// Someone in the mix left between looks (its leg taken out or pruned): the exit tone is due.
    pub(super) left: bool,
}

impl Chimes {
    /// Positions carried to a new mix rate (between ticks).
    pub(super) fn rescale(&mut self, from: Rate, to: Rate) {
        for at in [&mut self.enter, &mut self.exit, &mut self.recording]
            .into_iter()
            .flatten()
        {
            *at = rescale(*at, from, to);
        }
    }
}

/// A position in a sound at `from`, at `to`.
pub(super) fn rescale(at: usize, from: Rate, to: Rate) -> usize {
    at * to.hz() as usize / from.hz() as usize
}

impl ConferenceMedia {
    /// Who entered the mix and who left it since the last look, and the tones or names that
    /// says: a tone already playing covers another entry (or exit) rather than starting over;
    /// each recorded name is said (`entry_exit: names`), and those without one get the tone.
    /// Before the mix, every tick with legs; bounded by the legs.
    pub(super) fn follow_presence(&mut self) {
        let entry_exit = self.roster.policy().entry_exit;
        let tones = entry_exit != EntryExit::Off;
        let names = entry_exit == EntryExit::Names;
        let mut entered = false;
        let mut left = std::mem::take(&mut self.chimes.left);
        if self.chimes.enter.is_none() {
            for s in &mut self.leg_sounds {
                s.skip_enter = false;
            }
        }
        for (leg, s) in self.legs.iter().zip(&mut self.leg_sounds) {
            let connected = self
                .roster
                .participant(leg.participant)
                .is_some_and(|p| p.state == State::Connected);
            let name = leg.name.clip().filter(|_| names);
            if connected && !s.connected {
                if self.chimes.recording_on {
                    // In its own language, over what it hears of the conference.
                    s.notice = Some((self.sounds.notice_index(leg.language.as_deref()), 0));
                }
                match name {
                    Some(n) => {
                        self.announcements.push(n, Said::Joined);
                    }
                    None => {
                        entered = true;
                        s.skip_enter = tones;
                    }
                }
                s.music_at = 0;
            }
            if s.connected && !connected {
                match name {
                    Some(n) => {
                        self.announcements.push(n, Said::Left);
                    }
                    None => left = true,
                }
            }
            s.connected = connected;
        }
        if !tones {
            // The recording notice plays whatever the entry and exit setting.
            self.chimes = Chimes {
                recording: self.chimes.recording,
                recording_on: self.chimes.recording_on,
                ..Chimes::default()
            };
            self.announcements.clear();
            return;
        }
        if entered && self.chimes.enter.is_none() {
            self.chimes.enter = Some(0);
        }
        if left && self.chimes.exit.is_none() {
            self.chimes.exit = Some(0);
        }
    }

    /// A leg leaves `leg_sounds` (it is taken out or pruned; still at `slot` in `legs`): if it
    /// was in the mix, its name or the exit tone is due.
    pub(super) fn forget_leg_sound(&mut self, slot: usize) {
        if slot < self.leg_sounds.len() && self.leg_sounds.swap_remove(slot).connected {
            let names = self.roster.policy().entry_exit == EntryExit::Names;
            let name = self.legs.get(slot).and_then(|l| l.name.clip());
            match name.filter(|_| names) {
                Some(n) => {
                    self.announcements.push(n, Said::Left);
                }
                None => self.chimes.left = true,
            }
        }
    }

    /// Adds this tick's frames of the tones playing to the mixer, as inputs at unity, and moves
    /// them on. The enter tone's frame stays in `mix.enter` for those who must not hear it.
    pub(super) fn mix_chimes(&mut self) {
        let sounds = self.sounds.at(self.rate);
        let n = self.mix.enter.len();
        self.mix.enter_on = false;
        if let Some(at) = self.chimes.enter {
            let part = sounds.enter.get(at..).unwrap_or(&[]);
            let take = part.len().min(n);
            self.mix.enter[..take].copy_from_slice(&part[..take]);
            self.mix.enter[take..].fill(0);
            self.mix.mixer.add(&self.mix.enter, Gain::UNITY);
            self.mix.enter_on = true;
            self.chimes.enter = (at + n < sounds.enter.len()).then_some(at + n);
        }
        if let Some(at) = self.chimes.exit {
            let part = sounds.exit.get(at..).unwrap_or(&[]);
            self.mix.mixer.add(&part[..part.len().min(n)], Gain::UNITY);
            self.chimes.exit = (at + n < sounds.exit.len()).then_some(at + n);
        }
    }

    /// A recording starts (between ticks): each leg in the mix is told in its language, and
    /// the recording opens with the notice in the default language.
    pub(super) fn start_notices(&mut self) {
        self.chimes.recording = Some(0);
        for (leg, s) in self.legs.iter().zip(&mut self.leg_sounds) {
            if s.connected {
                s.notice = Some((self.sounds.notice_index(leg.language.as_deref()), 0));
            }
        }
    }

    /// What the recording gets this tick: the mix a listener who is not talking hears, with
    /// the notice in the default language over it while that plays (each listener hears its
    /// own language instead, so the notice is not in the sum).
    pub(super) fn recorded_frame(&mut self) -> &[i16] {
        let Some(at) = self.chimes.recording else {
            return &self.mix.shared;
        };
        let notice = self.sounds.at(self.rate).notice(0);
        let part = notice.get(at..).unwrap_or(&[]);
        let out = &mut self.mix.recorded;
        out.copy_from_slice(&self.mix.shared);
        overlay(out, part);
        let n = out.len();
        self.chimes.recording = (at + n < notice.len()).then_some(at + n);
        &self.mix.recorded
    }

    /// The tones are off and nothing plays (nobody is left to hear them); whether a recording
    /// is on stays, for those who enter next.
    pub(super) fn silence_chimes(&mut self) {
        self.chimes = Chimes {
            recording_on: self.chimes.recording_on,
            ..Chimes::default()
        };
        self.announcements.clear();
        self.mix.enter_on = false;
    }
}

/// The next frame of the recording notice said to a leg (`sound`, if one plays) over `frame`,
/// what the leg hears after its listening volume, so that it is understood at any volume; it
/// moves on.
pub(super) fn say_notice(sounds: &RateSounds, sound: Option<&mut LegSound>, frame: &mut [i16]) {
    let Some(s) = sound else {
        return;
    };
    let Some((language, at)) = s.notice else {
        return;
    };
    let notice = sounds.notice(language);
    overlay(frame, notice.get(at..).unwrap_or(&[]));
    let n = frame.len();
    s.notice = (at + n < notice.len()).then_some((language, at + n));
}

/// `part` added to the start of `frame`, limited.
fn overlay(frame: &mut [i16], part: &[i16]) {
    for (o, &x) in frame.iter_mut().zip(part) {
        *o = soft_limit(i32::from(*o) + i32::from(x));
    }
}

/// The next frame of `music` from `at` into `out`, looping; `at` moves on.
pub(super) fn music_frame(music: &[i16], at: &mut usize, out: &mut [i16]) {
    if music.is_empty() {
        out.fill(0);
        return;
    }
    let mut filled = 0;
    while filled < out.len() {
        let from = *at % music.len();
        let take = (music.len() - from).min(out.len() - filled);
        out[filled..filled + take].copy_from_slice(&music[from..from + take]);
        filled += take;
        *at = (from + take) % music.len();
    }
}

/// The mix without `own` and `tone` (each added at unity), limited into `out`: a talker who
/// has just entered hears neither itself nor the tone that announces it.
pub(super) fn render_without(mixer: &Mixer, own: &[i16], tone: &[i16], out: &mut [i16]) {
    for (i, (o, &s)) in out.iter_mut().zip(mixer.sum()).enumerate() {
        let a = own.get(i).map_or(0, |&x| i32::from(x));
        let b = tone.get(i).map_or(0, |&x| i32::from(x));
        *o = soft_limit(s - a - b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn music_loops_across_frames() {
        let music: Vec<i16> = (0..5).collect();
        let mut at = 3;
        let mut out = [0i16; 7];
        music_frame(&music, &mut at, &mut out);
        assert_eq!(out, [3, 4, 0, 1, 2, 3, 4]);
        assert_eq!(at, 0);
        music_frame(&[], &mut at, &mut out);
        assert_eq!(out, [0; 7]);
    }

    #[test]
    fn without_is_the_sum_less_both_parts() {
        let mut m = Mixer::new(3);
        m.add(&[100, 200, 300], Gain::UNITY);
        m.add(&[10, 20, 30], Gain::UNITY);
        m.add(&[1, 2, 3], Gain::UNITY);
        let mut out = [0i16; 3];
        render_without(&m, &[10, 20, 30], &[1, 2], &mut out);
        assert_eq!(out, [100, 200, 303]);
    }
}
