//! The audio checks of the client tests: a tone's share of the power in 0.5 s Hann-windowed
//! blocks, measured here (not with Confab's own DSP), and INTEROP.md's rule for whether a
//! tone is present or absent.

/// Per 0.5 s block: the share (dB) of the block's power that is at `freq` (Hann window).
pub fn tone_shares(samples: &[i16], rate: u32, freq: f32) -> Vec<f32> {
    let n = (rate / 2) as usize;
    let window: Vec<f64> = (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
        .collect();
    let w_sum: f64 = window.iter().sum();
    let w_sq: f64 = window.iter().map(|w| w * w).sum();
    let step = 2.0 * std::f64::consts::PI * f64::from(freq) / f64::from(rate);
    samples
        .chunks_exact(n)
        .map(|block| {
            let (mut re, mut im, mut energy) = (0.0f64, 0.0f64, 0.0f64);
            for (i, (&s, w)) in block.iter().zip(&window).enumerate() {
                let x = f64::from(s) * w;
                re += x * (step * i as f64).cos();
                im -= x * (step * i as f64).sin();
                energy += x * x;
            }
            // A sine of amplitude A gives |X| = A/2 * sum(w): its power A^2/2 is
            // 2|X|^2 / sum(w)^2; the block's power is energy / sum(w^2).
            let tone = 2.0 * (re * re + im * im) / (w_sum * w_sum);
            let total = energy / w_sq;
            if total < 1.0 {
                return -100.0;
            }
            (10.0 * (tone / total).log10()) as f32
        })
        .collect()
}

fn percentile(values: &[f32], p: f64) -> f32 {
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    if v.is_empty() {
        return -100.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// INTEROP.md's rule: present = median share >= -15 dB.
pub fn present(shares: &[f32]) -> bool {
    percentile(shares, 0.5) >= -15.0
}

/// Absent = 90th percentile share <= -30 dB.
pub fn absent(shares: &[f32]) -> bool {
    percentile(shares, 0.9) <= -30.0
}

pub fn describe(shares: &[f32]) -> String {
    format!(
        "median {:.1} dB, p90 {:.1} dB over {} blocks",
        percentile(shares, 0.5),
        percentile(shares, 0.9),
        shares.len()
    )
}
