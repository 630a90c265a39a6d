//! Runs one confab-dsp kernel for a fixed number of 20 ms frames, for instruction counts:
//!
//! ```sh
//! cargo build --release -p confab-dsp --example kernels
//! valgrind --tool=callgrind target/release/examples/kernels g722 1000
//! ```
//! Instructions per frame = (total of the run - total of a run with 0 frames) / frames.

use confab_dsp::g711::Law;
use confab_dsp::g722;
use confab_dsp::resample::{Rate, Resampler};
use confab_dsp::signal::{Noise, sine};

fn main() {
    let mut args = std::env::args().skip(1);
    let kernel = args.next().unwrap_or_default();
    let frames: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let mut pcm16 = sine(16000, 310.0, -18.0, 320);
    let mut noise = Noise::new(11, -35.0);
    for s in &mut pcm16 {
        *s = s.saturating_add(noise.sample());
    }
    let pcm8: Vec<i16> = pcm16.iter().step_by(2).copied().collect();
    let mut codes = [0u8; 320];
    let mut out = [0i16; 320];
    let mut checksum = 0i64;
    match kernel.as_str() {
        "g722" => {
            let mut enc = g722::Encoder::new();
            let mut dec = g722::Decoder::new(g722::Mode::Kbps64);
            for _ in 0..frames {
                enc.encode(&pcm16, &mut codes);
                dec.decode(&codes[..160], &mut out);
                checksum += i64::from(out[7]);
            }
        }
        "g711" => {
            for _ in 0..frames {
                Law::Ulaw.encode(&pcm8, &mut codes);
                Law::Ulaw.decode(&codes[..160], &mut out);
                checksum += i64::from(out[7]);
            }
        }
        "resample" => {
            // The mixer's round trip for a phone: 8 kHz up to the mix and back down.
            let mut up =
                Resampler::new(Rate::Hz8000, Rate::Hz48000).unwrap_or_else(|e| panic!("{e}"));
            let mut down =
                Resampler::new(Rate::Hz48000, Rate::Hz8000).unwrap_or_else(|e| panic!("{e}"));
            let mut wide = [0i16; 960];
            for _ in 0..frames {
                let _ = up.process(&pcm8, &mut wide);
                let _ = down.process(&wide, &mut out[..160]);
                checksum += i64::from(out[7]);
            }
        }
        "upsample" | "downsample" => {
            let (from, to, input) = if kernel == "upsample" {
                (Rate::Hz8000, Rate::Hz48000, pcm8.clone())
            } else {
                (
                    Rate::Hz48000,
                    Rate::Hz8000,
                    confab_dsp::signal::sine(48000, 310.0, -18.0, 960),
                )
            };
            let mut r = Resampler::new(from, to).unwrap_or_else(|e| panic!("{e}"));
            let mut output = vec![0i16; to.samples(20)];
            for _ in 0..frames {
                let _ = r.process(&input, &mut output);
                checksum += i64::from(output[7]);
            }
        }
        _ => {
            eprintln!("usage: kernels g722|g711|resample|upsample|downsample FRAMES");
            std::process::exit(2);
        }
    }
    println!("{checksum}");
}
