//! Opus toward a receiver follows what the receiver says of its path and of itself.
//!
//! In: once a second ([`ADAPT_EVERY`]), the fraction lost the receiver last reported of our
//! stream (RTCP receiver reports, RFC 3550 6.4.1), and the receiver's fmtp (RFC 7587:
//! `useinbandfec`, `maxaveragebitrate`, `usedtx`). Out: what its Opus encoder carries (a
//! [`Target`]). In-band FEC and the loss hint cost bits the frame itself would have had, so
//! they are on only where the path loses more than [`FEC_ON_ABOVE`] percent, and off again
//! below [`FEC_OFF_BELOW`] (the gap keeps a path near the line from flapping). An encode shared
//! by a group of listeners follows the group's worst path and lowest bitrate cap; a listener
//! that said `useinbandfec=0` keeps FEC off for its group.
//!
//! Who calls it: the conference, for its group encoders and for every leg's own encoder, between
//! ticks' work but inside the tick; nothing here allocates.

use std::time::Duration;

use confab_dsp::opus::{BITRATE_RANGE, OpusSettings};

/// How often encoders follow the reports (RTCP comes every few seconds; per packet would only
/// cost).
pub const ADAPT_EVERY: Duration = Duration::from_secs(1);
/// Smoothed loss (percent) above which FEC goes on.
pub const FEC_ON_ABOVE: f32 = 1.0;
/// Smoothed loss (percent) below which FEC goes off again.
pub const FEC_OFF_BELOW: f32 = 0.5;
/// The highest loss hint given to the encoder (percent): past it, libopus would spend most of
/// the bitrate on the copy of the previous frame.
pub const MAX_LOSS_HINT: u8 = 25;
/// Weight of a new look at the report in the smoothed loss: a report read once a second
/// weighs in within a few seconds, a single bad report does not switch FEC on alone unless it
/// is bad indeed (one report of 5 % moves the smoothed loss to 1.5 %).
const SMOOTHING: f32 = 0.3;

/// What a receiver asked of the Opus toward it in its fmtp (RFC 7587, section 6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpusFmtp {
    /// False only when it said `useinbandfec=0`: then no FEC is ever sent toward it. Absent,
    /// FEC stays allowed (a decoder that cannot use it skips it).
    pub fec: bool,
    /// `maxaveragebitrate`, within what libopus takes.
    pub max_average_bitrate: Option<u32>,
    /// `usedtx=1`.
    pub dtx: bool,
}

impl Default for OpusFmtp {
    fn default() -> Self {
        OpusFmtp {
            fec: true,
            max_average_bitrate: None,
            dtx: false,
        }
    }
}

impl OpusFmtp {
    /// Reads an fmtp line's parameters (`useinbandfec=1;maxaveragebitrate=20000`); unknown
    /// and malformed parameters are ignored, a bitrate is brought within 6000..=510000.
    pub fn parse(params: &str) -> Self {
        let mut fmtp = OpusFmtp::default();
        for p in params.split(';') {
            let Some((key, value)) = p.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match key.trim().to_ascii_lowercase().as_str() {
                "useinbandfec" => fmtp.fec = value != "0",
                "usedtx" => fmtp.dtx = value == "1",
                "maxaveragebitrate" => {
                    fmtp.max_average_bitrate = value
                        .parse::<u32>()
                        .ok()
                        .map(|b| b.clamp(*BITRATE_RANGE.start(), *BITRATE_RANGE.end()));
                }
                _ => {}
            }
        }
        fmtp
    }
}

impl OpusFmtp {
    /// The fmtp of `payload_type` in the first audio section of an SDP text (a WHIP offer,
    /// which str0m negotiates without telling its fmtp); the defaults when it has none.
    pub fn in_sdp(sdp: &str, payload_type: u8) -> Self {
        let prefix = format!("a=fmtp:{payload_type} ");
        sdp.lines()
            .map(str::trim)
            .skip_while(|l| !l.starts_with("m=audio"))
            .take_while(|l| l.starts_with("m=audio") || !l.starts_with("m="))
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map_or_else(OpusFmtp::default, OpusFmtp::parse)
    }
}

