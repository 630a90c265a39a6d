//! Reading a leg's socket with one system call a tick: `recvmmsg` takes up to [`RX_BATCH`]
//! datagrams at once and says by its count that the queue is empty, where `recv_from` needs a
//! second call to hear `EAGAIN`. With a packet per leg and tick, that halves the receive calls
//! of every leg (the kernel's UDP path is most of a large conference's cost).
//!
//! The message headers `recvmmsg` needs hold raw pointers, so they cannot live in a leg (legs
//! move between threads); each thread that ticks legs keeps one set, made on its first read.
//!
//! Sending is batched across legs: on a mixer thread (or its helper) a leg's datagram is queued
//! in the thread's [`SendBatch`] and the thread sends everything queued with one system call
//! per [`SEND_BATCH`] datagrams when its tick's work is done ([`flush_sends`]), instead of
//! one `sendto` per datagram. Elsewhere, with `mixer.batched_io = false`, or where the kernel
//! refuses io_uring, each datagram is sent at once.

use std::cell::RefCell;
use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use confab_uring::{QueueError, RecvBatch, SendBatch};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};

/// Datagrams one call reads at most.
pub const RX_BATCH: usize = 4;

thread_local! {
    static HEADERS: RefCell<MultiHeaders<SockaddrStorage>> =
        RefCell::new(MultiHeaders::preallocate(RX_BATCH, None));
}

/// Datagrams one batched send call takes at most (about 1.7 KiB of memory each, per thread).
pub const SEND_BATCH: u32 = 512;

/// Whether threads that ask to batch their sends get a batch (`mixer.batched_io`).
static BATCHING: AtomicBool = AtomicBool::new(true);

/// Send system calls and datagrams the kernel refused, over every thread (for `/metrics`).
pub static SEND_CALLS: AtomicU64 = AtomicU64::new(0);
pub static SEND_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Sockets one batched read call reads at most (about 2.2 KiB of memory each, per thread).
pub const RECV_BATCH: u32 = 512;

/// How this thread reads many legs' sockets.
enum Reader {
    /// Each leg reads its own socket.
    Direct,
    /// Asked to batch; the batch is made at the first read.
    Wanted,
    Batched(Box<RecvBatch>),
}

thread_local! {
    static READER: RefCell<Reader> = const { RefCell::new(Reader::Direct) };
}

/// Runs `read` with this thread's read batch; `None` on a thread that does not batch (or
/// whose kernel refused io_uring), where each leg reads its own socket.
pub fn with_recv_batch<R>(read: impl FnOnce(&mut RecvBatch) -> R) -> Option<R> {
    READER
        .try_with(|r| {
            let mut r = r.try_borrow_mut().ok()?;
            if matches!(*r, Reader::Wanted) {
                *r = match RecvBatch::new(RECV_BATCH) {
                    Ok(batch) => Reader::Batched(Box::new(batch)),
                    Err(e) => {
                        tracing::warn!(error = %e, "io_uring refused: this mixer thread reads a socket a call");
                        Reader::Direct
                    }
                };
            }
            let Reader::Batched(batch) = &mut *r else {
                return None;
            };
            let result = read(batch);
            if batch.is_broken() {
                tracing::error!("io_uring failed: this mixer thread reads a socket a call");
                *r = Reader::Direct;
            }
            Some(result)
        })
        .ok()
        .flatten()
}

/// Receive system calls made by batched reads (for `/metrics`; a leg reading its own
/// socket counts its calls here too).
pub static RECV_CALLS: AtomicU64 = AtomicU64::new(0);

/// How this thread sends.
enum Sender {
    /// One system call a datagram (threads that never flush, or no io_uring).
    Direct,
    /// Asked to batch; the batch is made at the first send.
    Wanted,
    Batched(Box<SendBatch>),
}

thread_local! {
    static SENDER: RefCell<Sender> = const { RefCell::new(Sender::Direct) };
}

/// Sets whether threads batch their sends from now on (by `serve`, from the configuration).
pub fn set_batching(on: bool) {
    BATCHING.store(on, Ordering::Relaxed);
}

/// Makes this thread read its legs' sockets together and queue their datagrams; it promises
/// to call [`flush_sends`] after each tick's work (mixer threads and their helpers).
pub fn batch_io_on_this_thread() {
    if BATCHING.load(Ordering::Relaxed) {
        let _ = SENDER.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                *s = Sender::Wanted;
            }
        });
        let _ = READER.try_with(|r| {
            if let Ok(mut r) = r.try_borrow_mut() {
                *r = Reader::Wanted;
            }
        });
    }
}

/// Sends `data` to `to` from `socket`: queued on a batching thread, else at once. False when
/// it was refused now (a failure at the flush is counted in [`SEND_ERRORS`]).
pub fn send_to(socket: &Arc<UdpSocket>, data: &[u8], to: SocketAddr) -> bool {
    let queued = SENDER
        .try_with(|s| {
            let Ok(mut s) = s.try_borrow_mut() else {
                return false;
            };
            if matches!(*s, Sender::Wanted) {
                *s = match SendBatch::new(SEND_BATCH) {
                    Ok(batch) => Sender::Batched(Box::new(batch)),
                    Err(e) => {
                        tracing::warn!(error = %e, "io_uring refused: this mixer thread sends a datagram a call");
                        Sender::Direct
                    }
                };
            }
            let Sender::Batched(batch) = &mut *s else {
                return false;
            };
            match batch.queue(socket, to, data) {
                Ok(flushed) => {
                    count(flushed);
                    true
                }
                Err(QueueError::TooLarge) => false,
                Err(QueueError::Broken) => {
                    tracing::error!("io_uring failed: this mixer thread sends a datagram a call");
                    *s = Sender::Direct;
                    false
                }
            }
        })
        .unwrap_or(false);
    if queued {
        return true;
    }
    SEND_CALLS.fetch_add(1, Ordering::Relaxed);
    let sent = socket.send_to(data, to).is_ok();
    if !sent {
        SEND_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
    sent
}

/// Sends what this thread has queued (nothing to do on a thread that does not batch).
pub fn flush_sends() {
    let _ = SENDER.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut()
            && let Sender::Batched(batch) = &mut *s
        {
            count(batch.flush());
        }
    });
}

fn count(flushed: confab_uring::Flushed) {
    if flushed.calls > 0 {
        SEND_CALLS.fetch_add(u64::from(flushed.calls), Ordering::Relaxed);
    }
    if flushed.failed > 0 {
        SEND_ERRORS.fetch_add(u64::from(flushed.failed), Ordering::Relaxed);
    }
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
        RECV_CALLS.fetch_add(1, Ordering::Relaxed);
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
