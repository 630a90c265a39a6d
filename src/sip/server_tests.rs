//! The shell's own defences: bounded metrics labels and the TCP listener's limits, on
//! 127.0.0.1 with short timeouts (every loop bounded in count and time).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::conference::limiter::source_of;
use crate::sip::prompts::PromptBook;

#[test]
fn a_thousand_invented_methods_make_one_label() {
    let m = SipMetrics::default();
    for i in 0..1000 {
        let msg = format!("INV{i} sip:1234@127.0.0.1 SIP/2.0\r\nCSeq: 1 INV{i}\r\n\r\n");
        m.received(msg.as_bytes());
        m.sent(format!("SIP/2.0 501 Not Implemented\r\nCSeq: 1 INV{i}\r\n\r\n").as_bytes());
    }
    // Not a request line: not counted at all.
    m.received(b"HELLO world");
    m.received(b"SIP/2.0 200 OK\r\n\r\n");
    m.received(b"OPTIONS sip:x SIP/2.0\r\n\r\n");
    let requests = m.requests.lock().unwrap();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests.get("other"), Some(&1000));
    assert_eq!(requests.get("OPTIONS"), Some(&1));
    let responses = m.responses.lock().unwrap();
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses.get(&("other".to_owned(), 501)), Some(&1000));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A listener with these limits on 127.0.0.1; its address and the frames it delivers.
async fn listen(
    limits: TcpLimits,
) -> (
    SocketAddr,
    mpsc::Receiver<(Peer, Vec<u8>)>,
    Connections,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(64);
    let connections: Connections = Arc::default();
    let task = tokio::spawn(accept_loop(
        Arc::new(listener),
        None,
        tx,
        Arc::clone(&connections),
        limits,
    ));
    (addr, rx, connections, task)
}

/// Whether the server has closed `s` (EOF or reset) within `limit`.
async fn closed_within(s: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, s.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}

const OPTIONS: &[u8] = b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKt\r\nCall-ID: t\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

#[test]
fn a_connection_without_a_complete_message_is_closed() {
    runtime().block_on(async {
        let limits = TcpLimits {
            first_message: Duration::from_millis(300),
            idle: Duration::from_millis(600),
            ..TcpLimits::default()
        };
        let (addr, mut frames, connections, task) = listen(limits).await;
        // Silent: closed after the first-message timeout.
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Slow: half a message, never finished (a slowloris).
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP")
            .await
            .unwrap();
        // Busy: a message at once, and again within the idle timeout, stays open.
        let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
        busy.write_all(OPTIONS).await.unwrap();
        assert!(!closed_within(&mut silent, Duration::from_millis(100)).await);
        assert!(closed_within(&mut silent, Duration::from_secs(2)).await);
        assert!(closed_within(&mut slow, Duration::from_secs(2)).await);
        busy.write_all(OPTIONS).await.unwrap();
        assert!(!closed_within(&mut busy, Duration::from_millis(200)).await);
        let (mut got, deadline) = (0, tokio::time::Instant::now() + Duration::from_secs(2));
        while got < 2 && tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = tokio::time::timeout_at(deadline, frames.recv()).await {
                got += 1;
            }
        }
        assert_eq!(got, 2);
        // Then idle: closed after the idle timeout.
        assert!(closed_within(&mut busy, Duration::from_secs(3)).await);
        // Nothing of them is held.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(connections.lock().unwrap().len(), 0);
        task.abort();
    });
}

