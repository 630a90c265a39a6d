//! The RTP port pool: even ports from the configured range, handed out as leases that go back
//! to the pool when the leg ends. Each port is drawn at random from the free ones, so that the
//! next call's port cannot be told from the last one's (a stranger who could would be waiting
//! on it with packets before the caller sends any).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

/// The pool of free even ports (each with the odd port above it for RTCP).
#[derive(Debug, Clone)]
pub struct PortPool {
    inner: Arc<Mutex<VecDeque<u16>>>,
    bind: IpAddr,
}

/// A port held by a leg; returned to the pool on drop.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    pool: Arc<Mutex<VecDeque<u16>>>,
}

impl PortLease {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        if let Ok(mut free) = self.pool.lock() {
            free.push_back(self.port);
        }
    }
}

/// No port could be had.
#[derive(Debug, thiserror::Error)]
#[error("no free RTP port in the configured range")]
pub struct PortsExhausted;

impl PortPool {
    /// A pool of the even ports in `min..=max` on `bind`.
    pub fn new(bind: IpAddr, min: u16, max: u16) -> Self {
        let first = min + (min % 2);
        let ports: VecDeque<u16> = (first..max).step_by(2).collect();
        PortPool {
            inner: Arc::new(Mutex::new(ports)),
            bind,
        }
    }

    /// Free ports left.
    pub fn available(&self) -> usize {
        self.inner.lock().map(|f| f.len()).unwrap_or(0)
    }

    /// Binds a UDP socket on the next free even port, and with `rtcp` one on the odd port
    /// above it (skipping ports another process holds).
    pub fn bind(
        &self,
        rtcp: bool,
    ) -> Result<(UdpSocket, Option<UdpSocket>, PortLease), PortsExhausted> {
        let Ok(mut free) = self.inner.lock() else {
            return Err(PortsExhausted);
        };
        // Ports busy elsewhere are set aside until the search ends, so that every free port
        // is tried once (drawn again, a busy one could hide the last free one).
        let mut busy = Vec::new();
        let found = loop {
            if free.is_empty() {
                break None;
            }
            let pick = random_below(free.len());
            let Some(port) = free.swap_remove_back(pick) else {
                break None;
            };
            let rtp = UdpSocket::bind(SocketAddr::new(self.bind, port));
            let rtcp_socket = match (&rtp, rtcp) {
                (Ok(_), true) => UdpSocket::bind(SocketAddr::new(self.bind, port + 1)).map(Some),
                _ => Ok(None),
            };
            match (rtp, rtcp_socket) {
                (Ok(socket), Ok(rtcp_socket)) => {
                    break Some((
                        socket,
                        rtcp_socket,
                        PortLease {
                            port,
                            pool: Arc::clone(&self.inner),
                        },
                    ));
                }
                // Busy elsewhere: back in the pool for later, after this search.
                _ => busy.push(port),
            }
        };
        free.extend(busy);
        found.ok_or(PortsExhausted)
    }
}

/// A random index below `n` (0 without randomness: the pool still works, in order).
fn random_below(n: usize) -> usize {
    let mut b = [0u8; 8];
    if n == 0 || getrandom::fill(&mut b).is_err() {
        return 0;
    }
    (u64::from_le_bytes(b) % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_come_back() {
        let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), 41000, 41005);
        assert_eq!(pool.available(), 3);
        let (_a, none, la) = pool.bind(false).unwrap();
        assert!(none.is_none());
        let (b, rtcp, lb) = pool.bind(true).unwrap();
        assert!(la.port() % 2 == 0 && lb.port() % 2 == 0 && la.port() != lb.port());
        assert_eq!(
            rtcp.unwrap().local_addr().unwrap().port(),
            b.local_addr().unwrap().port() + 1
        );
        assert_eq!(pool.available(), 1);
        drop((_a, la));
        assert_eq!(pool.available(), 2);
    }

    #[test]
    fn the_next_port_cannot_be_told_from_the_last() {
        let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), 42000, 42400);
        let mut held = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..16 {
            let (socket, _, lease) = pool.bind(false).unwrap();
            ports.push(lease.port());
            held.push((socket, lease));
        }
        // In order, every port would be the last plus two; drawn from 200, hardly any are.
        let in_order = ports.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(in_order <= 3, "{ports:?}");
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len());
    }

    #[test]
    fn the_one_free_port_among_busy_ones_is_found() {
        let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), 43000, 43200);
        // Every port but one is taken by someone else.
        let mut taken = Vec::new();
        let free_one = 43000 + 2 * 37;
        for port in (43000..43200).step_by(2) {
            if port != free_one
                && let Ok(s) = UdpSocket::bind(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port))
            {
                taken.push(s);
            }
        }
        for _ in 0..20 {
            let (_socket, _, lease) = pool.bind(false).unwrap();
            assert_eq!(lease.port(), free_one);
        }
        assert_eq!(pool.available(), 100);
    }
}
