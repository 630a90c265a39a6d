//! [`SendBatch`]: datagrams for many UDP sockets queued, then sent with one `io_uring_enter`.
//!
//! Soundness rests on three rules, each kept by this file alone:
//! 1. The memory the kernel reads for a queued datagram (bytes, address, `iovec`, `msghdr`)
//!    is a slot of a boxed slice allocated once and never resized or moved; a slot is written
//!    only while no request that points into it is queued or in flight.
//! 2. A flush waits for the completion of every request it submitted before any slot is
//!    written again. If the ring fails in a way that leaves that unknown, the batch is
//!    *broken*: it never submits again, and its slots and ring are leaked rather than freed.
//! 3. Each queued datagram holds a clone of its socket's `Arc`, so the file descriptor named
//!    in the request cannot be closed (and its number reused by another socket) before the
//!    kernel has taken the request.

use std::io;
use std::mem::ManuallyDrop;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{IoUring, opcode, types};

use crate::addr::RawAddr;

/// The largest datagram a batch takes (larger ones are the caller's to send itself).
pub const MAX_DATAGRAM: usize = 1500;

/// Attempts a flush makes to see every completion before it calls the ring broken.
const FLUSH_ATTEMPTS: usize = 1000;

/// Why a datagram was not queued; the caller sends it itself or drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Larger than [`MAX_DATAGRAM`].
    TooLarge,
    /// The ring failed earlier and is no longer used.
    Broken,
}

/// What one flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams the kernel took.
    pub sent: u32,
    /// Datagrams the kernel refused (a full socket buffer, an unreachable address).
    pub failed: u32,
    /// System calls made.
    pub calls: u32,
}

/// One queued datagram: everything the kernel reads for it.
struct Slot {
    data: [u8; MAX_DATAGRAM],
    addr: RawAddr,
    iov: libc::iovec,
    msg: libc::msghdr,
    /// Keeps the descriptor open until the request is complete (rule 3).
    socket: Option<Arc<UdpSocket>>,
}

/// Datagrams for many sockets, sent together.
pub struct SendBatch {
    ring: ManuallyDrop<IoUring>,
    slots: ManuallyDrop<Box<[Slot]>>,
    queued: usize,
    broken: bool,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("capacity", &self.slots.len())
            .field("queued", &self.queued)
            .field("broken", &self.broken)
            .finish()
    }
}

impl SendBatch {
    /// A batch of up to `capacity` datagrams a flush (a power of two, 1 to 4,096). Fails
    /// where the kernel has no io_uring or refuses it (a container's seccomp filter, the
    /// `kernel.io_uring_disabled` setting): the caller then sends one datagram a call.
    pub fn new(capacity: u32) -> io::Result<Self> {
        let capacity = capacity.clamp(1, 4096).next_power_of_two();
        let ring = IoUring::new(capacity)?;
        let slots = (0..capacity)
            .map(|_| Slot {
                data: [0; MAX_DATAGRAM],
                addr: RawAddr::new(SocketAddr::from(([0, 0, 0, 0], 0))),
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                msg: empty_msghdr(),
                socket: None,
            })
            .collect();
        Ok(SendBatch {
            ring: ManuallyDrop::new(ring),
            slots: ManuallyDrop::new(slots),
            queued: 0,
            broken: false,
        })
    }

