//! `entry_exit: names`: a participant's recorded name, then "has joined the conference" (or
//! "has left"), mixed into the sum as one more input so that every listener hears it, one
//! announcement after another. Nothing here allocates in the tick: the names are the legs'
//! shared clips, the phrases are [`RoomSounds`](crate::mixer::room_sounds::RoomSounds) at the
//! mix rate, and the queue is a fixed ring.

use confab_dsp::mix::Gain;
use confab_dsp::resample::Rate;

use super::ConferenceMedia;
use crate::media::leg::name::NameClip;

/// Announcements waiting at most. When many join at once (a meeting's start), the ones that
/// do not fit are not made: a queue of names minutes long would be heard by nobody.
pub(super) const MAX_WAITING: usize = 4;

/// Silence between the name and the phrase after it.
const PAUSE_MS: u32 = 120;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Said {
    Joined,
    Left,
}

#[derive(Debug)]
struct Announcement {
    name: NameClip,
    said: Said,
    /// Samples of it played, at the mix rate.
    at: usize,
}

/// The announcements to make, the first playing.
#[derive(Debug, Default)]
pub(super) struct Announcements {
    ring: [Option<Announcement>; MAX_WAITING],
    first: usize,
    waiting: usize,
    /// Not made because the queue was full.
    pub(super) dropped: u64,
    /// Announcements played or cleared in a tick, kept until [`Announcements::release`]
    /// between ticks: a departed leg's name may be the last reference, and freeing it is the
    /// allocator's work, which the tick does not do.
    spent: [Option<Announcement>; MAX_WAITING],
}

impl Announcements {
    /// Queues an announcement (an `Arc` clone of the name: no allocation); false when full.
    pub(super) fn push(&mut self, name: &NameClip, said: Said) -> bool {
        if self.waiting == MAX_WAITING {
            self.dropped += 1;
            return false;
        }
        let slot = (self.first + self.waiting) % MAX_WAITING;
        self.ring[slot] = Some(Announcement {
            name: name.clone(),
            said,
            at: 0,
        });
        self.waiting += 1;
        true
    }

    pub(super) fn is_empty(&self) -> bool {
        self.waiting == 0
    }

    /// Nobody is left to hear them.
    pub(super) fn clear(&mut self) {
        while self.waiting > 0 {
            self.pop();
        }
        self.first = 0;
    }

    /// Between ticks: frees what the tick set aside.
    pub(super) fn release(&mut self) {
        self.spent = Default::default();
    }

    /// Positions carried to a new mix rate (between ticks).
    pub(super) fn rescale(&mut self, from: Rate, to: Rate) {
        for a in self.ring.iter_mut().flatten() {
            a.at = super::sounds::rescale(a.at, from, to);
        }
    }

    /// Ends the first announcement; it is set aside until `release`. A tick ends at most
    /// the four waiting, and `release` runs between ticks, so a free place is always there
    /// (were it not, the announcement would be freed here rather than kept).
    fn pop(&mut self) {
        let ended = self.ring[self.first].take();
        if let Some(place) = self.spent.iter_mut().find(|p| p.is_none()) {
            *place = ended;
        }
        self.first = (self.first + 1) % MAX_WAITING;
        self.waiting -= 1;
    }
}

/// The sample of `name` at position `i` of the mix rate `rate`.
fn name_sample(name: &NameClip, rate: Rate, i: usize) -> i16 {
    crate::media::leg::name::sample_at(&name.samples, name.rate, rate, i)
}

/// The length of `name` in samples at mix rate `rate`.
fn name_len(name: &NameClip, rate: Rate) -> usize {
    name.samples.len() * rate.hz() as usize / name.rate.hz() as usize
}

impl ConferenceMedia {
    /// Starts recording a participant's name from its next frames, at the mix rate (the
    /// attendant's "after the tone, say your name"). Allocates: between ticks.
    pub fn record_name(
        &mut self,
        participant: crate::conference::ParticipantId,
        length: std::time::Duration,
    ) -> Result<(), crate::mixer::CommandError> {
        let rate = self.rate;
        let leg = self
            .leg_mut(participant)
            .ok_or(crate::mixer::CommandError::NoParticipant)?;
        leg.name.start(rate, length);
        Ok(())
    }

