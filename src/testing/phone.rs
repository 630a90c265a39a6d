//! A phone in the simulation: it sends a tone in RTP at its own (possibly drifting) clock, with
//! optional silence suppression, RFC 4733 digits and SDES-SRTP, and decodes what it receives.
//! Its codecs come from outside Confab (audio-codec, libopus) and its RTP header reader is
//! rtc-rtp's, so measuring what it heard checks the bridge against someone else's code.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use audio_codec::{Decoder as _, Encoder as _};
use bytes::Bytes;
use rtc_rtcp::packet::Packet;
use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::sender_report::SenderReport;
use shared::marshal::Unmarshal as _;

use crate::media::codec::Codec;
use crate::media::srtp::{SrtpKeys, SrtpSession};

/// One phone's codec pair.
enum Codecs {
    Pcmu(
        audio_codec::pcmu::PcmuEncoder,
        audio_codec::pcmu::PcmuDecoder,
    ),
    Pcma(
        audio_codec::pcma::PcmaEncoder,
        audio_codec::pcma::PcmaDecoder,
    ),
    G722(
        Box<audio_codec::g722::G722Encoder>,
        Box<audio_codec::g722::G722Decoder>,
    ),
    Opus(opus::Encoder, opus::Decoder),
}

const FRAME: Duration = Duration::from_millis(20);

/// A simulated phone.
pub(crate) struct SimPhone {
    pub(crate) codec: Codec,
    codecs: Codecs,
    /// The codec's audio rate.
    pub(crate) rate: u32,
    payload_type: u8,
    pub(crate) ssrc: u32,
    sequence: u16,
    timestamp: u32,
    pub(crate) tone_hz: f32,
    pub(crate) tone_dbov: f32,
    phase: u64,
    /// Its clock runs fast (positive) or slow by this many parts per million: it sends a
    /// frame every 20 ms of its own time.
    drift_ppm: f64,
    started: Instant,
    frames: u64,
    /// The tone is on for `.0` frames, then off for `.1`.
    pub(crate) bursts: Option<(u64, u64)>,
    /// Audio at `rate` sent in a loop instead of the tone.
    pub(crate) pcm: Option<std::sync::Arc<[i16]>>,
    /// Nothing is sent while the tone is off: the sequence number goes on where it stopped
    /// while the timestamp jumps by the pause (silence suppression, DTX).
    pub(crate) silence_suppression: bool,
    /// After this many frames, the encoded payloads repeat (a periodic tone encodes the same
    /// way again; long runs then cost no encoding). For stateless codecs and Opus only: an
    /// ADPCM decoder fed repeated packets drifts away from the encoder's state.
    pub(crate) repeat_after: Option<usize>,
    encoded: Vec<Vec<u8>>,
    srtp: Option<SrtpSession>,
    /// Payload type of telephone-event and the packets of digits waiting to go.
    pub(crate) telephone_event: Option<u8>,
    digit_packets: VecDeque<Vec<u8>>,
    /// While false the phone's frames come due but nothing is sent (a phone that has not
    /// started yet, or has gone quiet: on hold, unplugged, behind a dead NAT binding).
    pub(crate) sending: bool,
    /// RFC 6464 level (-dBov, with the voice bit) sent in every audio packet under this
    /// one-byte header extension id.
    pub(crate) audio_level_ext: Option<(u8, u8)>,
    /// Extension id under which the bridge's RFC 6465 levels of the talkers are read.
    pub(crate) csrc_level_id: Option<u8>,
    /// Decoded audio heard, at `rate`.
    pub(crate) heard: Vec<i16>,
    pub(crate) heard_packets: u64,
    /// CSRCs of the last packet heard, and its RFC 6465 levels (under `csrc_level_id`).
    pub(crate) last_csrcs: Vec<u32>,
    pub(crate) last_csrc_levels: Option<Vec<u8>>,
    /// SSRC of the bridge's stream to this phone.
    pub(crate) bridge_ssrc: Option<u32>,
    pub(crate) srtp_failures: u64,
    pub(crate) rtcp_heard: u64,
    /// RTCP heard (after SRTCP), where from and to, and when.
    pub(crate) rtcp_in: Vec<RtcpIn>,
    /// Answer every sender report with a receiver report about the bridge's stream that
    /// claims this fraction lost (in 256ths), as a phone's RTCP stack does.
    pub(crate) answer_reports: Option<u8>,
    /// `rtcp_in` entries already answered.
    answered: usize,
    /// With `Some`, every RTP payload heard is kept here too (to decode it again otherwise).
    pub(crate) payloads: Option<Vec<Vec<u8>>>,
}

