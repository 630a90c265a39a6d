//! The G.722 decoder (64, 56 and 48 kbit/s).

use super::band::{Band, QM2, QM4};
use super::{Mode, Qmf, saturate};

/// Inverse 5-bit low-band quantiser outputs (56 kbit/s).
const QM5: [i32; 32] = [
    -280, -280, -23352, -17560, -14120, -11664, -9752, -8184, -6864, -5712, -4696, -3784, -2960,
    -2208, -1520, -880, 23352, 17560, 14120, 11664, 9752, 8184, 6864, 5712, 4696, 3784, 2960, 2208,
    1520, 880, 280, -280,
];
/// Inverse 6-bit low-band quantiser outputs (64 kbit/s).
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];

/// A G.722 decoder: one byte in, two 16 kHz samples out.
#[derive(Clone, Debug)]
pub struct Decoder {
    mode: Mode,
    qmf: Qmf,
    low: Band,
    high: Band,
}

impl Decoder {
    /// A fresh decoder for `mode`.
    pub fn new(mode: Mode) -> Self {
        Decoder {
            mode,
            qmf: Qmf::default(),
            low: Band::low(),
            high: Band::high(),
        }
    }

    /// The mode this decoder reads.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Decodes `codes` into `out` (two samples per byte); returns the samples written.
    pub fn decode(&mut self, codes: &[u8], out: &mut [i16]) -> usize {
        let n = codes.len().min(out.len() / 2);
        for (pair, &code) in out.chunks_exact_mut(2).zip(&codes[..n]) {
            let (a, b) = self.decode_byte(code as i32);
            pair[0] = a;
            pair[1] = b;
        }
        n * 2
    }

    #[inline]
    fn decode_byte(&mut self, code: i32) -> (i16, i16) {
        // Split the byte; `q` is the low-band code's inverse quantiser output for this mode,
        // `ril` its 4 most significant bits, which drive the adaptation in every mode.
        let (q, ril, ihigh) = match self.mode {
            Mode::Kbps64 => {
                let c = (code & 0x3F) as usize;
                (QM6[c], c >> 2, (code >> 6) & 3)
            }
            Mode::Kbps56 => {
                let c = ((code >> 1) & 0x1F) as usize;
                (QM5[c], c >> 1, (code >> 6) & 3)
            }
            Mode::Kbps48 => {
                let c = ((code >> 2) & 0x0F) as usize;
                (QM4[c], c, (code >> 6) & 3)
            }
        };

        // Low band: blocks 5L (INVQBL, RECONS), 6L (LIMIT), 2L, 3L, 4L.
        let rlow = (self.low.s + ((self.low.det * q) >> 15)).clamp(-16384, 16383);
        let dlow = (self.low.det * QM4[ril]) >> 15;
        self.low.adapt_low(ril, dlow);

        // High band: blocks 2H (INVQAH), 5H (RECONS), 6H (LIMIT), 3H, 4H.
        let ihigh = ihigh as usize;
        let dhigh = (self.high.det * QM2[ihigh]) >> 15;
        let rhigh = (dhigh + self.high.s).clamp(-16384, 16383);
        self.high.adapt_high(ihigh, dhigh);

        // Receive QMF.
        // |rlow|, |rhigh| <= 2^14, so sum and difference fit 16 bits.
        let (xout2, xout1) = self.qmf.push((rlow + rhigh) as i16, (rlow - rhigh) as i16);
        (saturate(xout1 >> 11) as i16, saturate(xout2 >> 11) as i16)
    }
}
