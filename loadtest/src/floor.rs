//! `--target floor`: a reflector inside the generator that does no media work, to compare a
//! bridge against. Every 20 ms tick it sends each leg one packet, as a bridge does: a
//! listener gets its room's first talker's latest packet (the one with the clicks, so latency
//! is measured too), a talker the next talker's (its own when it talks alone), a room without
//! talkers its own packet back. The only change to a packet is its sequence number, which the
//! floor numbers as a bridge numbers its own. Packets move with the best batching the kernel
//! offers, `recvmmsg` and `sendmmsg` over a few sockets, so the floor is the cost of moving
//! those packets on this machine and nothing else.
//!
//! The generator tells a bridge's legs apart by the address their packets come from (a bridge
//! gives each leg a port of its own). The floor needs no more sockets than the legs that share
//! one generator socket: leg k of every generator socket talks to floor socket k.
//!
//! Bounded: one thread, which the run stops when it ends (`teardown`, or the floor being
//! dropped) and which stops by itself at a deadline set from the run's planned length; every
//! loop in it is bounded in count.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg, setsockopt,
    sockopt,
};

use crate::bridges::Bridge;
use crate::leg::SimLeg;
use crate::measure::{BridgeMetrics, current_tid};
use crate::{Options, Scenario};

const TICK: Duration = Duration::from_millis(20);
/// How often the sockets are drained between ticks (a tick's packets of thousands of legs
/// would not fit a socket's receive buffer).
const POLL: Duration = Duration::from_millis(5);
/// Datagrams one `recvmmsg` reads, and one `sendmmsg` sends, at most (the kernel's limit for
/// one call is 1,024).
const RX_BATCH: usize = 64;
const TX_BATCH: usize = 1024;
/// Floor sockets at most (one per leg of a generator socket, which holds 25).
const MAX_SOCKETS: usize = 256;
/// The largest packet kept (RTP from the generator is far smaller).
const MAX_PACKET: usize = 1500;
/// Time added to the run's planned length for setting its legs up, before the floor stops
/// by itself.
const SETUP_MARGIN: Duration = Duration::from_secs(60);

/// The longest a run of `o` can take: the floor's deadline.
pub fn lifetime(o: &Options) -> Duration {
    let planned = match o.scenario {
        Scenario::Ramp => {
            let per_step = (o.step_rooms * o.room_size).max(1);
            let steps = (o.max_participants / per_step + 1) as u32;
            (o.warmup.min(Duration::from_secs(2)) + o.step_time + Duration::from_millis(200))
                * steps
        }
        _ => o.warmup + o.duration + Duration::from_secs(1),
    };
    planned + SETUP_MARGIN
}

/// What the reflector's thread is told between ticks.
enum Cmd {
    /// A new floor socket (its index is the next one).
    Socket(UdpSocket),
    /// A leg joined room `room`: it sends from `from` to floor socket `socket`.
    Leg {
        room: usize,
        from: SocketAddr,
        socket: usize,
        talks: bool,
    },
}

/// What the reflector reports (read by the run once a second).
#[derive(Default)]
struct Stats {
    /// Ticks begun more than a tick after they were due.
    late_ticks: AtomicU64,
    /// Time spent receiving and sending (ns), for the load ratio.
    busy_ns: AtomicU64,
}

pub struct Floor {
    commands: mpsc::Sender<Cmd>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    tid: Option<u32>,
    stats: Arc<Stats>,
    /// The floor sockets' addresses, in order.
    addrs: Vec<SocketAddr>,
    /// Legs joined so far from each generator socket.
    per_source: HashMap<SocketAddr, usize>,
    /// The busy time at the last look, for the load ratio since.
    last_look: Mutex<Option<(Instant, u64)>>,
}

