//! WAV files at both ends of a client test: the tone a client sends (made by sox, not by
//! Confab) and the 16-bit PCM recordings clients make of what they heard.

use std::path::Path;
use std::process::Command;

/// A sine WAV made by sox.
pub fn tone_wav(path: &Path, rate: u32, freq: f32, seconds: u32) {
    let ok = Command::new("sox")
        .args(["-D", "-n", "-r", &rate.to_string(), "-c", "1", "-b", "16"])
        .arg(path)
        .args([
            "synth",
            &seconds.to_string(),
            "sine",
            &freq.to_string(),
            "vol",
            "0.3",
        ])
        .status()
        .expect("sox (Debian package sox) is needed for this test")
        .success();
    assert!(ok, "sox failed");
}

/// A 16-bit PCM WAV (first channel): its rate and samples.
pub fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[0..4], b"RIFF", "{}", path.display());
    let mut at = 12;
    let (mut rate, mut channels) = (0u32, 1usize);
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..(at + 8 + len).min(bytes.len())];
        if id == b"fmt " {
            channels = usize::from(u16::from_le_bytes([body[2], body[3]]));
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
        } else if id == b"data" {
            let samples = body
                .chunks_exact(2 * channels)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (rate, samples);
        }
        at += 8 + len + (len % 2);
    }
    panic!("no data chunk in {}", path.display());
}
