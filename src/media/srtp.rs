//! SRTP and SRTCP with SDES keys (RFC 4568): AES_CM_128_HMAC_SHA1_80 and _32 through rtc-srtp,
//! replay protection on. One context per direction: we decrypt with the peer's key and
//! encrypt with ours.

use rtc_rtp::header::Header;
use rtc_srtp::context::Context;
use rtc_srtp::crypto::providers::AwsLcRsCrypto;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;
use shared::marshal::{MarshalSize, Unmarshal};

/// The SDES crypto suites we offer and accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// `AES_CM_128_HMAC_SHA1_80`
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`
    AesCm128HmacSha1_32,
}

impl SrtpSuite {
    /// The name in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        }
    }
}

/// Master key (16 bytes) and salt (14 bytes), as carried base64-encoded in `inline:`.
pub type KeyMaterial = [u8; 30];

/// The keys of one leg.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: SrtpSuite,
    /// What we encrypt with (our `a=crypto` line).
    pub local: KeyMaterial,
    /// What the peer encrypts with (its `a=crypto` line).
    pub remote: KeyMaterial,
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never reach logs.
        f.debug_struct("SrtpKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// Why SRTP refused a packet or a key.
#[derive(Debug, thiserror::Error)]
#[error("srtp: {0}")]
pub struct SrtpError(String);

/// Replay window, in packets.
const REPLAY_WINDOW: usize = 128;

/// What ends every SRTCP packet: the E flag and SRTCP index (4 bytes), then the tag, 80 bits
/// for both suites (RFC 4568 6.2.1: the _32 suite shortens only SRTP's).
const SRTCP_TRAILER: usize = 4 + 10;

/// SSRCs the inbound context may hold state for. rtc-srtp makes per-SSRC state (a replay
/// window) for any SSRC it is handed, before the packet authenticates, and never drops it:
/// a stranger spraying forged packets with random SSRCs would grow it without end.
const MAX_INBOUND_SSRCS: usize = 16;

/// Both directions of a leg's SRTP.
pub struct SrtpSession {
    inbound: Context,
    outbound: Context,
    /// What the inbound context is rebuilt from.
    suite: SrtpSuite,
    remote: KeyMaterial,
    /// The SSRCs (RTP and RTCP) handed to the inbound context since it was made. Bound:
    /// [`MAX_INBOUND_SSRCS`]. Full, a new SSRC is refused before it reaches the context once
    /// any SSRC has authenticated (rebuilding would drop that stream's rollover counter and
    /// replay window: after its first sequence wrap the peer could never authenticate again);
    /// while none has, the context is rebuilt (there is nothing of the peer's to lose).
    inbound_ssrcs: Vec<u32>,
    /// Whether any SSRC has authenticated on this context.
    authenticated: bool,
    /// Times the inbound context was rebuilt for too many SSRCs.
    pub rebuilds: u64,
}

impl std::fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSession").finish_non_exhaustive()
    }
}

fn context(suite: SrtpSuite, material: &KeyMaterial) -> Result<Context, SrtpError> {
    Context::new(
        &material[..16],
        &material[16..],
        suite.profile(),
        Some(srtp_replay_protection(REPLAY_WINDOW)),
        Some(srtcp_replay_protection(REPLAY_WINDOW)),
        &AwsLcRsCrypto,
    )
    .map_err(|e| SrtpError(e.to_string()))
}

impl SrtpSession {
    pub fn new(keys: &SrtpKeys) -> Result<Self, SrtpError> {
        Ok(SrtpSession {
            inbound: context(keys.suite, &keys.remote)?,
            outbound: context(keys.suite, &keys.local)?,
            suite: keys.suite,
            remote: keys.remote,
            inbound_ssrcs: Vec::with_capacity(MAX_INBOUND_SSRCS),
            authenticated: false,
            rebuilds: 0,
        })
    }

    /// Makes room in the inbound context for the SSRC at `at` in `datagram` (its per-SSRC
    /// state is made before the packet is authenticated).
    fn admit_ssrc(&mut self, datagram: &[u8], at: usize) -> Result<(), SrtpError> {
        let ssrc = datagram
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| SrtpError("packet too short".into()))?;
        if self.inbound_ssrcs.contains(&ssrc) {
            return Ok(());
        }
        if self.inbound_ssrcs.len() >= MAX_INBOUND_SSRCS {
            if self.authenticated {
                return Err(SrtpError("too many SSRCs on this leg".into()));
            }
            self.inbound = context(self.suite, &self.remote)?;
            self.inbound_ssrcs.clear();
            self.rebuilds += 1;
        }
        self.inbound_ssrcs.push(ssrc);
        Ok(())
    }

    /// Authenticates and decrypts an SRTP packet; forged, replayed or truncated packets fail.
    pub fn unprotect_rtp(&mut self, datagram: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.admit_ssrc(datagram, 8)?;
        let plain = self
            .inbound
            .decrypt_rtp(datagram)
            .map(|b| b.to_vec())
            .map_err(|e| SrtpError(e.to_string()))?;
        self.authenticated = true;
        Ok(plain)
    }

    /// Encrypts and authenticates an RTP packet. A packet whose header rtc-rtp would write
    /// longer than it is (an odd extension) is refused: rtc-srtp would index past its end and
    /// panic (found by fuzz/srtp; what `rtp::write` makes is never such a packet).
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let header = Header::unmarshal(&mut &packet[..]).map_err(|e| SrtpError(e.to_string()))?;
        if header.marshal_size() > packet.len() {
            return Err(SrtpError("RTP header longer than the packet".into()));
        }
        self.outbound
            .encrypt_rtp_with_header(packet, &header)
            .map(|b| b.to_vec())
            .map_err(|e| SrtpError(e.to_string()))
    }

    /// Authenticates and decrypts an SRTCP packet. A packet whose E flag is clear is refused:
    /// rtc-srtp would hand it back as it came without checking its tag, and we never agree to
    /// unencrypted SRTCP, so anyone could forge RTCP that way (found by fuzz/srtp).
    pub fn unprotect_rtcp(&mut self, datagram: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let encrypted = datagram
            .len()
            .checked_sub(SRTCP_TRAILER)
            .and_then(|at| datagram.get(at))
            .is_some_and(|e| e & 0x80 != 0);
        if !encrypted {
            return Err(SrtpError(
                "SRTCP packet without the E flag (unencrypted SRTCP is not agreed)".into(),
            ));
        }
        self.admit_ssrc(datagram, 4)?;
        let plain = self
            .inbound
            .decrypt_rtcp(datagram)
            .map(|b| b.to_vec())
            .map_err(|e| SrtpError(e.to_string()))?;
        self.authenticated = true;
        Ok(plain)
    }

    /// Encrypts and authenticates an RTCP packet.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.outbound
            .encrypt_rtcp(packet)
            .map(|b| b.to_vec())
            .map_err(|e| SrtpError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{self, Outgoing};

    fn keys(suite: SrtpSuite) -> (SrtpKeys, SrtpKeys) {
        let a: KeyMaterial = std::array::from_fn(|i| i as u8);
        let b: KeyMaterial = std::array::from_fn(|i| 100 + i as u8);
        (
            SrtpKeys {
                suite,
                local: a,
                remote: b,
            },
            SrtpKeys {
                suite,
                local: b,
                remote: a,
            },
        )
    }

    /// Both suites we offer.
    const SUITES: [SrtpSuite; 2] = [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
    ];

    /// Our session and the peer's for `suite`, each keyed with the other's keys reversed.
    fn sessions(suite: SrtpSuite) -> (SrtpSession, SrtpSession) {
        let (ours, theirs) = keys(suite);
        (
            SrtpSession::new(&ours).unwrap(),
            SrtpSession::new(&theirs).unwrap(),
        )
    }

    /// A plain RTP packet from SSRC 5 with 160 bytes of payload: `sequence`, and a timestamp
    /// 160 ticks a packet.
    fn rtp_packet(sequence: u16) -> Vec<u8> {
        let mut buf = [0u8; 200];
        let header = Outgoing {
            payload_type: 0,
            marker: false,
            sequence,
            timestamp: u32::from(sequence) * 160,
            ssrc: 5,
            csrcs: &[],
            csrc_levels: None,
        };
        let n = rtp::write(&mut buf, header, &[7; 160]).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn round_trip_and_forgeries() {
        for suite in SUITES {
            let (mut us, mut them) = sessions(suite);
            let packet = rtp_packet(1);
            let protected = us.protect_rtp(&packet).unwrap();
            let tag = if suite == SrtpSuite::AesCm128HmacSha1_80 {
                10
            } else {
                4
            };
            assert_eq!(protected.len(), packet.len() + tag);
            assert_eq!(them.unprotect_rtp(&protected).unwrap(), packet);
            // Replayed: refused.
            assert!(them.unprotect_rtp(&protected).is_err());
            // Tampered payload or tag: refused.
            let mut forged = protected.clone();
            forged[20] ^= 1;
            assert!(them.unprotect_rtp(&forged).is_err());
            // Truncated: refused, no panic.
            assert!(them.unprotect_rtp(&protected[..11]).is_err());
            assert!(them.unprotect_rtp(&[]).is_err());
            // Our own key cannot decrypt what we sent (keys are per direction).
            assert!(us.unprotect_rtp(&protected).is_err());
        }
    }

    #[test]
    fn a_header_longer_than_its_packet_is_refused_not_a_panic() {
        // The RTP packet fuzz/srtp found: version bits 3, padding, an extension and 15 CSRCs
        // whose header rtc-rtp reads but would write 2 bytes longer than the packet.
        let packet = hex(
            "ffffffffd9cdff0001ffe0c61122334401000000000000ffffffff000000040000000000000000000000000000000000550bfa81c800000000000000040000000000000000000000100000040000100000046bffffffffffffff31c7c7c7c7c7c7c7c7c7c7c7c7c5c7c7c7c7c7c7cfc7c7c7c7c7c7c700c7c7c7020000800003e80002710000001234000200ac0080000300003c3d3e3f000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223244025",
        );
        for suite in SUITES {
            let (mut us, _) = sessions(suite);
            assert!(us.protect_rtp(&packet).is_err());
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn srtcp_without_the_e_flag_is_refused() {
        for suite in SUITES {
            let (mut us, mut them) = sessions(suite);
            // A receiver report with one block and a BYE, as a peer sends them.
            let mut rtcp = vec![0x81, 201, 0, 7, 0, 0, 0, 5];
            rtcp.extend_from_slice(&[0x11; 24]);
            rtcp.extend_from_slice(&[0x81, 203, 0, 1, 0, 0, 0, 5]);
            let protected = us.protect_rtcp(&rtcp).unwrap();
            assert_eq!(them.unprotect_rtcp(&protected).unwrap(), rtcp);
            // The same packet again with the E flag cleared (the input fuzz/srtp found).
            let mut cleared = us.protect_rtcp(&rtcp).unwrap();
            let at = cleared.len() - SRTCP_TRAILER;
            cleared[at] &= 0x7F;
            assert!(them.unprotect_rtcp(&cleared).is_err());
            // Plain RTCP with an index of E = 0 and any tag: a forgery, refused.
            let mut forged = rtcp.clone();
            forged.extend_from_slice(&[0, 0, 0, 9]);
            forged.extend_from_slice(&[0xAB; 10]);
            assert!(them.unprotect_rtcp(&forged).is_err());
            assert!(them.unprotect_rtcp(&forged[..SRTCP_TRAILER - 1]).is_err());
            // The peer's next genuine packet still passes.
            let next = us.protect_rtcp(&rtcp).unwrap();
            assert_eq!(them.unprotect_rtcp(&next).unwrap(), rtcp);
        }
    }

    #[test]
    fn forged_packets_with_random_ssrcs_leave_bounded_state() {
        let (mut us, mut them) = sessions(SrtpSuite::AesCm128HmacSha1_80);
        let send =
            |us: &mut SrtpSession, sequence: u16| us.protect_rtp(&rtp_packet(sequence)).unwrap();
        let forge = |them: &mut SrtpSession, template: &[u8], count: u32| {
            let mut forged = template.to_vec();
            for k in 0..count {
                forged[8..12].copy_from_slice(&k.wrapping_mul(2_654_435_761).to_be_bytes());
                assert!(them.unprotect_rtp(&forged).is_err());
                let mut rtcp = [
                    0x80u8, 201, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 1, 1, 2, 3, 4,
                ];
                rtcp[4..8].copy_from_slice(&k.to_be_bytes());
                assert!(them.unprotect_rtcp(&rtcp).is_err());
                assert!(them.inbound_ssrcs.len() <= MAX_INBOUND_SSRCS);
            }
        };
        // Before the peer's first packet, a flood rebuilds the context (nothing to lose)...
        let first = send(&mut us, 65_000);
        forge(&mut them, &first, 5_000);
        assert!(them.rebuilds >= 100, "{}", them.rebuilds);
        // ...and the peer still gets in.
        assert!(them.unprotect_rtp(&first).is_ok());
        // The peer's stream wraps its sequence (its rollover counter becomes 1).
        for sequence in 65_001..=65_535u16 {
            assert!(them.unprotect_rtp(&send(&mut us, sequence)).is_ok());
        }
        for sequence in 0..100u16 {
            assert!(them.unprotect_rtp(&send(&mut us, sequence)).is_ok());
        }
        // A flood now is refused before the context: the peer's state (its rollover counter)
        // is kept, it still authenticates, and a replay is refused.
        let rebuilds = them.rebuilds;
        forge(&mut them, &first, 5_000);
        assert_eq!(them.rebuilds, rebuilds);
        let next = send(&mut us, 100);
        assert!(them.unprotect_rtp(&next).is_ok());
        assert!(them.unprotect_rtp(&next).is_err());
    }
}
