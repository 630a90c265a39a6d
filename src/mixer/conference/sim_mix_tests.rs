//! What a conference mixes, in fake time: codecs over SDES-SRTP, the mix rate following the
//! widest leg, prompts, and quiet Opus legs left undecoded. Every level is measured on what the
//! simulated phones decoded with codecs from outside Confab. Each test runs a few seconds of
//! meeting in a few hundred milliseconds of wall time; nothing sleeps.

use std::time::Duration;

use confab_dsp::signal::sine;

use crate::conference::DisconnectReason;
use crate::media::codec::Codec;
use crate::media::leg::LegSpec;
use crate::media::srtp::{SrtpKeys, SrtpSuite};
use crate::testing::phone::SimPhone;
use crate::testing::room::{JoinAs, Room};

fn keys(seed: u8, suite: SrtpSuite) -> SrtpKeys {
    SrtpKeys {
        suite,
        local: std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8)),
        remote: std::array::from_fn(|i| seed.wrapping_mul(17).wrapping_add(100 + i as u8)),
    }
}

/// Three codecs on SRTP legs (both 80- and 32-bit tags) hear each other and not themselves; a
/// forger sending from one phone's own address under the wrong key is refused and never heard.
#[test]
fn three_codecs_over_sdes_srtp_hear_each_other_and_forgeries_are_refused() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let parties = [
        (Codec::Pcmu, 440.0, SrtpSuite::AesCm128HmacSha1_80),
        (Codec::G722, 660.0, SrtpSuite::AesCm128HmacSha1_32),
        (Codec::Opus, 880.0, SrtpSuite::AesCm128HmacSha1_80),
    ];
    for (i, (codec, hz, suite)) in parties.into_iter().enumerate() {
        let k = keys(i as u8 + 1, suite);
        let how =
            JoinAs::new(codec, Some((hz, -20.0))).spec(move |s| LegSpec { srtp: Some(k), ..s });
        room.join_as(how).unwrap();
    }
    room.run(Duration::from_secs(1));
    // The forger's packets are loud PCMU under another key, from PCMU's latched address.
    let mut forger = SimPhone::new(Codec::Pcmu, 300.0, -3.0, 0x99, room.now);
    forger.use_srtp(&keys(77, SrtpSuite::AesCm128HmacSha1_80));
    let from = room.members[0].addr;
    for _ in 0..(2 * 200) {
        if let Some(p) = forger.poll_send(room.now) {
            room.inject(0, from, false, p);
        }
        room.step();
    }
    for (i, (codec, own, _)) in parties.into_iter().enumerate() {
        for (_, other, _) in parties.iter().filter(|(c, ..)| *c != codec) {
            let level = room.heard(i, *other, 1.0);
            assert!(
                (level + 20.0).abs() <= 1.0,
                "{codec:?} hears {other} Hz at {level:.2} dBov over SRTP"
            );
        }
        let echo = room.heard(i, own, 1.0);
        assert!(echo < -50.0, "{codec:?} hears itself at {echo:.2}");
        let forged = room.heard(i, 300.0, 1.0);
        assert!(forged < -50.0, "{codec:?} hears the forgery at {forged:.2}");
        let phone = &room.members[i].phone;
        assert_eq!(phone.srtp_failures, 0, "{codec:?}: the bridge's SRTP");
        assert!(
            phone.heard_packets >= 140,
            "{codec:?}: {}",
            phone.heard_packets
        );
    }
    let s = room.stats(0).unwrap();
    assert!(s.srtp, "{s:?}");
    assert!(s.dropped_srtp_auth >= 90, "{s:?}");
}

