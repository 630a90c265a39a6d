//! G.711 against references for every one of the 65,536 linear inputs and 256 codes.
//!
//! The normative reference is the ITU-T G.191 software (g711.c); its algorithm is transcribed
//! below, independently of our table-driven code, and must match bit for bit. `audio-codec` and
//! ffmpeg decode identically, but their encoders round differently at decision levels (audio-codec
//! negates negative samples where G.191 takes the one's complement; ffmpeg puts decision levels
//! halfway between output levels): there we check that they never pick more than the adjacent
//! code, so the comparison still catches any real error.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use audio_codec::{Decoder as _, Encoder as _};
use confab_dsp::g711::{Law, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};

/// ITU-T G.191 `ulaw_compress` for one sample.
fn g191_ulaw(x: i16) -> u8 {
    let x = i32::from(x);
    let absno = if x < 0 {
        ((!x) >> 2) + 33
    } else {
        (x >> 2) + 33
    }
    .min(0x1FFF);
    let mut i = absno >> 6;
    let mut segno = 1;
    while i != 0 {
        segno += 1;
        i >>= 1;
    }
    let high_nibble = 0x8 - segno;
    let low_nibble = 0xF - ((absno >> segno) & 0xF);
    let code = (high_nibble << 4) | low_nibble;
    (if x >= 0 { code | 0x80 } else { code }) as u8
}

/// ITU-T G.191 `alaw_compress` for one sample.
fn g191_alaw(x: i16) -> u8 {
    let x = i32::from(x);
    let mut ix = if x < 0 { (!x) >> 4 } else { x >> 4 };
    if ix > 15 {
        let mut iexp = 1;
        while ix > 16 + 15 {
            ix >>= 1;
            iexp += 1;
        }
        ix -= 16;
        ix += iexp << 4;
    }
    if x >= 0 {
        ix |= 0x80;
    }
    (ix ^ 0x55) as u8
}

/// ITU-T G.191 `ulaw_expand` for one code.
fn g191_ulaw_expand(code: u8) -> i16 {
    let sign = if code < 0x80 { -1 } else { 1 };
    let mantissa = i32::from(!code);
    let exponent = (mantissa >> 4) & 0x7;
    let segment = exponent + 1;
    let mantissa = mantissa & 0xF;
    let step = 4 << segment;
    (sign * ((0x80 << exponent) + step * mantissa + step / 2 - 4 * 33)) as i16
}

/// ITU-T G.191 `alaw_expand` for one code.
fn g191_alaw_expand(code: u8) -> i16 {
    let ix = i32::from(code ^ 0x55) & 0x7F;
    let iexp = ix >> 4;
    let mut mant = ix & 0xF;
    if iexp > 0 {
        mant += 16;
    }
    mant = (mant << 4) + 0x8;
    if iexp > 1 {
        mant <<= iexp - 1;
    }
    (if code > 127 { mant } else { -mant }) as i16
}

fn all_inputs() -> Vec<i16> {
    (i16::MIN..=i16::MAX).collect()
}

fn all_codes() -> Vec<u8> {
    (0..=255).collect()
}

#[test]
fn every_input_and_code_matches_itu_g191() {
    let input = all_inputs();
    let ours: Vec<u8> = input.iter().map(|&s| ulaw_encode(s)).collect();
    let reference: Vec<u8> = input.iter().map(|&s| g191_ulaw(s)).collect();
    common::assert_same(&ours, &reference, "µ-law encode");
    let ours: Vec<u8> = input.iter().map(|&s| alaw_encode(s)).collect();
    let reference: Vec<u8> = input.iter().map(|&s| g191_alaw(s)).collect();
    common::assert_same(&ours, &reference, "A-law encode");
    for code in all_codes() {
        assert_eq!(
            ulaw_decode(code),
            g191_ulaw_expand(code),
            "µ-law {code:#04x}"
        );
        assert_eq!(
            alaw_decode(code),
            g191_alaw_expand(code),
            "A-law {code:#04x}"
        );
    }
}

/// Checks `reference` codes against ours: where they differ, the reference must have chosen
/// the neighbouring output level (the input sits at a decision level the two round differently).
fn assert_adjacent(law: Law, input: &[i16], reference: &[u8], what: &str) {
    let decode = |c: u8| match law {
        Law::Ulaw => i32::from(ulaw_decode(c)),
        Law::Alaw => i32::from(alaw_decode(c)),
    };
    let mut levels: Vec<i32> = all_codes().into_iter().map(decode).collect();
    levels.sort_unstable();
    levels.dedup();
    let rank = |v: i32| {
        levels
            .binary_search(&v)
            .unwrap_or_else(|_| panic!("{v} is no level"))
    };
    let mut ours = vec![0u8; input.len()];
    law.encode(input, &mut ours);
    let mut differing = 0;
    for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        if a != b {
            differing += 1;
            let (ra, rb) = (rank(decode(a)), rank(decode(b)));
            assert!(
                ra.abs_diff(rb) <= 1,
                "{what}: input {} -> ours {a:#04x}, reference {b:#04x}",
                input[i]
            );
        }
    }
    // Rounding conventions only matter next to decision levels: a small share of inputs.
    assert!(
        differing * 50 < input.len(),
        "{what}: {differing} inputs differ"
    );
}

#[test]
fn audio_codec_decodes_identically_and_encodes_to_the_same_or_adjacent_code() {
    let input = all_inputs();
    let codes = all_codes();
    let mut reference = vec![0u8; input.len()];
    audio_codec::pcmu::PcmuEncoder::new()
        .encode_into(&input, &mut reference)
        .unwrap();
    assert_adjacent(Law::Ulaw, &input, &reference, "audio-codec µ-law");
    audio_codec::pcma::PcmaEncoder::new()
        .encode_into(&input, &mut reference)
        .unwrap();
    assert_adjacent(Law::Alaw, &input, &reference, "audio-codec A-law");

    let mut decoded = vec![0i16; 256];
    audio_codec::pcmu::PcmuDecoder::new()
        .decode_into(&codes, &mut decoded)
        .unwrap();
    common::assert_same(
        &codes.iter().map(|&c| ulaw_decode(c)).collect::<Vec<_>>(),
        &decoded,
        "µ-law decode",
    );
    audio_codec::pcma::PcmaDecoder::new()
        .decode_into(&codes, &mut decoded)
        .unwrap();
    common::assert_same(
        &codes.iter().map(|&c| alaw_decode(c)).collect::<Vec<_>>(),
        &decoded,
        "A-law decode",
    );
}

#[test]
fn ffmpeg_decodes_identically_and_encodes_to_the_same_or_adjacent_code() {
    let input = all_inputs();
    let bytes = common::to_bytes(&input);
    for (law, codec, format) in [
        (Law::Ulaw, "pcm_mulaw", "mulaw"),
        (Law::Alaw, "pcm_alaw", "alaw"),
    ] {
        let reference = common::ffmpeg(
            &[
                "-f", "s16le", "-ar", "8000", "-ac", "1", "-i", "pipe:0", "-c:a", codec, "-f",
                format, "pipe:1",
            ],
            &bytes,
        );
        assert_adjacent(law, &input, &reference, codec);

        let codes = all_codes();
        let decoded = common::from_bytes(&common::ffmpeg(
            &[
                "-f", format, "-ar", "8000", "-ac", "1", "-i", "pipe:0", "-f", "s16le", "pipe:1",
            ],
            &codes,
        ));
        let mut ours = vec![0i16; 256];
        law.decode(&codes, &mut ours);
        common::assert_same(&ours, &decoded, codec);
    }
}
