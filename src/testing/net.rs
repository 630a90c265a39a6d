//! One direction of a simulated network path: packets are lost, delayed by a base delay plus
//! random jitter (which reorders them), held back now and then (late reordering) and
//! duplicated, all drawn from a seeded generator. And a NAT whose public port can change.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::rng::Rng;

/// What the path does to packets.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Impairments {
    /// Probability a packet is lost.
    pub(crate) loss: f64,
    /// Every packet's delay.
    pub(crate) base_delay: Duration,
    /// Up to this much more delay, uniformly (packets overtake each other).
    pub(crate) jitter: Duration,
    /// Probability a packet is held back by `late_by` on top (an outlier that arrives after
    /// many later packets).
    pub(crate) late: f64,
    pub(crate) late_by: Duration,
    /// Probability a packet arrives twice.
    pub(crate) duplicate: f64,
}

/// A packet on its way.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    /// Order of sending, so packets due at the same instant keep it.
    order: u64,
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

/// A delivered datagram.
#[derive(Debug)]
pub(crate) struct Datagram {
    pub(crate) from: SocketAddr,
    pub(crate) to: SocketAddr,
    pub(crate) data: Vec<u8>,
}

/// Counts of what the path did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LinkStats {
    pub(crate) sent: u64,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) delivered: u64,
}

/// One direction of the path.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) impairments: Impairments,
    rng: Rng,
    queue: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    pub(crate) stats: LinkStats,
}

impl Link {
    pub(crate) fn new(seed: u64, impairments: Impairments) -> Self {
        Link {
            impairments,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            order: 0,
            stats: LinkStats::default(),
        }
    }

    /// A path that delivers everything after `delay`.
    pub(crate) fn clean(delay: Duration) -> Self {
        Link::new(
            0,
            Impairments {
                base_delay: delay,
                ..Impairments::default()
            },
        )
    }

    fn delay(&mut self) -> Duration {
        let i = self.impairments;
        let jitter = i.jitter.mul_f64(self.rng.unit());
        let late = if self.rng.chance(i.late) {
            i.late_by
        } else {
            Duration::ZERO
        };
        i.base_delay + jitter + late
    }

    /// Puts a packet on the path at `now`.
    pub(crate) fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        self.stats.sent += 1;
        if self.rng.chance(self.impairments.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.impairments.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = now + self.delay();
            self.order += 1;
            self.queue.push(Reverse(InFlight {
                at,
                order: self.order,
                from,
                to,
                data: data.to_vec(),
            }));
        }
    }

    /// The next packet due by `now`, earliest first.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Datagram> {
        if self.queue.peek().is_none_or(|Reverse(p)| p.at > now) {
            return None;
        }
        let Reverse(p) = self.queue.pop()?;
        self.stats.delivered += 1;
        Some(Datagram {
            from: p.from,
            to: p.to,
            data: p.data,
        })
    }
}

/// A NAT in front of a phone: its packets leave from `public`, which the NAT may change
/// (a rebinding: a new public port, or a new address after a network change).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Nat {
    pub(crate) public: SocketAddr,
}

impl Nat {
    pub(crate) fn rebind(&mut self, public: SocketAddr) {
        self.public = public;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_path() {
        let impairments = Impairments {
            loss: 0.1,
            base_delay: Duration::from_millis(30),
            jitter: Duration::from_millis(40),
            late: 0.01,
            late_by: Duration::from_millis(200),
            duplicate: 0.02,
        };
        let run = |seed| {
            let mut link = Link::new(seed, impairments);
            let t0 = Instant::now();
            let mut got = Vec::new();
            for i in 0..2_000u32 {
                let now = t0 + Duration::from_millis(u64::from(i) * 20);
                link.send(
                    now,
                    addr("192.0.2.1:1"),
                    addr("192.0.2.2:2"),
                    &i.to_be_bytes(),
                );
                while let Some(d) = link.poll(now) {
                    got.push(d.data);
                }
            }
            (got, link.stats)
        };
        let (a, stats) = run(7);
        assert_eq!(a, run(7).0);
        assert_ne!(a, run(8).0);
        // Loss near 10 %, some duplicates, and reordering happened.
        assert!((150..250).contains(&stats.lost), "{stats:?}");
        assert!(stats.duplicated > 10, "{stats:?}");
        let reordered = a.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(reordered > 100, "{reordered}");
    }
}
