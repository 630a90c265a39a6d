//! RTCP tests: what we write is read back by rtc-rtcp, what rtc-rtcp writes we read; loss,
//! jitter, round-trip time and the report schedule over simulated time.

use super::*;
use bytes::Bytes;
use rtc_rtcp::packet::Packet;
use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::sender_report::SenderReport;
use rtc_rtcp::source_description::SourceDescription;

fn clock(t0: Instant) -> NtpClock {
    NtpClock::new(t0, UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

fn oracle(bytes: &[u8]) -> Vec<Box<dyn Packet>> {
    let mut b = Bytes::copy_from_slice(bytes);
    rtc_rtcp::packet::unmarshal(&mut b).unwrap()
}

#[test]
fn our_reports_read_back_with_rtc_rtcp() {
    let t0 = Instant::now();
    let mut rtcp = Rtcp::new(0x1111, 8000, clock(t0), Duration::from_secs(5));
    // 100 packets of the peer's, ten of them lost.
    for seq in 0..100u16 {
        if seq % 10 != 3 {
            rtcp.on_rtp(
                t0 + Duration::from_millis(20 * u64::from(seq)),
                0x2222,
                seq,
                u32::from(seq) * 160,
            );
        }
    }
    assert_eq!(rtcp.packets_lost(), 10);
    assert_eq!(rtcp.packets_expected(), 100);
    let mut buf = [0u8; 200];
    let now = t0 + Duration::from_secs(3);
    let sent = Sent {
        packets: 150,
        octets: 150 * 160,
        rtp_timestamp: 24_000,
    };
    let n = rtcp
        .write_report(now, Some(sent), "confab@test", &mut buf)
        .unwrap();
    let packets = oracle(&buf[..n]);
    assert_eq!(packets.len(), 2);
    let sr = packets[0].as_any().downcast_ref::<SenderReport>().unwrap();
    assert_eq!(sr.ssrc, 0x1111);
    assert_eq!(
        (sr.packet_count, sr.octet_count, sr.rtp_time),
        (150, 24_000, 24_000)
    );
    assert_eq!(sr.ntp_time, clock(t0).at(now));
    assert_eq!(sr.reports.len(), 1);
    let block = &sr.reports[0];
    assert_eq!(block.ssrc, 0x2222);
    assert_eq!(block.total_lost, 10);
    assert_eq!(block.fraction_lost, (10 * 256 / 100) as u8);
    assert_eq!(block.last_sequence_number, 99);
    let sdes = packets[1]
        .as_any()
        .downcast_ref::<SourceDescription>()
        .unwrap();
    assert_eq!(sdes.chunks[0].source, 0x1111);
    assert_eq!(&sdes.chunks[0].items[0].text[..], b"confab@test");

    // Nothing sent: an RR; nothing new lost: fraction 0, cumulative stays.
    let n = rtcp.write_report(now, None, "c", &mut buf).unwrap();
    let packets = oracle(&buf[..n]);
    let rr = packets[0]
        .as_any()
        .downcast_ref::<ReceiverReport>()
        .unwrap();
    assert_eq!(rr.reports[0].fraction_lost, 0);
    assert_eq!(rr.reports[0].total_lost, 10);
    // Too small a buffer: refused, not panicked on.
    assert_eq!(rtcp.write_report(now, None, "c", &mut buf[..20]), None);
}

#[test]
fn round_trip_from_the_peers_report_of_our_sr() {
    let t0 = Instant::now();
    let mut rtcp = Rtcp::new(0xAAAA, 8000, clock(t0), Duration::from_secs(5));
    rtcp.on_rtp(t0, 0xBBBB, 1, 0);
    let mut buf = [0u8; 200];
    let sent_at = t0 + Duration::from_secs(2);
    let sent = Sent::default();
    let n = rtcp
        .write_report(sent_at, Some(sent), "c", &mut buf)
        .unwrap();
    let our_ntp = oracle(&buf[..n])[0]
        .as_any()
        .downcast_ref::<SenderReport>()
        .unwrap()
        .ntp_time;
    // The peer holds our SR for 30 ms and the network takes 2 x 25 ms.
    let rr = ReceiverReport {
        ssrc: 0xBBBB,
        reports: vec![ReceptionReport {
            ssrc: 0xAAAA,
            fraction_lost: 64,
            total_lost: 7,
            last_sequence_number: 500,
            jitter: 80,
            last_sender_report: (our_ntp >> 16) as u32,
            delay: 30 * 65536 / 1000,
        }],
        profile_extensions: Bytes::new(),
    };
    let wire = rtc_rtcp::packet::marshal(&[Box::new(rr) as Box<dyn Packet>]).unwrap();
    let info = rtcp
        .on_rtcp(sent_at + Duration::from_millis(80), &wire)
        .unwrap();
    assert_eq!(info.receiver_reports, 1);
    let rtt = rtcp.round_trip().unwrap().as_secs_f64() * 1000.0;
    assert!((rtt - 50.0).abs() < 0.5, "rtt {rtt} ms");
    let remote = rtcp.remote_report().unwrap();
    assert_eq!((remote.fraction_lost, remote.cumulative_lost), (64, 7));
    assert_eq!(rtcp.remote_jitter(), Some(Duration::from_millis(10)));
}

#[test]
fn the_peers_sr_is_echoed_in_our_next_block() {
    let t0 = Instant::now();
    let mut rtcp = Rtcp::new(1, 8000, clock(t0), Duration::from_secs(5));
    rtcp.on_rtp(t0, 2, 10, 0);
    let ntp: u64 = 0x1234_5678_9ABC_DEF0;
    let sr = SenderReport {
        ssrc: 2,
        ntp_time: ntp,
        rtp_time: 0,
        packet_count: 1,
        octet_count: 160,
        reports: vec![],
        profile_extensions: Bytes::new(),
    };
    let wire = rtc_rtcp::packet::marshal(&[Box::new(sr) as Box<dyn Packet>]).unwrap();
    let got = rtcp.on_rtcp(t0, &wire).unwrap();
    assert_eq!((got.sender_reports, got.block_for_us), (1, None));
    let mut buf = [0u8; 200];
    let n = rtcp
        .write_report(t0 + Duration::from_millis(500), None, "c", &mut buf)
        .unwrap();
    let rr = oracle(&buf[..n]);
    let rr = rr[0].as_any().downcast_ref::<ReceiverReport>().unwrap();
    assert_eq!(rr.reports[0].last_sender_report, 0x5678_9ABC);
    assert_eq!(rr.reports[0].delay, 65536 / 2);
}

#[test]
fn jitter_follows_rfc3550() {
    let t0 = Instant::now();
    // Steady 20 ms packets: no jitter.
    let mut steady = Rtcp::new(1, 8000, clock(t0), Duration::from_secs(5));
    for i in 0..500u32 {
        steady.on_rtp(
            t0 + Duration::from_millis(20 * u64::from(i)),
            9,
            i as u16,
            i * 160,
        );
    }
    assert_eq!(steady.jitter(), Duration::ZERO);
    // Arrivals alternating 10 ms early and late: |D| = 20 ms each time, so J -> 20 ms.
    let mut jittery = Rtcp::new(1, 8000, clock(t0), Duration::from_secs(5));
    for i in 0..500u32 {
        let shift = if i % 2 == 0 { 0 } else { 20 };
        jittery.on_rtp(
            t0 + Duration::from_millis(20 * u64::from(i) + shift),
            9,
            i as u16,
            i * 160,
        );
    }
    let j = jittery.jitter().as_secs_f64() * 1000.0;
    assert!((j - 20.0).abs() < 1.0, "jitter {j} ms");
}

#[test]
fn sequence_wrap_restart_and_strays() {
    let t0 = Instant::now();
    let mut rtcp = Rtcp::new(1, 8000, clock(t0), Duration::from_secs(5));
    for i in 0..200u32 {
        rtcp.on_rtp(t0, 5, 65_500u16.wrapping_add(i as u16), i * 160);
    }
    assert_eq!((rtcp.packets_expected(), rtcp.packets_lost()), (200, 0));
    // One stray far away is not believed.
    rtcp.on_rtp(t0, 5, 30_000, 0);
    assert_eq!((rtcp.packets_expected(), rtcp.packets_lost()), (200, 0));
    // Two in a row: the sender restarted; counting starts again.
    rtcp.on_rtp(t0, 5, 40_000, 0);
    rtcp.on_rtp(t0, 5, 40_001, 0);
    assert_eq!((rtcp.packets_expected(), rtcp.packets_lost()), (1, 0));
    // A new SSRC starts over too.
    rtcp.on_rtp(t0, 6, 7, 0);
    assert_eq!(rtcp.packets_expected(), 1);
}

#[test]
fn reports_follow_rfc3550_intervals() {
    let t0 = Instant::now();
    let mut rtcp = Rtcp::new(0xC0FFEE, 8000, clock(t0), Duration::from_secs(5));
    let mut buf = [0u8; 200];
    let mut times = Vec::new();
    // Ten simulated minutes in 20 ms ticks.
    for tick in 0..30_000u64 {
        let now = t0 + Duration::from_millis(20 * tick);
        if rtcp.due(now) {
            rtcp.write_report(now, None, "c", &mut buf).unwrap();
            times.push(now.duration_since(t0).as_secs_f64());
        }
    }
    let first = times[0];
    assert!((2.5 * 0.5 / COMPENSATION..=2.5 * 1.5 / COMPENSATION + 0.02).contains(&first));
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let lo = 5.0 * 0.5 / COMPENSATION;
    let hi = 5.0 * 1.5 / COMPENSATION + 0.02;
    assert!(gaps.iter().all(|g| (lo..=hi).contains(g)), "{gaps:?}");
    // Randomised, averaging T_min / compensation.
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    assert!(
        (mean - 5.0 / COMPENSATION).abs() < 0.3,
        "mean interval {mean}"
    );
    assert!(gaps.iter().any(|g| (g - gaps[0]).abs() > 0.1));
    assert_eq!(rtcp.reports_sent(), times.len() as u64);
}

#[test]
fn hostile_rtcp_is_refused_not_panicked_on() {
    let t0 = Instant::now();
    let mut rtcp = Rtcp::new(1, 8000, clock(t0), Duration::from_secs(5));
    assert_eq!(rtcp.on_rtcp(t0, &[]), Err(RtcpError::Truncated));
    assert_eq!(rtcp.on_rtcp(t0, &[0x80, 201]), Err(RtcpError::Truncated));
    assert_eq!(
        rtcp.on_rtcp(t0, &[0x40, 201, 0, 1, 0, 0, 0, 0]),
        Err(RtcpError::Version)
    );
    // Length field runs past the end.
    assert_eq!(
        rtcp.on_rtcp(t0, &[0x80, 201, 0, 9, 0, 0, 0, 0]),
        Err(RtcpError::Truncated)
    );
    // RR claiming three blocks with none present.
    assert_eq!(
        rtcp.on_rtcp(t0, &[0x83, 201, 0, 1, 0, 0, 0, 0]),
        Err(RtcpError::Truncated)
    );
    // SR too short for its sender info.
    assert_eq!(
        rtcp.on_rtcp(t0, &[0x80, 200, 0, 1, 0, 0, 0, 0]),
        Err(RtcpError::Truncated)
    );
    let mut state = 7u32;
    for len in 0..300 {
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        if len > 1 {
            bytes[0] = 0x80 | (bytes[0] & 0x1F);
        }
        let _ = rtcp.on_rtcp(t0, &bytes);
    }
    // Unknown packet types (APP, XR, feedback) in a compound are stepped over.
    let info = rtcp
        .on_rtcp(
            t0,
            &[0x80, 204, 0, 1, 0, 0, 0, 0, 0x80, 201, 0, 1, 0, 0, 0, 2],
        )
        .unwrap();
    assert_eq!(info.receiver_reports, 1);
}

#[test]
fn a_sender_wrapping_32_bits_of_cycles_keeps_the_figures_sane() {
    // Steps of 2,999 (just under the dropout limit) wrap the 16-bit sequence every 22 packets;
    // 1.5 million packets wrap 2^16 cycles, where a 32-bit cycle count (and `expected()` with
    // it) once wrapped below the base sequence and underflowed.
    let t0 = Instant::now();
    let mut rtcp = Rtcp::new(1, 8000, clock(t0), Duration::from_secs(5));
    let mut sequence = 65_535u16;
    let packets = 1_500_000u32;
    for i in 0..packets {
        rtcp.on_rtp(t0, 5, sequence, i.wrapping_mul(160));
        sequence = sequence.wrapping_add(2999);
    }
    let expected = rtcp.packets_expected();
    assert!(expected >= u64::from(packets), "{expected}");
    assert!(expected < 2 * 2999 * u64::from(packets), "{expected}");
    assert!(rtcp.packets_lost() > 0);
    let mut report = [0u8; 1500];
    assert!(
        rtcp.write_report(t0 + Duration::from_secs(10), None, "x", &mut report)
            .is_some()
    );
}