/// An RTCP packet a phone heard.
#[derive(Clone, Debug)]
pub(crate) struct RtcpIn {
    pub(crate) from: SocketAddr,
    pub(crate) to: SocketAddr,
    pub(crate) at: Instant,
    /// The packet in the clear.
    pub(crate) plain: Vec<u8>,
}

/// The SR or RR at the head of a compound RTCP packet (read by rtc-rtcp): its sender's SSRC,
/// the SR's NTP time, and its report blocks.
pub(crate) fn report_of(bytes: &[u8]) -> Option<(u32, Option<u64>, Vec<ReceptionReport>)> {
    let mut b = Bytes::copy_from_slice(bytes);
    let packets = rtc_rtcp::packet::unmarshal(&mut b).ok()?;
    let first = packets.first()?;
    if let Some(sr) = first.as_any().downcast_ref::<SenderReport>() {
        return Some((sr.ssrc, Some(sr.ntp_time), sr.reports.clone()));
    }
    let rr = first.as_any().downcast_ref::<ReceiverReport>()?;
    Some((rr.ssrc, None, rr.reports.clone()))
}

/// A receiver report from `ssrc` with `reports`, on the wire (written by rtc-rtcp).
pub(crate) fn receiver_report(ssrc: u32, reports: Vec<ReceptionReport>) -> Vec<u8> {
    let rr = ReceiverReport {
        ssrc,
        reports,
        profile_extensions: Bytes::new(),
    };
    rtc_rtcp::packet::marshal(&[Box::new(rr) as Box<dyn Packet>])
        .unwrap()
        .to_vec()
}

