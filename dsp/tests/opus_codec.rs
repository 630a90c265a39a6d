//! Opus through our wrapper: levels survive, stereo is downmixed, FEC rebuilds a lost frame,
//! PLC fills gaps, DTX packets decode, and malformed packets are errors that harm nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use confab_dsp::opus::{FRAME_20MS, MAX_FRAME, MAX_PACKET, OpusDecoder, OpusEncoder, OpusSettings};
use confab_dsp::signal::level_dbov;

fn encode_all(settings: OpusSettings, pcm: &[i16]) -> Vec<Vec<u8>> {
    let mut enc = OpusEncoder::new(settings).unwrap();
    let mut packet = [0u8; MAX_PACKET];
    pcm.chunks_exact(FRAME_20MS)
        .map(|frame| {
            let n = enc.encode(frame, &mut packet).unwrap();
            packet[..n].to_vec()
        })
        .collect()
}

#[test]
fn tone_keeps_its_level() {
    let pcm = common::tone(48000, 1000.0, -12.0, 48000);
    let packets = encode_all(OpusSettings::default(), &pcm);
    let mut dec = OpusDecoder::new().unwrap();
    let mut out = Vec::new();
    let mut frame = [0i16; MAX_FRAME];
    for p in &packets {
        let n = dec.decode(p, &mut frame).unwrap();
        assert_eq!(n, FRAME_20MS);
        out.extend_from_slice(&frame[..n]);
    }
    common::assert_tone(&out[9600..], 48000, 1000.0, -12.0, 1.0, "opus");
}

#[test]
fn settings_are_checked() {
    let bad = [
        OpusSettings {
            complexity: 11,
            ..Default::default()
        },
        OpusSettings {
            bitrate: 1000,
            ..Default::default()
        },
        OpusSettings {
            expected_loss_percent: 101,
            ..Default::default()
        },
    ];
    for s in bad {
        assert!(OpusEncoder::new(s).is_err(), "{s:?}");
    }
    for complexity in [0, 10] {
        for bitrate in [6000, 64000] {
            assert!(
                OpusEncoder::new(OpusSettings {
                    complexity,
                    bitrate,
                    ..Default::default()
                })
                .is_ok()
            );
        }
    }
}

#[test]
fn stereo_packets_are_downmixed() {
    // A stereo encoder from libopus directly (a client), tone on the left channel only.
    let mut enc =
        opus::Encoder::new(48000, opus::Channels::Stereo, opus::Application::Voip).unwrap();
    let left = common::tone(48000, 800.0, -10.0, 48000);
    let interleaved: Vec<i16> = left.iter().flat_map(|&l| [l, 0]).collect();
    let mut dec = OpusDecoder::new().unwrap();
    let mut packet = [0u8; MAX_PACKET];
    let mut out = Vec::new();
    let mut frame = [0i16; MAX_FRAME];
    for chunk in interleaved.chunks_exact(2 * FRAME_20MS) {
        let n = enc.encode(chunk, &mut packet).unwrap();
        let got = dec.decode(&packet[..n], &mut frame).unwrap();
        out.extend_from_slice(&frame[..got]);
    }
    assert_eq!(out.len(), 48000);
    // Mono is the average of both channels: the tone at half amplitude, -6 dB.
    common::assert_tone(&out[9600..], 48000, 800.0, -16.0, 1.5, "downmix");
}

/// Signal-to-error ratio in dB of `got` against `want`.
fn snr_db(want: &[i16], got: &[i16]) -> f64 {
    let signal: f64 = want.iter().map(|&x| f64::from(x).powi(2)).sum();
    let error: f64 = want
        .iter()
        .zip(got)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    10.0 * (signal / error.max(1.0)).log10()
}

#[test]
fn fec_rebuilds_a_lost_frame_better_than_plc() {
    // A tone whose frequency changes every frame: PLC cannot guess it, FEC carries it.
    let mut pcm = Vec::new();
    for i in 0..100 {
        pcm.extend(common::tone(
            48000,
            300.0 + 53.0 * (i % 7) as f32,
            -15.0,
            FRAME_20MS,
        ));
    }
    let settings = OpusSettings {
        inband_fec: true,
        expected_loss_percent: 20,
        bitrate: 24000,
        ..Default::default()
    };
    let packets = encode_all(settings, &pcm);
    let lost = 60;
    let decode = |loss: Option<bool>| {
        let mut dec = OpusDecoder::new().unwrap();
        let mut frame = [0i16; MAX_FRAME];
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            let n = match (i == lost, loss) {
                (true, Some(true)) => dec.recover(&packets[lost + 1], &mut frame).unwrap(),
                (true, Some(false)) => dec.conceal(&mut frame).unwrap(),
                _ => dec.decode(p, &mut frame).unwrap(),
            };
            assert_eq!(n, FRAME_20MS);
            out.extend_from_slice(&frame[..n]);
        }
        out
    };
    let clean = decode(None);
    let span = lost * FRAME_20MS..(lost + 1) * FRAME_20MS;
    let fec = snr_db(&clean[span.clone()], &decode(Some(true))[span.clone()]);
    let plc = snr_db(&clean[span.clone()], &decode(Some(false))[span]);
    assert!(fec > 3.0, "FEC frame SNR {fec:.1} dB");
    assert!(fec > plc + 6.0, "FEC {fec:.1} dB vs PLC {plc:.1} dB");
}