/// A receiver's loss of our stream, smoothed over its reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PathLoss {
    smoothed: f32,
}

impl PathLoss {
    /// Takes another look at the last report's loss (percent; `None`, no report yet, counts as
    /// none lost) and returns the smoothed loss.
    pub fn observe(&mut self, reported: Option<f32>) -> f32 {
        let sample = reported.unwrap_or(0.0).clamp(0.0, 100.0);
        self.smoothed += SMOOTHING * (sample - self.smoothed);
        self.smoothed
    }

    /// The smoothed loss (percent).
    pub fn percent(&self) -> f32 {
        self.smoothed
    }
}

/// What some receivers together allow: the worst loss among them, whether all of them take
/// FEC and DTX, and the lowest bitrate cap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Receivers {
    pub worst_loss: f32,
    pub fec: bool,
    pub dtx: bool,
    pub max_bitrate: Option<u32>,
}

impl Receivers {
    /// Nobody yet: the next [`Receivers::add`] decides.
    pub const NONE: Receivers = Receivers {
        worst_loss: 0.0,
        fec: true,
        dtx: true,
        max_bitrate: None,
    };

    /// One receiver more, with its smoothed loss and its fmtp.
    pub fn add(&mut self, loss: f32, fmtp: &OpusFmtp) {
        self.worst_loss = self.worst_loss.max(loss);
        self.fec &= fmtp.fec;
        self.dtx &= fmtp.dtx;
        self.max_bitrate = match (self.max_bitrate, fmtp.max_average_bitrate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// What an Opus encoder should be set to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub fec: bool,
    pub loss_percent: u8,
    pub bitrate: u32,
    pub dtx: bool,
}

/// An encoder's FEC state, kept between looks for the hysteresis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Adaptation {
    fec: bool,
}

impl Adaptation {
    /// What the encoder toward `receivers` carries, its bitrate at most `base.bitrate`.
    pub fn decide(&mut self, receivers: &Receivers, base: &OpusSettings) -> Target {
        let loss = receivers.worst_loss;
        self.fec = receivers.fec
            && if self.fec {
                loss >= FEC_OFF_BELOW
            } else {
                loss > FEC_ON_ABOVE
            };
        let loss_percent = if self.fec {
            // At least 1: libopus makes no LBRR with a hint of 0.
            (loss.ceil() as u8).clamp(1, MAX_LOSS_HINT)
        } else {
            0
        };
        let bitrate = receivers
            .max_bitrate
            .map_or(base.bitrate, |cap| cap.min(base.bitrate))
            .clamp(*BITRATE_RANGE.start(), *BITRATE_RANGE.end());
        Target {
            fec: self.fec,
            loss_percent,
            bitrate,
            dtx: receivers.dtx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(loss: f32, fmtp: OpusFmtp) -> Receivers {
        let mut r = Receivers::NONE;
        r.add(loss, &fmtp);
        r
    }

    #[test]
    fn fmtp_is_read_and_hostile_values_are_tamed() {
        let f = OpusFmtp::parse("minptime=10;useinbandfec=0; maxaveragebitrate=20000;usedtx=1");
        assert_eq!(
            f,
            OpusFmtp {
                fec: false,
                max_average_bitrate: Some(20000),
                dtx: true
            }
        );
        assert_eq!(OpusFmtp::parse(""), OpusFmtp::default());
        assert!(OpusFmtp::parse("useinbandfec=1").fec);
        let f = OpusFmtp::parse("maxaveragebitrate=1;usedtx=yes;=;;x");
        assert_eq!(f.max_average_bitrate, Some(6000));
        assert!(!f.dtx);
        for bad in ["maxaveragebitrate=99999999999", "maxaveragebitrate=-5"] {
            assert_eq!(OpusFmtp::parse(bad).max_average_bitrate, None, "{bad}");
        }
        assert_eq!(
            OpusFmtp::parse("MAXAVERAGEBITRATE=900000").max_average_bitrate,
            Some(510_000)
        );
    }

    #[test]
    fn fmtp_is_found_in_the_audio_section_of_an_sdp_text() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 111\r\na=fmtp:111 useinbandfec=0\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=fmtp:63 111/111\r\n\
                   a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fmtp:111 maxaveragebitrate=8000\r\n";
        let f = OpusFmtp::in_sdp(sdp, 111);
        assert!(f.fec && f.dtx && f.max_average_bitrate.is_none(), "{f:?}");
        assert_eq!(OpusFmtp::in_sdp(sdp, 96), OpusFmtp::default());
        assert_eq!(OpusFmtp::in_sdp("garbage", 111), OpusFmtp::default());
    }

    #[test]
    fn fec_goes_on_above_one_percent_and_off_below_a_half() {
        let base = OpusSettings::default();
        let mut a = Adaptation::default();
        let mut path = PathLoss::default();
        let mut on_at = None;
        // A path reporting 5 %: FEC within a few looks, hinting the smoothed loss.
        for look in 0..10 {
            let loss = path.observe(Some(5.0));
            let t = a.decide(&one(loss, OpusFmtp::default()), &base);
            if t.fec && on_at.is_none() {
                on_at = Some(look);
                assert_eq!(t.loss_percent, loss.ceil() as u8);
            }
        }
        assert_eq!(on_at, Some(0), "one 5 % report is 1.5 % smoothed");
        let t = a.decide(&one(path.percent(), OpusFmtp::default()), &base);
        assert_eq!((t.fec, t.loss_percent, t.bitrate), (true, 5, 32_000));
        // Clean again: on through 0.5-1 %, then off.
        let mut off_at = None;
        for look in 0..20 {
            let loss = path.observe(Some(0.0));
            let t = a.decide(&one(loss, OpusFmtp::default()), &base);
            if !t.fec {
                off_at.get_or_insert(look);
                assert_eq!(t.loss_percent, 0);
                assert!(loss < FEC_OFF_BELOW, "{loss}");
            } else {
                assert!(off_at.is_none(), "flapped at {look}");
            }
        }
        assert!(off_at.is_some());
        // Hovering between the lines changes nothing either way.
        for (start, expected) in [(false, false), (true, true)] {
            let mut a = Adaptation { fec: start };
            for loss in [0.6, 0.9, 0.7, 1.0, 0.5] {
                assert_eq!(
                    a.decide(&one(loss, OpusFmtp::default()), &base).fec,
                    expected
                );
            }
        }
        // The hint is capped.
        let t = Adaptation::default().decide(&one(60.0, OpusFmtp::default()), &base);
        assert_eq!(t.loss_percent, MAX_LOSS_HINT);
    }

    #[test]
    fn a_group_follows_its_worst_path_lowest_cap_and_every_refusal() {
        let base = OpusSettings::default();
        let capped = OpusFmtp {
            max_average_bitrate: Some(16_000),
            ..OpusFmtp::default()
        };
        let no_fec = OpusFmtp {
            fec: false,
            ..OpusFmtp::default()
        };
        let dtx = OpusFmtp {
            dtx: true,
            ..OpusFmtp::default()
        };
        let mut r = Receivers::NONE;
        r.add(0.0, &OpusFmtp::default());
        r.add(4.2, &capped);
        r.add(0.2, &dtx);
        let t = Adaptation::default().decide(&r, &base);
        assert_eq!(
            t,
            Target {
                fec: true,
                loss_percent: 5,
                bitrate: 16_000,
                dtx: false
            }
        );
        r.add(0.0, &no_fec);
        assert!(!Adaptation::default().decide(&r, &base).fec);
        let t = Adaptation::default().decide(&one(0.0, dtx), &base);
        assert!(t.dtx && !t.fec);
        // A cap above the base bitrate does not raise it; no report counts as no loss.
        let high = OpusFmtp {
            max_average_bitrate: Some(64_000),
            ..OpusFmtp::default()
        };
        assert_eq!(
            Adaptation::default().decide(&one(0.0, high), &base).bitrate,
            32_000
        );
        assert_eq!(PathLoss::default().observe(None), 0.0);
    }
}
