//! The generator's worker threads: each runs its legs in real time (every 20 ms every leg
//! sends, every 5 ms everyone reads), with the legs of one socket kept together so that a
//! tick's packets go out in one `sendmmsg` and come back through `recvmmsg`.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};

use crate::leg::SimLeg;

/// Totals the worker threads keep.
#[derive(Default)]
pub(crate) struct Totals {
    pub(crate) received: AtomicU64,
    pub(crate) expected: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) latencies: Mutex<Vec<u64>>,
}

struct Worker {
    add: mpsc::Sender<Cmd>,
    handle: std::thread::JoinHandle<()>,
}

/// What a worker is told between ticks.
enum Cmd {
    Add(Box<SimLeg>),
    /// The leg with this SSRC leaves (the soak's churn).
    Remove(u32),
}

/// Runs legs in real time: every 20 ms every leg sends, every 5 ms everyone reads.
fn worker(
    epoch: Instant,
    legs: mpsc::Receiver<Cmd>,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    totals: Arc<Totals>,
) {
    let mut mine: Vec<SocketGroup> = Vec::new();
    let mut next_send = Instant::now();
    let mut latencies = Vec::new();
    let mut published = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        while let Ok(cmd) = legs.try_recv() {
            match cmd {
                Cmd::Add(l) => {
                    let l = *l;
                    match mine.iter_mut().find(|g| Arc::ptr_eq(&g.socket, &l.socket)) {
                        Some(g) => g.add(l),
                        None => {
                            let mut g = SocketGroup::new(l.socket.clone());
                            g.add(l);
                            mine.push(g);
                        }
                    }
                }
                Cmd::Remove(ssrc) => {
                    for g in &mut mine {
                        if let Some(gone) = g.remove(ssrc) {
                            // Its counts were published: the sums below no longer hold them.
                            published.0 = published.0.saturating_sub(gone.counts.received);
                            published.1 = published.1.saturating_sub(gone.counts.gaps);
                        }
                    }
                    // A socket whose legs have all left is closed with its group.
                    mine.retain(|g| !g.legs.is_empty());
                }
            }
        }
        let on = measuring.load(Ordering::Relaxed);
        let now = Instant::now();
        if now >= next_send {
            for g in &mut mine {
                g.send(epoch, on);
            }
            if on {
                let legs: usize = mine.iter().map(|g| g.legs.len()).sum();
                totals.expected.fetch_add(legs as u64, Ordering::Relaxed);
            }
            next_send += Duration::from_millis(20);
            if now > next_send + Duration::from_millis(100) {
                // Fell far behind (an overloaded generator): do not burst to catch up.
                next_send = now + Duration::from_millis(20);
            }
        }
        for g in &mut mine {
            g.receive(epoch, &mut latencies);
        }
        let (r, g) = mine
            .iter()
            .flat_map(|g| g.legs.iter())
            .fold((0, 0), |(r, g), l| {
                (r + l.counts.received, g + l.counts.gaps)
            });
        totals
            .received
            .fetch_add(r - published.0, Ordering::Relaxed);
        totals.gaps.fetch_add(g - published.1, Ordering::Relaxed);
        published = (r, g, 0);
        if !latencies.is_empty()
            && let Ok(mut all) = totals.latencies.lock()
        {
            all.append(&mut latencies);
        }
        // Read every 5 ms, but wake for the next send on time: a send late by a poll would be
        // jitter the bridge's jitter buffer must absorb, i.e. latency we measured ourselves.
        let now = Instant::now();
        let wake = (now + Duration::from_millis(5)).min(next_send);
        std::thread::sleep(wake.saturating_duration_since(now));
    }
}

/// Legs that share one socket, told apart by the bridge address a packet comes from.
/// Each tick's packets go out in one `sendmmsg`, what comes back is read by `recvmmsg`.
struct SocketGroup {
    socket: Arc<UdpSocket>,
    legs: Vec<SimLeg>,
    by_source: HashMap<SocketAddr, usize>,
    rx_headers: MultiHeaders<SockaddrStorage>,
    rx_bufs: Vec<[u8; 1600]>,
    /// Headers for one packet per leg, made again when a leg joins the group.
    tx_headers: MultiHeaders<SockaddrStorage>,
}

impl SocketGroup {
    fn new(socket: Arc<UdpSocket>) -> Self {
        SocketGroup {
            socket,
            legs: Vec::new(),
            by_source: HashMap::new(),
            rx_headers: MultiHeaders::preallocate(RX_BATCH, None),
            rx_bufs: vec![[0; 1600]; RX_BATCH],
            tx_headers: MultiHeaders::preallocate(1, None),
        }
    }