#[test]
fn plc_fills_gaps_and_fades() {
    let pcm = common::tone(48000, 500.0, -10.0, 48000);
    let packets = encode_all(OpusSettings::default(), &pcm);
    let mut dec = OpusDecoder::new().unwrap();
    let mut frame = [0i16; MAX_FRAME];
    for p in &packets[..20] {
        dec.decode(p, &mut frame).unwrap();
    }
    assert_eq!(dec.conceal(&mut frame).unwrap(), FRAME_20MS);
    assert!(
        level_dbov(&frame[..FRAME_20MS]) > -20.0,
        "first concealed frame carries on"
    );
    for _ in 0..20 {
        dec.conceal(&mut frame).unwrap();
    }
    assert!(
        level_dbov(&frame[..FRAME_20MS]) < -40.0,
        "long loss fades out"
    );
}

#[test]
fn dtx_packets_are_understood() {
    let settings = OpusSettings {
        dtx: true,
        ..Default::default()
    };
    let mut pcm = common::tone(48000, 700.0, -15.0, 9600);
    pcm.extend(std::iter::repeat_n(0i16, 48000));
    let packets = encode_all(settings, &pcm);
    let small = packets.iter().filter(|p| p.len() <= 2).count();
    assert!(small >= 10, "only {small} DTX packets");
    let mut dec = OpusDecoder::new().unwrap();
    let mut frame = [0i16; MAX_FRAME];
    for p in &packets {
        let n = dec.decode(p, &mut frame).unwrap();
        assert_eq!(n, FRAME_20MS);
        if p.len() <= 2 {
            assert!(level_dbov(&frame[..n]) < -50.0);
        }
    }
}

#[test]
fn malformed_packets_are_errors_and_harm_nothing() {
    let pcm = common::tone(48000, 600.0, -10.0, 9600);
    let packets = encode_all(OpusSettings::default(), &pcm);
    let mut dec = OpusDecoder::new().unwrap();
    let mut frame = [0i16; MAX_FRAME];
    dec.decode(&packets[0], &mut frame).unwrap();
    assert!(dec.decode(&[], &mut frame).is_err());
    // Code 3 frame count 0 and truncated lengths are invalid packets.
    for bad in [&[0x03u8, 0x00][..], &[0xFF, 0xFF, 0xFF], &[0x0B, 0xFF]] {
        assert!(dec.decode(bad, &mut frame).is_err(), "{bad:?}");
    }
    // A buffer too small for the packet is an error too, not a crash.
    assert!(dec.decode(&packets[1], &mut frame[..100]).is_err());
    for p in &packets[2..] {
        assert_eq!(dec.decode(p, &mut frame).unwrap(), FRAME_20MS);
    }
}

#[test]
fn voice_inactivity_is_read_from_the_silk_flags() {
    use confab_dsp::opus::voice_inactive;
    use confab_dsp::resample::{Rate, Resampler};
    // Digital silence: after the encoder's first frames, every packet says "no voice".
    let silence = encode_all(OpusSettings::default(), &vec![0; FRAME_20MS * 20]);
    assert!(
        silence[3..]
            .iter()
            .all(|p| voice_inactive(p) == Some(FRAME_20MS))
    );
    // A tone's onset is voice to SILK's detector; held steady, SILK takes it for background
    // (its noise floor adapts): the flags alone cannot tell a quiet leg from a steady one.
    let tone = common::tone(48000, 440.0, -20.0, 48000);
    let tone = encode_all(OpusSettings::default(), &tone);
    assert!(tone[..25].iter().all(|p| voice_inactive(p).is_none()));
    assert!(tone[40..].iter().all(|p| voice_inactive(p).is_some()));

    // Recorded speech: the packets flagged inactive are the pauses, as libopus' own decoder
    // (run over every packet) hears them: far quieter than the packets flagged active.
    let narrow = common::speech(16000);
    let mut up = Resampler::new(Rate::Hz16000, Rate::Hz48000).unwrap();
    let mut wide = vec![0i16; narrow.len() / 320 * FRAME_20MS];
    for (n, w) in narrow
        .chunks_exact(320)
        .zip(wide.chunks_exact_mut(FRAME_20MS))
    {
        up.process(n, w).unwrap();
    }
    let packets = encode_all(OpusSettings::default(), &wide);
    let mut dec = OpusDecoder::new().unwrap();
    let mut frame = [0i16; MAX_FRAME];
    let (mut active, mut inactive) = (Vec::new(), Vec::new());
    for p in &packets {
        let n = dec.decode(p, &mut frame).unwrap();
        match voice_inactive(p) {
            Some(samples) => {
                assert_eq!(samples, n);
                inactive.extend_from_slice(&frame[..n]);
            }
            None => active.extend_from_slice(&frame[..n]),
        }
    }
    assert!(
        active.len() > wide.len() / 3 && inactive.len() > wide.len() / 20,
        "{} active, {} inactive samples of {}",
        active.len(),
        inactive.len(),
        wide.len()
    );
    let (loud, quiet) = (level_dbov(&active), level_dbov(&inactive));
    assert!(
        quiet < loud - 20.0,
        "active {loud:.1} dBov, inactive {quiet:.1} dBov"
    );

    // What is not one mono SILK or hybrid frame is never called inactive.
    let celt = [19 << 3, 0x00, 0x00]; // configuration 19: CELT-only, 20 ms
    let stereo = [0x78 | 0x04, 0x00, 0x00];
    let two_frames = [0x78 | 0x01, 0x00, 0x00];
    for p in [&celt[..], &stereo, &two_frames, &[0x78], &[]] {
        assert_eq!(voice_inactive(p), None, "{p:02x?}");
    }
    // 60 ms of SILK is three frames: one active flag among them is voice.
    assert_eq!(voice_inactive(&[3 << 3, 0x1F]), Some(2880));
    assert_eq!(voice_inactive(&[3 << 3, 0x20]), None);
}

