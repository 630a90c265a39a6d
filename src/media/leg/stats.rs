//! A leg's counters and quality figures.

use crate::media::codec::Codec;

/// Counters and quality figures of one leg.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LegStats {
    /// RTP packets accepted (audio and telephone events).
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub dropped_foreign_source: u64,
    pub dropped_malformed: u64,
    pub dropped_payload_type: u64,
    pub dropped_rtcp: u64,
    /// SRTP packets that failed authentication (forged, replayed, wrong key).
    pub dropped_srtp_auth: u64,
    pub send_errors: u64,
    pub rtcp_in: u64,
    pub rtcp_out: u64,
    /// DTMF digits received by RFC 4733.
    pub dtmf_in: u64,
    /// Voice-inactive Opus packets of a quiet leg taken as silence without decoding.
    pub decodes_skipped: u64,
    /// The last RFC 6464 level (-dBov) the client reported, if it sends them.
    pub client_level: Option<u8>,
    /// Packets of the peer's stream lost (RFC 3550 cumulative count).
    pub packets_lost: i64,
    pub packets_expected: u64,
    /// Interarrival jitter of the peer's stream, in milliseconds.
    pub jitter_ms: f64,
    /// Loss the peer reports of our stream (fraction lost of its last report), in percent.
    pub remote_loss_percent: Option<f64>,
    pub remote_jitter_ms: Option<f64>,
    pub rtt_ms: Option<f64>,
    /// Estimated MOS (simplified E-model, see `media::quality`).
    pub mos: f64,
    /// What the leg negotiated: codec, telephone-event clock rate, SRTP.
    pub codec: Option<Codec>,
    pub telephone_event_rate: Option<u32>,
    pub srtp: bool,
    /// A WebRTC leg (DTLS-SRTP through the shared WebRTC port).
    pub webrtc: bool,
    /// The SSRC we send this leg's audio with: it is the CSRC naming this participant in
    /// what the others receive while it talks (RFC 6465 levels go with it where negotiated).
    pub ssrc: u32,
}
