//! Noise suppression in the mix, in fake time: a phone sends a built-in speech prompt at -26 dBov
//! with white noise at -45 dBov; a second phone's decoded audio is measured against the clean
//! prompt, in the pauses (the noise left) and in the speech (how much of it is kept).

use std::sync::Arc;
use std::time::Duration;

use confab_dsp::resample::{Rate, Resampler};
use confab_dsp::signal::{Noise, level_dbov};

use crate::media::codec::Codec;
use crate::media::leg::LegTimers;
use crate::sip::prompts::{Prompt, Prompts};
use crate::testing::room::{JoinAs, Room};

/// 20 ms at 8 kHz.
const FRAME: usize = 160;

/// The clean reference at 8 kHz: a spoken prompt scaled so that its speech frames are at -26
/// dBov, then a second of silence (the pause measured).
fn clean_speech() -> Vec<i16> {
    let prompts = Prompts::embedded().unwrap();
    let wide = prompts.audio(Prompt::Welcome);
    let whole = wide.len() / 480 * 480;
    let mut narrow = vec![0i16; whole / 6];
    let mut down = Resampler::new(Rate::Hz48000, Rate::Hz8000).unwrap();
    down.process(&wide[..whole], &mut narrow).unwrap();
    let active: Vec<i16> = narrow
        .chunks_exact(FRAME)
        .filter(|f| level_dbov(f) > -50.0)
        .flatten()
        .copied()
        .collect();
    let scale = 10f32.powf((-26.0 - level_dbov(&active)) / 20.0);
    let mut clean: Vec<i16> = narrow
        .iter()
        .map(|&s| (f32::from(s) * scale).clamp(-32768.0, 32767.0) as i16)
        .collect();
    clean.truncate(clean.len() / FRAME * FRAME);
    clean.extend(std::iter::repeat_n(0, 8000));
    clean
}

/// Level of the pauses and correlation of the speech with the clean reference, as heard by a
/// second phone after the prompt has looped for a while.
fn through_bridge(suppress: bool) -> (f32, f32) {
    let clean = clean_speech();
    let mut noise = Noise::new(11, -45.0);
    let noisy: Arc<[i16]> = clean
        .iter()
        .map(|&s| s.saturating_add(noise.sample()))
        .collect();
    let mut room = Room::new(3, Duration::from_secs(60));
    let timers = LegTimers {
        auto_gain: false,
        noise_suppression: suppress,
        ..LegTimers::default()
    };
    let talker = room
        .join_as(JoinAs::new(Codec::Pcmu, Some((440.0, -26.0))).timers(timers))
        .unwrap();
    let listener = room
        .join_as(JoinAs::new(Codec::Pcmu, None).timers(timers))
        .unwrap();
    room.members[talker].phone.pcm = Some(noisy);
    let period = clean.len();
    let seconds = 4 * period as u64 / 8000 + 2;
    room.run(Duration::from_secs(seconds));
    let heard = &room.members[listener].phone.heard;
    // The loop starts anywhere in what was heard: the last two periods, aligned on the
    // reference by cross-correlation over one.
    let tail = &heard[heard.len() - 2 * period..];
    let lag = (0..period)
        .max_by_key(|&lag| {
            let c: f64 = clean
                .iter()
                .zip(&tail[lag..])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            c as i64
        })
        .unwrap_or(0);
    let got = &tail[lag..lag + period];
    let mut pause = Vec::new();
    let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
    for (r, g) in clean.chunks_exact(FRAME).zip(got.chunks_exact(FRAME)) {
        if r.iter().all(|&s| s == 0) {
            pause.extend_from_slice(g);
        } else if level_dbov(r) > -40.0 {
            for (&a, &b) in r.iter().zip(g) {
                let (a, b) = (f64::from(a), f64::from(b));
                xy += a * b;
                xx += a * a;
                yy += b * b;
            }
        }
    }
    (level_dbov(&pause), (xy / (xx * yy).sqrt().max(1.0)) as f32)
}

/// Issue 18's test: speech with -45 dBov white noise; with suppression the pauses drop by 10 dB
/// or more and the speech still correlates with the clean prompt (measured: -45.2 -> -65.9 dBov,
/// correlation 0.994 without, 0.973 with).
#[test]
fn noise_in_the_pauses_drops_and_speech_is_kept() {
    let (noise_off, corr_off) = through_bridge(false);
    let (noise_on, corr_on) = through_bridge(true);
    eprintln!(
        "pauses: {noise_off:.1} dBov without, {noise_on:.1} with suppression; speech correlation \
         {corr_off:.3} without, {corr_on:.3} with"
    );
    assert!(
        noise_off > -50.0,
        "the noise reaches the mix: {noise_off:.1}"
    );
    assert!(
        noise_off - noise_on >= 10.0,
        "{noise_off:.1} -> {noise_on:.1} dBov"
    );
    assert!(corr_on >= 0.95, "speech correlation {corr_on:.3}");
}