#[test]
fn one_source_cannot_take_every_connection() {
    runtime().block_on(async {
        let limits = TcpLimits {
            total: 8,
            per_source: 3,
            ..TcpLimits::default()
        };
        let (addr, _frames, connections, task) = listen(limits).await;
        // One source (127.0.0.1) opens ten: three are kept, the others closed at once.
        let mut mine = Vec::new();
        for _ in 0..10 {
            mine.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut refused = 0;
        for s in &mut mine {
            if closed_within(s, Duration::from_millis(300)).await {
                refused += 1;
            }
        }
        assert_eq!(refused, 7);
        assert_eq!(connections.lock().unwrap().len(), 3);
        // Another source still gets in (127.0.0.2 is loopback too on Linux).
        let other = tokio::net::TcpSocket::new_v4().unwrap();
        other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut other = other.connect(addr).await.unwrap();
        assert!(!closed_within(&mut other, Duration::from_millis(300)).await);
        assert_eq!(connections.lock().unwrap().len(), 4);
        // When the first source's connections close, its slots come back.
        drop(mine);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut again = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(!closed_within(&mut again, Duration::from_millis(300)).await);
        task.abort();
    });
}

#[test]
fn an_ipv6_host_counts_as_its_slash_64() {
    let a = source_of("2001:db8:1:2:aaaa::1".parse().unwrap());
    let b = source_of("2001:db8:1:2:bbbb::7".parse().unwrap());
    let c = source_of("2001:db8:1:3::1".parse().unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(
        source_of("::ffff:192.0.2.1".parse().unwrap()),
        "192.0.2.1".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(
        source_of("192.0.2.1".parse().unwrap()),
        "192.0.2.1".parse::<std::net::IpAddr>().unwrap()
    );
}

/// An OPTIONS from `client` to `to` and whether a 200 came back within two seconds.
async fn options_answered(client: &tokio::net::UdpSocket, to: SocketAddr, branch: &str) -> bool {
    let me = client.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:x@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{branch}\r\nFrom: <sip:a@{me}>;tag=1\r\nTo: <sip:x@{to}>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    client.send_to(options.as_bytes(), to).await.unwrap();
    let mut buf = [0u8; 4096];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), client.recv_from(&mut buf)).await,
        Ok(Ok((n, _))) if buf[..n].starts_with(b"SIP/2.0 200")
    )
}

#[test]
fn a_panicking_sip_task_is_started_again_on_the_same_sockets() {
    runtime().block_on(async {
        let engine =
            Arc::new(Engine::start(crate::engine::EngineSettings::loopback(1, 45_100)).unwrap());
        let settings = UasSettings {
            local: "127.0.0.1:0".parse().unwrap(),
            trusted: vec![crate::config::Network::loopback_v4()],
            access_user: "conference".into(),
            codecs: vec![crate::media::codec::Codec::Pcmu],
            outbound_proxy: None,
            dispatcher: None,
            max_calls: 100,
            invites_per_second: 100,
            advertise: None,
            media_advertise: None,
            route: crate::addr::route_source,
            tls: None,
            srtp: crate::config::SrtpPolicy::Optional,
            sdes_over_cleartext: true,
            conference_srtp: Default::default(),
            auth: Default::default(),
            credentials: Vec::new(),
            kept_while_draining: Default::default(),
            presence: None,
        };
        let attendant = AttendantConfig {
            prompts: Arc::new(PromptBook::embedded(&["en".to_owned()]).unwrap()),
            menu_languages: Vec::new(),
            access_users: Vec::new(),
            settings: Default::default(),
            max_failures_per_source: 10,
            keypad: Default::default(),
            placement: None,
            store: None,
            hand_off: None,
        };
        let sip = SipServer::start(settings, attendant, engine).await.unwrap();
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert!(options_answered(&client, sip.udp, "before").await);
        // A bug outside the call core's own containment ends the SIP task.
        client.send_to(PANIC_FOR_TEST, sip.udp).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while sip
            .metrics
            .restarts
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            sip.metrics
                .restarts
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // It is started again on the same sockets and answers as before.
        let mut answered = false;
        for k in 0..5 {
            if options_answered(&client, sip.udp, &format!("after{k}")).await {
                answered = true;
                break;
            }
        }
        assert!(answered, "no answer after the restart");
        assert!(sip.running());
        sip.stop().await;
    });
}

#[test]
fn a_stranger_gets_no_tcp_connection_at_all() {
    runtime().block_on(async {
        let limits = TcpLimits {
            trusted: Some(vec!["127.0.0.1/32".parse().unwrap()]),
            ..TcpLimits::default()
        };
        let (addr, _frames, connections, task) = listen(limits).await;
        // 127.0.0.2 is not trusted: closed at once, holding no slot.
        for _ in 0..5 {
            let stranger = tokio::net::TcpSocket::new_v4().unwrap();
            stranger.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            let mut stranger = stranger.connect(addr).await.unwrap();
            assert!(closed_within(&mut stranger, Duration::from_millis(500)).await);
        }
        assert_eq!(connections.lock().unwrap().len(), 0);
        // The gateway at 127.0.0.1 gets in.
        let mut gateway = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(!closed_within(&mut gateway, Duration::from_millis(300)).await);
        assert_eq!(connections.lock().unwrap().len(), 1);
        task.abort();
    });
}