impl Floor {
    /// Starts the reflector's thread; it stops by itself after `lifetime`.
    pub fn start(lifetime: Duration) -> anyhow::Result<Floor> {
        let (commands, rx) = mpsc::channel();
        let (tid_tx, tid_rx) = mpsc::sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let (s, st) = (stop.clone(), stats.clone());
        let handle = std::thread::Builder::new()
            .name("floor".into())
            .spawn(move || {
                let _ = tid_tx.send(current_tid());
                Reflector::default().run(rx, &s, &st, Instant::now() + lifetime);
            })
            .context("starting the floor's thread")?;
        // Without its id the floor's CPU is unknown (no /proc), which the run reports as such.
        let tid = tid_rx.recv_timeout(Duration::from_secs(2)).ok().flatten();
        Ok(Floor {
            commands,
            stop,
            handle: Some(handle),
            tid,
            stats,
            addrs: Vec::new(),
            per_source: HashMap::new(),
            last_look: Mutex::new(None),
        })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Bridge for Floor {
    fn create_room(&mut self, room: usize) -> anyhow::Result<String> {
        Ok(room.to_string())
    }

    fn join(&mut self, room: &str, leg: &mut SimLeg, _name: &str) -> anyhow::Result<()> {
        let room: usize = room.parse().context("floor room")?;
        if leg.srtp_key.is_some() {
            return Err(anyhow!("the floor relays plain RTP only"));
        }
        let from = leg.local()?;
        let k = self.per_source.entry(from).or_insert(0);
        let socket = *k;
        *k += 1;
        if socket == self.addrs.len() {
            if socket >= MAX_SOCKETS {
                return Err(anyhow!(
                    "more than {MAX_SOCKETS} legs on one generator socket"
                ));
            }
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.set_nonblocking(true)?;
            // More room than the default for a burst between two polls (capped by the
            // kernel's rmem_max; what it grants is enough for thousands of legs).
            let _ = setsockopt(&s, sockopt::RcvBuf, &(4 << 20));
            self.addrs.push(s.local_addr()?);
            self.commands
                .send(Cmd::Socket(s))
                .map_err(|_| anyhow!("the floor has stopped"))?;
        }
        leg.bridge = self.addrs[socket];
        self.commands
            .send(Cmd::Leg {
                room,
                from,
                socket,
                talks: leg.talks(),
            })
            .map_err(|_| anyhow!("the floor has stopped"))
    }

    fn teardown(&mut self) {
        self.stop();
    }

    fn metrics(&self) -> Option<BridgeMetrics> {
        let busy = self.stats.busy_ns.load(Ordering::Relaxed);
        let now = Instant::now();
        let mut last = self.last_look.lock().ok()?;
        let load_ratio = match *last {
            Some((t, b)) => {
                (busy.saturating_sub(b)) as f64 / now.duration_since(t).as_nanos().max(1) as f64
            }
            None => 0.0,
        };
        *last = Some((now, busy));
        Some(BridgeMetrics {
            late_ticks: self.stats.late_ticks.load(Ordering::Relaxed) as f64,
            load_ratio,
            ..BridgeMetrics::default()
        })
    }

    fn threads(&self) -> Option<Vec<u32>> {
        self.tid.map(|t| vec![t])
    }
}

/// A leg as the reflector knows it.
struct Leg {
    /// Where its packets go (the generator socket it sends from).
    to: SockaddrStorage,
    socket: usize,
    room: usize,
    talks: bool,
    /// The leg whose latest packet it gets each tick.
    source: usize,
    /// Its latest packet.
    last: Vec<u8>,
    /// The sequence number its packet goes out with next.
    seq: u16,
}

struct Socket {
    socket: UdpSocket,
    /// Legs that send to this socket, and are sent to from it.
    legs: Vec<usize>,
}

#[derive(Default)]
struct Reflector {
    sockets: Vec<Socket>,
    legs: Vec<Leg>,
    by_from: HashMap<(usize, SocketAddr), usize>,
    rooms: HashMap<usize, Vec<usize>>,
    /// Sources are worked out again before the next tick.
    joined: bool,
}

impl Reflector {
    fn run(
        mut self,
        commands: mpsc::Receiver<Cmd>,
        stop: &AtomicBool,
        stats: &Stats,
        end: Instant,
    ) {
        let mut rx_headers = MultiHeaders::<SockaddrStorage>::preallocate(RX_BATCH, None);
        let mut rx_bufs = vec![[0u8; MAX_PACKET]; RX_BATCH];
        let mut tx_headers = MultiHeaders::<SockaddrStorage>::preallocate(TX_BATCH, None);
        let mut next_tick = Instant::now() + TICK;
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            for _ in 0..10_000 {
                match commands.try_recv() {
                    Ok(cmd) => self.apply(cmd),
                    Err(_) => break,
                }
            }
            let t0 = Instant::now();
            self.receive(&mut rx_headers, &mut rx_bufs);
            if t0 >= next_tick {
                if t0 > next_tick + TICK {
                    stats.late_ticks.fetch_add(1, Ordering::Relaxed);
                }
                self.tick(&mut tx_headers);
                next_tick += TICK;
                if t0 > next_tick + 5 * TICK {
                    // Far behind (the machine is overloaded): no burst to catch up.
                    next_tick = t0 + TICK;
                }
            }
            let now = Instant::now();
            stats
                .busy_ns
                .fetch_add(now.duration_since(t0).as_nanos() as u64, Ordering::Relaxed);
            let wake = (now + POLL).min(next_tick).min(end);
            std::thread::sleep(wake.saturating_duration_since(now));
        }
    }

    fn apply(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Socket(socket) => self.sockets.push(Socket {
                socket,
                legs: Vec::new(),
            }),
            Cmd::Leg {
                room,
                from,
                socket,
                talks,
            } => {
                let Some(s) = self.sockets.get_mut(socket) else {
                    return;
                };
                let i = self.legs.len();
                s.legs.push(i);
                self.by_from.insert((socket, from), i);
                self.rooms.entry(room).or_default().push(i);
                self.legs.push(Leg {
                    to: SockaddrStorage::from(from),
                    socket,
                    room,
                    talks,
                    source: i,
                    last: Vec::with_capacity(256),
                    seq: 0,
                });
                self.joined = true;
            }
        }
    }

