//! Finding a known piece of audio (a prompt) in what a client decoded: the prompt is brought to
//! the client's rate (windowed-sinc low-pass, integer decimation) and slid along the recording;
//! at each lag the normalized cross-correlation (Pearson's r of the prompt and the stretch of
//! recording under it) is computed with an FFT and running sums. A peak near 1 means the
//! prompt is there sample for sample (up to level and the codec's noise); other speech stays
//! well below. Written here, not with Confab's DSP, so the measure does not trust the bridge.

use std::path::{Path, PathBuf};

/// The recording baresip is writing (its sndfile module's `*-dec.wav` under `dir/rec`), if
/// there is one yet.
pub fn decoded_wav(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("rec"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
}

/// What baresip has decoded so far: (rate, samples), also while it is still writing the file
/// (the data chunk's length is only set when the file is closed, so the samples are read to
/// the end of the file, whole samples only). `None` before there is a recording.
pub fn heard_so_far(dir: &Path) -> Option<(u32, Vec<i16>)> {
    let bytes = std::fs::read(decoded_wav(dir)?).ok()?;
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" {
        return None;
    }
    let mut at = 12;
    let (mut rate, mut channels) = (0u32, 1usize);
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        if id == b"data" {
            let body = &bytes[at + 8..];
            // Closed, the chunk says how long it is; still open, it says 0 (or too much).
            let body = if len > 0 && len <= body.len() {
                &body[..len]
            } else {
                body
            };
            let samples = body
                .chunks_exact(2 * channels)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (rate > 0).then_some((rate, samples));
        }
        let body = bytes.get(at + 8..at + 8 + len)?;
        if id == b"fmt " && body.len() >= 8 {
            channels = usize::from(u16::from_le_bytes([body[2], body[3]])).max(1);
            rate = u32::from_le_bytes(body[4..8].try_into().ok()?);
        }
        at += 8 + len + (len % 2);
    }
    None
}

/// `samples` at `from` Hz brought to `to` Hz (`from` a multiple of `to`): a Blackman-windowed
/// sinc low-pass at 90 % of the new Nyquist frequency, then every `from / to`-th sample.
pub fn decimate(samples: &[i16], from: u32, to: u32) -> Vec<f64> {
    assert!(
        to > 0 && from.is_multiple_of(to),
        "{from} Hz to {to} Hz is not an integer step"
    );
    let factor = (from / to) as usize;
    let input: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
    if factor == 1 {
        return input;
    }
    let half = 16 * factor;
    let cutoff = 0.45 / factor as f64; // cycles per input sample
    let taps: Vec<f64> = (0..=2 * half)
        .map(|i| {
            let n = i as f64 - half as f64;
            let sinc = if n == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * std::f64::consts::PI * cutoff * n).sin() / (std::f64::consts::PI * n)
            };
            let w = 2.0 * std::f64::consts::PI * i as f64 / (2 * half) as f64;
            sinc * (0.42 - 0.5 * w.cos() + 0.08 * (2.0 * w).cos())
        })
        .collect();
    (0..input.len().div_ceil(factor))
        .map(|o| {
            let centre = o * factor;
            taps.iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    let j = (centre + i).checked_sub(half)?;
                    input.get(j).map(|x| x * t)
                })
                .sum()
        })
        .collect()
}

/// In-place radix-2 FFT of (re, im); `inverse` without the 1/n scale.
fn fft(re: &mut [f64], im: &mut [f64], inverse: bool) {
    let n = re.len();
    assert!(n.is_power_of_two() && im.len() == n);
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let sign = if inverse { 1.0 } else { -1.0 };
    let mut len = 2;
    while len <= n {
        let angle = sign * 2.0 * std::f64::consts::PI / len as f64;
        let (w_re, w_im) = (angle.cos(), angle.sin());
        for start in (0..n).step_by(len) {
            let (mut c_re, mut c_im) = (1.0f64, 0.0f64);
            for k in 0..len / 2 {
                let (a, b) = (start + k, start + k + len / 2);
                let t_re = re[b] * c_re - im[b] * c_im;
                let t_im = re[b] * c_im + im[b] * c_re;
                re[b] = re[a] - t_re;
                im[b] = im[a] - t_im;
                re[a] += t_re;
                im[a] += t_im;
                let next = c_re * w_re - c_im * w_im;
                c_im = c_re * w_im + c_im * w_re;
                c_re = next;
            }
        }
        len <<= 1;
    }
}

/// The best match of a template in a recording.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Match {
    /// Normalized cross-correlation at the best lag (-1..1; 0 when nothing fits).
    pub peak: f64,
    /// Where in the searched samples the template starts at that lag.
    pub at: usize,
}

/// Stretches of recording quieter than this (RMS, 16-bit units; about -60 dBFS) are taken as
/// silence and match nothing (their correlation would be noise over noise).
const QUIET_RMS: f64 = 33.0;

