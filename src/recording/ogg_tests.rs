//! The Ogg writer's output as ffmpeg reads it: the right duration, no complaint.

use std::process::Command;

use confab_dsp::opus::{OpusEncoder, OpusSettings};

use super::{OggOpusWriter, PACKETS_PER_PAGE, crc};

fn have(program: &str) -> bool {
    Command::new(program).arg("-version").output().is_ok()
}

/// `seconds` of a 440 Hz tone, encoded and written as Ogg Opus.
fn tone_file(path: &std::path::Path, frames: usize, finish: bool) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = OpusEncoder::new(OpusSettings::default()).unwrap();
    let mut w = OggOpusWriter::new(file, 7, 312, "confab test").unwrap();
    let mut packet = [0u8; 1275];
    let mut pcm = [0i16; 960];
    for f in 0..frames {
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (f * 960 + i) as f32 / 48_000.0;
            *s = (8000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16;
        }
        let n = enc.encode(&pcm, &mut packet).unwrap();
        w.packet(&packet[..n], 960).unwrap();
    }
    if finish {
        w.finish().unwrap();
    }
}

/// Samples ffmpeg decodes from `path` (48 kHz mono s16), and what it said on stderr.
fn decode(path: &std::path::Path) -> (usize, String) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .unwrap();
    (
        out.stdout.len() / 2,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn crc_matches_the_ogg_polynomial() {
    // CRC-32/POSIX (0x765e7680 for "123456789") without its final xor: Ogg's CRC.
    assert_eq!(crc(b"123456789"), 0x89a1_897f);
    assert_eq!(crc(b""), 0);
}

#[test]
fn ffmpeg_decodes_the_written_duration() {
    if !have("ffmpeg") {
        eprintln!("SKIP: no ffmpeg");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.opus");
    // 3 s: 150 packets, three pages of audio.
    tone_file(&path, 150, true);
    let (samples, errors) = decode(&path);
    assert!(errors.trim().is_empty(), "ffmpeg: {errors}");
    // The pre-skip (312) is taken off the start.
    let expected = 150 * 960 - 312;
    assert!(
        samples.abs_diff(expected) <= 960,
        "{samples} samples, expected about {expected}"
    );
}

#[test]
fn an_unfinished_file_is_playable_up_to_its_last_page() {
    if !have("ffmpeg") {
        eprintln!("SKIP: no ffmpeg");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.opus");
    // 2.6 s given, never finished (a kill -9): the 2 s on whole pages are there.
    tone_file(&path, 130, false);
    let (samples, _) = decode(&path);
    let pages = 130 / PACKETS_PER_PAGE * PACKETS_PER_PAGE;
    assert!(
        samples + 312 >= pages * 960 - 960,
        "{samples} samples decoded from {pages} packets on whole pages"
    );
}
