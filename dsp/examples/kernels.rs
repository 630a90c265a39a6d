//! Runs one confab-dsp kernel for a fixed number of 20 ms frames, for instruction counts:
//!
//! ```sh
//! cargo build --release -p confab-dsp --example kernels
//! valgrind --tool=callgrind target/release/examples/kernels g722 1000
//! ```
//! Instructions per frame = (total of the run - total of a run with 0 frames) / frames.

use confab_dsp::g711::Law;
use confab_dsp::g722;
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
        _ => {
            eprintln!("usage: kernels g722|g711 FRAMES");
            std::process::exit(2);
        }
    }
    println!("{checksum}");
}
