//! RTCP for one leg (RFC 3550), sans-I/O: what we measure of the peer's stream, what the peer
//! reports of ours, and when our next report is due.
//!
//! In: every accepted RTP packet ([`Rtcp::on_rtp`]), every RTCP datagram after SRTCP
//! ([`Rtcp::on_rtcp`]), and `now` on each tick ([`Rtcp::due`]). Out: a compound SR or RR + SDES
//! written into a caller's buffer ([`Rtcp::write_report`]), and the leg's figures (loss, jitter,
//! round-trip time). Reports are written and read by hand into fixed buffers: the mixer thread
//! calls this every tick and must not allocate. rtc-rtcp serves as the oracle in the tests.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// RTCP packet types.
const SR: u8 = 200;
const RR: u8 = 201;
const SDES: u8 = 202;
/// Seconds from the NTP epoch (1900) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// RFC 3550 A.1: a sequence jump larger than this restarts the count.
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
/// RFC 3550 6.3.1: the compensation for the randomised interval (e - 3/2).
const COMPENSATION: f64 = 1.218_28;

/// Wall clock for NTP timestamps, fixed at leg creation so that `now: Instant` maps onto it.
#[derive(Clone, Copy, Debug)]
pub struct NtpClock {
    origin: Instant,
    /// NTP time of `origin`, 32.32 fixed point.
    origin_ntp: u64,
}

impl NtpClock {
    pub fn new(origin: Instant, wall: SystemTime) -> Self {
        let since = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        NtpClock {
            origin,
            origin_ntp: to_ntp(since + Duration::from_secs(NTP_UNIX_OFFSET)),
        }
    }

    /// NTP time (32.32) at `now`.
    pub fn at(&self, now: Instant) -> u64 {
        self.origin_ntp
            .wrapping_add(to_ntp(now.saturating_duration_since(self.origin)))
    }
}

fn to_ntp(d: Duration) -> u64 {
    (d.as_secs() << 32) | ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

/// The middle 32 bits of an NTP time (LSR, DLSR units: 1/65536 s).
fn mid32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// One report block (RFC 3550 6.4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed on the wire).
    pub cumulative_lost: i32,
    pub highest_sequence: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

/// Why an RTCP datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("RTCP packet truncated or its length field runs past the datagram")]
    Truncated,
    #[error("not RTCP version 2")]
    Version,
}

/// What a received compound packet told us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtcpInfo {
    pub sender_reports: u32,
    pub receiver_reports: u32,
    /// A report block about our stream was present.
    pub block_for_us: Option<ReportBlock>,
    pub bye: bool,
}

/// Walks a compound RTCP packet: sender and receiver reports are read, every other packet type
/// is stepped over. `on_sr` gets each SR's sender SSRC and NTP time.
pub fn parse(
    datagram: &[u8],
    our_ssrc: u32,
    mut on_sr: impl FnMut(u32, u64),
) -> Result<RtcpInfo, RtcpError> {
    let mut info = RtcpInfo::default();
    let mut rest = datagram;
    if rest.is_empty() {
        return Err(RtcpError::Truncated);
    }
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(RtcpError::Truncated);
        }
        if rest[0] >> 6 != 2 {
            return Err(RtcpError::Version);
        }
        let count = usize::from(rest[0] & 0x1F);
        let kind = rest[1];
        let len = 4 * (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1);
        if len > rest.len() {
            return Err(RtcpError::Truncated);
        }
        let body = &rest[4..len];
        let blocks = match kind {
            SR => {
                if body.len() < 24 {
                    return Err(RtcpError::Truncated);
                }
                info.sender_reports += 1;
                on_sr(
                    be32(body, 0),
                    (u64::from(be32(body, 4)) << 32) | u64::from(be32(body, 8)),
                );
                &body[24..]
            }
            RR => {
                if body.len() < 4 {
                    return Err(RtcpError::Truncated);
                }
                info.receiver_reports += 1;
                &body[4..]
            }
            203 => {
                info.bye = true;
                &[][..]
            }
            _ => &[][..],
        };
        if matches!(kind, SR | RR) {
            if blocks.len() < 24 * count {
                return Err(RtcpError::Truncated);
            }
            for b in blocks.chunks_exact(24).take(count) {
                if be32(b, 0) == our_ssrc {
                    info.block_for_us = Some(read_block(b));
                }
            }
        }
        rest = &rest[len..];
    }
    Ok(info)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn read_block(b: &[u8]) -> ReportBlock {
    let lost = be32(b, 4) & 0x00FF_FFFF;
    // Sign-extend the 24-bit count.
    let cumulative_lost = ((lost << 8) as i32) >> 8;
    ReportBlock {
        ssrc: be32(b, 0),
        fraction_lost: b[4],
        cumulative_lost,
        highest_sequence: be32(b, 8),
        jitter: be32(b, 12),
        last_sr: be32(b, 16),
        delay_since_last_sr: be32(b, 20),
    }
}