impl SimPhone {
    pub(crate) fn new(codec: Codec, tone_hz: f32, tone_dbov: f32, ssrc: u32, now: Instant) -> Self {
        let (codecs, rate) = match codec {
            Codec::Pcmu => (
                Codecs::Pcmu(
                    audio_codec::pcmu::PcmuEncoder::new(),
                    audio_codec::pcmu::PcmuDecoder::new(),
                ),
                8000,
            ),
            Codec::Pcma => (
                Codecs::Pcma(
                    audio_codec::pcma::PcmaEncoder::new(),
                    audio_codec::pcma::PcmaDecoder::new(),
                ),
                8000,
            ),
            Codec::G722 => (
                Codecs::G722(
                    Box::new(audio_codec::g722::G722Encoder::new()),
                    Box::new(audio_codec::g722::G722Decoder::new()),
                ),
                16000,
            ),
            Codec::Opus => (
                Codecs::Opus(
                    opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip)
                        .unwrap(),
                    opus::Decoder::new(48000, opus::Channels::Mono).unwrap(),
                ),
                48000,
            ),
        };
        SimPhone {
            codec,
            codecs,
            rate,
            payload_type: codec.default_payload_type(),
            ssrc,
            sequence: (ssrc as u16).wrapping_mul(7),
            timestamp: ssrc.rotate_left(5),
            tone_hz,
            tone_dbov,
            phase: 0,
            drift_ppm: 0.0,
            started: now,
            frames: 0,
            bursts: None,
            pcm: None,
            silence_suppression: false,
            repeat_after: None,
            encoded: Vec::new(),
            srtp: None,
            telephone_event: None,
            digit_packets: VecDeque::new(),
            sending: true,
            audio_level_ext: None,
            csrc_level_id: None,
            heard: Vec::new(),
            heard_packets: 0,
            last_csrcs: Vec::new(),
            last_csrc_levels: None,
            bridge_ssrc: None,
            srtp_failures: 0,
            rtcp_heard: 0,
            rtcp_in: Vec::new(),
            answer_reports: None,
            answered: 0,
            payloads: None,
        }
    }

    /// The phone's clock runs `ppm` parts per million fast (negative: slow).
    pub(crate) fn drift(mut self, ppm: f64) -> Self {
        self.drift_ppm = ppm;
        self
    }

    /// Secures the phone with SDES keys as the bridge sees them (`keys.local` is what the
    /// bridge encrypts with, so the phone decrypts with it).
    pub(crate) fn use_srtp(&mut self, bridge_keys: &SrtpKeys) {
        let mine = SrtpKeys {
            suite: bridge_keys.suite,
            local: bridge_keys.remote,
            remote: bridge_keys.local,
        };
        self.srtp = Some(SrtpSession::new(&mine).unwrap());
    }

    /// Opus only: carry in-band FEC for an expected loss rate.
    pub(crate) fn enable_fec(&mut self, loss_percent: i32) {
        if let Codecs::Opus(e, _) = &mut self.codecs {
            e.set_inband_fec(true).unwrap();
            e.set_packet_loss_perc(loss_percent).unwrap();
        }
    }

    /// RTP timestamp units per 20 ms.
    fn ticks(&self) -> u32 {
        self.codec.ticks(20)
    }

    /// When the phone's clock says its next frame is due.
    fn next_frame_at(&self) -> Instant {
        let own = FRAME * (self.frames as u32);
        self.started + own.mul_f64(1.0 / (1.0 + self.drift_ppm * 1e-6))
    }

    /// The next packet the phone sends by `now`, if one is due (a digit's packet goes before
    /// the frame it replaces).
    pub(crate) fn poll_send(&mut self, now: Instant) -> Option<Vec<u8>> {
        if now < self.next_frame_at() {
            return None;
        }
        if !self.sending {
            // Time goes on for a quiet phone: its next packet, if it comes back, says so.
            self.frames += 1;
            self.phase += u64::from(self.rate / 50);
            self.timestamp = self.timestamp.wrapping_add(self.ticks());
            return self.poll_send(now);
        }
        self.frames += 1;
        if let Some(p) = self.digit_packets.pop_front() {
            self.phase += u64::from(self.rate / 50);
            self.timestamp = self.timestamp.wrapping_add(self.ticks());
            return Some(self.seal(p));
        }
        let on = self
            .bursts
            .is_none_or(|(on, off)| (self.frames - 1) % (on + off) < on);
        if !on && self.silence_suppression {
            self.phase += u64::from(self.rate / 50);
            self.timestamp = self.timestamp.wrapping_add(self.ticks());
            return self.poll_send(now);
        }
        let payload = self.encode_frame(on);
        let mut packet = self.rtp(self.payload_type, false, self.timestamp, &payload);
        if let Some((id, level)) = self.audio_level_ext {
            // X bit, and a one-byte-header extension (RFC 8285) of one element before the
            // payload.
            packet[0] |= 0x10;
            let ext = [0xBE, 0xDE, 0, 1, id << 4, level, 0, 0];
            packet.splice(12..12, ext);
        }
        self.timestamp = self.timestamp.wrapping_add(self.ticks());
        Some(self.seal(packet))
    }

    fn encode_frame(&mut self, on: bool) -> Vec<u8> {
        let index = (self.frames - 1) as usize;
        if let Some(n) = self.repeat_after
            && on
            && self.bursts.is_none()
            && index >= n
        {
            return self.encoded[index % n].clone();
        }
        let n = (self.rate / 50) as usize;
        let amplitude = if on {
            32768.0 * 10f64.powf(f64::from(self.tone_dbov) / 20.0) * std::f64::consts::SQRT_2
        } else {
            0.0
        };
        let step = 2.0 * std::f64::consts::PI * f64::from(self.tone_hz) / f64::from(self.rate);
        let pcm: Vec<i16> = match &self.pcm {
            Some(audio) if !audio.is_empty() => (0..n)
                .map(|i| audio[(self.phase as usize + i) % audio.len()])
                .collect(),
            _ => (0..n)
                .map(|i| (amplitude * (step * (self.phase + i as u64) as f64).sin()).round() as i16)
                .collect(),
        };
        self.phase += n as u64;
        let mut payload = vec![0u8; 1500];
        let len = match &mut self.codecs {
            Codecs::Pcmu(e, _) => e.encode_into(&pcm, &mut payload).unwrap(),
            Codecs::Pcma(e, _) => e.encode_into(&pcm, &mut payload).unwrap(),
            Codecs::G722(e, _) => e.encode_into(&pcm, &mut payload).unwrap(),
            Codecs::Opus(e, _) => e.encode(&pcm, &mut payload).unwrap(),
        };
        payload.truncate(len);
        if self.repeat_after.is_some_and(|n| self.encoded.len() < n) {
            self.encoded.push(payload.clone());
        }
        payload
    }

    /// An RTP packet with the next sequence number.
    fn rtp(&mut self, payload_type: u8, marker: bool, timestamp: u32, payload: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x80, payload_type | if marker { 0x80 } else { 0 }];
        packet.extend_from_slice(&self.sequence.to_be_bytes());
        packet.extend_from_slice(&timestamp.to_be_bytes());
        packet.extend_from_slice(&self.ssrc.to_be_bytes());
        packet.extend_from_slice(payload);
        self.sequence = self.sequence.wrapping_add(1);
        packet
    }

    fn seal(&mut self, packet: Vec<u8>) -> Vec<u8> {
        match &mut self.srtp {
            Some(srtp) => srtp.protect_rtp(&packet).unwrap(),
            None => packet,
        }
    }

    /// An RTCP packet to send, as SRTCP when the phone is secured.
    pub(crate) fn seal_rtcp(&mut self, packet: &[u8]) -> Vec<u8> {
        match &mut self.srtp {
            Some(srtp) => srtp.protect_rtcp(packet).unwrap(),
            None => packet.to_vec(),
        }
    }

    /// The next RTCP packet the phone sends by `now`: with `answer_reports`, a receiver report
    /// for each sender report heard, its DLSR the time the phone held the SR.
    pub(crate) fn poll_rtcp(&mut self, now: Instant) -> Option<Vec<u8>> {
        let fraction_lost = self.answer_reports?;
        while self.answered < self.rtcp_in.len() {
            let heard = &self.rtcp_in[self.answered];
            self.answered += 1;
            let Some((bridge_ssrc, Some(ntp), _)) = report_of(&heard.plain) else {
                continue;
            };
            let held = now.duration_since(heard.at);
            let block = ReceptionReport {
                ssrc: bridge_ssrc,
                fraction_lost,
                total_lost: 3,
                last_sequence_number: 100,
                jitter: 16,
                last_sender_report: (ntp >> 16) as u32,
                delay: (held.as_micros() * 65_536 / 1_000_000) as u32,
            };
            let rr = receiver_report(self.ssrc, vec![block]);
            return Some(self.seal_rtcp(&rr));
        }
        None
    }

    /// Queues RFC 4733 packets for `event` (0-9 digits, 10 `*`, 11 `#`) lasting `frames`
    /// frames, with its three end packets unless `without_end` (they were lost).
    pub(crate) fn press(&mut self, event: u8, frames: u16, without_end: bool) {
        let Some(pt) = self.telephone_event else {
            return;
        };
        // Every packet of the event carries the timestamp of its start.
        let start = self.timestamp;
        let per_frame = self.codec.ticks(20) as u16;
        for i in 1..=frames {
            let duration = per_frame.saturating_mul(i);
            let body = [event, 10, (duration >> 8) as u8, duration as u8];
            let p = self.rtp(pt, i == 1, start, &body);
            self.digit_packets.push_back(p);
        }
        if !without_end {
            let duration = per_frame.saturating_mul(frames);
            for _ in 0..3 {
                let body = [event, 0x80 | 10, (duration >> 8) as u8, duration as u8];
                let p = self.rtp(pt, false, start, &body);
                self.digit_packets.push_back(p);
            }
        }
    }

    /// A datagram from the bridge at `now`, from `from` to the phone's `to`: RTP is decoded
    /// into `heard`; RTCP is kept in `rtcp_in`.
    pub(crate) fn receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        datagram: &[u8],
    ) {
        if datagram.len() >= 2 && (192..=223).contains(&datagram[1]) {
            let plain = match &mut self.srtp {
                Some(srtp) => srtp.unprotect_rtcp(datagram).ok(),
                None => Some(datagram.to_vec()),
            };
            match plain {
                Some(plain) => {
                    self.rtcp_heard += 1;
                    self.rtcp_in.push(RtcpIn {
                        from,
                        to,
                        at: now,
                        plain,
                    });
                }
                None => self.srtp_failures += 1,
            }
            return;
        }
        let plain = match &mut self.srtp {
            None => datagram.to_vec(),
            Some(srtp) => match srtp.unprotect_rtp(datagram) {
                Ok(p) => p,
                Err(_) => {
                    self.srtp_failures += 1;
                    return;
                }
            },
        };
        let mut reader = &plain[..];
        let Ok(header) = rtc_rtp::header::Header::unmarshal(&mut reader) else {
            return;
        };
        let payload = reader;
        if let Some(kept) = &mut self.payloads {
            kept.push(payload.to_vec());
        }
        self.heard_packets += 1;
        self.bridge_ssrc = Some(header.ssrc);
        self.last_csrcs = header.csrc.clone();
        self.last_csrc_levels = self
            .csrc_level_id
            .and_then(|id| header.get_extension(id))
            .map(|b| b.to_vec());
        let mut out = vec![0i16; 5760];
        let n = match &mut self.codecs {
            Codecs::Pcmu(_, d) => d.decode_into(payload, &mut out).unwrap(),
            Codecs::Pcma(_, d) => d.decode_into(payload, &mut out).unwrap(),
            Codecs::G722(_, d) => d.decode_into(payload, &mut out).unwrap(),
            Codecs::Opus(_, d) => d.decode(payload, &mut out, false).unwrap(),
        };
        self.heard.extend_from_slice(&out[..n]);
    }

    /// Level in dBov of the phone's own tone frequency in the last `seconds` heard.
    pub(crate) fn heard_level(&self, freq: f32, seconds: f32) -> f32 {
        let n = (seconds * self.rate as f32) as usize;
        let tail = &self.heard[self.heard.len().saturating_sub(n)..];
        confab_dsp::signal::tone_level_dbov(tail, self.rate, freq)
    }
}
