use super::*;
use crate::signal::{Noise, level_dbov, sine};

const RATES: [Rate; 3] = [Rate::Hz8000, Rate::Hz16000, Rate::Hz48000];

/// Level of white noise at `dbov` after five seconds through the denoiser, over the last second.
fn noise_after(rate: Rate, dbov: f32) -> f32 {
    let mut d = Denoiser::new(rate).unwrap();
    let mut noise = Noise::new(7, dbov);
    let mut last = Vec::new();
    for i in 0..300 {
        let mut frame = vec![0i16; rate.samples(20)];
        noise.fill(&mut frame);
        d.process(&mut frame).unwrap();
        if i >= 250 {
            last.extend_from_slice(&frame);
        }
    }
    level_dbov(&last)
}

/// Measured: 8 kHz -94 dBov, 16 kHz -88, 48 kHz -48 (full-band white noise has two thirds of
/// its energy above 8 kHz, where RNNoise's bands are wide and it takes little away).
#[test]
fn white_noise_is_pulled_down_at_every_rate() {
    for (rate, limit) in [
        (Rate::Hz8000, -75.0),
        (Rate::Hz16000, -75.0),
        (Rate::Hz48000, -47.0),
    ] {
        let out = noise_after(rate, -45.0);
        println!("{rate:?}: -45 dBov white noise comes out at {out:.1} dBov");
        assert!(out < limit, "{rate:?}: {out:.1} dBov");
    }
}

#[test]
fn a_loud_tone_keeps_most_of_its_level() {
    for rate in RATES {
        let mut d = Denoiser::new(rate).unwrap();
        let n = rate.samples(20);
        let tone = sine(rate.hz(), 440.0, -20.0, n * 100);
        let mut last = Vec::new();
        for (i, chunk) in tone.chunks_exact(n).enumerate() {
            let mut frame = chunk.to_vec();
            d.process(&mut frame).unwrap();
            if i >= 50 {
                last.extend_from_slice(&frame);
            }
        }
        let out = level_dbov(&last);
        println!("{rate:?}: a -20 dBov 440 Hz tone comes out at {out:.1} dBov");
        assert!(out > -40.0, "{rate:?}: {out:.1} dBov");
    }
}

#[test]
fn silence_and_full_scale_do_not_panic() {
    for rate in RATES {
        let mut d = Denoiser::new(rate).unwrap();
        let n = rate.samples(20);
        for value in [0i16, i16::MAX, i16::MIN] {
            for _ in 0..10 {
                let mut frame = vec![value; n];
                d.process(&mut frame).unwrap();
            }
        }
        let mut square: Vec<i16> = (0..n)
            .map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        d.process(&mut square).unwrap();
        let mut silence = vec![0i16; n];
        for _ in 0..10 {
            silence.fill(0);
            d.process(&mut silence).unwrap();
        }
        assert!(
            level_dbov(&silence) < -90.0,
            "{rate:?}: silence stays silent"
        );
    }
}

#[test]
fn ten_ms_chunks_only() {
    let mut d = Denoiser::new(Rate::Hz8000).unwrap();
    assert!(d.process(&mut [0i16; 80]).is_ok());
    assert!(d.process(&mut [0i16; 100]).is_err());
    assert!(d.process(&mut []).is_err());
}

#[test]
fn set_rate_takes_the_new_rate() {
    let mut d = Denoiser::new(Rate::Hz48000).unwrap();
    d.set_rate(Rate::Hz16000).unwrap();
    assert_eq!(d.rate(), Rate::Hz16000);
    assert!(d.process(&mut [0i16; 320]).is_ok());
    assert!(d.process(&mut [0i16; 960]).is_err() || d.rate() == Rate::Hz16000);
}
