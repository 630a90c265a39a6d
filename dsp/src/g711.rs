//! G.711 µ-law and A-law (ITU-T G.711), table-driven.
//!
//! Encoding looks the sample up in a table indexed by its significant bits (14 for µ-law, 13 for
//! A-law, as G.711 quantises); decoding is a 256-entry table. All tables are built at compile
//! time from the reference algorithm, so there is no start-up cost and no allocation.

/// µ-law encode table, indexed by `(sample >> 2) + 8192`.
static ULAW_ENCODE: [u8; 16384] = build_ulaw_encode();
/// A-law encode table, indexed by `(sample >> 3) + 4096`.
static ALAW_ENCODE: [u8; 8192] = build_alaw_encode();
/// µ-law decode table.
static ULAW_DECODE: [i16; 256] = build_ulaw_decode();
/// A-law decode table.
static ALAW_DECODE: [i16; 256] = build_alaw_decode();

/// Encodes one linear sample to µ-law.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    ULAW_ENCODE[((sample >> 2) as i32 + 8192) as usize]
}

/// Decodes one µ-law code to a linear sample.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// Encodes one linear sample to A-law.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    ALAW_ENCODE[((sample >> 3) as i32 + 4096) as usize]
}

/// Decodes one A-law code to a linear sample.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

/// The two G.711 companding laws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Law {
    /// µ-law (PCMU, RTP payload type 0).
    Ulaw,
    /// A-law (PCMA, RTP payload type 8).
    Alaw,
}

impl Law {
    /// Encodes `pcm` into `out`; returns the number of bytes written (`min` of both lengths).
    pub fn encode(self, pcm: &[i16], out: &mut [u8]) -> usize {
        let n = pcm.len().min(out.len());
        let encode = match self {
            Law::Ulaw => ulaw_encode,
            Law::Alaw => alaw_encode,
        };
        for (o, &s) in out[..n].iter_mut().zip(&pcm[..n]) {
            *o = encode(s);
        }
        n
    }

    /// Decodes `codes` into `out`; returns the number of samples written.
    pub fn decode(self, codes: &[u8], out: &mut [i16]) -> usize {
        let n = codes.len().min(out.len());
        let table = match self {
            Law::Ulaw => &ULAW_DECODE,
            Law::Alaw => &ALAW_DECODE,
        };
        for (o, &c) in out[..n].iter_mut().zip(&codes[..n]) {
            *o = table[c as usize];
        }
        n
    }

    /// The code of digital silence (used for padding and concealment).
    pub fn silence(self) -> u8 {
        match self {
            Law::Ulaw => 0xFF,
            Law::Alaw => 0xD5,
        }
    }
}

const fn segment(value: i32, ends: &[i32; 8]) -> usize {
    let mut i = 0;
    while i < 8 {
        if value <= ends[i] {
            return i;
        }
        i += 1;
    }
    8
}

const ALAW_SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
const ULAW_BIAS: i32 = 0x84;

/// µ-law encoder of ITU-T G.191 (the G.711 reference software) on a 14-bit value (the sample
/// shifted right by 2). Negative values use the one's complement, so `x` and `-x-1` differ only
/// in the sign bit.
const fn ulaw_encode_ref(value14: i32) -> u8 {
    let magnitude = if value14 < 0 { !value14 } else { value14 };
    let mut absno = magnitude + 33;
    if absno > 0x1FFF {
        absno = 0x1FFF;
    }
    let mut i = absno >> 6;
    let mut segno = 1;
    while i != 0 {
        segno += 1;
        i >>= 1;
    }
    let high = 8 - segno;
    let low = 0xF - ((absno >> segno) & 0xF);
    let code = (high << 4) | low;
    if value14 >= 0 {
        (code | 0x80) as u8
    } else {
        code as u8
    }
}

/// Reference A-law encoder on a 13-bit value (the sample shifted right by 3).
const fn alaw_encode_ref(value13: i32) -> u8 {
    let (v, mask) = if value13 >= 0 {
        (value13, 0xD5)
    } else {
        (-value13 - 1, 0x55)
    };
    let seg = segment(v, &ALAW_SEG_END);
    if seg >= 8 {
        (0x7F ^ mask) as u8
    } else {
        let mantissa = if seg < 2 {
            (v >> 1) & 0xF
        } else {
            (v >> seg) & 0xF
        };
        ((((seg as i32) << 4) | mantissa) ^ mask) as u8
    }
}

const fn build_ulaw_encode() -> [u8; 16384] {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        t[i] = ulaw_encode_ref(i as i32 - 8192);
        i += 1;
    }
    t
}

const fn build_alaw_encode() -> [u8; 8192] {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        t[i] = alaw_encode_ref(i as i32 - 4096);
        i += 1;
    }
    t
}

const fn build_ulaw_decode() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        let u = !(i as u8) as i32;
        let mut v = ((u & 0x0F) << 3) + ULAW_BIAS;
        v <<= (u & 0x70) >> 4;
        t[i] = if u & 0x80 != 0 {
            (ULAW_BIAS - v) as i16
        } else {
            (v - ULAW_BIAS) as i16
        };
        i += 1;
    }
    t
}

const fn build_alaw_decode() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        let a = (i as i32) ^ 0x55;
        let mut v = (a & 0x0F) << 4;
        let seg = (a & 0x70) >> 4;
        v = match seg {
            0 => v + 8,
            1 => v + 0x108,
            _ => (v + 0x108) << (seg - 1),
        };
        t[i] = if a & 0x80 != 0 { v as i16 } else { -v as i16 };
        i += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0xAA), 32256);
    }

    #[test]
    fn decode_then_encode_is_identity_on_codes() {
        for code in 0..=255u8 {
            // µ-law has two zero codes (0x7F and 0xFF); both decode to 0, which encodes to 0xFF.
            let back = ulaw_encode(ulaw_decode(code));
            if code == 0x7F {
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, code, "µ-law {code:#x}");
            }
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#x}");
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut last = i16::MIN;
        for s in i16::MIN..=i16::MAX {
            let d = ulaw_decode(ulaw_encode(s));
            assert!(d >= last, "µ-law not monotonic at {s}");
            last = d;
        }
    }
}
