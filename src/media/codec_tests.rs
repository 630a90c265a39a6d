//! Leg encoders and decoders: every codec round trip at every mix rate, a change of mix rate,
//! quiet and loud Opus legs, G.722's 8 kHz timestamps, and malformed Opus concealed.

use super::*;
use confab_dsp::signal::{sine, tone_level_dbov};

/// `pcm` through `enc` and `dec`, a frame of `frame_len` a tick; what the decoder gave.
fn round_trip(
    enc: &mut LegEncoder,
    dec: &mut LegDecoder,
    pcm: &[i16],
    frame_len: usize,
) -> Vec<i16> {
    let mut out = Vec::new();
    let mut payload = [0u8; 1500];
    let mut frame = vec![0i16; frame_len];
    for f in pcm.chunks_exact(frame_len) {
        enc.push_frame(f);
        while let Some(n) = enc.pull_packet(&mut payload) {
            dec.decode(&payload[..n]);
        }
        dec.frame(&mut frame, false);
        out.extend_from_slice(&frame);
    }
    out
}

#[test]
fn every_codec_round_trips_a_tone_at_every_mix_rate() {
    for mix in [Rate::Hz8000, Rate::Hz16000, Rate::Hz48000] {
        let frame_len = mix.samples(20);
        for codec in [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus] {
            for ptime in [10, 20, 60] {
                let mut enc = LegEncoder::new(codec, ptime, OpusSettings::default(), mix).unwrap();
                let mut dec = LegDecoder::new(codec, mix).unwrap();
                let tone = sine(mix.hz(), 1000.0, -12.0, frame_len * 50);
                let out = round_trip(&mut enc, &mut dec, &tone, frame_len);
                let level = tone_level_dbov(&out[frame_len * 10..], mix.hz(), 1000.0);
                assert!(
                    (level + 12.0).abs() < 1.0,
                    "{codec:?} {ptime} ms at {} Hz: {level}",
                    mix.hz()
                );
            }
        }
    }
}

#[test]
fn a_mix_rate_change_keeps_what_is_buffered() {
    // 8 kHz mix, then 48 kHz: a PCMU stream goes on at the same level, no resampler
    // before and one after.
    let mut enc = LegEncoder::new(Codec::Pcmu, 20, OpusSettings::default(), Rate::Hz8000).unwrap();
    let mut dec = LegDecoder::new(Codec::Pcmu, Rate::Hz8000).unwrap();
    assert!(dec.resampler.is_none() && enc.resampler.is_none());
    let narrow = sine(8000, 1000.0, -12.0, 160 * 25);
    let out = round_trip(&mut enc, &mut dec, &narrow, 160);
    let last = &out[out.len() - 160..];
    assert!((tone_level_dbov(last, 8000, 1000.0) + 12.0).abs() < 1.0);
    enc.set_mix_rate(Rate::Hz48000).unwrap();
    dec.set_mix_rate(Rate::Hz48000).unwrap();
    assert!(dec.resampler.is_some() && enc.resampler.is_some());
    let wide = sine(MIX_RATE, 1000.0, -12.0, MIX_FRAME * 25);
    let out = round_trip(&mut enc, &mut dec, &wide, MIX_FRAME);
    let level = tone_level_dbov(&out[MIX_FRAME * 5..], MIX_RATE, 1000.0);
    assert!((level + 12.0).abs() < 1.0, "{level}");
}

/// Opus packets of `pcm`, 20 ms each.
fn opus_packets(pcm: &[i16]) -> Vec<Vec<u8>> {
    let mut enc = LegEncoder::new(Codec::Opus, 20, OpusSettings::default(), WIDEST_MIX).unwrap();
    let mut out = Vec::new();
    let mut payload = [0u8; 1500];
    for f in pcm.chunks_exact(MIX_FRAME) {
        enc.push_frame(f);
        while let Some(n) = enc.pull_packet(&mut payload) {
            out.push(payload[..n].to_vec());
        }
    }
    out
}

/// Decodes `packets` one per tick; the frames heard.
fn hear(dec: &mut LegDecoder, packets: &[Vec<u8>]) -> Vec<i16> {
    let mut out = Vec::new();
    let mut frame = [0i16; MIX_FRAME];
    for p in packets {
        dec.decode(p);
        dec.frame(&mut frame, false);
        out.extend_from_slice(&frame);
    }
    out
}

#[test]
fn a_quiet_opus_leg_is_not_decoded_until_it_has_voice() {
    let mut dec = LegDecoder::new(Codec::Opus, WIDEST_MIX).unwrap();
    let silence = opus_packets(&[0; MIX_FRAME * 100]);
    let heard = hear(&mut dec, &silence);
    // Half a second decoded, then all but one in PROBE_EVERY skipped.
    let skipped = dec.skipped();
    assert!((65..=74).contains(&skipped), "{skipped} of 100 skipped");
    assert!(heard[MIX_FRAME * 30..].iter().all(|&s| s.abs() < 8));
    // Speech (a tone's onset is voice to the encoder) is decoded at once, at its level.
    let tone = opus_packets(&sine(MIX_RATE, 1000.0, -20.0, MIX_FRAME * 20));
    let heard = hear(&mut dec, &tone);
    assert_eq!(dec.skipped(), skipped);
    let level = tone_level_dbov(&heard[MIX_FRAME * 3..], MIX_RATE, 1000.0);
    assert!((level + 20.0).abs() < 1.0, "{level}");
}

#[test]
fn a_loud_sound_marked_inactive_is_heard_at_the_next_probe() {
    // A steady tone: after its onset libopus' detector calls it background.
    let tone = opus_packets(&sine(MIX_RATE, 1000.0, -20.0, MIX_FRAME * 120));
    let steady: Vec<_> = tone[50..]
        .iter()
        .filter(|p| confab_dsp::opus::voice_inactive(p).is_some())
        .cloned()
        .collect();
    assert!(steady.len() >= 60, "{} inactive tone packets", steady.len());
    let mut dec = LegDecoder::new(Codec::Opus, WIDEST_MIX).unwrap();
    hear(&mut dec, &opus_packets(&[0; MIX_FRAME * 60]));
    let before = dec.skipped();
    assert!(before > 0);
    let heard = hear(&mut dec, &steady);
    let unheard = dec.skipped() - before;
    assert!(
        unheard < u64::from(PROBE_EVERY),
        "{unheard} loud packets skipped"
    );
    let level = tone_level_dbov(&heard[MIX_FRAME * 30..], MIX_RATE, 1000.0);
    assert!((level + 20.0).abs() < 1.5, "{level}");
}

#[test]
fn g722_timestamps_run_at_8000() {
    let new = |codec, ptime| LegEncoder::new(codec, ptime, OpusSettings::default(), WIDEST_MIX);
    assert_eq!(new(Codec::G722, 20).unwrap().packet_ticks(), 160);
    assert_eq!(new(Codec::Opus, 20).unwrap().packet_ticks(), 960);
    assert!(new(Codec::Opus, 30).is_err());
    assert!(new(Codec::Pcmu, 25).is_err());
}

#[test]
fn malformed_opus_is_concealed() {
    let mut dec = LegDecoder::new(Codec::Opus, WIDEST_MIX).unwrap();
    assert_eq!(dec.decode(&[0xFF, 0xFF, 0xFF]), Decoded::Malformed);
    let mut frame = [0i16; MIX_FRAME];
    dec.frame(&mut frame, false);
}