    /// Datagrams one flush sends at most; queueing one more flushes first.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Datagrams queued and not yet flushed.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Queues `data` for `to` on `socket` (copied; sent at the next flush). A full batch is
    /// flushed first, and what that flush did is returned.
    pub fn queue(
        &mut self,
        socket: &Arc<UdpSocket>,
        to: SocketAddr,
        data: &[u8],
    ) -> Result<Flushed, QueueError> {
        if self.broken {
            return Err(QueueError::Broken);
        }
        if data.len() > MAX_DATAGRAM {
            return Err(QueueError::TooLarge);
        }
        let mut flushed = Flushed::default();
        if self.queued == self.slots.len() {
            flushed = self.flush();
            if self.broken {
                return Err(QueueError::Broken);
            }
        }
        let index = self.queued;
        let Some(slot) = self.slots.get_mut(index) else {
            return Err(QueueError::Broken);
        };
        // Rule 1: no request points into this slot (it is past `queued`, and every request
        // of the last flush completed).
        slot.data[..data.len()].copy_from_slice(data);
        slot.addr = RawAddr::new(to);
        let (name, name_len) = slot.addr.as_name();
        slot.iov = libc::iovec {
            iov_base: slot.data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        slot.msg = empty_msghdr();
        slot.msg.msg_name = name;
        slot.msg.msg_namelen = name_len;
        slot.msg.msg_iov = &mut slot.iov;
        slot.msg.msg_iovlen = 1;
        let entry = opcode::SendMsg::new(types::Fd(socket.as_raw_fd()), &slot.msg)
            // Never wait for room in a socket buffer: a full one fails this datagram now
            // instead of holding the flush (and the mixer thread) until it drains.
            .flags(libc::MSG_DONTWAIT as u32)
            .build()
            .user_data(index as u64);
        slot.socket = Some(socket.clone());
        // SAFETY: the entry points into `slot`, which stays where it is and unwritten until
        // the request completes (rules 1 and 2), and the descriptor stays open (rule 3). The
        // submission queue has room: it holds `capacity` entries and at most `queued` (less
        // than capacity) are in it.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            slot.socket = None;
            self.broken = true;
            return Err(QueueError::Broken);
        }
        self.queued += 1;
        Ok(flushed)
    }

    /// Sends everything queued and waits until the kernel has taken each datagram (a UDP
    /// send does not block: it is taken or refused at once).
    pub fn flush(&mut self) -> Flushed {
        let mut flushed = Flushed::default();
        if self.queued == 0 || self.broken {
            return flushed;
        }
        let mut completed = 0;
        for _ in 0..FLUSH_ATTEMPTS {
            flushed.calls += 1;
            match self.ring.submit_and_wait(self.queued - completed) {
                Ok(_) => {}
                Err(e) if retryable(&e) => continue,
                Err(_) => break,
            }
            for entry in self.ring.completion() {
                completed += 1;
                if entry.result() >= 0 {
                    flushed.sent += 1;
                } else {
                    flushed.failed += 1;
                }
                if let Some(slot) = usize::try_from(entry.user_data())
                    .ok()
                    .and_then(|i| self.slots.get_mut(i))
                {
                    slot.socket = None;
                }
            }
            if completed >= self.queued {
                self.queued = 0;
                return flushed;
            }
        }
        // Rule 2: some request may still be in the kernel; nothing it reads is freed.
        self.broken = true;
        flushed.failed += (self.queued - completed) as u32;
        for slot in self.slots.iter_mut() {
            // The descriptors may close: a request the kernel took holds the file itself.
            slot.socket = None;
        }
        flushed
    }

    /// Whether the ring failed and the batch no longer sends.
    pub fn is_broken(&self) -> bool {
        self.broken
    }
}

impl Drop for SendBatch {
    fn drop(&mut self) {
        self.flush();
        if self.broken {
            // Rule 2: leaked, not freed, since the kernel may still read them.
            return;
        }
        // SAFETY: every request completed (the flush above returned unbroken), so nothing
        // refers to the ring or the slots any more; each is dropped once, here.
        unsafe {
            ManuallyDrop::drop(&mut self.ring);
            ManuallyDrop::drop(&mut self.slots);
        }
    }
}

pub(crate) fn retryable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
    )
}

pub(crate) fn empty_msghdr() -> libc::msghdr {
    // SAFETY: `msghdr` is plain data (pointers and integers, with private padding on some
    // targets), for which all zeroes is a valid value: no name, no buffers, no control data.
    unsafe { std::mem::zeroed() }
}
