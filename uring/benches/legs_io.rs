//! A tick's socket I/O for 512 legs, each with its own socket: read one queued datagram from
//! every leg, and send one to every leg, one system call per leg (`recvmmsg`, `sendto`, as a
//! leg does on its own) against io_uring submissions for all of them.
//!
//! The machines this runs on are shared and noisy, so the ways are timed in alternation, a
//! tick's worth each, many times over, and the median and the fastest tenth are reported
//! (interference only ever adds time).
//!
//! `cargo bench -p confab-uring --bench legs_io`

use std::hint::black_box;
use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_uring::{RecvBatch, SendBatch};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};

const LEGS: usize = 512;
const ROUNDS: usize = 300;
const PACKET: [u8; 172] = [0x80; 172];

struct Legs {
    /// The bridge's side: a socket per leg.
    bridge: Vec<Arc<UdpSocket>>,
    /// The callers' side: one socket sends to every leg and drains what the legs send.
    caller: UdpSocket,
    caller_addr: SocketAddr,
}

fn bind() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    s.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
    s
}

impl Legs {
    fn new() -> Self {
        let caller = bind();
        let caller_addr = caller.local_addr().unwrap_or_else(|e| panic!("{e}"));
        Legs {
            bridge: (0..LEGS).map(|_| Arc::new(bind())).collect(),
            caller,
            caller_addr,
        }
    }

    /// One datagram queued on every leg's socket.
    fn fill(&self) {
        for s in &self.bridge {
            let to = s.local_addr().unwrap_or_else(|e| panic!("{e}"));
            self.caller
                .send_to(&PACKET, to)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// What the legs sent, taken off the caller's socket.
    fn drain(&self) {
        let mut buf = [0u8; 2048];
        while self.caller.recv_from(&mut buf).is_ok() {}
    }
}

/// A way of doing one tick's I/O, timed after `prepare`.
struct Way<'a> {
    name: &'static str,
    prepare: Box<dyn Fn() + 'a>,
    run: Box<dyn FnMut() + 'a>,
    times: Vec<Duration>,
}

fn compare(title: &str, ways: &mut [Way<'_>]) {
    for round in 0..ROUNDS {
        // Each round starts with another way, so none always runs right after another.
        let n = ways.len();
        for k in 0..n {
            let way = &mut ways[(round + k) % n];
            (way.prepare)();
            let start = Instant::now();
            (way.run)();
            way.times.push(start.elapsed());
        }
    }
    println!("{title} ({ROUNDS} alternating rounds):");
    for way in ways.iter_mut() {
        way.times.sort();
        let median = way.times[way.times.len() / 2];
        let tenth = way.times[way.times.len() / 10];
        println!(
            "  {:<34} median {:>7.1} µs ({:.2} µs a leg), fastest tenth {:>7.1} µs",
            way.name,
            median.as_secs_f64() * 1e6,
            median.as_secs_f64() * 1e6 / LEGS as f64,
            tenth.as_secs_f64() * 1e6,
        );
    }
}

fn main() {
    let legs = Legs::new();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(4, None);
    let mut bufs = [[0u8; 2048]; 4];
    let mut reads = RecvBatch::new(LEGS as u32).unwrap_or_else(|e| panic!("{e}"));
    let mut had = [false; LEGS];
    compare(
        "read one datagram from each of 512 legs",
        &mut [
            Way {
                name: "recvmmsg per leg",
                prepare: Box::new(|| legs.fill()),
                run: Box::new(|| {
                    for s in &legs.bridge {
                        let mut slices = bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
                        let n = recvmmsg(
                            s.as_raw_fd(),
                            &mut headers,
                            slices.iter_mut(),
                            MsgFlags::MSG_DONTWAIT,
                            None,
                        )
                        .map(|r| r.count())
                        .unwrap_or(0);
                        black_box(n);
                    }
                }),
                times: Vec::new(),
            },
            Way {
                name: "io_uring, two rounds",
                prepare: Box::new(|| legs.fill()),
                run: Box::new(|| {
                    // A round for every leg, and one for those that had a datagram (more may
                    // wait; here none does).
                    let _ = reads.read_round(legs.bridge.iter().map(|s| Some(&**s)));
                    for (i, h) in had.iter_mut().enumerate() {
                        *h = reads.received(i).is_some();
                    }
                    let again = legs
                        .bridge
                        .iter()
                        .zip(&had)
                        .map(|(s, &h)| h.then_some(&**s));
                    let _ = reads.read_round(again);
                }),
                times: Vec::new(),
            },
        ],
    );
    let mut sends = SendBatch::new(LEGS as u32).unwrap_or_else(|e| panic!("{e}"));
    let mut sends_128 = SendBatch::new(128).unwrap_or_else(|e| panic!("{e}"));
    compare(
        "send a datagram from each of 512 legs",
        &mut [
            Way {
                name: "sendto per leg",
                prepare: Box::new(|| legs.drain()),
                run: Box::new(|| {
                    for s in &legs.bridge {
                        black_box(s.send_to(&PACKET, legs.caller_addr).is_ok());
                    }
                }),
                times: Vec::new(),
            },
            Way {
                name: "io_uring, one submission",
                prepare: Box::new(|| legs.drain()),
                run: Box::new(|| {
                    for s in &legs.bridge {
                        let _ = sends.queue(s, legs.caller_addr, &PACKET);
                    }
                    black_box(sends.flush());
                }),
                times: Vec::new(),
            },
            Way {
                name: "io_uring, submissions of 128",
                prepare: Box::new(|| legs.drain()),
                run: Box::new(|| {
                    for s in &legs.bridge {
                        let _ = sends_128.queue(s, legs.caller_addr, &PACKET);
                    }
                    black_box(sends_128.flush());
                }),
                times: Vec::new(),
            },
        ],
    );
}
