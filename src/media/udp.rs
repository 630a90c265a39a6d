//! Reading a leg's socket with one system call a tick: `recvmmsg` takes up to [`RX_BATCH`]
//! datagrams at once and says by its count that the queue is empty, where `recv_from` needs a
//! second call to hear `EAGAIN`. With a packet per leg and tick, that halves the receive calls
//! of every leg (the kernel's UDP path is most of a large conference's cost).
//!
//! The message headers `recvmmsg` needs hold raw pointers, so they cannot live in a leg (legs
//! move between threads); each thread that ticks legs keeps one set, made on its first read.

use std::cell::RefCell;
use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};

/// Datagrams one call reads at most.
pub const RX_BATCH: usize = 4;

thread_local! {
    static HEADERS: RefCell<MultiHeaders<SockaddrStorage>> =
        RefCell::new(MultiHeaders::preallocate(RX_BATCH, None));
}

/// A received datagram: its length in its buffer and where it came from.
#[derive(Clone, Copy, Debug, Default)]
pub struct Received {
    pub len: usize,
    pub from: Option<SocketAddr>,
}

/// Reads what is queued on `socket` (non-blocking) into `bufs`, up to [`RX_BATCH`]; returns
/// how many arrived, with their lengths and sources in `got`. Zero: nothing queued (or an
/// error, which a leg treats the same: it reads again next tick).
pub fn read_batch<const N: usize>(
    socket: &UdpSocket,
    bufs: &mut [Box<[u8; N]>; RX_BATCH],
    got: &mut [Received; RX_BATCH],
) -> usize {
    HEADERS.with(|headers| {
        let Ok(mut headers) = headers.try_borrow_mut() else {
            return 0;
        };
        let mut slices = bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
        let Ok(results) = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) else {
            return 0;
        };
        let mut n = 0;
        for (slot, message) in got.iter_mut().zip(results) {
            *slot = Received {
                len: message.bytes,
                from: message.address.as_ref().and_then(to_std),
            };
            n += 1;
        }
        n
    })
}

fn to_std(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_reads_what_is_queued_and_says_when_it_is_empty() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let to = rx.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let mut bufs: [Box<[u8; 64]>; RX_BATCH] = std::array::from_fn(|_| Box::new([0; 64]));
        let mut got = [Received::default(); RX_BATCH];
        assert_eq!(read_batch(&rx, &mut bufs, &mut got), 0);
        for i in 0..6u8 {
            tx.send_to(&[i; 10][..usize::from(i) + 1], to)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(read_batch(&rx, &mut bufs, &mut got), RX_BATCH);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.len, i + 1);
            assert_eq!(r.from, tx.local_addr().ok());
            assert_eq!(bufs[i][0], i as u8);
        }
        assert_eq!(read_batch(&rx, &mut bufs, &mut got), 2);
        assert_eq!((got[0].len, got[1].len), (5, 6));
        assert_eq!(read_batch(&rx, &mut bufs, &mut got), 0);
    }
}
