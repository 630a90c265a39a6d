//! Dominant speaker identification after Volfin & Cohen, "Dominant Speaker Identification for
//! Multipoint Videoconferencing" (2013).
//!
//! Each participant's speech activity is scored on three time scales: immediate (the last
//! 200 ms), medium (800 ms) and long (1.5 s). A challenger — the most active participant on the
//! immediate scale who is not dominant — replaces the dominant speaker only when it beats the
//! dominant speaker on *all three* scales by a margin. A cough or a short "yes" wins the
//! immediate scale but not the long one, so it does not steal the floor; sustained speech wins
//! all three within about a second.
//!
//! The paper scores sub-band activity with binomial likelihoods; we score the fraction of active
//! frames (from [`crate::vad`]) in each window, kept as a bit history per participant, which
//! preserves the decision structure at a tiny cost. Call [`DominantSpeaker::observe`] for every
//! participant once per 20 ms frame, then [`DominantSpeaker::decide`].

/// Frames in each window (20 ms frames).
const IMMEDIATE: u32 = 10;
const MEDIUM: u32 = 40;
const LONG: u32 = 75;
/// Margins (difference of active fractions) a challenger must exceed on each scale.
const MARGIN_IMMEDIATE: f32 = 0.3;
const MARGIN_MEDIUM: f32 = 0.2;
const MARGIN_LONG: f32 = 0.15;
/// Immediate activity needed to take the floor when nobody holds it.
const FIRST_IMMEDIATE: f32 = 0.5;

/// One participant's activity history: bit 0 is the latest frame.
#[derive(Clone, Copy, Debug)]
struct History<K> {
    key: K,
    bits: u128,
}

impl<K> History<K> {
    fn fraction(&self, frames: u32) -> f32 {
        let mask = if frames >= 128 {
            u128::MAX
        } else {
            (1u128 << frames) - 1
        };
        (self.bits & mask).count_ones() as f32 / frames as f32
    }

    fn scores(&self) -> [f32; 3] {
        [
            self.fraction(IMMEDIATE),
            self.fraction(MEDIUM),
            self.fraction(LONG),
        ]
    }
}

/// Dominant speaker state of one conference, keyed by participant `K`.
#[derive(Clone, Debug)]
pub struct DominantSpeaker<K> {
    histories: Vec<History<K>>,
    dominant: Option<K>,
    /// Where [`observe`](Self::observe) looks first. A mixer observes every participant each
    /// frame, in the order of its legs, which is the order they were added in (both drop a
    /// participant by moving the last into its place); so the next key is nearly always at
    /// the next position, and a frame costs O(n) instead of the O(n²) of a scan per key (4
    /// million comparisons a tick for a 2,000-listener town hall). A miss scans, as before.
    next: usize,
}

impl<K: Copy + Eq> Default for DominantSpeaker<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq> DominantSpeaker<K> {
    /// No participants, nobody dominant.
    pub fn new() -> Self {
        DominantSpeaker {
            histories: Vec::new(),
            dominant: None,
            next: 0,
        }
    }

    /// The dominant speaker, if any.
    pub fn dominant(&self) -> Option<K> {
        self.dominant
    }

    /// Adds a participant (allocates; done at join, not per frame).
    pub fn add(&mut self, key: K) {
        if !self.histories.iter().any(|h| h.key == key) {
            self.histories.push(History { key, bits: 0 });
        }
    }

    /// Removes a participant; if it was dominant, nobody is until someone speaks.
    pub fn remove(&mut self, key: K) {
        if let Some(i) = self.histories.iter().position(|h| h.key == key) {
            self.histories.swap_remove(i);
        }
        if self.dominant == Some(key) {
            self.dominant = None;
        }
    }

    /// Records one frame of `key`'s activity (unknown keys are ignored).
    pub fn observe(&mut self, key: K, active: bool) {
        let at = match self.histories.get(self.next) {
            Some(h) if h.key == key => Some(self.next),
            _ => self.histories.iter().position(|h| h.key == key),
        };
        if let Some(h) = at.and_then(|i| self.histories.get_mut(i)) {
            h.bits = (h.bits << 1) | u128::from(active);
        }
        if let Some(i) = at {
            self.next = i + 1;
        }
    }