/// Reception of the peer's stream (RFC 3550 A.1, A.3, A.8).
#[derive(Clone, Copy, Debug)]
struct Reception {
    ssrc: u32,
    base_seq: u16,
    max_seq: u16,
    /// Sequence cycles seen, times 2^16. 64 bits: a sender stepping its sequence by ~3,000 a
    /// packet wraps 32 bits of cycles within a quarter of an hour, and `expected()` with it.
    cycles: u64,
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    transit: Option<i64>,
    /// Jitter in RTP units, scaled by 16 (A.8).
    jitter16: u64,
}

impl Reception {
    fn new(ssrc: u32, seq: u16) -> Self {
        Reception {
            ssrc,
            base_seq: seq,
            max_seq: seq,
            cycles: 0,
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter16: 0,
        }
    }

    /// The extended highest sequence number as a report carries it (modulo 2^32).
    fn extended_max(&self) -> u32 {
        self.extended_max_wide() as u32
    }

    fn extended_max_wide(&self) -> u64 {
        self.cycles | u64::from(self.max_seq)
    }

    fn expected(&self) -> u64 {
        (self.extended_max_wide() + 1).saturating_sub(u64::from(self.base_seq))
    }

    fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// A packet; false if it was taken as a stray (sequence far off) and not counted.
    fn update(&mut self, seq: u16) -> bool {
        let delta = seq.wrapping_sub(self.max_seq);
        if delta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.saturating_add(1 << 16);
            }
            self.max_seq = seq;
        } else if delta <= u16::MAX - MAX_MISORDER {
            // A large jump: believe it only when the next packet follows it (the sender
            // restarted); otherwise it is a stray.
            if self.bad_seq == Some(seq) {
                *self = Reception {
                    jitter16: self.jitter16,
                    ..Reception::new(self.ssrc, seq)
                };
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                return false;
            }
        }
        // else: duplicate or reordered, counted as received.
        self.received += 1;
        true
    }

    fn block(&mut self, last_sr: u32, delay: u32) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_sequence: self.extended_max(),
            jitter: (self.jitter16 >> 4) as u32,
            last_sr,
            delay_since_last_sr: delay,
        }
    }
}

/// What our side sent, for the sender info of an SR.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    pub packets: u32,
    pub octets: u32,
    /// RTP timestamp of the next packet we send.
    pub rtp_timestamp: u32,
}

/// The RTCP state of one leg.
#[derive(Debug)]
pub struct Rtcp {
    ssrc: u32,
    clock_rate: u32,
    clock: NtpClock,
    reception: Option<Reception>,
    /// The peer's last SR: its NTP middle 32 bits and when it arrived.
    last_sr: Option<(u32, Instant)>,
    /// What the peer last said about our stream.
    remote: Option<ReportBlock>,
    rtt: Option<Duration>,
    min_interval: Duration,
    next_report: Instant,
    reports_sent: u64,
    rng: u32,
}

