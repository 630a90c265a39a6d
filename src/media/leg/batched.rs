//! Reading many legs' RTP sockets together: one system call reads a datagram from each of up
//! to [`udp::RECV_BATCH`] sockets, where each leg made a `recvmmsg` call of its own.
//!
//! Round one asks every direct leg's RTP socket; each later round asks again only the legs
//! whose last read found a datagram (more may be queued), until a round finds none or a leg
//! has had [`MAX_READS_PER_TICK`] rounds (a flood on one leg costs a bounded number of calls
//! and cannot stall the tick). What else a leg reads (its RTCP socket, the WebRTC relay) it
//! reads itself afterwards.

use std::time::Instant;

use super::{MAX_READS_PER_TICK, RtpLeg};
use crate::media::udp;

/// Legs one round takes (the batch's size; a longer slice is read a chunk at a time).
const CHUNK: usize = udp::RECV_BATCH as usize;

/// Reads what arrived for every leg of `legs` and hands it to each leg's core: batched on a
/// mixer thread, each leg on its own elsewhere (or if io_uring failed).
#[allow(clippy::vec_box)] // the legs are boxed where the conference keeps them
pub fn receive_all(legs: &mut [Box<RtpLeg>], now: Instant) {
    let batched = udp::with_recv_batch(|batch| {
        let chunk = CHUNK.min(batch.capacity());
        legs.chunks_mut(chunk)
            .all(|legs| read_chunk(batch, legs, now).is_ok())
    });
    if batched == Some(true) {
        for leg in legs {
            leg.receive_rest(now);
        }
    } else {
        // No batch, or it broke part way: whatever is still queued is read leg by leg.
        for leg in legs {
            leg.receive(now);
        }
    }
}

fn read_chunk(
    batch: &mut confab_uring::RecvBatch,
    legs: &mut [Box<RtpLeg>],
    now: Instant,
) -> Result<(), confab_uring::RingBroken> {
    let mut more = [true; CHUNK];
    for _ in 0..MAX_READS_PER_TICK {
        let calls = batch.read_round(
            legs.iter()
                .zip(&more)
                .map(|(leg, &more)| if more { leg.rtp_socket() } else { None }),
        )?;
        udp::RECV_CALLS.fetch_add(u64::from(calls), std::sync::atomic::Ordering::Relaxed);
        if calls == 0 {
            return Ok(());
        }
        let mut any = false;
        for (index, (leg, more)) in legs.iter_mut().zip(more.iter_mut()).enumerate() {
            if !*more {
                continue;
            }
            match batch.received(index) {
                // An oversized datagram arrives cut at the buffer's length, which is more
                // than any packet a leg accepts: the core refuses it by its length.
                Some(datagram) => {
                    leg.core.handle_datagram(now, datagram.from, datagram.data);
                    any = true;
                }
                None => *more = false,
            }
        }
        if !any {
            break;
        }
    }
    Ok(())
}