    /// Every leg's packet of this tick, in one call (or as many as the socket took).
    fn send(&mut self, epoch: Instant, measuring: bool) {
        let mut ready = Vec::with_capacity(self.legs.len());
        for (i, l) in self.legs.iter_mut().enumerate() {
            l.measuring = measuring;
            let len = l.prepare(epoch);
            if len > 0 {
                ready.push((i, len));
            }
        }
        if ready.is_empty() {
            return;
        }
        let slices: Vec<[IoSlice; 1]> = ready
            .iter()
            .map(|&(i, len)| [IoSlice::new(self.legs[i].packet(len))])
            .collect();
        let to: Vec<Option<SockaddrStorage>> = ready
            .iter()
            .map(|&(i, _)| Some(SockaddrStorage::from(self.legs[i].bridge)))
            .collect();
        let no_control: [ControlMessage; 0] = [];
        let sent = sendmmsg(
            self.socket.as_raw_fd(),
            &mut self.tx_headers,
            slices.iter(),
            &to,
            no_control,
            MsgFlags::MSG_DONTWAIT,
        )
        .map_or(0, |r| r.count());
        drop(slices);
        if measuring {
            for &(i, _) in &ready[..sent.min(ready.len())] {
                self.legs[i].counts.sent += 1;
            }
        }
    }

    fn add(&mut self, leg: SimLeg) {
        self.by_source.insert(leg.bridge, self.legs.len());
        self.legs.push(leg);
        self.tx_headers = MultiHeaders::preallocate(self.legs.len(), None);
    }

    /// Takes the leg with `ssrc` out of the group, if it is here.
    fn remove(&mut self, ssrc: u32) -> Option<SimLeg> {
        let i = self.legs.iter().position(|l| l.ssrc() == ssrc)?;
        let gone = self.legs.swap_remove(i);
        self.by_source = self
            .legs
            .iter()
            .enumerate()
            .map(|(i, l)| (l.bridge, i))
            .collect();
        self.tx_headers = MultiHeaders::preallocate(self.legs.len().max(1), None);
        Some(gone)
    }

    /// Reads what arrived for these legs (bounded: a few packets per leg at most).
    fn receive(&mut self, epoch: Instant, latencies: &mut Vec<u64>) {
        for _ in 0..(8 * self.legs.len()).div_ceil(RX_BATCH).max(1) {
            let mut got = [(0usize, None::<SocketAddr>); RX_BATCH];
            let n = {
                let mut slices: Vec<[IoSliceMut; 1]> = self
                    .rx_bufs
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(&mut b[..])])
                    .collect();
                let Ok(results) = recvmmsg(
                    self.socket.as_raw_fd(),
                    &mut self.rx_headers,
                    slices.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                ) else {
                    break;
                };
                let mut n = 0;
                for (slot, m) in got.iter_mut().zip(results) {
                    *slot = (m.bytes, m.address.as_ref().and_then(source_of));
                    n += 1;
                }
                n
            };
            for (i, &(len, from)) in got[..n].iter().enumerate() {
                // RTCP (the bridge's next port) and strangers match no leg.
                if let Some(&leg) = from.and_then(|f| self.by_source.get(&f)) {
                    self.legs[leg].on_packet(&self.rx_bufs[i][..len], epoch, latencies);
                }
            }
            if n < RX_BATCH {
                break;
            }
        }
    }
}

/// Legs per generator socket.
pub(crate) const LEGS_PER_SOCKET: usize = 25;
/// Where a datagram `recvmmsg` read came from, IPv4 or IPv6.
pub(crate) fn source_of(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    // A dual-stack socket (bound to ::) sees IPv4 peers as ::ffff:a.b.c.d: named as the legs
    // name them.
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::new(v6.ip().to_canonical(), v6.port()))
}

/// Datagrams one `recvmmsg` reads at most.
const RX_BATCH: usize = 32;

pub(crate) struct Run {
    workers: Vec<Worker>,
    pub(crate) measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    pub(crate) totals: Arc<Totals>,
    pub(crate) participants: usize,
}

impl Run {
    pub(crate) fn new(threads: usize) -> Run {
        let epoch = Instant::now();
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let totals = Arc::new(Totals::default());
        let workers = (0..threads.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel();
                let (m, s, t) = (measuring.clone(), stop.clone(), totals.clone());
                Worker {
                    add: tx,
                    handle: std::thread::spawn(move || worker(epoch, rx, m, s, t)),
                }
            })
            .collect();
        Run {
            workers,
            measuring,
            stop,
            totals,
            participants: 0,
        }
    }

    /// Hands `leg` to a worker; which one (for `remove`).
    pub(crate) fn add(&mut self, leg: SimLeg) -> usize {
        // The legs of one socket stay together, in one worker.
        let port = leg.socket.local_addr().map_or(0, |a| usize::from(a.port()));
        let w = port % self.workers.len();
        self.participants += 1;
        let _ = self.workers[w].add.send(Cmd::Add(Box::new(leg)));
        w
    }

    /// The leg with `ssrc`, in worker `w`, stops sending and is dropped.
    pub(crate) fn remove(&mut self, w: usize, ssrc: u32) {
        if let Some(worker) = self.workers.get(w) {
            self.participants = self.participants.saturating_sub(1);
            let _ = worker.add.send(Cmd::Remove(ssrc));
        }
    }

    pub(crate) fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            let _ = w.handle.join();
        }
    }
}
