//! Opus toward the listeners follows their paths, in fake time: a listener whose RTCP reports
//! about 5 % loss turns in-band FEC on for its group's encode, and the packets it gets then
//! rebuild a lost frame far better than concealment does; a clean listener's group carries no
//! FEC; `useinbandfec=0` keeps it off whatever the loss; `maxaveragebitrate` makes the packets
//! smaller. What the listener's phone heard is decoded with libopus directly.

use std::time::Duration;

use crate::media::codec::Codec;
use crate::media::leg::{LegSpec, LegTimers};
use crate::media::opus_path::OpusFmtp;
use crate::testing::room::{JoinAs, Room};

/// Reports sent every second (the default 5 s would make the test longer, not different).
fn timers() -> LegTimers {
    LegTimers {
        rtcp_interval: Duration::from_secs(1),
        auto_gain: false,
        ..LegTimers::default()
    }
}

/// A talker whose tone comes and goes (onsets concealment cannot guess) and a silent Opus
/// listener whose receiver reports claim `fraction_lost` (in 256ths) and whose fmtp is `fmtp`;
/// ten seconds of meeting. Returns the room and the listener's index.
fn meeting(fraction_lost: u8, fmtp: OpusFmtp) -> (Room, usize) {
    meeting_with(fraction_lost, fmtp, OpusFmtp::default())
}

/// [`meeting`], with the talker's fmtp `talker_fmtp` (it is in the listener's group too).
fn meeting_with(fraction_lost: u8, fmtp: OpusFmtp, talker_fmtp: OpusFmtp) -> (Room, usize) {
    let mut room = Room::new(3, Duration::from_secs(30));
    let talker = room
        .join_as(
            JoinAs::new(Codec::Opus, Some((700.0, -18.0)))
                .timers(timers())
                .spec(move |s| LegSpec {
                    opus: talker_fmtp,
                    ..s
                }),
        )
        .unwrap();
    room.members[talker].phone.bursts = Some((7, 4));
    room.members[talker].phone.answer_reports = Some(0);
    let listener = room
        .join_as(
            JoinAs::new(Codec::Opus, None)
                .timers(timers())
                .spec(move |s| LegSpec { opus: fmtp, ..s }),
        )
        .unwrap();
    room.members[listener].phone.answer_reports = Some(fraction_lost);
    room.members[listener].phone.payloads = Some(Vec::new());
    room.run(Duration::from_secs(10));
    (room, listener)
}

/// The listener's last `n` payloads.
fn last_payloads(room: &Room, listener: usize, n: usize) -> Vec<Vec<u8>> {
    let kept = room.members[listener]
        .phone
        .payloads
        .as_deref()
        .unwrap_or(&[]);
    kept[kept.len().saturating_sub(n)..].to_vec()
}

/// Decodes `packets` losing every `every`-th one, rebuilt from the packet after it (`fec`) or
/// concealed; returns the SNR (dB) of the lost frames against a decode that lost nothing.
fn lost_frames_snr(packets: &[Vec<u8>], every: usize, fec: bool) -> f64 {
    let mut clean = opus::Decoder::new(48000, opus::Channels::Mono).unwrap();
    let mut lossy = opus::Decoder::new(48000, opus::Channels::Mono).unwrap();
    let (mut want, mut got) = ([0i16; 960], [0i16; 960]);
    let (mut signal, mut error) = (0f64, 0f64);
    for (i, p) in packets.iter().enumerate().take(packets.len() - 1) {
        let n = clean.decode(p, &mut want, false).unwrap();
        assert_eq!(n, 960);
        if i % every != every - 1 {
            lossy.decode(p, &mut got, false).unwrap();
            continue;
        }
        if fec {
            lossy.decode(&packets[i + 1], &mut got, true).unwrap();
        } else {
            lossy.decode(&[], &mut got, false).unwrap();
        }
        for (&a, &b) in want.iter().zip(&got) {
            signal += f64::from(a).powi(2);
            error += (f64::from(a) - f64::from(b)).powi(2);
        }
    }
    10.0 * (signal / error.max(1.0)).log10()
}