    /// Makes the decision for this frame; returns the new dominant speaker when it changed.
    pub fn decide(&mut self) -> Option<K> {
        // The next frame's observations start again from the first participant.
        self.next = 0;
        let dominant_scores = self
            .dominant
            .and_then(|d| self.histories.iter().find(|h| h.key == d))
            .map(History::scores);
        let challenger = self
            .histories
            .iter()
            .filter(|h| Some(h.key) != self.dominant)
            .map(|h| (h.key, h.scores()))
            .max_by(|a, b| a.1[0].total_cmp(&b.1[0]).then(a.1[2].total_cmp(&b.1[2])))?;
        let (key, scores) = challenger;
        let wins = match dominant_scores {
            None => scores[0] >= FIRST_IMMEDIATE,
            Some(d) => {
                scores[0] - d[0] > MARGIN_IMMEDIATE
                    && scores[1] - d[1] > MARGIN_MEDIUM
                    && scores[2] - d[2] > MARGIN_LONG
            }
        };
        if wins {
            self.dominant = Some(key);
            Some(key)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `frames` frames where `pattern(participant, frame)` says who is active; returns the
    /// frame index of each change with the new dominant speaker.
    fn run(n: u32, frames: u32, pattern: impl Fn(u32, u32) -> bool) -> Vec<(u32, u32)> {
        let mut d = DominantSpeaker::new();
        for p in 0..n {
            d.add(p);
        }
        let mut changes = Vec::new();
        for f in 0..frames {
            for p in 0..n {
                d.observe(p, pattern(p, f));
            }
            if let Some(k) = d.decide() {
                changes.push((f, k));
            }
        }
        changes
    }

    #[test]
    fn observing_in_any_order_or_after_removals_decides_the_same() {
        // One tracker sees the participants in the order they were added, the other in an
        // order that changes every frame and after a removal has swapped the last into a
        // gap: each key's history must be its own whatever position it is looked for at.
        let talks = |p: u32, f: u32| match p {
            3 => (40..150).contains(&f) || f >= 400,
            6 => (150..400).contains(&f),
            _ => false,
        };
        let mut in_order = DominantSpeaker::new();
        let mut shuffled = DominantSpeaker::new();
        for p in 0..8 {
            in_order.add(p);
            shuffled.add(p);
        }
        let mut changes = (Vec::new(), Vec::new());
        for f in 0..500u32 {
            if f == 100 {
                in_order.remove(1);
                shuffled.remove(1);
            }
            let present = (0..8).filter(|&p| f < 100 || p != 1);
            for p in present.clone() {
                in_order.observe(p, talks(p, f));
            }
            let mut order: Vec<u32> = present.collect();
            let turn = (f as usize * 3) % order.len();
            order.rotate_left(turn);
            if f % 2 == 0 {
                order.reverse();
            }
            for p in order {
                shuffled.observe(p, talks(p, f));
            }
            if let Some(k) = in_order.decide() {
                changes.0.push((f, k));
            }
            if let Some(k) = shuffled.decide() {
                changes.1.push((f, k));
            }
        }
        assert_eq!(changes.0, changes.1);
        assert_eq!(changes.0.iter().map(|c| c.1).collect::<Vec<_>>(), [3, 6, 3]);
    }

    #[test]
    fn first_talker_takes_the_floor() {
        let changes = run(3, 100, |p, f| p == 2 && f >= 20);
        assert_eq!(changes.first().map(|c| c.1), Some(2));
        assert!(changes[0].0 <= 30, "{changes:?}");
        assert_eq!(changes.len(), 1);
    }

    #[test]
    fn a_cough_or_short_yes_does_not_steal_the_floor() {
        // 0 talks steadily (with natural gaps); 1 coughs (100 ms) and later says "yes" (400 ms).
        let changes = run(2, 500, |p, f| match p {
            0 => f % 10 < 7,
            _ => (200..205).contains(&f) || (300..320).contains(&f),
        });
        assert_eq!(changes, vec![(changes[0].0, 0)], "{changes:?}");
    }

    #[test]
    fn sustained_speech_takes_over_within_a_second() {
        // 0 talks for 4 s and stops; 1 starts talking as 0 stops.
        let changes = run(2, 600, |p, f| match p {
            0 => f < 200 && f % 10 < 7,
            _ => f >= 200 && f % 10 < 7,
        });
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[1].1, 1);
        let delay_ms = (changes[1].0 - 200) * 20;
        assert!(delay_ms <= 1200, "took {delay_ms} ms");
    }

    #[test]
    fn overlapping_talker_does_not_steal_from_an_active_speaker() {
        let changes = run(2, 600, |p, f| match p {
            0 => f % 10 < 8,
            _ => f >= 200 && f % 10 < 7,
        });
        assert_eq!(changes.len(), 1, "{changes:?}");
    }

    #[test]
    fn leaving_dominant_frees_the_floor() {
        let mut d = DominantSpeaker::new();
        d.add(1u8);
        d.add(2u8);
        for _ in 0..20 {
            d.observe(1, true);
            d.observe(2, false);
            d.decide();
        }
        assert_eq!(d.dominant(), Some(1));
        d.remove(1);
        assert_eq!(d.dominant(), None);
        d.observe(9, true);
        for _ in 0..10 {
            d.observe(2, true);
            d.decide();
        }
        assert_eq!(d.dominant(), Some(2));
    }
}