    /// Who hears whom (see the module's documentation).
    fn assign_sources(&mut self) {
        for members in self.rooms.values() {
            let talkers: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&i| self.legs[i].talks)
                .collect();
            for &i in members {
                let at = talkers.iter().position(|&t| t == i);
                self.legs[i].source = match (at, talkers.first()) {
                    (Some(t), _) => talkers[(t + 1) % talkers.len()],
                    (None, Some(&first)) => first,
                    (None, None) => i,
                };
            }
        }
        debug_assert!(self.legs.iter().all(|l| self.rooms.contains_key(&l.room)));
    }

    /// Reads what has arrived on every socket; each leg keeps its latest packet. Bounded: at
    /// most a few packets per leg per call.
    fn receive(
        &mut self,
        headers: &mut MultiHeaders<SockaddrStorage>,
        bufs: &mut [[u8; MAX_PACKET]],
    ) {
        for (si, s) in self.sockets.iter().enumerate() {
            for _ in 0..(8 * s.legs.len()).div_ceil(RX_BATCH).max(1) {
                let mut got = [(0usize, None::<SocketAddr>); RX_BATCH];
                let n = {
                    let mut slices: Vec<[IoSliceMut; 1]> = bufs
                        .iter_mut()
                        .map(|b| [IoSliceMut::new(&mut b[..])])
                        .collect();
                    let Ok(results) = recvmmsg(
                        s.socket.as_raw_fd(),
                        headers,
                        slices.iter_mut(),
                        MsgFlags::MSG_DONTWAIT,
                        None,
                    ) else {
                        break;
                    };
                    let mut n = 0;
                    for (slot, m) in got.iter_mut().zip(results) {
                        *slot = (
                            m.bytes,
                            m.address.as_ref().and_then(crate::worker::source_of),
                        );
                        n += 1;
                    }
                    n
                };
                for (buf, &(len, from)) in bufs.iter().zip(&got[..n]) {
                    if let Some(&leg) = from.and_then(|f| self.by_from.get(&(si, f))) {
                        let last = &mut self.legs[leg].last;
                        last.clear();
                        last.extend_from_slice(&buf[..len.min(MAX_PACKET)]);
                    }
                }
                if n < RX_BATCH {
                    break;
                }
            }
        }
    }

    /// Each leg's packet of this tick, a `sendmmsg` per socket and 1,024 legs.
    fn tick(&mut self, headers: &mut MultiHeaders<SockaddrStorage>) {
        if self.joined {
            self.assign_sources();
            self.joined = false;
        }
        // Each packet goes out with a sequence number of the floor's, one more each tick, as
        // a bridge numbers its own: a talker's packet that came late (sent again) or two in one
        // tick (one skipped) would otherwise read as a loss at the receiver.
        for l in &mut self.legs {
            if l.last.len() >= 12 {
                l.last[2..4].copy_from_slice(&l.seq.to_be_bytes());
                l.seq = l.seq.wrapping_add(1);
            }
        }
        for s in &self.sockets {
            let ready: Vec<usize> = s
                .legs
                .iter()
                .copied()
                .filter(|&i| !self.legs[self.legs[i].source].last.is_empty())
                .collect();
            for chunk in ready.chunks(TX_BATCH) {
                let slices: Vec<[IoSlice; 1]> = chunk
                    .iter()
                    .map(|&i| [IoSlice::new(&self.legs[self.legs[i].source].last)])
                    .collect();
                let to: Vec<Option<SockaddrStorage>> =
                    chunk.iter().map(|&i| Some(self.legs[i].to)).collect();
                send_all(&s.socket, headers, &slices, &to);
            }
        }
        debug_assert!(self.legs.iter().all(|l| l.socket < self.sockets.len()));
    }
}

