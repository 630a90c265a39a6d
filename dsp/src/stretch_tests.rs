use super::*;
use crate::signal::{Noise, sine};
use proptest::prelude::*;

const RATES: [u32; 3] = [8000, 16000, 48000];

/// A 200 Hz sawtooth (period 5 ms), peak 10000: its largest step is the fall at each period.
fn sawtooth(rate: u32, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let phase = (i as f64 * 200.0 / f64::from(rate)).fract();
            (10000.0 * (2.0 * phase - 1.0)).round() as i16
        })
        .collect()
}

/// Ten harmonics of 125 Hz (period 8 ms) at 1/k amplitude with fixed odd phases.
fn harmonics(rate: u32, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let v: f64 = (1..=10)
                .map(|k| {
                    let k = f64::from(k);
                    (2.0 * std::f64::consts::PI * 125.0 * k * t + 0.7 * k * k).sin() / k
                })
                .sum();
            (3000.0 * v).round() as i16
        })
        .collect()
}

/// Voiced-speech-like: glottal pulses at 137 Hz (7.3 ms, not a whole number of samples at any
/// rate), each ringing two damped formants (700 and 1200 Hz).
const PULSE_HZ: f64 = 137.0;
fn pulses(rate: u32, n: usize) -> Vec<i16> {
    let period = 1.0 / PULSE_HZ;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let mut v = 0.0;
            let mut k = (t / period).floor();
            while k >= 0.0 && t - k * period < 0.02 {
                let tau = t - k * period;
                let ring = (2.0 * std::f64::consts::PI * 700.0 * tau).sin()
                    + 0.5 * (2.0 * std::f64::consts::PI * 1200.0 * tau).sin();
                v += (-tau / 0.0015).exp() * ring;
                k -= 1.0;
            }
            (8000.0 * v).round() as i16
        })
        .collect()
}

fn max_step(x: &[i16]) -> i32 {
    x.windows(2)
        .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
        .max()
        .unwrap_or(0)
}

fn corr(a: &[i16], b: &[i16]) -> f64 {
    let (mut c, mut ea, mut eb) = (0f64, 0f64, 0f64);
    for (&p, &q) in a.iter().zip(b) {
        let (p, q) = (f64::from(p), f64::from(q));
        c += p * q;
        ea += p * p;
        eb += q * q;
    }
    c / (ea * eb).sqrt().max(1e-9)
}

/// How far `samples` is from a whole number (>= 1) of `period`s, in samples.
fn off_multiple(samples: usize, period: f64) -> f64 {
    let k = (samples as f64 / period).round().max(1.0);
    (samples as f64 - k * period).abs()
}

struct Signal {
    name: &'static str,
    make: fn(u32, usize) -> Vec<i16>,
    /// Period in seconds.
    period: f64,
    /// Least correlation of the output with the unstretched input over the output's length
    /// (a periodic signal stretched by whole periods is the same signal).
    min_corr: f64,
}

const SIGNALS: [Signal; 3] = [
    Signal {
        name: "sawtooth 200 Hz",
        make: sawtooth,
        period: 0.005,
        min_corr: 0.999,
    },
    Signal {
        name: "harmonics of 125 Hz",
        make: harmonics,
        period: 0.008,
        min_corr: 0.999,
    },
    Signal {
        name: "pulses 137 Hz",
        make: pulses,
        period: 1.0 / PULSE_HZ,
        min_corr: 0.97,
    },
];

/// Length of the blocks stretched in the tests: 40 ms.
fn block(rate: u32) -> usize {
    (rate / 25) as usize
}

