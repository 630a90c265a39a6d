//! A minimal Ogg Opus stream writer (RFC 3533 pages, RFC 7845 headers): one logical stream,
//! mono, 48 kHz. Written by hand rather than with a crate: it is a hundred lines, and each page
//! is one `write` so that a process killed between pages leaves only whole pages behind.

use std::io::Write;

/// The Opus packets a page carries at most before it is written anyway (one second of 20 ms
/// packets: a `kill -9` loses at most this much).
pub(crate) const PACKETS_PER_PAGE: usize = 50;
/// Lacing values per page (the format's limit).
const MAX_SEGMENTS: usize = 255;

/// Header type flags (a packet never spans pages here: no "continued" flag).
const BEGIN: u8 = 0x02;
const END: u8 = 0x04;

/// CRC-32 of Ogg: polynomial 0x04c11db7, not reflected, initial value 0, no final xor.
const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04c1_1db7
            } else {
                r << 1
            };
            bit += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

pub(crate) fn crc(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |c, &b| {
        (c << 8) ^ CRC_TABLE[((c >> 24) as u8 ^ b) as usize]
    })
}

/// One Ogg Opus stream being written to `out`.
pub(crate) struct OggOpusWriter<W: Write> {
    out: W,
    serial: u32,
    sequence: u32,
    /// The page being filled: its lacing values and body.
    segments: Vec<u8>,
    body: Vec<u8>,
    packets: usize,
    /// Granule position (48 kHz samples, pre-skip included) after the last packet given.
    granule: u64,
}

impl<W: Write> OggOpusWriter<W> {
    /// Writes the two header pages (OpusHead, OpusTags) at once, each on its own page as
    /// RFC 7845 wants.
    pub(crate) fn new(out: W, serial: u32, pre_skip: u16, vendor: &str) -> std::io::Result<Self> {
        let mut w = OggOpusWriter {
            out,
            serial,
            sequence: 0,
            segments: Vec::with_capacity(MAX_SEGMENTS),
            body: Vec::with_capacity(MAX_SEGMENTS * 255),
            packets: 0,
            granule: 0,
        };
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(1); // channels
        head.extend_from_slice(&pre_skip.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes()); // input sample rate (informative)
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family 0: mono or stereo, no table
        w.add(&head);
        w.write_page(BEGIN, 0)?;
        let mut tags = Vec::with_capacity(16 + vendor.len());
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
        w.add(&tags);
        w.write_page(0, 0)?;
        Ok(w)
    }

    /// Adds one Opus packet of `samples` 48 kHz samples; a page is written when it holds
    /// [`PACKETS_PER_PAGE`] packets or its lacing table is full.
    pub(crate) fn packet(&mut self, packet: &[u8], samples: u64) -> std::io::Result<()> {
        // A packet needs len / 255 + 1 lacing values; one that does not fit starts a new page.
        if self.segments.len() + packet.len() / 255 + 1 > MAX_SEGMENTS && self.packets > 0 {
            self.flush_page()?;
        }
        self.add(packet);
        self.packets += 1;
        self.granule += samples;
        if self.packets >= PACKETS_PER_PAGE {
            self.flush_page()?;
        }
        Ok(())
    }

    /// Writes the page in progress, if it holds a packet.
    pub(crate) fn flush_page(&mut self) -> std::io::Result<()> {
        if self.packets == 0 {
            return Ok(());
        }
        self.write_page(0, self.granule)
    }

    /// Writes what is left on the last page, marked end of stream.
    pub(crate) fn finish(mut self) -> std::io::Result<W> {
        let granule = self.granule;
        self.write_page(END, granule)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Lacing values for one packet (up to 255 × 254 bytes: larger packets are never made
    /// here, an Opus packet is at most 1275 bytes).
    fn add(&mut self, packet: &[u8]) {
        let mut left = packet.len();
        loop {
            let n = left.min(255);
            self.segments.push(n as u8);
            left -= n;
            if n < 255 {
                break;
            }
        }
        self.body.extend_from_slice(packet);
    }

    fn write_page(&mut self, flags: u8, granule: u64) -> std::io::Result<()> {
        if self.segments.len() > MAX_SEGMENTS {
            // Cannot happen with packets below 64 kB; split would be needed. Say so.
            return Err(std::io::Error::other("ogg page overflow"));
        }
        let mut page = Vec::with_capacity(27 + self.segments.len() + self.body.len());
        page.extend_from_slice(b"OggS");
        page.push(0);
        page.push(flags);
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&self.serial.to_le_bytes());
        page.extend_from_slice(&self.sequence.to_le_bytes());
        page.extend_from_slice(&[0; 4]);
        page.push(self.segments.len() as u8);
        page.extend_from_slice(&self.segments);
        page.extend_from_slice(&self.body);
        let sum = crc(&page);
        page[22..26].copy_from_slice(&sum.to_le_bytes());
        self.out.write_all(&page)?;
        self.sequence = self.sequence.wrapping_add(1);
        self.segments.clear();
        self.body.clear();
        self.packets = 0;
        Ok(())
    }
}

#[cfg(test)]
#[path = "ogg_tests.rs"]
mod tests;