impl Rtcp {
    /// `min_interval` is RFC 3550's T_min (5 s); the first report comes after half of it.
    pub fn new(ssrc: u32, clock_rate: u32, clock: NtpClock, min_interval: Duration) -> Self {
        let mut r = Rtcp {
            ssrc,
            clock_rate: clock_rate.max(1),
            clock,
            reception: None,
            last_sr: None,
            remote: None,
            rtt: None,
            min_interval,
            next_report: clock.origin,
            reports_sent: 0,
            rng: ssrc | 1,
        };
        r.next_report = clock.origin + r.interval(true);
        r
    }

    /// RFC 3550 6.3.1 for a two-member session: audio bandwidth is far above what RTCP needs,
    /// so T_min rules; randomised over [0.5, 1.5] and compensated.
    fn interval(&mut self, initial: bool) -> Duration {
        let t_min = if initial {
            self.min_interval / 2
        } else {
            self.min_interval
        };
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        let factor = 0.5 + f64::from(self.rng) / f64::from(u32::MAX);
        t_min.mul_f64(factor / COMPENSATION)
    }

    /// An RTP packet of the peer's stream arrived at `now`.
    pub fn on_rtp(&mut self, now: Instant, ssrc: u32, sequence: u16, rtp_timestamp: u32) {
        let reception = match &mut self.reception {
            Some(r) if r.ssrc == ssrc => r,
            slot => slot.insert(Reception::new(ssrc, sequence)),
        };
        if !reception.update(sequence) {
            return;
        }
        // Arrival in RTP units (A.8); wrapping arithmetic keeps it valid past 2^32.
        let arrival = (now.saturating_duration_since(self.clock.origin).as_micros() as u64
            * u64::from(self.clock_rate)
            / 1_000_000) as u32;
        let transit = i64::from(arrival.wrapping_sub(rtp_timestamp) as i32);
        if let Some(prev) = reception.transit {
            let d = (transit - prev).unsigned_abs();
            // J += (|D| - J) / 16, in units of 1/16.
            reception.jitter16 = reception.jitter16 + d - ((reception.jitter16 + 8) >> 4);
        }
        reception.transit = Some(transit);
    }

    /// An RTCP datagram (already through SRTCP) arrived at `now`.
    pub fn on_rtcp(&mut self, now: Instant, datagram: &[u8]) -> Result<RtcpInfo, RtcpError> {
        let mut last_sr = None;
        let peer = self.reception.map(|r| r.ssrc);
        let info = parse(datagram, self.ssrc, |ssrc, ntp| {
            if peer.is_none_or(|p| p == ssrc) {
                last_sr = Some(mid32(ntp));
            }
        })?;
        if let Some(lsr) = last_sr {
            self.last_sr = Some((lsr, now));
        }
        if let Some(block) = info.block_for_us {
            if block.last_sr != 0 {
                let arrival = mid32(self.clock.at(now));
                let rtt = arrival
                    .wrapping_sub(block.last_sr)
                    .wrapping_sub(block.delay_since_last_sr);
                // A negative result (clock trouble) wraps to a huge value: ignore it.
                if rtt < 65536 * 10 {
                    self.rtt = Some(Duration::from_micros(u64::from(rtt) * 1_000_000 / 65536));
                }
            }
            self.remote = Some(block);
        }
        Ok(info)
    }

