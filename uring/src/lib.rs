//! Batched UDP I/O for Confab's mixer threads: the datagrams of many sockets in one system call.
//!
//! A mixer thread sends one packet to each of its legs every 20 ms tick, and each leg has a
//! socket of its own (its port is in the SDP the caller was given, and a NAT in front of the
//! caller expects our packets from that port). `sendmmsg` batches only one socket's datagrams,
//! so a town hall of 2,000 listeners made 2,000 `sendto` calls a tick, and the per-call cost
//! of entering the kernel was a large part of the bridge's time. [`SendBatch`] queues a tick's
//! datagrams for any number of sockets and hands them to the kernel with one `io_uring_enter`
//! per [`SendBatch::capacity`] datagrams. [`RecvBatch`] reads one queued datagram from each of
//! many sockets the same way.
//!
//! This crate is the only place in Confab with `unsafe` code: the kernel reads the queued
//! datagrams, their addresses and message headers from memory this crate owns, after the call
//! that queued them has returned. The rules that keep that sound are written where the memory
//! is handed over, at the top of `send.rs` and `recv.rs`.

mod addr;
#[allow(unsafe_code)] // the kernel's view of our memory: see the rules at the top of recv.rs
mod recv;
#[cfg(test)]
mod recv_tests;
#[allow(unsafe_code)] // the kernel's view of our memory: see the rules at the top of send.rs
mod send;
#[cfg(test)]
mod send_tests;

pub use recv::{Datagram, MAX_RECEIVE, RecvBatch, RingBroken};
pub use send::{Flushed, MAX_DATAGRAM, QueueError, SendBatch};
