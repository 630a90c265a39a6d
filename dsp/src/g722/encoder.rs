//! The G.722 encoder at 64 kbit/s.

use super::band::{Band, QM2, QM4};
use super::{Qmf, saturate};

/// Low-band decision levels (Table 12/G.722), scaled by the quantiser scale factor.
const Q6: [i16; 32] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 0, 0,
];
/// 6-bit low-band codes for negative differences, by decision interval.
const ILN: [i32; 32] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4, 0,
];
/// 6-bit low-band codes for positive differences, by decision interval.
const ILP: [i32; 32] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32, 0,
];
/// 2-bit high-band codes for negative and positive differences.
const IHN: [i32; 3] = [0, 1, 0];
const IHP: [i32; 3] = [0, 3, 2];

/// A G.722 encoder: 16 kHz linear in, one byte per two samples out (64 kbit/s).
#[derive(Clone, Debug)]
pub struct Encoder {
    qmf: Qmf,
    low: Band,
    high: Band,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// A fresh encoder (the state at the start of a call).
    pub fn new() -> Self {
        Encoder {
            qmf: Qmf::default(),
            low: Band::low(),
            high: Band::high(),
        }
    }

    /// Encodes pairs of samples from `pcm` into `out`; returns the bytes written.
    /// An odd trailing sample is ignored.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        let n = (pcm.len() / 2).min(out.len());
        for (o, pair) in out[..n].iter_mut().zip(pcm.chunks_exact(2)) {
            *o = self.encode_pair(pair[0], pair[1]);
        }
        n
    }

    #[inline]
    fn encode_pair(&mut self, first: i16, second: i16) -> u8 {
        let (sum_odd, sum_even) = self.qmf.push(first, second);
        let xlow = (sum_even + sum_odd) >> 14;
        let xhigh = (sum_even - sum_odd) >> 14;

        // Low band: block 1L (SUBTRA, QUANTL).
        let el = saturate(xlow - self.low.s);
        let wd = if el >= 0 { el } else { -(el + 1) };
        // The first decision interval i in 1..30 with wd < Q6[i]·det >> 12, or 30. The levels
        // rise with i, so it is one plus the number of levels at or below wd, found by a
        // five-step binary lifting that compiles to conditional moves (a data-dependent branch
        // would mispredict on every other sample).
        let det = self.low.det;
        let mut i = 1;
        for step in [16, 8, 4, 2, 1] {
            let j = i + step - 1;
            let level = (i32::from(Q6[j]) * det) >> 12;
            i += step * usize::from((wd >= level) & (j < 30));
        }
        let ilow = if el < 0 { ILN[i] } else { ILP[i] };
        // Block 2L (INVQAL) on the 4 most significant bits.
        let ril = (ilow >> 2) as usize;
        let dlow = (self.low.det * QM4[ril]) >> 15;
        self.low.adapt_low(ril, dlow);

        // High band: block 1H (SUBTRA, QUANTH).
        let eh = saturate(xhigh - self.high.s);
        let wd = if eh >= 0 { eh } else { -(eh + 1) };
        let mih = if wd >= (564 * self.high.det) >> 12 {
            2
        } else {
            1
        };
        let ihigh = (if eh < 0 { IHN[mih] } else { IHP[mih] }) as usize;
        // Block 2H (INVQAH).
        let dhigh = (self.high.det * QM2[ihigh]) >> 15;
        self.high.adapt_high(ihigh, dhigh);

        ((ihigh as i32) << 6 | ilow) as u8
    }
}