/// Measures one stretched block against the input; panics with the figures if out of bounds.
fn check(what: &str, rate: u32, s: &Signal, input: &[i16], out: &[i16], changed: usize) {
    let period = s.period * f64::from(rate);
    let off = off_multiple(changed, period);
    let step_in = max_step(input);
    let step_out = max_step(out);
    let n = out.len().min(input.len());
    let c = corr(&out[..n], &input[..n]);
    eprintln!(
        "{what} {} @{rate}: changed {changed} ({:.2} periods, off {off:.2}), step {step_out}/{step_in}, corr {c:.4}",
        s.name,
        changed as f64 / period
    );
    assert!(changed > 0, "{what} {} @{rate}: not stretched", s.name);
    assert!(
        off <= 1.0 + 0.01 * period,
        "{what} {} @{rate}: off {off}",
        s.name
    );
    assert!(
        f64::from(step_out) <= 1.2 * f64::from(step_in),
        "{what} {} @{rate}: step {step_out} > 1.2 x {step_in}",
        s.name
    );
    assert!(c >= s.min_corr, "{what} {} @{rate}: corr {c}", s.name);
}

#[test]
fn accelerate_removes_whole_periods_seamlessly() {
    for rate in RATES {
        let mut ts = TimeStretcher::new(rate).unwrap();
        let len = block(rate);
        for s in &SIGNALS {
            let input = (s.make)(rate, len);
            let mut audio = input.clone();
            let got = ts.accelerate(&mut audio, len);
            assert!(got <= len && len - got <= ts.max_period());
            check("accelerate", rate, s, &input, &audio[..got], len - got);
            // Before the splice nothing changed; after it, the input moved up unchanged.
            let splice = ts.min_input() / 2;
            let removed = len - got;
            assert_eq!(audio[..splice - removed], input[..splice - removed]);
            assert_eq!(audio[splice..got], input[splice + removed..]);
        }
    }
}

#[test]
fn expand_inserts_whole_periods_seamlessly() {
    for rate in RATES {
        let mut ts = TimeStretcher::new(rate).unwrap();
        let len = block(rate);
        for s in &SIGNALS {
            // The input continues past len so the comparison covers the inserted length too.
            let input = (s.make)(rate, len + ts.max_period());
            let mut audio = input.clone();
            let got = ts.expand(&mut audio, len);
            assert!(got >= len && got - len <= ts.max_period());
            check("expand", rate, s, &input[..len], &audio[..got], got - len);
            let c = corr(&audio[..got], &input[..got]);
            assert!(c >= s.min_corr, "expand {} @{rate}: full corr {c}", s.name);
            let splice = ts.min_input() / 2;
            let added = got - len;
            assert_eq!(audio[..splice], input[..splice]);
            assert_eq!(audio[splice + added..got], input[splice..len]);
        }
    }
}

/// The measures above reject a naive stretch: cutting 11 ms at the splice without looking for the
/// period (or cross-fading) leaves a jump and a signal out of phase with the input.
#[test]
fn the_measures_reject_a_naive_cut() {
    for rate in RATES {
        let len = block(rate);
        for s in &SIGNALS {
            let input = (s.make)(rate, len);
            let cut = (rate / 1000 * 11) as usize;
            let splice = (rate / 1000 * 15) as usize;
            let naive: Vec<i16> = input[..splice]
                .iter()
                .chain(&input[splice + cut..])
                .copied()
                .collect();
            let period = s.period * f64::from(rate);
            let n = naive.len();
            let bad_step = f64::from(max_step(&naive)) > 1.2 * f64::from(max_step(&input));
            let bad_corr = corr(&naive, &input[..n]) < s.min_corr;
            let bad_period = off_multiple(cut, period) > 1.0 + 0.01 * period;
            assert!(bad_corr && bad_period, "{} @{rate}", s.name);
            eprintln!(
                "naive {} @{rate}: step worse {bad_step}, corr {:.3}",
                s.name,
                corr(&naive, &input[..n])
            );
        }
    }
}

#[test]
fn noise_is_left_alone() {
    for rate in RATES {
        let mut ts = TimeStretcher::new(rate).unwrap();
        let len = block(rate);
        for (seed, dbov) in [(1, -50.0), (2, -30.0), (3, -10.0)] {
            let mut noise = Noise::new(seed, dbov);
            let mut input = vec![0i16; len + ts.max_period()];
            noise.fill(&mut input);
            assert_left_alone(&mut ts, &input, len, &format!("noise at {dbov} dBov"));
        }
    }
}

