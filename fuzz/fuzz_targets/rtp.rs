//! RTP datagrams through `media::rtp::parse`, header extensions (RFC 8285) and the RFC 6464
//! level read from them; then what `rtp::write` makes of the parsed fields (with CSRCs and
//! RFC 6465 levels taken from the payload) parses back to the same fields.
#![no_main]

use confab::media::rtp::{self, MAX_PACKET, Outgoing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rtp::is_rtcp(data);
    let Ok(view) = rtp::parse(data) else {
        return;
    };
    assert!(view.payload_type < 128);
    for id in 0..=15 {
        if let Some(element) = view.extension_element(id) {
            assert!(element.len() <= data.len());
        }
        if let Some((_, level)) = view.audio_level(id) {
            assert!(level < 128);
        }
    }

    // CSRCs and their levels from the payload, as the mixer would write them.
    let count = usize::from(view.payload.first().copied().unwrap_or(0) % 16);
    let csrcs: Vec<u32> = view
        .payload
        .chunks_exact(4)
        .take(count)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let levels: Vec<u8> = view.payload.iter().take(csrcs.len()).copied().collect();
    let id = view.payload_type % 16;
    let header = Outgoing {
        payload_type: view.payload_type,
        marker: view.marker,
        sequence: view.sequence,
        timestamp: view.timestamp,
        ssrc: view.ssrc,
        csrcs: &csrcs,
        csrc_levels: Some((id, &levels)),
    };
    let mut buf = [0u8; MAX_PACKET + 200];
    let Some(len) = rtp::write(&mut buf, header, view.payload) else {
        panic!("a packet that fits was not written");
    };
    if len > MAX_PACKET {
        return;
    }
    let back = match rtp::parse(&buf[..len]) {
        Ok(b) => b,
        Err(e) => panic!("what rtp::write wrote does not parse: {e}"),
    };
    assert_eq!(
        (back.payload_type, back.marker, back.sequence),
        (view.payload_type, view.marker, view.sequence)
    );
    assert_eq!((back.timestamp, back.ssrc), (view.timestamp, view.ssrc));
    assert_eq!(back.payload, view.payload);
    let written_levels = (1..=14).contains(&id) && !csrcs.is_empty() && !levels.is_empty();
    if written_levels {
        let element = back.extension_element(id);
        let expected: Vec<u8> = levels.iter().map(|l| l & 0x7F).collect();
        assert_eq!(element, Some(&expected[..]));
    } else {
        assert!(back.extension.is_none());
    }
});
