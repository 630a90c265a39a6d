//! Detectors on real speech: no DTMF digits are found in speech, digits survive G.711, and
//! speech is detected as talking.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use confab_dsp::dtmf::{DtmfDetector, DtmfEvent};
use confab_dsp::g711::Law;
use confab_dsp::tone::ToneGenerator;
use confab_dsp::vad::{SpeechDetector, SpeechSettings};

fn digits(samples: &[i16]) -> String {
    let mut d = DtmfDetector::new();
    let mut found = String::new();
    for chunk in samples.chunks(160) {
        d.process(chunk, |e| {
            if let DtmfEvent::Pressed(digit) = e {
                found.push(digit);
            }
        });
    }
    found
}

#[test]
fn no_digits_in_speech() {
    let speech = common::speech(8000);
    assert_eq!(digits(&speech), "");
    // Louder and quieter too.
    for gain in [0.25f32, 3.0] {
        let scaled: Vec<i16> = speech
            .iter()
            .map(|&s| (f32::from(s) * gain).clamp(-32768.0, 32767.0) as i16)
            .collect();
        assert_eq!(digits(&scaled), "", "gain {gain}");
    }
}

#[test]
fn digits_survive_g711_and_speech_around_them() {
    let speech = common::speech(8000);
    let mut signal = speech[..16000].to_vec();
    for d in "2580#".chars() {
        let mut tone = vec![0i16; 640];
        ToneGenerator::dtmf(8000, d, -12.0)
            .unwrap()
            .fill(&mut tone[..480]);
        signal.extend(tone);
    }
    signal.extend_from_slice(&speech[16000..32000]);
    for law in [Law::Ulaw, Law::Alaw] {
        let mut codes = vec![0u8; signal.len()];
        law.encode(&signal, &mut codes);
        let mut decoded = vec![0i16; signal.len()];
        law.decode(&codes, &mut decoded);
        assert_eq!(digits(&decoded), "2580#", "{law:?}");
    }
}

#[test]
fn speech_is_talking_and_quiet_is_not() {
    let speech = common::speech(8000);
    let mut d = SpeechDetector::new(8000, 20, SpeechSettings::default());
    let mut silence_then_speech = vec![0i16; 8000];
    silence_then_speech.extend_from_slice(&speech);
    let talking: Vec<bool> = silence_then_speech
        .chunks_exact(160)
        .map(|f| d.process(f).talking)
        .collect();
    assert!(!talking[..50].iter().any(|&t| t), "talking in silence");
    let speech_frames = &talking[50..];
    let share = speech_frames.iter().filter(|&&t| t).count() as f32 / speech_frames.len() as f32;
    assert!(
        share > 0.8,
        "talking in only {:.0} % of speech",
        share * 100.0
    );
    // Speech starts within the first 100 ms of the file; the onset must follow within 60 ms.
    let first_sound = speech.iter().position(|s| s.abs() > 300).unwrap() / 160;
    let onset = speech_frames.iter().position(|&t| t).unwrap();
    assert!(
        onset <= first_sound + 3,
        "onset frame {onset}, sound from frame {first_sound}"
    );
}

#[test]
fn known_silence_decides_as_scanned_silence() {
    // Speech, then digital silence: a detector told the frame is zeros decides exactly as one
    // that scans it, frame by frame (also while its high-pass is still settling).
    let speech = common::speech(8000);
    let mut scanned = SpeechDetector::new(8000, 20, SpeechSettings::default());
    let mut told = SpeechDetector::new(8000, 20, SpeechSettings::default());
    let zeros = vec![0i16; 160];
    for frame in speech.chunks_exact(160).take(100) {
        assert_eq!(scanned.process(frame), told.process(frame));
    }
    for _ in 0..200 {
        assert_eq!(scanned.process(&zeros), told.process_silence(&zeros));
    }
}
