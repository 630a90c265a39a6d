//! Per-20 ms-frame costs of confab-dsp: `cargo bench -p confab-dsp`.
//! Figures and the machine they were measured on are in BENCHMARKS.md.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

use confab_dsp::denoise::Denoiser;
use confab_dsp::dtmf::DtmfDetector;
use confab_dsp::g711::Law;
use confab_dsp::mix::{Gain, Mixer, top_talkers};
use confab_dsp::opus::{FRAME_20MS, MAX_FRAME, MAX_PACKET, OpusDecoder, OpusEncoder, OpusSettings};
use confab_dsp::resample::{Rate, Resampler};
use confab_dsp::signal::{Noise, sine};
use confab_dsp::stretch::TimeStretcher;
use confab_dsp::vad::{SpeechDetector, SpeechSettings};
use confab_dsp::{g722, plc};

fn voice(rate: u32) -> Vec<i16> {
    // A tone plus noise: keeps the adaptive codecs and detectors busy like speech does.
    let mut v = sine(rate, 310.0, -18.0, (rate / 50) as usize);
    let mut noise = Noise::new(11, -35.0);
    for s in &mut v {
        *s = s.saturating_add(noise.sample());
    }
    v
}

fn codecs(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec_20ms");
    let pcm8 = voice(8000);
    let mut codes = [0u8; 320];
    let mut out8 = [0i16; 160];
    for law in [Law::Ulaw, Law::Alaw] {
        g.bench_function(format!("{law:?}_encode"), |b| {
            b.iter(|| law.encode(black_box(&pcm8), &mut codes))
        });
        law.encode(&pcm8, &mut codes);
        g.bench_function(format!("{law:?}_decode"), |b| {
            b.iter(|| law.decode(black_box(&codes[..160]), &mut out8))
        });
    }

    let pcm16 = voice(16000);
    let mut out16 = [0i16; 320];
    let mut enc = g722::Encoder::new();
    g.bench_function("g722_encode", |b| {
        b.iter(|| enc.encode(black_box(&pcm16), &mut codes))
    });
    let mut dec = g722::Decoder::new(g722::Mode::Kbps64);
    enc.encode(&pcm16, &mut codes);
    g.bench_function("g722_decode", |b| {
        b.iter(|| dec.decode(black_box(&codes[..160]), &mut out16))
    });
    g.bench_function("g722_encode_decode", |b| {
        b.iter(|| {
            enc.encode(black_box(&pcm16), &mut codes);
            dec.decode(&codes[..160], &mut out16)
        })
    });

    let pcm48 = voice(48000);
    let mut packet = [0u8; MAX_PACKET];
    let mut out48 = [0i16; MAX_FRAME];
    for complexity in [0u8, 5, 10] {
        let mut enc = OpusEncoder::new(OpusSettings {
            complexity,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        g.bench_function(format!("opus_encode_c{complexity}"), |b| {
            b.iter(|| enc.encode(black_box(&pcm48), &mut packet))
        });
    }
    let mut enc = OpusEncoder::new(OpusSettings::default()).unwrap_or_else(|e| panic!("{e}"));
    let n = enc
        .encode(&pcm48, &mut packet)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut dec = OpusDecoder::new().unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("opus_decode", |b| {
        b.iter(|| dec.decode(black_box(&packet[..n]), &mut out48))
    });
    g.bench_function("opus_conceal", |b| b.iter(|| dec.conceal(&mut out48)));

    let mut concealer = plc::Concealer::new(8000);
    let mut frame = pcm8.clone();
    concealer.good(&mut frame);
    g.bench_function("g711_plc_first_lost_frame", |b| {
        b.iter(|| {
            concealer.good(&mut frame);
            concealer.conceal(&mut out8);
        })
    });
    g.finish();
}

fn resampling(c: &mut Criterion) {
    let mut g = c.benchmark_group("resample_20ms");
    for (from, to) in [
        (Rate::Hz8000, Rate::Hz48000),
        (Rate::Hz48000, Rate::Hz8000),
        (Rate::Hz16000, Rate::Hz48000),
        (Rate::Hz48000, Rate::Hz16000),
        (Rate::Hz8000, Rate::Hz16000),
        (Rate::Hz16000, Rate::Hz8000),
    ] {
        let mut r = Resampler::new(from, to).unwrap_or_else(|e| panic!("{e}"));
        let input = voice(from.hz());
        let mut output = vec![0i16; to.samples(20)];
        g.bench_function(
            format!("{}k_to_{}k", from.hz() / 1000, to.hz() / 1000),
            |b| b.iter(|| r.process(black_box(&input), &mut output)),
        );
    }
    g.finish();
}

fn mixing(c: &mut Criterion) {
    let mut g = c.benchmark_group("mix_minus_20ms_48k_3_talkers");
    for inputs in [10usize, 100, 1000] {
        let frames: Vec<Vec<i16>> = (0..inputs)
            .map(|i| sine(48000, 200.0 + i as f32, -20.0, FRAME_20MS))
            .collect();
        let levels: Vec<u8> = (0..inputs).map(|i| (20 + (i * 37) % 100) as u8).collect();
        let mut mixer = Mixer::new(FRAME_20MS);
        let mut shared = vec![0i16; FRAME_20MS];
        let mut own = vec![vec![0i16; FRAME_20MS]; 3];
        let mut talkers = [(0usize, 0u8); 3];
        g.bench_with_input(BenchmarkId::from_parameter(inputs), &inputs, |b, _| {
            b.iter(|| {
                let n = top_talkers(levels.iter().copied().enumerate(), &mut talkers);
                mixer.clear();
                for &(i, _) in &talkers[..n] {
                    mixer.add(&frames[i], Gain::UNITY);
                }
                mixer.render(&mut shared);
                for (k, &(i, _)) in talkers[..n].iter().enumerate() {
                    mixer.render_minus(&frames[i], Gain::UNITY, &mut own[k]);
                }
                black_box(&shared);
            })
        });
    }
    g.finish();
}

fn detection(c: &mut Criterion) {
    let mut g = c.benchmark_group("detect_20ms");
    for rate in [8000u32, 48000] {
        let frame = voice(rate);
        let mut d = SpeechDetector::new(rate, 20, SpeechSettings::default());
        g.bench_function(format!("speech_{}k", rate / 1000), |b| {
            b.iter(|| d.process(black_box(&frame)))
        });
    }
    let frame = voice(8000);
    let mut dtmf = DtmfDetector::new();
    g.bench_function("dtmf_8k", |b| {
        b.iter(|| dtmf.process(black_box(&frame), |_| {}))
    });
    g.finish();
}

/// RNNoise on one leg's 20 ms (two of its 10 ms frames; at 8 kHz with the resampling to 48 kHz
/// and back).
fn denoising(c: &mut Criterion) {
    let mut g = c.benchmark_group("denoise_20ms");
    for rate in [Rate::Hz8000, Rate::Hz48000] {
        let frame = voice(rate.hz());
        let mut work = frame.clone();
        let Ok(mut d) = Denoiser::new(rate) else {
            continue;
        };
        g.bench_function(format!("rnnoise_{}k", rate.hz() / 1000), |b| {
            b.iter(|| {
                work.copy_from_slice(&frame);
                d.process(black_box(&mut work))
            })
        });
    }
    g.finish();
}

/// One time-stretch step on a 30 ms block of a 125 Hz voiced-like tone (a period is found, so
/// the search, the cross-fade and the shift all run). Each call works on a fresh copy.
fn stretching(c: &mut Criterion) {
    let mut g = c.benchmark_group("stretch_30ms");
    for rate in [8000u32, 48000] {
        let Ok(mut ts) = TimeStretcher::new(rate) else {
            continue;
        };
        let len = ts.min_input();
        let mut block: Vec<i16> = sine(rate, 125.0, -20.0, len + ts.max_period());
        for (s, h) in block.iter_mut().zip(sine(rate, 375.0, -26.0, len)) {
            *s = s.saturating_add(h);
        }
        let mut work = block.clone();
        g.bench_function(format!("accelerate_{}k", rate / 1000), |b| {
            b.iter(|| {
                work.copy_from_slice(&block);
                ts.accelerate(black_box(&mut work), len)
            })
        });
        g.bench_function(format!("expand_{}k", rate / 1000), |b| {
            b.iter(|| {
                work.copy_from_slice(&block);
                ts.expand(black_box(&mut work), len)
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches, codecs, resampling, mixing, detection, denoising, stretching
);
criterion_main!(benches);
