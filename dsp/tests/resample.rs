//! Resampling between 8, 16 and 48 kHz: pass band kept, stop band removed, whole frames only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use confab_dsp::resample::{Rate, Resampler};
use confab_dsp::signal::{level_dbov, tone_level_dbov};

fn convert(from: Rate, to: Rate, input: &[i16]) -> Vec<i16> {
    let mut r = Resampler::new(from, to).unwrap();
    let frame_in = from.samples(20);
    let frame_out = to.samples(20);
    let mut out = vec![0i16; input.len() / frame_in * frame_out];
    for (i, o) in input
        .chunks_exact(frame_in)
        .zip(out.chunks_exact_mut(frame_out))
    {
        assert_eq!(r.process(i, o).unwrap(), frame_out);
    }
    out
}

#[test]
fn three_khz_survives_48k_to_8k() {
    let input = common::tone(48000, 3000.0, -10.0, 48000);
    let out = convert(Rate::Hz48000, Rate::Hz8000, &input);
    // Skip the first 100 ms (filter delay and start-up).
    common::assert_tone(&out[800..], 8000, 3000.0, -10.0, 0.5, "3 kHz 48k->8k");
}

#[test]
fn six_khz_is_removed_going_to_8k() {
    for from in [Rate::Hz48000, Rate::Hz16000] {
        let input = common::tone(from.hz(), 6000.0, -6.0, from.hz() as usize);
        let out = convert(from, Rate::Hz8000, &input);
        // 6 kHz would alias to 2 kHz; whatever is left anywhere must be 40 dB down.
        let left = level_dbov(&out[800..]);
        assert!(left <= -46.0, "{from:?}: 6 kHz leaves {left:.1} dBov");
    }
}

#[test]
fn every_direction_keeps_an_in_band_tone() {
    let rates = [Rate::Hz8000, Rate::Hz16000, Rate::Hz48000];
    for from in rates {
        for to in rates {
            if from == to {
                continue;
            }
            let input = common::tone(from.hz(), 1000.0, -12.0, from.hz() as usize);
            let out = convert(from, to, &input);
            let skip = to.samples(100);
            let level = tone_level_dbov(&out[skip..], to.hz(), 1000.0);
            assert!(
                (level + 12.0).abs() < 0.5,
                "{from:?}->{to:?}: {level:.2} dBov"
            );
        }
    }
}

#[test]
fn partial_frames_are_refused() {
    let mut r = Resampler::new(Rate::Hz8000, Rate::Hz48000).unwrap();
    let mut out = [0i16; 960];
    assert!(r.process(&[0i16; 100], &mut out).is_err());
    assert!(r.process(&[0i16; 160], &mut out[..100]).is_err());
    assert_eq!(r.process(&[0i16; 160], &mut out).unwrap(), 960);
}

#[test]
fn upsampling_leaves_no_images() {
    // A 3 kHz tone at 8 kHz has images at 5, 11 and 13 kHz once zeros are stuffed in; the
    // interpolation filter must take them 60 dB down and keep the tone.
    let input = common::tone(8000, 3000.0, -6.0, 8000);
    let out = convert(Rate::Hz8000, Rate::Hz48000, &input);
    let tail = &out[4800..];
    let kept = tone_level_dbov(tail, 48000, 3000.0);
    assert!((kept + 6.0).abs() < 0.3, "3 kHz kept at {kept:.2} dBov");
    for image in [5000.0, 11000.0, 13000.0] {
        let level = tone_level_dbov(tail, 48000, image);
        assert!(level < -66.0, "image at {image} Hz: {level:.1} dBov");
    }
}

#[test]
fn telephone_band_is_flat() {
    // 300 Hz to 3 kHz through 8 kHz and back (two filters) within 0.5 dB, 3.4 kHz within 1 dB.
    for (f, within) in [
        (300.0, 0.5),
        (1000.0, 0.5),
        (2000.0, 0.5),
        (3000.0, 0.5),
        (3400.0, 1.0),
    ] {
        let input = common::tone(48000, f, -12.0, 48000);
        let narrow = convert(Rate::Hz48000, Rate::Hz8000, &input);
        let back = convert(Rate::Hz8000, Rate::Hz48000, &narrow);
        let level = tone_level_dbov(&back[4800..], 48000, f);
        assert!((level + 12.0).abs() < within, "{f} Hz: {level:.2} dBov");
    }
}

#[test]
fn the_delay_is_what_it_says() {
    // A click through 8 kHz -> 48 kHz peaks `delay()` samples later.
    let mut r = Resampler::new(Rate::Hz8000, Rate::Hz48000).unwrap();
    let mut input = vec![0i16; 160];
    input[0] = 20_000;
    let mut out = vec![0i16; 960];
    r.process(&input, &mut out).unwrap();
    let peak = (0..out.len())
        .max_by_key(|&i| out[i].unsigned_abs())
        .unwrap();
    assert!(
        peak.abs_diff(r.delay()) <= 3,
        "peak at {peak}, delay {}",
        r.delay()
    );
}
