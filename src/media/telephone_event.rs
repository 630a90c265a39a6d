//! RFC 4733 telephone-event reception, sans-I/O: packets of one event share its RTP timestamp
//! and grow its duration; the last ones carry the end bit, usually three times. A digit is
//! reported once, when it ends: at its first end packet, when a new event starts before an end
//! was seen (the end packets were lost), or when no packet of it came for [`END_TIMEOUT`].

use std::time::{Duration, Instant};

/// An event without packets for this long is taken as ended.
pub const END_TIMEOUT: Duration = Duration::from_millis(400);

/// A DTMF digit that was keyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dtmf {
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: char,
    pub duration: Duration,
}

/// Why a telephone-event payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("telephone-event payload shorter than 4 bytes")]
pub struct Truncated;

/// The digit of an RFC 4733 event code, if it is a DTMF event.
pub fn digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug)]
struct Current {
    timestamp: u32,
    event: u8,
    /// Duration in RTP units, the longest seen.
    duration: u32,
    last_packet: Instant,
    end_seen: bool,
    reported: bool,
}

/// Reception of one leg's telephone events.
#[derive(Clone, Copy, Debug)]
pub struct TelephoneEvents {
    clock_rate: u32,
    current: Option<Current>,
}

impl TelephoneEvents {
    pub fn new(clock_rate: u32) -> Self {
        TelephoneEvents {
            clock_rate: clock_rate.max(1),
            current: None,
        }
    }

    fn finish(&self, c: &Current) -> Option<Dtmf> {
        let digit = digit(c.event)?;
        Some(Dtmf {
            digit,
            duration: Duration::from_micros(
                u64::from(c.duration) * 1_000_000 / u64::from(self.clock_rate),
            ),
        })
    }

