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
