//! A leg's SRTP in one place: what comes in is opened here and what goes out is sealed here, for
//! RTP and RTCP alike; a plain leg passes through untouched.

use std::borrow::Cow;

use crate::media::srtp::{SrtpError, SrtpKeys, SrtpSession};

/// RTP or RTCP (they have separate SRTP contexts and trailers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Rtp,
    Rtcp,
}

/// The leg's SRTP session, or none for plain RTP.
#[derive(Debug, Default)]
pub(crate) struct Secure {
    session: Option<SrtpSession>,
}

impl Secure {
    pub(crate) fn new(keys: Option<&SrtpKeys>) -> Result<Self, SrtpError> {
        Ok(Secure {
            session: keys.map(SrtpSession::new).transpose()?,
        })
    }

    pub(crate) fn is_secured(&self) -> bool {
        self.session.is_some()
    }

    /// Authenticates and decrypts a datagram (as it came, for a plain leg).
    pub(crate) fn open<'a>(
        &mut self,
        kind: Kind,
        datagram: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, SrtpError> {
        let Some(session) = &mut self.session else {
            return Ok(Cow::Borrowed(datagram));
        };
        let plain = match kind {
            Kind::Rtp => session.unprotect_rtp(datagram)?,
            Kind::Rtcp => session.unprotect_rtcp(datagram)?,
        };
        Ok(Cow::Owned(plain))
    }

    /// Encrypts and authenticates the packet of `len` bytes at the start of `buf` in place;
    /// returns the protected length. Fails if the protected packet would not fit in `buf`.
    pub(crate) fn seal(&mut self, kind: Kind, buf: &mut [u8], len: usize) -> Result<usize, ()> {
        let Some(session) = &mut self.session else {
            return Ok(len);
        };
        let packet = buf.get(..len).ok_or(())?;
        let protected = match kind {
            Kind::Rtp => session.protect_rtp(packet),
            Kind::Rtcp => session.protect_rtcp(packet),
        }
        .map_err(|_| ())?;
        let out = buf.get_mut(..protected.len()).ok_or(())?;
        out.copy_from_slice(&protected);
        Ok(protected.len())
    }
}
