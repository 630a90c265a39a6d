//! Helpers shared by confab-dsp's integration tests: test audio and the ffmpeg reference.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Reads a raw s16le file from tests/data.
pub(crate) fn speech(rate: u32) -> Vec<i16> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/data/speech-{}k.s16", rate / 1000));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

pub(crate) fn to_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

pub(crate) fn from_bytes(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Runs ffmpeg with `args`, feeding `input` on stdin and returning stdout. Fails the test with a
/// clear message when ffmpeg is not installed (CI installs the Debian package `ffmpeg`).
pub(crate) fn ffmpeg(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg ({e}): install the Debian package `ffmpeg`"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A sine of `n` samples at `rate`, `freq` Hz and `dbov`.
pub(crate) fn tone(rate: u32, freq: f32, dbov: f32, n: usize) -> Vec<i16> {
    confab_dsp::signal::sine(rate, freq, dbov, n)
}

/// Asserts that `samples` carry `freq` within `tolerance_db` of `dbov` and that it is the
/// dominant component (the total level is within 1 dB of the tone's).
pub(crate) fn assert_tone(
    samples: &[i16],
    rate: u32,
    freq: f32,
    dbov: f32,
    tolerance_db: f32,
    what: &str,
) {
    let got = confab_dsp::signal::tone_level_dbov(samples, rate, freq);
    let total = confab_dsp::signal::level_dbov(samples);
    assert!(
        (got - dbov).abs() <= tolerance_db,
        "{what}: {freq} Hz at {got:.2} dBov, expected {dbov}"
    );
    assert!(
        (total - got).abs() <= 1.0,
        "{what}: total {total:.2} dBov vs tone {got:.2} dBov"
    );
}

/// Asserts two sequences are equal, reporting the first difference and how many there are
/// (rather than printing megabytes).
pub(crate) fn assert_same<T: PartialEq + std::fmt::Debug>(ours: &[T], reference: &[T], what: &str) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths differ");
    let differences: Vec<usize> = (0..ours.len())
        .filter(|&i| ours[i] != reference[i])
        .collect();
    if let Some(&first) = differences.first() {
        panic!(
            "{what}: {} of {} differ; first at index {first}: ours {:?}, reference {:?}",
            differences.len(),
            ours.len(),
            ours[first],
            reference[first]
        );
    }
}
