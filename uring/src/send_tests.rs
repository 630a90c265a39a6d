//! Real sockets on loopback: what a batch queues arrives, from the right socket, in order.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use crate::{Flushed, MAX_DATAGRAM, QueueError, SendBatch};

fn batch(capacity: u32) -> SendBatch {
    SendBatch::new(capacity).unwrap_or_else(|e| panic!("io_uring is not available here: {e}"))
}

fn bound() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap_or_else(|e| panic!("{e}"));
    s
}

fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap_or_else(|e| panic!("{e}"))
}

fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf).unwrap_or_else(|e| panic!("{e}"));
    (buf[..n].to_vec(), from)
}

#[test]
fn one_flush_sends_each_sockets_datagram_from_that_socket() {
    let mut b = batch(64);
    let senders: Vec<Arc<UdpSocket>> = (0..8).map(|_| Arc::new(bound())).collect();
    let receivers: Vec<UdpSocket> = (0..8).map(|_| bound()).collect();
    for (i, (tx, rx)) in senders.iter().zip(&receivers).enumerate() {
        let data = vec![i as u8; 10 + i];
        assert_eq!(b.queue(tx, addr(rx), &data), Ok(Flushed::default()));
    }
    assert_eq!(b.queued(), 8);
    let f = b.flush();
    assert_eq!((f.sent, f.failed, f.calls), (8, 0, 1));
    assert_eq!(b.queued(), 0);
    for (i, (tx, rx)) in senders.iter().zip(&receivers).enumerate() {
        let (data, from) = recv(rx);
        assert_eq!(data, vec![i as u8; 10 + i]);
        assert_eq!(from, addr(tx));
    }
}

#[test]
fn a_full_batch_flushes_itself_and_order_is_kept() {
    let mut b = batch(4);
    assert_eq!(b.capacity(), 4);
    let tx = Arc::new(bound());
    let rx = bound();
    let mut sent_on_queue = 0;
    for i in 0..10u8 {
        let f = b
            .queue(&tx, addr(&rx), &[i; 3])
            .unwrap_or_else(|e| panic!("{e:?}"));
        sent_on_queue += f.sent;
    }
    assert_eq!(
        sent_on_queue, 8,
        "the 5th and 9th datagrams flushed four each"
    );
    assert_eq!(b.flush().sent, 2);
    for i in 0..10u8 {
        assert_eq!(recv(&rx).0, vec![i; 3]);
    }
}

#[test]
fn oversized_datagrams_are_refused_and_an_empty_flush_makes_no_call() {
    let mut b = batch(8);
    let tx = Arc::new(bound());
    let rx = bound();
    let big = vec![0u8; MAX_DATAGRAM + 1];
    assert_eq!(b.queue(&tx, addr(&rx), &big), Err(QueueError::TooLarge));
    assert_eq!(b.flush(), Flushed::default());
    let whole = vec![7u8; MAX_DATAGRAM];
    assert!(b.queue(&tx, addr(&rx), &whole).is_ok());
    assert_eq!(b.flush().sent, 1);
    assert_eq!(recv(&rx).0.len(), MAX_DATAGRAM);
}

#[test]
fn a_socket_its_owner_dropped_stays_open_until_its_datagram_is_sent() {
    let mut b = batch(8);
    let rx = bound();
    let tx = Arc::new(bound());
    let from = addr(&tx);
    assert!(b.queue(&tx, addr(&rx), b"late").is_ok());
    drop(tx);
    // A new socket may take the lowest free descriptor number; the queued datagram still
    // leaves from the socket it was queued for.
    let other = Arc::new(bound());
    assert!(b.queue(&other, addr(&rx), b"other").is_ok());
    assert_eq!(b.flush().sent, 2);
    assert_eq!(recv(&rx), (b"late".to_vec(), from));
    assert_eq!(recv(&rx), (b"other".to_vec(), addr(&other)));
}

#[test]
fn a_refused_datagram_is_counted_and_the_rest_are_sent() {
    let mut b = batch(8);
    let tx = Arc::new(bound());
    let rx = bound();
    assert!(b.queue(&tx, addr(&rx), b"one").is_ok());
    // An IPv4 socket cannot send to an IPv6 address.
    assert!(
        b.queue(
            &tx,
            "[::1]:9".parse().unwrap_or_else(|e| panic!("{e}")),
            b"x"
        )
        .is_ok()
    );
    assert!(b.queue(&tx, addr(&rx), b"two").is_ok());
    let f = b.flush();
    assert_eq!((f.sent, f.failed), (2, 1));
    assert!(!b.is_broken());
    assert_eq!(recv(&rx).0, b"one");
    assert_eq!(recv(&rx).0, b"two");
}

#[test]
fn ipv6_destinations_are_written_whole() {
    let Ok(rx) = UdpSocket::bind("[::1]:0") else {
        eprintln!("skipped: this host has no IPv6 loopback");
        return;
    };
    let Ok(tx) = UdpSocket::bind("[::1]:0") else {
        return;
    };
    rx.set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap_or_else(|e| panic!("{e}"));
    let tx = Arc::new(tx);
    let mut b = batch(2);
    assert!(b.queue(&tx, addr(&rx), b"six").is_ok());
    assert_eq!(b.flush().sent, 1);
    assert_eq!(recv(&rx), (b"six".to_vec(), addr(&tx)));
}