/// Sends every packet, calling again for what a call left (a full send buffer), at most
/// four calls; what is left after them is dropped, as a busy bridge would drop it.
fn send_all(
    socket: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrStorage>,
    slices: &[[IoSlice; 1]],
    to: &[Option<SockaddrStorage>],
) {
    let mut at = 0;
    let no_control: [ControlMessage; 0] = [];
    for _ in 0..4 {
        if at >= slices.len() {
            return;
        }
        let sent = sendmmsg(
            socket.as_raw_fd(),
            headers,
            slices[at..].iter(),
            &to[at..],
            no_control,
            MsgFlags::MSG_DONTWAIT,
        )
        .map_or(0, |r| r.count());
        if sent == 0 {
            return;
        }
        at += sent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_stops_by_itself_at_its_deadline() {
        let floor = Floor::start(Duration::from_millis(300)).unwrap();
        let tid = floor.threads().unwrap()[0];
        assert!(crate::measure::thread_cpu_seconds(tid).is_some());
        std::thread::sleep(Duration::from_millis(800));
        assert!(floor.handle.as_ref().unwrap().is_finished());
        // Its thread is gone from the process.
        assert_eq!(crate::measure::thread_cpu_seconds(tid), None);
    }

    #[test]
    fn listeners_hear_the_first_talker_and_talkers_the_next() {
        let mut r = Reflector::default();
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        r.apply(Cmd::Socket(a));
        r.apply(Cmd::Socket(b));
        let from = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        // Room 0: two talkers, two listeners (one joined before the talkers); room 1: a lone
        // talker and a listener; room 2: a listener alone.
        let joins = [
            (0, 4, false),
            (0, 1, true),
            (0, 2, true),
            (0, 3, false),
            (1, 5, true),
            (1, 6, false),
            (2, 7, false),
        ];
        for (i, (room, port, talks)) in joins.into_iter().enumerate() {
            r.apply(Cmd::Leg {
                room,
                from: from(port),
                socket: i % 2,
                talks,
            });
        }
        r.assign_sources();
        let sources: Vec<usize> = r.legs.iter().map(|l| l.source).collect();
        assert_eq!(sources, [1, 2, 1, 1, 4, 4, 6]);
        assert_eq!(r.by_from.get(&(1, from(1))), Some(&1));
        assert_eq!(r.sockets[0].legs, [0, 2, 4, 6]);
    }

    #[test]
    fn the_deadline_covers_the_planned_run() {
        let o = Options {
            warmup: Duration::from_secs(3),
            duration: Duration::from_secs(20),
            ..Options::default()
        };
        assert_eq!(lifetime(&o), Duration::from_secs(24) + SETUP_MARGIN);
        let ramp = Options {
            scenario: Scenario::Ramp,
            max_participants: 1000,
            ..o
        };
        // 1000 / (10 rooms x 10) + 1 = 11 steps of 2 + 8 + 0.2 s.
        assert_eq!(
            lifetime(&ramp),
            Duration::from_millis(10_200) * 11 + SETUP_MARGIN
        );
    }
}
