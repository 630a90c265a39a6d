//! Mix-minus: everyone hears the sum of the talkers but not themselves.
//!
//! The sum is accumulated in `i32` from gain-scaled `i16` inputs, so it is exact and does not
//! depend on the order of the inputs, and a talker's output plus its own signal is exactly the full
//! sum. Only when a signal leaves the mix does a soft limiter bring it back into `i16`: linear up to
//! the knee, then a smooth curve that approaches but never reaches full scale (no wrap-around,
//! no hard clipping).
//!
//! Per tick the mixer calls [`Mixer::clear`], [`Mixer::add`] once per talker, then renders one
//! shared output for all listeners ([`Mixer::render`]) and one per talker
//! ([`Mixer::render_minus`]). Nothing allocates after [`Mixer::new`].

/// A linear gain in Q12 fixed point, 0 to 8 (-inf to +18 dB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gain(i32);

impl Gain {
    /// Unity gain.
    pub const UNITY: Gain = Gain(1 << 12);
    /// Silence.
    pub const MUTE: Gain = Gain(0);
    const MAX_LINEAR: f32 = 8.0;

    /// A gain from a linear factor, clamped to 0..=8; NaN is treated as mute.
    pub fn from_linear(factor: f32) -> Gain {
        if factor.is_nan() {
            return Gain::MUTE;
        }
        Gain((factor.clamp(0.0, Self::MAX_LINEAR) * 4096.0).round() as i32)
    }

    /// A gain from decibels, clamped to at most +18 dB.
    pub fn from_db(db: f32) -> Gain {
        Gain::from_linear(10f32.powf(db / 20.0))
    }

    /// The linear factor.
    pub fn linear(self) -> f32 {
        self.0 as f32 / 4096.0
    }

    /// `sample` scaled by this gain, rounded to nearest (the exact value every path uses).
    #[inline]
    pub fn apply(self, sample: i16) -> i32 {
        (i32::from(sample) * self.0 + (1 << 11)) >> 12
    }
}

impl Default for Gain {
    fn default() -> Self {
        Gain::UNITY
    }
}

/// Knee of the soft limiter: signals below it pass unchanged (about -2 dBFS).
const KNEE: f32 = 26_000.0;
const HEADROOM: f32 = 32_767.0 - KNEE;

/// Brings a mixed sample into `i16`: identity below the knee, then `knee + h·u/(1+u)` with
/// `u = excess/h`, which is continuous, has slope 1 at the knee and never exceeds full scale.
#[inline]
pub fn soft_limit(sample: i32) -> i16 {
    let magnitude = sample.unsigned_abs() as f32;
    if magnitude <= KNEE {
        return sample as i16;
    }
    let u = (magnitude - KNEE) / HEADROOM;
    let limited = (KNEE + HEADROOM * u / (1.0 + u)) as i16;
    if sample < 0 { -limited } else { limited }
}

/// The mix of one conference for one tick.
#[derive(Clone, Debug)]
pub struct Mixer {
    sum: Vec<i32>,
    inputs: usize,
}

impl Mixer {
    /// A mixer for frames of `frame_len` samples.
    pub fn new(frame_len: usize) -> Self {
        Mixer {
            sum: vec![0; frame_len],
            inputs: 0,
        }
    }

    /// Samples per frame.
    pub fn frame_len(&self) -> usize {
        self.sum.len()
    }

    /// Starts a new tick with an empty sum.
    pub fn clear(&mut self) {
        self.sum.fill(0);
        self.inputs = 0;
    }

    /// Adds one input frame at `gain`. A short frame is treated as padded with silence.
    pub fn add(&mut self, samples: &[i16], gain: Gain) {
        self.inputs += 1;
        for (acc, &s) in self.sum.iter_mut().zip(samples) {
            *acc += gain.apply(s);
        }
    }

    /// Inputs added since [`Mixer::clear`].
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// The full sum before limiting.
    pub fn sum(&self) -> &[i32] {
        &self.sum
    }

    /// Writes the full mix (what every listener hears), limited, into `out`.
    pub fn render(&self, out: &mut [i16]) {
        for (o, &s) in out.iter_mut().zip(&self.sum) {
            *o = soft_limit(s);
        }
    }

    /// Writes the sum minus `own` (added with `gain`), limited, into `out`: a talker's mix.
    pub fn render_minus(&self, own: &[i16], gain: Gain, out: &mut [i16]) {
        for (i, (o, &s)) in out.iter_mut().zip(&self.sum).enumerate() {
            let mine = own.get(i).map_or(0, |&x| gain.apply(x));
            *o = soft_limit(s - mine);
        }
    }

    /// Writes the sum minus `own` before limiting (for tests and further processing).
    pub fn minus_unlimited(&self, own: &[i16], gain: Gain, out: &mut [i32]) {
        for (i, (o, &s)) in out.iter_mut().zip(&self.sum).enumerate() {
            *o = s - own.get(i).map_or(0, |&x| gain.apply(x));
        }
    }
}

