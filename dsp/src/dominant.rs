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
        self.histories.retain(|h| h.key != key);
        if self.dominant == Some(key) {
            self.dominant = None;
        }
    }

    /// Records one frame of `key`'s activity (unknown keys are ignored).
    pub fn observe(&mut self, key: K, active: bool) {
        if let Some(h) = self.histories.iter_mut().find(|h| h.key == key) {
            h.bits = (h.bits << 1) | u128::from(active);
        }
    }

    /// Makes the decision for this frame; returns the new dominant speaker when it changed.
    pub fn decide(&mut self) -> Option<K> {
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
