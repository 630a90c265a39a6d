//! Compound RTCP through both readers of `media::rtcp`: the free `parse` and a leg's
//! `Rtcp::on_rtcp` (which keeps the peer's SR time and our round-trip time), after some of the
//! peer's RTP; then our own report, which must read back.
//!
//! Input: the datagram. Our SSRC is 0x11223344 and the peer's 0x55667788, so that seeds can
//! carry report blocks about us and SRs from the peer.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use confab::media::rtcp::{self, NtpClock, Rtcp, Sent};
use libfuzzer_sys::fuzz_target;

const OURS: u32 = 0x1122_3344;
const PEER: u32 = 0x5566_7788;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    let mut srs = 0u32;
    let free = rtcp::parse(data, OURS, |_, _| srs += 1);
    if let Ok(info) = &free {
        assert_eq!(info.sender_reports, srs);
    }

    let t0 = base();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut leg = Rtcp::new(OURS, 8000, NtpClock::new(t0, wall), Duration::from_secs(5));
    for seq in 0..5u16 {
        let at = t0 + Duration::from_millis(20 * u64::from(seq));
        leg.on_rtp(at, PEER, seq.wrapping_mul(3), 160 * u32::from(seq));
    }
    let now = t0 + Duration::from_secs(3);
    let read = leg.on_rtcp(now, data);
    assert_eq!(read, free, "the two readers disagree");
    if let Some(rtt) = leg.round_trip() {
        assert!(rtt <= Duration::from_secs(10));
    }
    let _ = (leg.remote_report(), leg.remote_jitter(), leg.jitter());
    let _ = (leg.packets_lost(), leg.packets_expected(), leg.due(now));

    let sent = data.first().map(|&b| Sent {
        packets: u32::from(b),
        octets: 160 * u32::from(b),
        rtp_timestamp: 0,
    });
    let mut buf = [0u8; 1500];
    let cname = String::from_utf8_lossy(data);
    let Some(len) = leg.write_report(now, sent, &cname, &mut buf) else {
        return;
    };
    let ours = rtcp::parse(&buf[..len], PEER, |_, _| {});
    let info = match ours {
        Ok(i) => i,
        Err(e) => panic!("our own report does not parse: {e}"),
    };
    assert_eq!(info.sender_reports + info.receiver_reports, 1);
    assert!(
        info.block_for_us.is_some(),
        "our report has no block for the peer"
    );
});