    /// A telephone-event packet with RTP timestamp `timestamp`. Returns a digit that ended.
    /// A packet of a new event may end the previous one (whose end was lost) and start its own:
    /// then the previous digit is returned and the new one follows later.
    pub fn packet(
        &mut self,
        now: Instant,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<Option<Dtmf>, Truncated> {
        let [event, flags, d0, d1, ..] = *payload else {
            return Err(Truncated);
        };
        let end = flags & 0x80 != 0;
        let duration = u32::from(u16::from_be_bytes([d0, d1]));
        let mut ended = None;
        match &mut self.current {
            Some(c) if c.timestamp == timestamp => {
                c.duration = c.duration.max(duration);
                c.last_packet = now;
            }
            Some(c) if timestamp.wrapping_sub(c.timestamp) > u32::MAX / 2 => {
                // An old event's late packet: nothing to do.
                return Ok(None);
            }
            slot => {
                if let Some(prev) = slot.take()
                    && !prev.reported
                {
                    ended = self.finish(&prev);
                }
                self.current = Some(Current {
                    timestamp,
                    event,
                    duration,
                    last_packet: now,
                    end_seen: false,
                    reported: false,
                });
            }
        }
        if let Some(c) = &mut self.current
            && end
        {
            c.end_seen = true;
        }
        // At most one digit per call: if this packet ended the previous event and is itself
        // an end, its own digit comes from the next poll.
        if ended.is_none() {
            ended = self.take_finished(now);
        }
        Ok(ended)
    }

    /// A digit that ended and was not yet reported: its end was seen, or its packets stopped
    /// without one.
    pub fn poll(&mut self, now: Instant) -> Option<Dtmf> {
        self.take_finished(now)
    }

    /// When a digit whose end packets never come is taken as ended, if one is playing.
    pub fn deadline(&self) -> Option<Instant> {
        let c = self.current.as_ref()?;
        // An end already seen is reported at the next poll.
        let wait = if c.end_seen {
            Duration::ZERO
        } else {
            END_TIMEOUT
        };
        (!c.reported).then(|| c.last_packet + wait)
    }

    fn take_finished(&mut self, now: Instant) -> Option<Dtmf> {
        let c = self.current.as_mut()?;
        let timed_out = now.saturating_duration_since(c.last_packet) >= END_TIMEOUT;
        if c.reported || !(c.end_seen || timed_out) {
            return None;
        }
        c.reported = true;
        let c = *c;
        self.finish(&c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
    }

    /// An event as a sender sends it: packets every 50 ms growing the duration, three ends.
    fn key(rx: &mut TelephoneEvents, t: &mut Instant, ts: u32, event: u8, ms: u16) -> Vec<Dtmf> {
        let mut out = Vec::new();
        let mut d = 0;
        while d < ms {
            d = (d + 50).min(ms);
            out.extend(rx.packet(*t, ts, &payload(event, false, d * 8)).unwrap());
            *t += Duration::from_millis(50);
        }
        for _ in 0..3 {
            out.extend(rx.packet(*t, ts, &payload(event, true, d * 8)).unwrap());
        }
        out
    }

    #[test]
    fn each_digit_once_with_its_duration() {
        let mut rx = TelephoneEvents::new(8000);
        let mut t = Instant::now();
        let mut digits = Vec::new();
        for (i, event) in [1u8, 2, 3, 11, 10, 0, 0].iter().enumerate() {
            digits.extend(key(&mut rx, &mut t, 1000 + 4000 * i as u32, *event, 120));
            digits.extend(rx.poll(t + Duration::from_secs(1)));
        }
        let s: String = digits.iter().map(|d| d.digit).collect();
        assert_eq!(s, "123#*00");
        assert!(
            digits
                .iter()
                .all(|d| d.duration == Duration::from_millis(120))
        );
    }

    #[test]
    fn lost_end_packets_still_give_the_digit_once() {
        let mut rx = TelephoneEvents::new(48000);
        let t = Instant::now();
        // Event 5 without end packets, then event 7 starts: 5 is reported then.
        assert_eq!(rx.packet(t, 10, &payload(5, false, 4800)).unwrap(), None);
        let five = rx
            .packet(t, 20_000, &payload(7, false, 960))
            .unwrap()
            .unwrap();
        assert_eq!(five.digit, '5');
        assert_eq!(five.duration, Duration::from_millis(100));
        // Event 7 stops without an end: reported after the timeout, once.
        assert_eq!(rx.poll(t + Duration::from_millis(100)), None);
        assert_eq!(rx.poll(t + END_TIMEOUT).unwrap().digit, '7');
        assert_eq!(rx.poll(t + END_TIMEOUT * 3), None);
        // A late packet of an earlier event changes nothing.
        assert_eq!(rx.packet(t, 10, &payload(5, true, 4800)).unwrap(), None);
    }

    #[test]
    fn a_lost_end_followed_by_an_immediate_end() {
        let mut rx = TelephoneEvents::new(8000);
        let t = Instant::now();
        rx.packet(t, 100, &payload(1, false, 400)).unwrap();
        // Only the end packets of the next event arrive.
        let first = rx.packet(t, 2000, &payload(2, true, 800)).unwrap();
        assert_eq!(first.unwrap().digit, '1');
        assert_eq!(rx.poll(t).unwrap().digit, '2');
        assert_eq!(rx.packet(t, 2000, &payload(2, true, 800)).unwrap(), None);
    }

    #[test]
    fn hostile_payloads() {
        let mut rx = TelephoneEvents::new(8000);
        let t = Instant::now();
        assert_eq!(rx.packet(t, 1, &[]), Err(Truncated));
        assert_eq!(rx.packet(t, 1, &[1, 2, 3]), Err(Truncated));
        // Not a DTMF event (flash): never a digit.
        assert_eq!(rx.packet(t, 1, &payload(16, true, 800)).unwrap(), None);
        assert_eq!(rx.poll(t + Duration::from_secs(5)), None);
        for event in 0..=255u8 {
            let _ = rx.packet(t, u32::from(event) * 7, &[event, event, event, event]);
        }
    }
}