/// The same as [`find`], but the template may also hang over either end of `heard` (taken as
/// silent there): for a prompt that must not be there, so that a stretch shorter than the
/// prompt is still searched (`at` is 0 when it hangs over the start).
pub fn find_anywhere(template: &[f64], heard: &[i16]) -> Match {
    let pad = vec![0i16; template.len()];
    let padded: Vec<i16> = pad.iter().chain(heard).chain(&pad).copied().collect();
    let found = find(template, &padded);
    Match {
        at: found.at.saturating_sub(template.len()),
        ..found
    }
}

/// The normalized cross-correlation of `template` slid along `heard` (wholly inside it), at
/// its highest.
pub fn find(template: &[f64], heard: &[i16]) -> Match {
    let m = template.len();
    let n = heard.len();
    let none = Match { peak: 0.0, at: 0 };
    if m == 0 || n < m {
        return none;
    }
    let mean = template.iter().sum::<f64>() / m as f64;
    let t: Vec<f64> = template.iter().map(|v| v - mean).collect();
    let t_norm = t.iter().map(|v| v * v).sum::<f64>().sqrt();
    if t_norm == 0.0 {
        return none;
    }
    // r[k] = sum_i t[i] x[k+i], from X * conj(T); lags up to n - m never wrap.
    let size = n.next_power_of_two();
    let (mut x_re, mut x_im) = (vec![0.0; size], vec![0.0; size]);
    for (d, &s) in x_re.iter_mut().zip(heard) {
        *d = f64::from(s);
    }
    let (mut t_re, mut t_im) = (vec![0.0; size], vec![0.0; size]);
    t_re[..m].copy_from_slice(&t);
    fft(&mut x_re, &mut x_im, false);
    fft(&mut t_re, &mut t_im, false);
    for k in 0..size {
        let (a, b, c, d) = (x_re[k], x_im[k], t_re[k], -t_im[k]);
        x_re[k] = a * c - b * d;
        x_im[k] = a * d + b * c;
    }
    fft(&mut x_re, &mut x_im, true);
    // Running sums of x and x² give each stretch's variance (the template has zero mean).
    let mut sum = vec![0.0f64; n + 1];
    let mut sq = vec![0.0f64; n + 1];
    for (i, &s) in heard.iter().enumerate() {
        let v = f64::from(s);
        sum[i + 1] = sum[i] + v;
        sq[i + 1] = sq[i] + v * v;
    }
    let mut best = none;
    for k in 0..=n - m {
        let s = sum[k + m] - sum[k];
        let variance = (sq[k + m] - sq[k] - s * s / m as f64).max(0.0);
        if variance / (m as f64) < QUIET_RMS * QUIET_RMS {
            continue;
        }
        let r = x_re[k] / size as f64 / (t_norm * variance.sqrt());
        if r > best.peak {
            best = Match { peak: r, at: k };
        }
    }
    best
}

/// Where `prompt` in `language` (the built-in prompts) is best found in `heard` (8 kHz) from
/// sample `from` on: the peak of the normalized cross-correlation.
pub fn found(
    heard: &[i16],
    from: usize,
    language: &str,
    prompt: confab::sip::prompts::Prompt,
) -> f64 {
    let prompts = confab::sip::prompts::Prompts::embedded_language(language).unwrap();
    let template = decimate(&prompts.audio(prompt), confab::media::codec::MIX_RATE, 8000);
    find(&template, &heard[from.min(heard.len())..]).peak
}

/// Keeps `caller` sending its frames to `media` every 20 ms and decoding what comes, for `time`.
pub fn talk(caller: &mut super::Endpoint, media: std::net::SocketAddr, time: std::time::Duration) {
    let start = std::time::Instant::now();
    let mut next = start;
    while start.elapsed() < time {
        caller.send_frame(media);
        caller.receive();
        next += std::time::Duration::from_millis(20);
        if let Some(w) = next.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chirp(rate: u32, seconds: f64, seed: f64) -> Vec<i16> {
        (0..(f64::from(rate) * seconds) as usize)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                let f = 300.0 + 900.0 * (seed * t).sin().abs();
                (8000.0 * (2.0 * std::f64::consts::PI * f * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn finds_a_template_where_it_is_and_not_another() {
        let one = chirp(48_000, 0.6, 3.0);
        let other = chirp(48_000, 0.6, 11.0);
        let template = decimate(&one, 48_000, 8_000);
        let mut heard = vec![0i16; 8_000];
        heard.extend(
            decimate(&one, 48_000, 8_000)
                .iter()
                .map(|v| (v * 0.5) as i16),
        );
        heard.extend(vec![0i16; 4_000]);
        let there = find(&template, &heard);
        assert!(there.peak > 0.99, "{there:?}");
        assert!(there.at.abs_diff(8_000) <= 1, "{there:?}");
        let elsewhere = find(&decimate(&other, 48_000, 8_000), &heard);
        assert!(elsewhere.peak < 0.5, "{elsewhere:?}");
        // Longer than what is searched: nothing inside, something hanging over the end.
        let cut = &heard[8_000..10_000];
        assert_eq!(find(&template, cut).peak, 0.0);
        let over = find_anywhere(&template, cut);
        assert!(over.peak > 0.5 && over.peak < 0.9, "{over:?}");
    }
}