/// `n` samples of a tone at 200 Hz whose frequency rises by `2 * half_sweep` Hz a second.
fn glide(rate: u32, n: usize, half_sweep: f64) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let phase = 2.0 * std::f64::consts::PI * (200.0 * t + half_sweep * t * t);
            (8000.0 * phase.sin()) as i16
        })
        .collect()
}

/// Neither stretch changes the first `len` samples of `input` (nor their length).
fn assert_left_alone(ts: &mut TimeStretcher, input: &[i16], len: usize, what: &str) {
    let mut audio = input.to_vec();
    assert_eq!(ts.accelerate(&mut audio, len), len, "{what}: accelerated");
    assert_eq!(ts.expand(&mut audio, len), len, "{what}: expanded");
    assert_eq!(audio, input, "{what}: changed");
}

/// A tone gliding from 200 to 1000 Hz within the block does not repeat itself, and a voice that
/// starts 20 ms in (an onset, which a cut would smear) does not either: both are left alone.
#[test]
fn a_fast_glide_and_an_onset_are_left_alone() {
    for rate in RATES {
        let mut ts = TimeStretcher::new(rate).unwrap();
        let len = block(rate);
        // Instantaneous frequency 200 + 20000 t Hz.
        let input = glide(rate, len + ts.max_period(), 10000.0);
        assert_left_alone(&mut ts, &input, len, "glide");

        let onset = (rate / 50) as usize;
        let mut input = pulses(rate, len + ts.max_period());
        input[..onset].fill(0);
        assert_left_alone(&mut ts, &input, len, "onset");
    }
}

/// A slow glide (200 to 400 Hz in 40 ms) matches itself one period on well enough to be
/// stretched; the cross-fade keeps the join smooth although no two periods are equal.
#[test]
fn a_slow_glide_is_stretched_smoothly() {
    for rate in RATES {
        let mut ts = TimeStretcher::new(rate).unwrap();
        let len = block(rate);
        let input = glide(rate, len + ts.max_period(), 2500.0);
        let step_in = max_step(&input[..len]);
        let mut audio = input.clone();
        let got = ts.accelerate(&mut audio, len);
        let step_acc = max_step(&audio[..got]);
        let mut audio = input.clone();
        let got2 = ts.expand(&mut audio, len);
        let step_exp = max_step(&audio[..got2]);
        eprintln!(
            "glide @{rate}: -{} +{} steps {step_acc} {step_exp} / {step_in}",
            len - got,
            got2 - len
        );
        assert!(got < len && got2 > len, "{rate}");
        assert!(
            f64::from(step_acc.max(step_exp)) <= 1.2 * f64::from(step_in),
            "{rate}"
        );
    }
}

#[test]
fn silence_and_quiet_noise_are_cut_and_stretched_by_the_longest_period() {
    for rate in RATES {
        let mut ts = TimeStretcher::new(rate).unwrap();
        let len = block(rate);
        let max = ts.max_period();
        let mut audio = vec![0i16; len + max];
        assert_eq!(ts.accelerate(&mut audio, len), len - max);
        assert_eq!(ts.expand(&mut audio, len), len + max);
        assert!(audio.iter().all(|&s| s == 0));

        let mut noise = Noise::new(9, -65.0);
        let mut input = vec![0i16; len + max];
        noise.fill(&mut input);
        let mut audio = input.clone();
        let got = ts.accelerate(&mut audio, len);
        assert_eq!(got, len - max);
        assert!(max_step(&audio[..got]) as f64 <= 1.2 * max_step(&input[..len]) as f64);
        let mut audio = input.clone();
        let got = ts.expand(&mut audio, len);
        assert_eq!(got, len + max);
        assert!(max_step(&audio[..got]) as f64 <= 1.2 * max_step(&input[..len]) as f64);
    }
}

