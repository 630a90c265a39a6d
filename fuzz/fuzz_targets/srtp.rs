//! SRTP and SRTCP (`media::srtp`, SDES keys) with a fixed key pair: packets from the wire
//! unprotected as they come, and packets protected by the peer's session first (so that the
//! fuzzer reaches decryption, the replay window and the rollover counter), some with one bit
//! flipped on the way.
//!
//! Input: `[suite][records]`, a record `[op][flip][len lo][len hi][len bytes]`. `op & 3`: 0
//! SRTP from the wire, 1 SRTCP from the wire, 2 RTP protected by the peer, 3 RTCP protected by
//! the peer; `op & 4`: flip bit `flip % 8` of byte `flip` (modulo the length) after protection.
//! Properties: no panic; a packet with a flipped bit is refused; a packet that passes is the
//! one the peer protected.
#![no_main]

use confab::media::srtp::{KeyMaterial, SrtpKeys, SrtpSession, SrtpSuite};
use libfuzzer_sys::fuzz_target;

/// A session with the fixed keys: ours (`peer` false) or the peer's, whose local and remote
/// keys are ours swapped. Made when an input first needs it: its key derivation costs more
/// than most inputs' packets, and an input without records, or without packets the peer
/// protects, needs one session or none.
fn session(suite: SrtpSuite, peer: bool) -> SrtpSession {
    let ours: KeyMaterial = std::array::from_fn(|i| i as u8);
    let theirs: KeyMaterial = std::array::from_fn(|i| 100 + i as u8);
    let (local, remote) = if peer { (theirs, ours) } else { (ours, theirs) };
    match SrtpSession::new(&SrtpKeys {
        suite,
        local,
        remote,
    }) {
        Ok(s) => s,
        Err(e) => panic!("the fixed keys were refused: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&suite, mut rest)) = data.split_first() else {
        return;
    };
    let suite = if suite & 1 == 0 {
        SrtpSuite::AesCm128HmacSha1_80
    } else {
        SrtpSuite::AesCm128HmacSha1_32
    };
    let mut us = None;
    let mut peer = None;
    while let [op, flip, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (packet, tail) = tail.split_at(len);
        rest = tail;
        let rtcp = op & 1 == 1;
        let us = us.get_or_insert_with(|| session(suite, false));
        if op & 2 == 0 {
            let _ = if rtcp {
                us.unprotect_rtcp(packet)
            } else {
                us.unprotect_rtp(packet)
            };
            continue;
        }
        let peer = peer.get_or_insert_with(|| session(suite, true));
        let protected = if rtcp {
            peer.protect_rtcp(packet)
        } else {
            peer.protect_rtp(packet)
        };
        let Ok(mut protected) = protected else {
            continue;
        };
        let tampered = op & 4 != 0 && !protected.is_empty();
        if tampered {
            let at = usize::from(*flip) % protected.len();
            protected[at] ^= 1 << (flip % 8);
        }
        let plain = if rtcp {
            us.unprotect_rtcp(&protected)
        } else {
            us.unprotect_rtp(&protected)
        };
        match plain {
            Ok(_) if tampered => panic!("a packet with a flipped bit was taken"),
            Ok(p) => assert_eq!(p, packet, "what the peer protected came out different"),
            Err(_) => {}
        }
    }
});
