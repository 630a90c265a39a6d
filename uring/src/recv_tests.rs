//! Real sockets on loopback: a round reads one datagram from each socket that has one.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::{MAX_RECEIVE, RecvBatch};

fn bound() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"))
}

fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap_or_else(|e| panic!("{e}"))
}

fn batch(capacity: u32) -> RecvBatch {
    RecvBatch::new(capacity).unwrap_or_else(|e| panic!("io_uring is not available here: {e}"))
}

/// Waits until loopback has delivered what was sent (a short, bounded wait).
fn settle() {
    std::thread::sleep(Duration::from_millis(30));
}

#[test]
fn a_round_reads_each_socket_once_and_says_which_had_nothing() {
    let mut b = batch(8);
    let rx: Vec<UdpSocket> = (0..5).map(|_| bound()).collect();
    let tx = bound();
    // Sockets 0 and 2 get one datagram, 3 gets two, 1 and 4 none.
    tx.send_to(b"zero", addr(&rx[0]))
        .unwrap_or_else(|e| panic!("{e}"));
    tx.send_to(b"two", addr(&rx[2]))
        .unwrap_or_else(|e| panic!("{e}"));
    tx.send_to(b"three-a", addr(&rx[3]))
        .unwrap_or_else(|e| panic!("{e}"));
    tx.send_to(b"three-b", addr(&rx[3]))
        .unwrap_or_else(|e| panic!("{e}"));
    settle();
    let started = Instant::now();
    assert_eq!(b.read_round(rx.iter().map(Some)), Ok(1));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "a round never waits for data"
    );
    let got: Vec<Option<(Vec<u8>, SocketAddr)>> = (0..5)
        .map(|i| b.received(i).map(|d| (d.data.to_vec(), d.from)))
        .collect();
    assert_eq!(got[0], Some((b"zero".to_vec(), addr(&tx))));
    assert_eq!(got[1], None);
    assert_eq!(got[2], Some((b"two".to_vec(), addr(&tx))));
    assert_eq!(got[3], Some((b"three-a".to_vec(), addr(&tx))));
    assert_eq!(got[4], None);
    // The next round, asked only of the socket that had more, reads its second datagram.
    let again = rx.iter().enumerate().map(|(i, s)| (i == 3).then_some(s));
    assert_eq!(b.read_round(again), Ok(1));
    assert_eq!(
        b.received(3).map(|d| d.data.to_vec()),
        Some(b"three-b".to_vec())
    );
    assert!(b.received(0).is_none(), "not asked this round");
    assert_eq!(b.read_round(rx.iter().map(Some)), Ok(1));
    assert!((0..5).all(|i| b.received(i).is_none()));
}

#[test]
fn sockets_past_the_capacity_are_not_read_and_none_asked_makes_no_call() {
    let mut b = batch(2);
    let rx: Vec<UdpSocket> = (0..3).map(|_| bound()).collect();
    let tx = bound();
    for s in &rx {
        tx.send_to(b"x", addr(s)).unwrap_or_else(|e| panic!("{e}"));
    }
    settle();
    assert_eq!(b.read_round(rx.iter().map(Some)), Ok(1));
    assert!(b.received(0).is_some() && b.received(1).is_some());
    assert!(b.received(2).is_none());
    assert_eq!(b.read_round(std::iter::repeat_n(None, 2)), Ok(0));
    assert_eq!(b.read_round([Some(&rx[2])]), Ok(1));
    assert!(
        b.received(0).is_some(),
        "the third socket's datagram waited for its turn"
    );
}

#[test]
fn an_oversized_datagram_is_marked_truncated() {
    let mut b = batch(1);
    let rx = bound();
    let tx = bound();
    let big = vec![9u8; MAX_RECEIVE + 100];
    tx.send_to(&big, addr(&rx))
        .unwrap_or_else(|e| panic!("{e}"));
    tx.send_to(b"small", addr(&rx))
        .unwrap_or_else(|e| panic!("{e}"));
    settle();
    assert_eq!(b.read_round([Some(&rx)]), Ok(1));
    let d = b.received(0).unwrap_or_else(|| panic!("nothing read"));
    assert!(d.truncated);
    assert_eq!(d.data.len(), MAX_RECEIVE);
    assert_eq!(b.read_round([Some(&rx)]), Ok(1));
    let d = b.received(0).unwrap_or_else(|| panic!("nothing read"));
    assert!(!d.truncated);
    assert_eq!(d.data, b"small");
}

#[test]
fn ipv6_sources_are_read_whole() {
    let (Ok(rx), Ok(tx)) = (UdpSocket::bind("[::1]:0"), UdpSocket::bind("[::1]:0")) else {
        eprintln!("skipped: this host has no IPv6 loopback");
        return;
    };
    let mut b = batch(1);
    tx.send_to(b"six", addr(&rx))
        .unwrap_or_else(|e| panic!("{e}"));
    settle();
    assert_eq!(b.read_round([Some(&rx)]), Ok(1));
    let d = b.received(0).unwrap_or_else(|| panic!("nothing read"));
    assert_eq!((d.data, d.from), (&b"six"[..], addr(&tx)));
}