#[test]
fn short_blocks_and_bad_lengths_are_returned_unchanged() {
    let mut ts = TimeStretcher::new(8000).unwrap();
    let tone = sine(8000, 250.0, -20.0, 400);
    let mut audio = tone.clone();
    assert_eq!(ts.accelerate(&mut audio, 239), 239);
    assert_eq!(ts.expand(&mut audio, 239), 239);
    assert_eq!(ts.accelerate(&mut audio, 500), 400);
    assert_eq!(ts.expand(&mut audio, 500), 400);
    // No room for the longest period: expand does nothing.
    assert_eq!(ts.expand(&mut audio, 281), 281);
    assert_eq!(ts.accelerate(&mut audio[..0], 0), 0);
    assert_eq!(audio, tone);
    // The same tone with room is stretched by whole periods (32 samples at 250 Hz).
    assert_eq!(ts.expand(&mut audio, 280) % 32, 280 % 32);
}

#[test]
fn other_rates_are_refused() {
    for rate in [0, 11025, 32000, 44100, 96000] {
        assert!(
            matches!(TimeStretcher::new(rate), Err(Error::InvalidSetting(_))),
            "{rate}"
        );
    }
    assert_eq!(TimeStretcher::new(16000).unwrap().min_input(), 480);
    assert_eq!(TimeStretcher::new(48000).unwrap().max_period(), 720);
}

/// Random content: either noise-like bytes or a period of random shape repeated with noise.
fn content() -> impl Strategy<Value = (u32, Vec<i16>, usize)> {
    let rate = prop::sample::select(RATES.to_vec());
    (
        rate,
        0usize..4000,
        0usize..2000,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(rate, len, extra, periodic, seed)| {
            let f = (rate / 8000) as usize;
            let len = len * f / 2;
            let mut noise = Noise::new(seed, -((seed % 90) as f32));
            let mut audio = vec![0i16; len + extra * f / 4];
            noise.fill(&mut audio);
            if periodic {
                let period = 10 + (seed % 200) as usize * f;
                let mut shape = vec![0i16; period];
                Noise::new(seed ^ 1, -10.0).fill(&mut shape);
                for (i, s) in audio.iter_mut().enumerate() {
                    *s = s.saturating_add(shape[i % period]);
                }
            }
            (rate, audio, len)
        })
}

proptest! {
    #[test]
    fn never_panics_and_stays_in_bounds(
        (rate, input, len) in content(),
        slack in 0usize..4,
    ) {
        let mut ts = TimeStretcher::new(rate).unwrap();
        let max = ts.max_period();
        // One time in four, claim more than the slice holds.
        let len = if slack == 3 { len + input.len() / 2 + 1 } else { len };
        let mut audio = input.clone();
        let got = ts.accelerate(&mut audio, len);
        prop_assert!(got <= audio.len());
        if len <= audio.len() {
            prop_assert!(got <= len && got + max >= len);
        } else {
            prop_assert_eq!(got, audio.len());
        }
        let splice = ts.min_input() / 2;
        if len <= audio.len() && got < len {
            let cut = len - got;
            prop_assert_eq!(&audio[..splice - cut], &input[..splice - cut]);
            prop_assert_eq!(&audio[splice..got], &input[splice + cut..len]);
        } else {
            prop_assert_eq!(&audio, &input);
        }

        let mut audio = input.clone();
        let got = ts.expand(&mut audio, len);
        prop_assert!(got <= audio.len());
        if len <= audio.len() {
            prop_assert!(got >= len && got <= len + max);
        } else {
            prop_assert_eq!(got, audio.len());
        }
        if len <= audio.len() && got > len {
            let added = got - len;
            prop_assert_eq!(&audio[..splice], &input[..splice]);
            prop_assert_eq!(&audio[splice + added..got], &input[splice..len]);
        } else {
            prop_assert_eq!(&audio, &input);
        }
    }
}
