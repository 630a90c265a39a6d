//! Join tokens and the passes of handed-on callers: `webrtc::token::TokenSigner::verify` and
//! `sip::hand_off::check`, what a WHIP client's bearer and a caller's Request-URI carry.
//!
//! Input: `[pick][token text]`; `pick` chooses the meeting and the time. Checked besides "no
//! panic": what verifies is for that meeting and unexpired; a token made of the input's text
//! (as name and language) verifies to the same claims, and with one character changed never
//! does; a pass is a token marked as one that lives at most a minute and a half.
#![no_main]

use std::sync::OnceLock;

use confab::sip::hand_off;
use confab::webrtc::token::{Claims, TokenSigner};
use libfuzzer_sys::fuzz_target;

fn signer() -> &'static TokenSigner {
    static SIGNER: OnceLock<TokenSigner> = OnceLock::new();
    SIGNER.get_or_init(|| TokenSigner::new(Some("fuzz secret")).expect("a signer"))
}

const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let now = NOW + u64::from(pick);
    let meeting = if pick & 1 == 0 { "1234" } else { "98765" };
    let signer = signer();

    if let Ok(claims) = signer.verify(&text, meeting, now) {
        assert_eq!(claims.cid, meeting);
        assert!(claims.exp > now, "expired yet verified");
    }
    if let Some(handed) = hand_off::check(signer, &text, meeting, now) {
        let claims = signer.verify(&text, meeting, now).expect("a pass is a token");
        assert!(claims.pass, "a join token taken for a pass");
        assert!(claims.exp <= now + hand_off::VALID_FOR_SECS + hand_off::CLOCK_SKEW_SECS);
        assert_eq!(handed.role, claims.role());
        assert_eq!(handed.language, claims.language);
    }

    // The input as claims: what is signed verifies to itself.
    let short: String = text.chars().take(64).collect();
    let claims = Claims {
        cid: meeting.to_owned(),
        name: short.clone(),
        role: if pick & 2 == 0 { "leader" } else { "attendee" }.to_owned(),
        exp: now + 1 + u64::from(pick % 90),
        identity: (pick & 4 != 0).then(|| short.clone()),
        language: (pick & 8 != 0).then_some(short),
        pass: pick & 16 != 0,
    };
    let token = signer.sign(&claims);
    assert_eq!(signer.verify(&token, meeting, now), Ok(claims.clone()));
    assert_eq!(
        hand_off::check(signer, &token, meeting, now).is_some(),
        claims.pass && claims.exp <= now + hand_off::VALID_FOR_SECS + hand_off::CLOCK_SKEW_SECS
    );
    // One character changed (hex for hex, or the dot): never verifies.
    let at = usize::from(pick) % token.len();
    let mut changed: Vec<u8> = token.clone().into_bytes();
    changed[at] = match changed[at] {
        b'0' => b'1',
        b'.' => b'0',
        _ => b'0',
    };
    let changed = String::from_utf8(changed).expect("ASCII");
    assert!(signer.verify(&changed, meeting, now).is_err(), "a changed token verified");
});
