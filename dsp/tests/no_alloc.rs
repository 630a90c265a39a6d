//! Proof that the per-frame paths allocate nothing: a counting global allocator watches mixing,
//! G.711, G.722, resampling, speech/dominant/DTMF detection, PLC and comfort noise running on
//! frames after their state was set up.
#![allow(unsafe_code)] // the GlobalAlloc impl below only forwards to the system allocator
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use confab_dsp::{cng, dominant, dtmf, g711, g722, mix, plc, resample, signal, vad};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` unchanged; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many allocations it made.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

#[test]
fn per_frame_work_allocates_nothing() {
    // Set-up may allocate.
    let voice8 = signal::sine(8000, 440.0, -12.0, 160);
    let voice16 = signal::sine(16000, 440.0, -12.0, 320);
    let voice48 = signal::sine(48000, 440.0, -12.0, 960);
    let inputs: Vec<Vec<i16>> = (0..100)
        .map(|i| signal::sine(48000, 200.0 + i as f32, -20.0, 960))
        .collect();
    let mut mixer = mix::Mixer::new(960);
    let mut out48 = vec![0i16; 960];
    let mut out16 = vec![0i16; 320];
    let mut out8 = vec![0i16; 160];
    let mut codes = vec![0u8; 320];
    let mut g722_enc = g722::Encoder::new();
    let mut g722_dec = g722::Decoder::new(g722::Mode::Kbps64);
    let mut down =
        resample::Resampler::new(resample::Rate::Hz48000, resample::Rate::Hz8000).unwrap();
    let mut up =
        resample::Resampler::new(resample::Rate::Hz16000, resample::Rate::Hz48000).unwrap();
    let mut speech = vad::SpeechDetector::new(48000, 20, vad::SpeechSettings::default());
    let mut dominant = dominant::DominantSpeaker::new();
    for k in 0..100u32 {
        dominant.add(k);
    }
    let mut dtmf = dtmf::DtmfDetector::new();
    let mut concealer = plc::Concealer::new(8000);
    let mut comfort = cng::ComfortNoise::new(8000, 50, 1);

    for round in 0..3 {
        let n = allocations(|| {
            mixer.clear();
            for input in &inputs[..3] {
                mixer.add(input, mix::Gain::UNITY);
            }
            mixer.render(&mut out48);
            for input in &inputs[..3] {
                mixer.render_minus(input, mix::Gain::UNITY, &mut out48);
            }
            g711::Law::Ulaw.encode(&voice8, &mut codes);
            g711::Law::Alaw.decode(&codes[..160], &mut out8);
            g722_enc.encode(&voice16, &mut codes);
            g722_dec.decode(&codes[..160], &mut out16);
            down.process(&voice48, &mut out8).unwrap();
            up.process(&voice16, &mut out48).unwrap();
            let activity = speech.process(&voice48);
            for k in 0..100u32 {
                dominant.observe(k, activity.active && k == 7);
            }
            dominant.decide();
            dtmf.process(&voice8, |_| {});
            concealer.good(&mut out8);
            concealer.conceal(&mut out8);
            comfort.fill(&mut out8);
        });
        assert_eq!(n, 0, "round {round}: {n} allocations");
    }
}
