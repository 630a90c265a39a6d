//! One ADPCM sub-band: the adaptive predictor (block 4) and the quantiser scale adaptation
//! shared by encoder and decoder.

use super::saturate;

/// Inverse 4-bit low-band quantiser outputs (Table 14/G.722).
pub(super) const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
/// Low-band log-scale factor increments.
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
/// Maps 4-bit low-band codes to WL indices.
const RL42: [i32; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
/// Inverse log-scale table (Table 15/G.722).
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// Inverse 2-bit high-band quantiser outputs.
pub(super) const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
/// High-band log-scale factor increments.
const WH: [i32; 3] = [0, -214, 798];
/// Maps 2-bit high-band codes to WH indices.
const RH2: [i32; 4] = [2, 1, 2, 1];

/// The state of one sub-band's ADPCM.
#[derive(Clone, Debug)]
pub(super) struct Band {
    /// Predicted signal.
    pub(super) s: i32,
    sz: i32,
    /// Reconstructed signal, one and two samples back.
    r: [i32; 2],
    /// Partially reconstructed signal, one and two samples back.
    p: [i32; 2],
    /// Pole predictor coefficients a1, a2.
    a: [i32; 2],
    /// Quantised differences, one to six samples back.
    d: [i32; 6],
    /// Zero predictor coefficients b1..b6.
    b: [i32; 6],
    nb: i32,
    /// Quantiser scale factor.
    pub(super) det: i32,
}

impl Band {
    pub(super) fn low() -> Self {
        Self::with_det(32)
    }

    pub(super) fn high() -> Self {
        Self::with_det(8)
    }

    fn with_det(det: i32) -> Self {
        Band {
            s: 0,
            sz: 0,
            r: [0; 2],
            p: [0; 2],
            a: [0; 2],
            d: [0; 6],
            b: [0; 6],
            nb: 0,
            det,
        }
    }

    /// Blocks 3L (LOGSCL, SCALEL) for a 4-bit low-band code, then block 4 with `dlow`.
    #[inline]
    pub(super) fn adapt_low(&mut self, code4: usize, dlow: i32) {
        let nb = ((self.nb * 127) >> 7) + WL[RL42[code4] as usize];
        self.nb = nb.clamp(0, 18432);
        self.det = scale(self.nb, 8);
        self.predict(dlow);
    }

    /// Blocks 3H (LOGSCH, SCALEH) for a 2-bit high-band code, then block 4 with `dhigh`.
    #[inline]
    pub(super) fn adapt_high(&mut self, code2: usize, dhigh: i32) {
        let nb = ((self.nb * 127) >> 7) + WH[RH2[code2] as usize];
        self.nb = nb.clamp(0, 22528);
        self.det = scale(self.nb, 10);
        self.predict(dhigh);
    }

    /// Block 4: reconstruct, update the pole and zero predictors, predict the next sample.
    #[inline]
    fn predict(&mut self, d: i32) {
        // RECONS and PARREC
        let r0 = saturate(self.s + d);
        let p0 = saturate(self.sz + d);

        // UPPOL2. Here and below `(x * 32512) >> 15` is `x + ((-x) >> 7)` and
        // `(x * 32640) >> 15` is `x + ((-x) >> 8)`: exact, and free of 32-bit multiplies, which
        // baseline x86-64 SIMD lacks.
        let sg0 = p0 >> 15;
        let sg1 = self.p[0] >> 15;
        let sg2 = self.p[1] >> 15;
        let wd1 = saturate(self.a[0] << 2);
        let wd2 = if sg0 == sg1 { -wd1 } else { wd1 }.min(32767);
        let wd3 =
            (wd2 >> 7) + if sg0 == sg2 { 128 } else { -128 } + self.a[1] + ((-self.a[1]) >> 7);
        let a2 = wd3.clamp(-12288, 12288);

        // UPPOL1
        let wd1 = if sg0 == sg1 { 192 } else { -192 };
        let wd2 = self.a[0] + ((-self.a[0]) >> 8);
        // The Recommendation saturates these two sums, but they cannot overflow: |a2| <= 12288
        // and |a1| <= 27648 hold by the clamps, so the limit is 3072..=27648 and the sum is
        // within ±27732. (The same bounds make the zero predictor's update exact below.)
        let limit = 15360 - a2;
        let a1 = (wd1 + wd2).max(-limit).min(limit);

        // UPZERO, with DELAYA of the coefficients folded in (b[i] is only read here).
        let step: i32 = if d == 0 { 0 } else { 128 };
        let sign = d >> 15;
        for (b, &dh) in self.b.iter_mut().zip(&self.d) {
            let wd2 = if (dh >> 15) == sign { step } else { -step };
            // |b·255/256| <= 32640, so ±128 keeps it within 16 bits without saturating.
            *b = wd2 + *b + ((-*b) >> 8);
        }

        // DELAYA
        self.d.copy_within(0..5, 1);
        self.d[0] = d;
        self.r = [r0, self.r[0]];
        self.p = [p0, self.p[0]];
        self.a = [a1, a2];

        // FILTEP
        let wd1 = (a1 * saturate(r0 + r0)) >> 15;
        let wd2 = (a2 * saturate(self.r[1] + self.r[1])) >> 15;
        let sp = saturate(wd1 + wd2);

        // FILTEZ
        let sz: i32 = self
            .b
            .iter()
            .zip(&self.d)
            .map(|(&b, &dh)| (b * saturate(dh + dh)) >> 15)
            .sum();
        self.sz = saturate(sz);

        // PREDIC
        self.s = saturate(sp + self.sz);
    }
}

/// SCALEL / SCALEH: the linear scale factor from the log scale factor.
#[inline]
fn scale(nb: i32, offset: i32) -> i32 {
    let wd1 = ((nb >> 6) & 31) as usize;
    let wd2 = offset - (nb >> 11);
    let wd3 = if wd2 < 0 {
        ILB[wd1] << -wd2
    } else {
        ILB[wd1] >> wd2
    };
    wd3 << 2
}