/// Picks the `out.len()` loudest of `candidates` (index, RFC 6464 level: lower is louder) into
/// `out`, loudest first; returns how many were picked. Ties go to the lower index, so the choice
/// does not depend on iteration order. No allocation: this runs every tick over every leg.
pub fn top_talkers(
    candidates: impl Iterator<Item = (usize, u8)>,
    out: &mut [(usize, u8)],
) -> usize {
    let mut picked = 0;
    for c in candidates {
        let louder = |a: &(usize, u8), b: &(usize, u8)| (a.1, a.0) < (b.1, b.0);
        if picked < out.len() {
            out[picked] = c;
            picked += 1;
        } else if let Some(last) = out.last() {
            if !louder(&c, last) {
                continue;
            }
            out[picked - 1] = c;
        }
        // Insertion step: move the new entry up to its place.
        let mut i = picked - 1;
        while i > 0 && louder(&out[i], &out[i - 1]) {
            out.swap(i, i - 1);
            i -= 1;
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames() -> impl Strategy<Value = Vec<(Vec<i16>, u16)>> {
        prop::collection::vec(
            (prop::collection::vec(any::<i16>(), 16), 0u16..=32768),
            1..12,
        )
    }

    fn mix_of(inputs: &[(Vec<i16>, u16)], skip: Option<usize>) -> Vec<i32> {
        let mut m = Mixer::new(16);
        for (i, (frame, g)) in inputs.iter().enumerate() {
            if Some(i) != skip {
                m.add(frame, Gain(i32::from(*g)));
            }
        }
        m.sum().to_vec()
    }

    proptest! {
        #[test]
        fn a_talker_never_hears_itself(inputs in frames()) {
            let mut m = Mixer::new(16);
            for (frame, g) in &inputs {
                m.add(frame, Gain(i32::from(*g)));
            }
            for (i, (frame, g)) in inputs.iter().enumerate() {
                let mut minus = vec![0i32; 16];
                m.minus_unlimited(frame, Gain(i32::from(*g)), &mut minus);
                prop_assert_eq!(&minus, &mix_of(&inputs, Some(i)));
                let mut limited = vec![0i16; 16];
                m.render_minus(frame, Gain(i32::from(*g)), &mut limited);
                let expected: Vec<i16> = minus.iter().map(|&s| soft_limit(s)).collect();
                prop_assert_eq!(limited, expected);
            }
        }

        #[test]
        fn talker_output_plus_own_is_the_full_sum(inputs in frames()) {
            let full = mix_of(&inputs, None);
            let mut m = Mixer::new(16);
            for (frame, g) in &inputs {
                m.add(frame, Gain(i32::from(*g)));
            }
            for (frame, g) in &inputs {
                let mut minus = vec![0i32; 16];
                m.minus_unlimited(frame, Gain(i32::from(*g)), &mut minus);
                for (k, v) in minus.iter().enumerate() {
                    prop_assert_eq!(v + Gain(i32::from(*g)).apply(frame[k]), full[k]);
                }
            }
        }

        #[test]
        fn order_does_not_matter(inputs in frames(), seed in any::<u64>()) {
            let mut shuffled = inputs.clone();
            // Deterministic Fisher-Yates from the seed.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(mix_of(&inputs, None), mix_of(&shuffled, None));
        }

        #[test]
        fn limiter_is_monotonic_and_bounded(a in -2_000_000i32..2_000_000, b in -2_000_000i32..2_000_000) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(soft_limit(lo) <= soft_limit(hi));
            prop_assert_eq!(soft_limit(a).signum() as i32, a.signum());
        }
    }

    #[test]
    fn loud_sum_does_not_wrap() {
        let mut m = Mixer::new(4);
        for _ in 0..1000 {
            m.add(
                &[i16::MAX, i16::MIN, 20_000, -20_000],
                Gain::from_linear(8.0),
            );
        }
        let mut out = [0i16; 4];
        m.render(&mut out);
        assert!(out[0] > 32_000 && out[1] < -32_000, "{out:?}");
        assert!(out[2] > 32_000 && out[3] < -32_000, "{out:?}");
    }

    #[test]
    fn quiet_signals_pass_unchanged() {
        let mut m = Mixer::new(3);
        m.add(&[1000, -2000, 25_000], Gain::UNITY);
        let mut out = [0i16; 3];
        m.render(&mut out);
        assert_eq!(out, [1000, -2000, 25_000]);
    }

    #[test]
    fn top_talkers_are_the_loudest_in_any_order() {
        let levels = [40u8, 10, 127, 30, 10, 90, 20];
        let mut out = [(0, 0); 3];
        let n = top_talkers(levels.iter().copied().enumerate(), &mut out);
        assert_eq!(n, 3);
        assert_eq!(out, [(1, 10), (4, 10), (6, 20)]);
        let n = top_talkers(levels.iter().copied().enumerate().rev(), &mut out);
        assert_eq!((n, out), (3, [(1, 10), (4, 10), (6, 20)]));
        let n = top_talkers([(5, 3)].into_iter(), &mut out);
        assert_eq!((n, out[0]), (1, (5, 3)));
    }

    #[test]
    fn gains() {
        assert_eq!(Gain::from_db(0.0), Gain::UNITY);
        assert_eq!(Gain::from_linear(f32::NAN), Gain::MUTE);
        assert_eq!(Gain::from_linear(100.0).linear(), 8.0);
        assert_eq!(Gain::from_db(-6.0206).apply(10_000), 5000);
        assert_eq!(Gain::MUTE.apply(i16::MIN), 0);
    }
}
