//! [`RecvBatch`]: one datagram from each of many UDP sockets, read with one `io_uring_enter`.
//!
//! The rules of `send.rs` hold here too, in a simpler form: a round waits for the completion of
//! every request it submitted before it returns (so the sockets it borrowed are open and the
//! slots unwritten until then), and a batch whose ring failed in a way that leaves that
//! unknown never submits again and leaks its memory instead of freeing it.

use std::io;
use std::mem::ManuallyDrop;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

use io_uring::{IoUring, opcode, types};

/// The largest datagram read whole; a longer one is seen truncated to this length, with
/// [`Datagram::truncated`] set.
pub const MAX_RECEIVE: usize = 2048;

const ROUND_ATTEMPTS: usize = 1000;

/// One slot: a socket's datagram of this round, and where the kernel wrote it.
struct Slot {
    data: [u8; MAX_RECEIVE],
    addr: libc::sockaddr_storage,
    iov: libc::iovec,
    msg: libc::msghdr,
    /// The request's result: bytes read, or a negative error (`EAGAIN`: nothing queued).
    result: i32,
    asked: bool,
}

/// A datagram a round read.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    pub from: SocketAddr,
    pub data: &'a [u8],
    /// Longer than [`MAX_RECEIVE`]: `data` is its beginning only.
    pub truncated: bool,
}

/// The ring failed in a way that leaves its requests' state unknown; the batch is no longer
/// used (the caller reads one socket a call from then on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingBroken;

impl std::fmt::Display for RingBroken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the io_uring ring failed and is no longer used")
    }
}

impl std::error::Error for RingBroken {}

/// Reads for many sockets, together.
pub struct RecvBatch {
    ring: ManuallyDrop<IoUring>,
    slots: ManuallyDrop<Box<[Slot]>>,
    broken: bool,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.slots.len())
            .field("broken", &self.broken)
            .finish()
    }
}

impl RecvBatch {
    /// Room for `capacity` sockets a round (a power of two, 1 to 4,096). Fails where the
    /// kernel has no io_uring or refuses it.
    pub fn new(capacity: u32) -> io::Result<Self> {
        let capacity = capacity.clamp(1, 4096).next_power_of_two();
        let ring = IoUring::new(capacity)?;
        let slots = (0..capacity)
            .map(|_| Slot {
                data: [0; MAX_RECEIVE],
                addr: empty_storage(),
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                msg: crate::send::empty_msghdr(),
                result: -libc::EAGAIN,
                asked: false,
            })
            .collect();
        Ok(RecvBatch {
            ring: ManuallyDrop::new(ring),
            slots: ManuallyDrop::new(slots),
            broken: false,
        })
    }

    /// Sockets one round reads at most.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Whether the ring failed; the caller then reads one socket a call.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Reads at most one queued datagram (without waiting) from each socket given, in one
    /// system call for up to [`capacity`](Self::capacity) sockets (a `None` is skipped; sockets
    /// past the capacity are not read). Returns the system calls made, or an error if the
    /// batch is broken. What came is at [`received`](Self::received) by position.
    pub fn read_round<'s>(
        &mut self,
        sockets: impl IntoIterator<Item = Option<&'s UdpSocket>>,
    ) -> Result<u32, RingBroken> {
        if self.broken {
            return Err(RingBroken);
        }
        let mut asked = 0;
        for (index, (slot, socket)) in self.slots.iter_mut().zip(sockets).enumerate() {
            slot.asked = false;
            slot.result = -libc::EAGAIN;
            let Some(socket) = socket else {
                continue;
            };
            slot.addr = empty_storage();
            slot.iov = libc::iovec {
                iov_base: slot.data.as_mut_ptr().cast(),
                iov_len: MAX_RECEIVE,
            };
            slot.msg = crate::send::empty_msghdr();
            slot.msg.msg_name = (&mut slot.addr as *mut libc::sockaddr_storage).cast();
            slot.msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            slot.msg.msg_iov = &mut slot.iov;
            slot.msg.msg_iovlen = 1;
            let entry = opcode::RecvMsg::new(types::Fd(socket.as_raw_fd()), &mut slot.msg)
                // Nothing queued completes now with EAGAIN instead of waiting for a datagram.
                .flags(libc::MSG_DONTWAIT as u32)
                .build()
                .user_data(index as u64);
            // SAFETY: the entry points into `slot`, which neither moves nor is written until
            // this round has seen every completion; `socket` is borrowed for the whole round.
            // The queue holds `capacity` entries and this round pushes at most that many.
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                self.broken = true;
                return Err(RingBroken);
            }
            slot.asked = true;
            asked += 1;
        }
        let mut calls = 0;
        if asked == 0 {
            return Ok(calls);
        }
        let mut completed = 0;
        for _ in 0..ROUND_ATTEMPTS {
            calls += 1;
            match self.ring.submit_and_wait(asked - completed) {
                Ok(_) => {}
                Err(e) if crate::send::retryable(&e) => continue,
                Err(_) => break,
            }
            for entry in self.ring.completion() {
                completed += 1;
                if let Some(slot) = usize::try_from(entry.user_data())
                    .ok()
                    .and_then(|i| self.slots.get_mut(i))
                {
                    // The kernel also wrote the source's length and MSG_TRUNC into the slot's
                    // header, as recvmsg(2) does.
                    slot.result = entry.result();
                }
            }
            if completed >= asked {
                return Ok(calls);
            }
        }
        // A request may still be in the kernel: never free what it reads or writes.
        self.broken = true;
        Err(RingBroken)
    }

    /// The datagram the last round read from the socket at `index`, if one was queued.
    pub fn received(&self, index: usize) -> Option<Datagram<'_>> {
        let slot = self.slots.get(index)?;
        if !slot.asked || slot.result < 0 {
            return None;
        }
        let len = usize::try_from(slot.result).ok()?.min(MAX_RECEIVE);
        let from = to_socket_addr(&slot.addr, slot.msg.msg_namelen)?;
        Some(Datagram {
            from,
            data: slot.data.get(..len)?,
            truncated: slot.msg.msg_flags & libc::MSG_TRUNC != 0,
        })
    }
}

impl Drop for RecvBatch {
    fn drop(&mut self) {
        if self.broken {
            return;
        }
        // SAFETY: every round waited for all its completions, so nothing refers to the ring
        // or the slots; each is dropped once, here.
        unsafe {
            ManuallyDrop::drop(&mut self.ring);
            ManuallyDrop::drop(&mut self.slots);
        }
    }
}

fn empty_storage() -> libc::sockaddr_storage {
    // SAFETY: `sockaddr_storage` is plain integers; all zeroes is a valid (family 0) value.
    unsafe { std::mem::zeroed() }
}

/// The source address the kernel wrote, if it is IPv4 or IPv6 and whole.
fn to_socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = usize::try_from(len).ok()?;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the storage is large enough and aligned for any socket address, and the
            // kernel wrote a whole `sockaddr_in` into it (family and length checked).
            let a: libc::sockaddr_in =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a whole `sockaddr_in6`.
            let a: libc::sockaddr_in6 =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