    /// Adds this tick's frame of the announcement playing to the mixer, at unity, and moves it
    /// on; the next one starts the tick after one ends.
    pub(super) fn mix_announcements(&mut self) {
        if self.announcements.is_empty() {
            return;
        }
        let rate = self.rate;
        let sounds = self.sounds.at(rate);
        let first = self.announcements.first;
        let Some(a) = self.announcements.ring[first].as_mut() else {
            self.announcements.pop();
            return;
        };
        let spoken = name_len(&a.name, rate);
        let pause = rate.samples(PAUSE_MS);
        let phrase: &[i16] = match a.said {
            Said::Joined => &sounds.has_joined,
            Said::Left => &sounds.has_left,
        };
        let total = spoken + pause + phrase.len();
        let frame = &mut self.mix.announce;
        for (k, out) in frame.iter_mut().enumerate() {
            let i = a.at + k;
            *out = if i < spoken {
                name_sample(&a.name, rate, i)
            } else if i < spoken + pause {
                0
            } else {
                phrase.get(i - spoken - pause).copied().unwrap_or(0)
            };
        }
        self.mix.mixer.add(frame, Gain::UNITY);
        a.at += frame.len();
        if a.at >= total {
            self.announcements.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn clip(samples: Vec<i16>, rate: Rate) -> NameClip {
        NameClip {
            samples: Arc::from(samples),
            rate,
        }
    }

    #[test]
    fn the_ring_keeps_order_and_refuses_what_does_not_fit() {
        let mut q = Announcements::default();
        let name = clip(vec![1], Rate::Hz8000);
        for _ in 0..MAX_WAITING {
            assert!(q.push(&name, Said::Joined));
        }
        assert!(!q.push(&name, Said::Left));
        assert_eq!(q.dropped, 1);
        q.pop();
        assert!(q.push(&name, Said::Left));
        let saids: Vec<Said> = (0..MAX_WAITING)
            .map(|k| q.ring[(q.first + k) % MAX_WAITING].as_ref().unwrap().said)
            .collect();
        assert_eq!(saids.last(), Some(&Said::Left));
        assert_eq!(saids.iter().filter(|s| **s == Said::Left).count(), 1);
        q.clear();
        assert!(q.is_empty());
    }

    #[test]
    fn a_name_plays_at_any_mix_rate_in_the_same_time() {
        // 8 kHz up to 48 kHz: interpolated, as long in time.
        let up = clip((0..80).map(|i| i * 100).collect(), Rate::Hz8000);
        assert_eq!(name_len(&up, Rate::Hz48000), 480);
        assert_eq!(name_sample(&up, Rate::Hz48000, 6), 100);
        assert_eq!(name_sample(&up, Rate::Hz48000, 9), 150);
        // 48 kHz down to 8 kHz: each output the mean of the six it spans.
        let down = clip(
            (0..480).map(|i| (i % 6) as i16 * 10).collect(),
            Rate::Hz48000,
        );
        assert_eq!(name_len(&down, Rate::Hz8000), 80);
        assert_eq!(name_sample(&down, Rate::Hz8000, 3), 25);
        // Past the end: silence, never a panic.
        assert_eq!(name_sample(&down, Rate::Hz8000, 10_000), 0);
        assert_eq!(name_sample(&up, Rate::Hz16000, 10_000), 0);
        // Full-scale steps between samples do not overflow at any rate pair.
        let harsh = clip(
            (0..80)
                .map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN })
                .collect(),
            Rate::Hz8000,
        );
        for rate in [Rate::Hz16000, Rate::Hz48000] {
            let n = name_len(&harsh, rate);
            let out: Vec<i16> = (0..n).map(|i| name_sample(&harsh, rate, i)).collect();
            assert_eq!(out.len(), n);
            assert!(out.contains(&i16::MAX) && out.contains(&i16::MIN));
        }
    }

    #[test]
    fn ended_announcements_are_freed_between_ticks_not_in_them() {
        let mut q = Announcements::default();
        let name = clip(vec![1; 8], Rate::Hz8000);
        for _ in 0..MAX_WAITING {
            q.push(&name, Said::Left);
        }
        // The queue's four and ours.
        assert_eq!(std::sync::Arc::strong_count(&name.samples), MAX_WAITING + 1);
        q.pop();
        q.clear();
        assert!(q.is_empty());
        assert_eq!(std::sync::Arc::strong_count(&name.samples), MAX_WAITING + 1);
        q.release();
        assert_eq!(std::sync::Arc::strong_count(&name.samples), 1);
    }
}