/// The mean length of `packets` that carry sound (comfort noise is a few bytes).
fn mean_sound_packet(packets: &[Vec<u8>]) -> usize {
    let sound: Vec<usize> = packets.iter().map(Vec::len).filter(|&n| n > 20).collect();
    sound.iter().sum::<usize>() / sound.len().max(1)
}

#[test]
fn a_lossy_listener_gets_fec() {
    // 13/256: 5.1 % lost.
    let (mut room, listener) = meeting(13, OpusFmtp::default());
    let s = room
        .conference
        .opus_settings_toward(room.members[listener].id)
        .unwrap();
    assert!(s.inband_fec, "{s:?}");
    // 5.1 % smoothed (still rising towards it), rounded up.
    assert!((5..=6).contains(&s.expected_loss_percent), "{s:?}");
    let r = room.stats(listener).unwrap().remote_loss_percent;
    assert!(r.is_some_and(|l| (l - 5.08).abs() < 0.01), "{r:?}");
    // The talker's own encoder (its mix-minus) follows its own clean path.
    let talker = room.conference.leg_mut(room.members[0].id).unwrap();
    assert!(!talker.own_opus_settings().unwrap().inband_fec);
}

#[test]
fn fec_toward_a_lossy_listener_rebuilds_lost_frames() {
    // 26/256: 10.2 % lost. (libopus puts the copy in only in SILK frames, and takes SILK for a
    // pure tone, which it deems music, only from an 8 % loss hint on; speech from 1 %.)
    let (room, listener) = meeting(26, OpusFmtp::default());
    assert!(
        room.conference
            .opus_settings_toward(room.members[listener].id)
            .unwrap()
            .inband_fec
    );
    // The last 5 s (FEC has been on for most of the run), every 7th packet lost.
    let packets = last_payloads(&room, listener, 250);
    assert!(packets.len() >= 240, "{}", packets.len());
    let fec = lost_frames_snr(&packets, 7, true);
    let plc = lost_frames_snr(&packets, 7, false);
    eprintln!("lossy listener: lost frames rebuilt at {fec:.1} dB SNR, concealed at {plc:.1} dB");
    assert!(
        fec > plc + 6.0,
        "FEC {fec:.1} dB vs concealment {plc:.1} dB"
    );
}

#[test]
fn a_clean_listener_gets_no_fec() {
    let (room, listener) = meeting(0, OpusFmtp::default());
    let s = room
        .conference
        .opus_settings_toward(room.members[listener].id)
        .unwrap();
    assert!(!s.inband_fec && s.expected_loss_percent == 0, "{s:?}");
    // Without FEC the packet after a loss has nothing to rebuild it from: libopus conceals.
    let packets = last_payloads(&room, listener, 250);
    let fec = lost_frames_snr(&packets, 7, true);
    let plc = lost_frames_snr(&packets, 7, false);
    eprintln!("clean listener: 'rebuilt' {fec:.1} dB SNR, concealed {plc:.1} dB");
    assert!((fec - plc).abs() < 1.0, "{fec:.1} vs {plc:.1} dB");
}

#[test]
fn useinbandfec_0_keeps_fec_off_on_a_lossy_path() {
    let fmtp = OpusFmtp {
        fec: false,
        ..OpusFmtp::default()
    };
    let (room, listener) = meeting(26, fmtp);
    let s = room
        .conference
        .opus_settings_toward(room.members[listener].id)
        .unwrap();
    assert!(!s.inband_fec && s.expected_loss_percent == 0, "{s:?}");
}

