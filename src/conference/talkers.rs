//! Top-K talker selection with hysteresis, run once per tick over a conference's legs.
//!
//! Only participants who are talking (speech detector) and heard (connected, not muted) are
//! candidates. A current talker keeps its place while it talks, unless a candidate is louder
//! by more than [`SWAP_MARGIN`] — so the set does not flap between two similar voices, and the
//! mix (and its encodes) change only for a clear reason. No allocation: fixed arrays.

/// Largest K supported.
pub const MAX_TALKERS: usize = 16;
/// Level advantage (dB, RFC 6464 units) a challenger needs to displace a current talker.
pub const SWAP_MARGIN: u8 = 6;

/// A candidate this tick: a leg slot and its RFC 6464 level (0 loudest .. 127 silent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub slot: usize,
    pub level: u8,
}

/// The talkers of one conference.
#[derive(Clone, Debug)]
pub struct Talkers {
    k: usize,
    current: [Candidate; MAX_TALKERS],
    count: usize,
}

impl Talkers {
    /// Selection of up to `k` talkers (clamped to 1..=16).
    pub fn new(k: usize) -> Self {
        Talkers {
            k: k.clamp(1, MAX_TALKERS),
            current: [Candidate {
                slot: 0,
                level: 127,
            }; MAX_TALKERS],
            count: 0,
        }
    }

    /// How many talkers it selects at most.
    pub fn limit(&self) -> usize {
        self.k
    }

    /// The selected talkers, loudest first.
    pub fn current(&self) -> &[Candidate] {
        &self.current[..self.count]
    }

    /// Whether `slot` is a talker.
    pub fn contains(&self, slot: usize) -> bool {
        self.current().iter().any(|c| c.slot == slot)
    }

    /// Picks this tick's talkers from `candidates` (every talking, heard leg with its level).
    /// Returns whether the set changed.
    pub fn select(&mut self, candidates: impl Iterator<Item = Candidate> + Clone) -> bool {
        let before = (self.count, self.current);
        // Keep current talkers that are still candidates, with this tick's level.
        let mut kept = [Candidate {
            slot: 0,
            level: 127,
        }; MAX_TALKERS];
        let mut n = 0;
        for c in candidates.clone() {
            if self.contains(c.slot) && n < self.k {
                kept[n] = c;
                n += 1;
            }
        }
        // Fill free places with the loudest newcomers, then let clearly louder newcomers
        // displace the quietest kept talker.
        for c in candidates {
            if kept[..n].iter().any(|k| k.slot == c.slot) {
                continue;
            }
            if n < self.k {
                kept[n] = c;
                n += 1;
            } else if let Some((quietest, q)) = kept[..n]
                .iter()
                .enumerate()
                .max_by_key(|(i, k)| (k.level, *i))
                .map(|(i, k)| (i, *k))
            {
                let newcomer = !before.1[..before.0].iter().any(|b| b.slot == q.slot);
                // Among newcomers the plain louder one wins; against a sitting talker the
                // challenger must be clearly louder.
                let margin = if newcomer { 0 } else { SWAP_MARGIN };
                if c.level.saturating_add(margin) < q.level {
                    kept[quietest] = c;
                }
            }
        }
        kept[..n].sort_unstable_by_key(|c| (c.level, c.slot));
        self.current = kept;
        self.count = n;
        before.0 != n
            || before.1[..n]
                .iter()
                .map(|c| c.slot)
                .ne(kept[..n].iter().map(|c| c.slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(list: &[(usize, u8)]) -> Vec<Candidate> {
        list.iter()
            .map(|&(slot, level)| Candidate { slot, level })
            .collect()
    }

    fn slots(t: &Talkers) -> Vec<usize> {
        let mut s: Vec<usize> = t.current().iter().map(|c| c.slot).collect();
        s.sort_unstable();
        s
    }

    #[test]
    fn picks_the_loudest_k() {
        let mut t = Talkers::new(2);
        let c = cands(&[(0, 40), (1, 20), (2, 30), (3, 60)]);
        assert!(t.select(c.iter().copied()));
        assert_eq!(slots(&t), [1, 2]);
        assert!(!t.select(c.iter().copied()));
    }

    #[test]
    fn a_slightly_louder_voice_does_not_displace_a_talker() {
        let mut t = Talkers::new(2);
        t.select(cands(&[(0, 30), (1, 30)]).into_iter());
        // 2 is 3 dB louder than the quietest talker: not enough.
        assert!(!t.select(cands(&[(0, 30), (1, 32), (2, 29)]).into_iter()));
        assert_eq!(slots(&t), [0, 1]);
        // 8 dB louder: it takes the quietest place.
        assert!(t.select(cands(&[(0, 30), (1, 32), (2, 24)]).into_iter()));
        assert_eq!(slots(&t), [0, 2]);
    }

    #[test]
    fn silent_talkers_leave_and_free_their_place() {
        let mut t = Talkers::new(3);
        t.select(cands(&[(0, 30), (1, 30), (2, 30)]).into_iter());
        t.select(cands(&[(0, 30), (5, 50)]).into_iter());
        assert_eq!(slots(&t), [0, 5]);
        t.select(std::iter::empty());
        assert!(t.current().is_empty());
    }
}