    /// Whether our next report is due.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_report
    }

    /// When our next report is due.
    pub fn next_report(&self) -> Instant {
        self.next_report
    }

    /// Writes our compound report (SR when we have sent, else RR; with SDES CNAME) into `buf`
    /// and schedules the next. Returns the length, or `None` if `buf` is too small.
    pub fn write_report(
        &mut self,
        now: Instant,
        sent: Option<Sent>,
        cname: &str,
        buf: &mut [u8],
    ) -> Option<usize> {
        let block = self.reception.as_mut().map(|r| {
            let (lsr, dlsr) = match self.last_sr {
                Some((lsr, at)) => {
                    let d = now.saturating_duration_since(at);
                    (lsr, (d.as_micros() as u64 * 65536 / 1_000_000) as u32)
                }
                None => (0, 0),
            };
            r.block(lsr, dlsr)
        });
        let cname = &cname.as_bytes()[..cname.len().min(255)];
        let rc = usize::from(block.is_some());
        let report_len = if sent.is_some() { 28 } else { 8 } + 24 * rc;
        // SDES: header, SSRC, CNAME item (2 + len), END, padded to a word.
        let sdes_len = (8 + 2 + cname.len() + 1).div_ceil(4) * 4;
        let total = report_len + sdes_len;
        if buf.len() < total {
            return None;
        }
        let out = &mut buf[..total];
        out.fill(0);
        out[0] = 0x80 | rc as u8;
        out[1] = if sent.is_some() { SR } else { RR };
        out[2..4].copy_from_slice(&((report_len / 4 - 1) as u16).to_be_bytes());
        out[4..8].copy_from_slice(&self.ssrc.to_be_bytes());
        let mut at = 8;
        if let Some(s) = sent {
            let ntp = self.clock.at(now);
            out[8..16].copy_from_slice(&ntp.to_be_bytes());
            out[16..20].copy_from_slice(&s.rtp_timestamp.to_be_bytes());
            out[20..24].copy_from_slice(&s.packets.to_be_bytes());
            out[24..28].copy_from_slice(&s.octets.to_be_bytes());
            at = 28;
        }
        if let Some(b) = block {
            out[at..at + 4].copy_from_slice(&b.ssrc.to_be_bytes());
            let lost = (b.cumulative_lost as u32) & 0x00FF_FFFF;
            out[at + 4..at + 8]
                .copy_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
            out[at + 8..at + 12].copy_from_slice(&b.highest_sequence.to_be_bytes());
            out[at + 12..at + 16].copy_from_slice(&b.jitter.to_be_bytes());
            out[at + 16..at + 20].copy_from_slice(&b.last_sr.to_be_bytes());
            out[at + 20..at + 24].copy_from_slice(&b.delay_since_last_sr.to_be_bytes());
            at += 24;
        }
        let sdes = &mut out[at..];
        sdes[0] = 0x81;
        sdes[1] = SDES;
        sdes[2..4].copy_from_slice(&((sdes_len / 4 - 1) as u16).to_be_bytes());
        sdes[4..8].copy_from_slice(&self.ssrc.to_be_bytes());
        sdes[8] = 1; // CNAME
        sdes[9] = cname.len() as u8;
        sdes[10..10 + cname.len()].copy_from_slice(cname);
        // The END item and padding are the zeros already there.
        self.reports_sent += 1;
        self.next_report = now + self.interval(false);
        Some(total)
    }

    pub fn reports_sent(&self) -> u64 {
        self.reports_sent
    }

    /// Packets of the peer's stream lost so far (negative with duplicates).
    pub fn packets_lost(&self) -> i64 {
        self.reception.map_or(0, |r| r.lost())
    }

    /// Packets of the peer's stream expected so far.
    pub fn packets_expected(&self) -> u64 {
        self.reception.map_or(0, |r| r.expected())
    }

    /// Interarrival jitter of the peer's stream.
    pub fn jitter(&self) -> Duration {
        self.reception.map_or(Duration::ZERO, |r| {
            Duration::from_micros((r.jitter16 >> 4) * 1_000_000 / u64::from(self.clock_rate))
        })
    }

    /// What the peer last reported of our stream.
    pub fn remote_report(&self) -> Option<ReportBlock> {
        self.remote
    }

    /// Jitter the peer measured on our stream.
    pub fn remote_jitter(&self) -> Option<Duration> {
        self.remote.map(|b| {
            Duration::from_micros(u64::from(b.jitter) * 1_000_000 / u64::from(self.clock_rate))
        })
    }

    /// Round-trip time from the peer's last report about our SR.
    pub fn round_trip(&self) -> Option<Duration> {
        self.rtt
    }
}

#[cfg(test)]
#[path = "rtcp_tests.rs"]
mod tests;
