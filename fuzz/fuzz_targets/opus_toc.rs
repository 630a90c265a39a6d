//! The Opus TOC and SILK voice-activity reader (`confab_dsp::opus::voice_inactive`), checked
//! against libopus: a packet it calls voice-inactive is one mono frame of the length it says,
//! and libopus decodes it to exactly that many samples (a leg that trusts it plays that much
//! silence instead of decoding).
//!
//! Input: one Opus packet. One decoder serves every input: the number of samples a packet
//! decodes to does not depend on the packets before it.
#![no_main]

use std::cell::RefCell;

use confab_dsp::opus::{self, MAX_FRAME, OpusDecoder};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static DECODER: RefCell<Option<OpusDecoder>> = RefCell::new(OpusDecoder::new().ok());
}

fuzz_target!(|data: &[u8]| {
    let inactive = opus::voice_inactive(data);
    if let Some(n) = inactive {
        assert!(matches!(n, 480 | 960 | 1920 | 2880), "{n} samples");
        let mut out = [0i16; MAX_FRAME];
        let decoded = DECODER.with_borrow_mut(|d| d.as_mut().map(|d| d.decode(data, &mut out)));
        let Some(decoded) = decoded else {
            panic!("no Opus decoder");
        };
        if let Ok(decoded) = decoded {
            assert_eq!(
                decoded, n,
                "the TOC says {n} samples, libopus decoded {decoded}"
            );
        }
    }
});