#[test]
fn maxaveragebitrate_makes_packets_smaller() {
    let (free, free_listener) = meeting(0, OpusFmtp::default());
    let capped_fmtp = OpusFmtp {
        max_average_bitrate: Some(12_000),
        ..OpusFmtp::default()
    };
    let (capped, capped_listener) = meeting(0, capped_fmtp);
    assert_eq!(
        capped
            .conference
            .opus_settings_toward(capped.members[capped_listener].id)
            .unwrap()
            .bitrate,
        12_000
    );
    assert_eq!(
        free.conference
            .opus_settings_toward(free.members[free_listener].id)
            .unwrap()
            .bitrate,
        32_000
    );
    let big = mean_sound_packet(&last_payloads(&free, free_listener, 250));
    let small = mean_sound_packet(&last_payloads(&capped, capped_listener, 250));
    eprintln!("mean packet with sound: {big} bytes free, {small} bytes at 12 kbit/s");
    assert!(small * 2 < big, "{small} vs {big} bytes");
    // 12 kbit/s is 30 bytes a 20 ms packet; libopus keeps near its target.
    assert!(small <= 36, "{small} bytes");
}

/// A WebRTC listener's receiver reports are read by the driver (str0m), which hands their loss
/// over the relay: its group's FEC follows it as a SIP listener's does.
#[test]
fn a_webrtc_listeners_loss_from_the_driver_turns_fec_on() {
    use crate::conference::{Joining, ParticipantId, Policy, Role};
    use crate::media::leg::{RELAY_SOURCE, RtpLeg};
    use crate::media::relay::relay_pair;
    use crate::mixer::conference::ConferenceMedia;

    let mut now = std::time::Instant::now();
    let mut conference = ConferenceMedia::new(
        "webrtc".into(),
        Policy::default(),
        3,
        Duration::from_secs(60),
    );
    let (port, peer) = relay_pair(Default::default());
    let spec = LegSpec::new(Codec::Opus, RELAY_SOURCE);
    let id = ParticipantId(1);
    let leg = RtpLeg::relayed(id, spec, port, now, 0x4242, timers()).unwrap();
    let joining = Joining {
        id,
        display_name: "browser".into(),
        uri: String::new(),
        role: Role::Attendee,
        identity: None,
    };
    conference.add_leg(joining, leg, now).unwrap();
    let mut run = |conference: &mut ConferenceMedia, seconds: u32| {
        for _ in 0..seconds * 50 {
            now += Duration::from_millis(20);
            conference.tick(now, |_| {});
            // The driver takes what the mixer sent.
            while peer.outbound.try_recv().is_ok() {}
        }
    };
    run(&mut conference, 3);
    assert!(!conference.opus_settings_toward(id).unwrap().inband_fec);
    peer.report_loss(0.05);
    run(&mut conference, 5);
    let s = conference.opus_settings_toward(id).unwrap();
    assert!(
        s.inband_fec && (4..=5).contains(&s.expected_loss_percent),
        "{s:?}"
    );
    peer.report_loss(0.0);
    run(&mut conference, 10);
    assert!(!conference.opus_settings_toward(id).unwrap().inband_fec);
}

/// `usedtx=1` from every member of the group: while nobody talks (the mix is comfort noise at
/// -70 dBov) the listener gets the one- or two-byte packets of Opus DTX; when one member did
/// not ask for it (here the talker, who hears the group's encode when it stops talking), full
/// packets.
#[test]
fn usedtx_1_gets_dtx_in_the_pauses() {
    let dtx = OpusFmtp {
        dtx: true,
        ..OpusFmtp::default()
    };
    let tiny = |talker_fmtp: OpusFmtp| {
        let (mut room, listener) = meeting_with(0, dtx, talker_fmtp);
        // Pauses of a second (libopus starts DTX after 200 ms of silence).
        room.members[0].phone.bursts = Some((25, 50));
        room.run(Duration::from_secs(5));
        let s = room
            .conference
            .opus_settings_toward(room.members[listener].id)
            .unwrap();
        let packets = last_payloads(&room, listener, 250);
        (s.dtx, packets.iter().filter(|p| p.len() <= 2).count())
    };
    let (on, with) = tiny(dtx);
    let (off, without) = tiny(OpusFmtp::default());
    eprintln!("packets of 1-2 bytes in 5 s: {with} with usedtx=1 from all, {without} without");
    assert!(on && !off);
    // Two thirds of the last 5 s are pauses; libopus goes into DTX 200 ms into one and sends
    // a full packet now and then (21 such packets were counted).
    assert!(with >= 10, "{with}");
    assert_eq!(without, 0);
}