/// A tone whose frequency changes every frame (PLC cannot guess the next one), 2 s.
fn changing_tone() -> Vec<i16> {
    let mut pcm = Vec::new();
    for i in 0..100 {
        pcm.extend(common::tone(
            48000,
            300.0 + 53.0 * (i % 7) as f32,
            -15.0,
            FRAME_20MS,
        ));
    }
    pcm
}

/// SNR (dB) of frame `lost` rebuilt from the packet after it, against the clean decode.
fn recovered_snr(packets: &[Vec<u8>], lost: usize) -> f64 {
    let mut frame = [0i16; MAX_FRAME];
    let mut clean = Vec::new();
    let mut dec = OpusDecoder::new().unwrap();
    for p in packets {
        let n = dec.decode(p, &mut frame).unwrap();
        clean.extend_from_slice(&frame[..n]);
    }
    let mut dec = OpusDecoder::new().unwrap();
    let mut out = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        let n = if i == lost {
            dec.recover(&packets[lost + 1], &mut frame).unwrap()
        } else {
            dec.decode(p, &mut frame).unwrap()
        };
        out.extend_from_slice(&frame[..n]);
    }
    let span = lost * FRAME_20MS..(lost + 1) * FRAME_20MS;
    snr_db(&clean[span.clone()], &out[span])
}

#[test]
fn a_new_encoder_has_no_fec_until_switched_on() {
    let settings = OpusSettings::default();
    assert!(!settings.inband_fec);
    assert_eq!(settings.expected_loss_percent, 0);
    let pcm = changing_tone();
    let mut enc = OpusEncoder::new(OpusSettings {
        bitrate: 24000,
        ..settings
    })
    .unwrap();
    let mut packet = [0u8; MAX_PACKET];
    let mut packets = Vec::new();
    for (i, frame) in pcm.chunks_exact(FRAME_20MS).enumerate() {
        // Half way through, the receiver's path turns lossy.
        if i == 50 {
            enc.set_inband_fec(true).unwrap();
            enc.set_expected_loss(20).unwrap();
        }
        let n = enc.encode(frame, &mut packet).unwrap();
        packets.push(packet[..n].to_vec());
    }
    assert!(enc.settings().inband_fec);
    assert_eq!(enc.settings().expected_loss_percent, 20);
    let without = recovered_snr(&packets, 30);
    let with = recovered_snr(&packets, 80);
    eprintln!("frame rebuilt: {without:.1} dB SNR without FEC, {with:.1} dB with");
    assert!(with > 3.0, "with FEC {with:.1} dB");
    assert!(
        with > without + 6.0,
        "FEC {with:.1} dB vs none {without:.1} dB"
    );
}

#[test]
fn bitrate_setter_changes_packet_sizes_and_settings_are_checked() {
    let pcm = changing_tone();
    let mut enc = OpusEncoder::new(OpusSettings::default()).unwrap();
    let mut packet = [0u8; MAX_PACKET];
    let mut sizes = [0usize; 2];
    for (i, frame) in pcm.chunks_exact(FRAME_20MS).enumerate() {
        if i == 50 {
            enc.set_bitrate(12000).unwrap();
        }
        let n = enc.encode(frame, &mut packet).unwrap();
        // Leave the encoder a few frames to settle after each start and change.
        if (10..50).contains(&i) {
            sizes[0] += n;
        } else if i >= 60 {
            sizes[1] += n;
        }
    }
    let (high, low) = (sizes[0] / 40, sizes[1] / 40);
    eprintln!("mean packet: {high} bytes at 32 kbit/s, {low} at 12 kbit/s");
    assert!(low * 2 < high, "{low} vs {high} bytes");
    assert!(enc.set_bitrate(5999).is_err());
    assert!(enc.set_bitrate(510_001).is_err());
    assert!(enc.set_expected_loss(101).is_err());
    assert_eq!(
        enc.settings().bitrate,
        12000,
        "a refused value changes nothing"
    );
    enc.set_dtx(true).unwrap();
    assert!(enc.settings().dtx);
}