/// A meeting of phones mixes at 8 kHz; an Opus leg widens it to 48 kHz while it is there, and
/// everyone goes on hearing everyone else both ways.
#[test]
fn a_phone_meeting_mixes_at_8k_until_a_wideband_leg_joins() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let a = room.join(Codec::Pcmu, Some((440.0, -20.0)));
    let b = room.join(Codec::Pcmu, Some((660.0, -20.0)));
    room.run(Duration::from_secs(2));
    assert_eq!(room.conference.mix_rate().hz(), 8000);
    for (i, other) in [(a, 660.0), (b, 440.0)] {
        let level = room.heard(i, other, 1.0);
        assert!((level + 20.0).abs() <= 1.0, "at 8 kHz: {level:.2}");
    }

    let c = room.join(Codec::Opus, Some((3000.0, -20.0)));
    room.run(Duration::from_secs(2));
    assert_eq!(room.conference.mix_rate().hz(), 48000);
    for (i, f) in [(a, 660.0), (a, 3000.0), (b, 440.0), (c, 440.0), (c, 660.0)] {
        let level = room.heard(i, f, 1.0);
        assert!(
            (level + 20.0).abs() <= 1.0,
            "member {i} hears {f} Hz at 48 kHz: {level:.2}"
        );
    }

    // It hangs up: back to 8 kHz between ticks, and the phones still hear each other.
    let id = room.members[c].id;
    room.conference
        .roster
        .disconnect(id, DisconnectReason::Hangup)
        .unwrap();
    room.run(Duration::from_secs(2));
    assert_eq!(room.conference.mix_rate().hz(), 8000);
    let level = room.heard(a, 660.0, 1.0);
    assert!(
        (level + 20.0).abs() <= 1.0,
        "after the Opus leg: {level:.2}"
    );
    let gone = room.heard(a, 3000.0, 1.0);
    assert!(gone < -50.0, "the Opus leg is still heard: {gone:.2}");
}

/// A prompt (kept at 48 kHz) is played to a leg of an 8 kHz mix at its own level.
#[test]
fn a_prompt_plays_at_its_level_in_a_narrow_mix() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let a = room.join(Codec::Pcmu, Some((440.0, -20.0)));
    room.run(Duration::from_millis(400));
    assert_eq!(room.conference.mix_rate().hz(), 8000);
    let prompt: std::sync::Arc<[i16]> = sine(48_000, 1000.0, -15.0, 48_000 * 3).into();
    let id = room.members[a].id;
    room.conference.leg_mut(id).unwrap().play(Some(prompt));
    room.run(Duration::from_secs(2));
    let level = room.heard(a, 1000.0, 1.0);
    assert!(
        (level + 15.0).abs() <= 1.0,
        "the prompt at 8 kHz: {level:.2}"
    );
    // Once it has played out, the mix comes back (here: comfort noise, nobody else talks).
    room.run(Duration::from_secs(2));
    let after = room.heard(a, 1000.0, 0.5);
    assert!(after < -50.0, "the prompt went on: {after:.2}");
}

/// An Opus leg sending digital silence (a muted browser) is not decoded but for probes, and
/// is decoded again from its first packet of voice.
#[test]
fn a_silent_opus_participant_is_not_decoded_and_is_heard_once_it_speaks() {
    let mut room = Room::new(3, Duration::from_secs(30));
    let a = room.join(Codec::Opus, Some((880.0, -20.0)));
    let b = room.join(Codec::Opus, Some((440.0, -300.0)));
    room.run(Duration::from_secs(3));
    // About 150 packets from b: the first half second is decoded, then all but the probes
    // are not.
    let skipped = room.stats(b).unwrap().decodes_skipped;
    assert!(
        (90..=130).contains(&skipped),
        "{skipped} packets not decoded"
    );
    assert_eq!(room.stats(a).unwrap().decodes_skipped, 0);
    let heard = room.heard(b, 880.0, 1.0);
    assert!(heard > -21.0, "b hears a at {heard:.2}");

    room.members[b].phone.tone_dbov = -20.0;
    room.run(Duration::from_secs(2));
    let level = room.heard(a, 440.0, 1.5);
    assert!((level + 20.0).abs() <= 1.0, "a hears b at {level:.2} dBov");
    let more = room.stats(b).unwrap().decodes_skipped - skipped;
    assert!(more <= 2, "{more} packets with voice were not decoded");
}