/// One listener whose reports claim everything is lost and one whose fmtp asks for 6 kbit/s
/// without FEC, beside a clean listener: each gets an encode of its tier, and the clean one
/// the full bitrate without FEC, as if they were not there. Twenty more listeners, each with
/// another cap, make no more encodes. When the liar's reports turn clean it is moved back.
#[test]
fn a_lying_or_capped_listener_does_not_set_what_the_others_get() {
    use crate::mixer::conference::Tier;
    let mut room = Room::new(26, Duration::from_secs(60));
    let talker = room
        .join_as(JoinAs::new(Codec::Opus, Some((700.0, -18.0))).timers(timers()))
        .unwrap();
    room.members[talker].phone.bursts = Some((7, 4));
    room.members[talker].phone.answer_reports = Some(0);
    let listener = |room: &mut Room, lost: u8, fmtp: OpusFmtp| {
        let i = room
            .join_as(
                JoinAs::new(Codec::Opus, None)
                    .timers(timers())
                    .spec(move |s| LegSpec { opus: fmtp, ..s }),
            )
            .unwrap();
        room.members[i].phone.answer_reports = Some(lost);
        room.members[i].phone.payloads = Some(Vec::new());
        i
    };
    let clean = listener(&mut room, 0, OpusFmtp::default());
    let liar = listener(&mut room, 255, OpusFmtp::default());
    let capped_fmtp = OpusFmtp {
        fec: false,
        max_average_bitrate: Some(6_000),
        ..OpusFmtp::default()
    };
    let capped = listener(&mut room, 255, capped_fmtp);
    for cap in 0..20 {
        let fmtp = OpusFmtp {
            max_average_bitrate: Some(6_000 + cap * 1_000),
            ..OpusFmtp::default()
        };
        listener(&mut room, 0, fmtp);
    }
    room.run(Duration::from_secs(10));
    let id = |room: &Room, i: usize| room.members[i].id;
    let settings = |room: &Room, i: usize| {
        room.conference
            .opus_settings_toward(room.members[i].id)
            .unwrap()
    };
    let s = settings(&room, clean);
    assert!(
        !s.inband_fec && s.expected_loss_percent == 0 && s.bitrate == 32_000,
        "{s:?}"
    );
    let s = settings(&room, liar);
    assert!(
        s.inband_fec && s.expected_loss_percent == 25 && s.bitrate == 32_000,
        "{s:?}"
    );
    let s = settings(&room, capped);
    assert!(!s.inband_fec && s.bitrate == 6_000, "{s:?}");
    assert_eq!(
        [clean, liar, capped].map(|i| room.conference.tier_of(id(&room, i))),
        [
            Some(Tier::Clear),
            Some(Tier::Lossy),
            Some(Tier::Constrained)
        ]
    );
    // One encode per tier at 20 ms, whatever 23 listeners asked.
    assert_eq!(room.conference.group_count(), 3);
    // What the clean listener's phone got, decoded: no FEC to rebuild a loss from, and full
    // sized packets (the capped listener's are a fraction of them).
    let packets = last_payloads(&room, clean, 250);
    let (fec, plc) = (
        lost_frames_snr(&packets, 7, true),
        lost_frames_snr(&packets, 7, false),
    );
    let (big, small) = (
        mean_sound_packet(&packets),
        mean_sound_packet(&last_payloads(&room, capped, 250)),
    );
    eprintln!(
        "clean listener: 'rebuilt' {fec:.1} dB, concealed {plc:.1} dB; packets {big} bytes, capped {small} bytes"
    );
    assert!((fec - plc).abs() < 1.0, "{fec:.1} vs {plc:.1} dB");
    assert!(small * 2 < big, "{small} vs {big} bytes");
    // The liar's reports turn clean: within the smoothing (100 % to below 0.5 % takes ~15
    // looks a second apart) it shares the clear encode again.
    room.members[liar].phone.answer_reports = Some(0);
    room.run(Duration::from_secs(20));
    assert_eq!(room.conference.tier_of(id(&room, liar)), Some(Tier::Clear));
    assert!(!settings(&room, liar).inband_fec);
}
