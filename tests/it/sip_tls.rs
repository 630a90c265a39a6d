//! SIP over TLS with clients that check the bridge's certificate: a rustls client that trusts
//! the test CA is answered over TLS and one that trusts another CA is refused at the handshake;
//! SIPp (built here without TLS) calls through a socat TLS wrapper that verifies the chain and
//! the address, and hangs up; through a wrapper that trusts another CA the call never starts.
//! baresip over TLS with SRTP is in `sip_baresip`.

use crate::support;

use std::time::{Duration, Instant};

use confab::conference::{Policy, State};
use rustls::pki_types::ServerName;
use support::clients::{SipBridge, free_port};
use support::pki::TestPki;
use support::process::Guarded;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// OPTIONS over a TLS connection that verifies the server as `name` against `ca`; the
/// response, or the handshake's error.
fn options_over_tls(
    bridge: &SipBridge,
    ca: &std::path::Path,
    name: &str,
) -> Result<String, std::io::Error> {
    let client = confab::tls::client_config(Some(ca)).unwrap();
    let addr = bridge.tls_addr();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    bridge.runtime.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let mut tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await?;
        let local = "127.0.0.1:5999";
        let request = format!(
            "OPTIONS sip:{addr};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKtls1;rport\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:{addr}>\r\nCall-ID: tls-options-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).await?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout_at(deadline, tls.read(&mut buf))
                .await
                .map_err(|_| std::io::Error::other("no answer in 5 s"))??;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&got).into_owned())
    })
}

#[test]
fn a_verifying_client_is_answered_over_tls_and_an_impostor_ca_is_refused() {
    let _turn = support::shared();
    let pki = TestPki::new(&["127.0.0.1", "sip.confab.test"]);
    let bridge = SipBridge::with_tls(&pki);
    for name in ["127.0.0.1", "sip.confab.test"] {
        let answer = options_over_tls(&bridge, &pki.ca, name).unwrap();
        assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
        assert!(
            answer.contains("Via: SIP/2.0/TLS 127.0.0.1:5999;"),
            "{answer}"
        );
    }
    // A client that trusts another CA, or wants another name, does not get through.
    let other = TestPki::new(&["127.0.0.1"]);
    let e = options_over_tls(&bridge, &other.ca, "127.0.0.1").unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
    let e = options_over_tls(&bridge, &pki.ca, "other.confab.test").unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
    // Plain SIP on the TLS port is not SIP over TLS: no answer, the connection is dropped.
    let plain = bridge.runtime.block_on(async {
        let mut tcp = tokio::net::TcpStream::connect(bridge.tls_addr())
            .await
            .unwrap();
        tcp.write_all(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
        buf
    });
    assert!(
        !plain.starts_with(b"SIP/2.0"),
        "{:?}",
        String::from_utf8_lossy(&plain)
    );
}

/// SIPp's built-in caller over TCP into a socat that speaks TLS to the bridge, checking its
/// certificate against `ca`. Whether SIPp's call succeeded, and its message trace.
fn sipp_through_tls_wrapper(
    bridge: &SipBridge,
    ca: &std::path::Path,
    meeting: &str,
) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let wrapper = free_port();
    let tls = bridge.tls_addr();
    // `fork`: a connection each (the readiness probe below takes one); the guard stops the
    // whole process group, children too.
    let _socat = Guarded::spawn(
        std::process::Command::new("socat")
            .arg(format!(
                "TCP-LISTEN:{wrapper},bind=127.0.0.1,reuseaddr,fork"
            ))
            .arg(format!(
                "OPENSSL:{}:{},cafile={},verify=1",
                tls.ip(),
                tls.port(),
                ca.display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    wait_for_listener(wrapper);
    let mut sipp = Guarded::spawn(
        std::process::Command::new("sipp")
            .args(["-sn", "uac", "-t", "t1", "-i", "127.0.0.1"])
            .args(["-p", &free_port().to_string()])
            .args(["-mp", &free_port().to_string()])
            .args(["-cp", &free_port().to_string()])
            .args(["-s", meeting, "-m", "1", "-d", "2000"])
            .args(["-nostdin", "-timeout", "20s", "-timeout_error"])
            .args(["-trace_msg", "-trace_err"])
            .arg(format!("127.0.0.1:{wrapper}"))
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = sipp.0.try_wait() {
            let mut trace = String::new();
            for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
                trace.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
            return (status.success(), trace);
        }
        assert!(Instant::now() < deadline, "sipp did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sipp_calls_and_hangs_up_through_a_verifying_tls_wrapper() {
    if !support::require(&["sipp", "socat"]) {
        return;
    }
    let _turn = support::shared();
    let pki = TestPki::new(&["127.0.0.1"]);
    let bridge = SipBridge::with_tls(&pki);
    bridge
        .engine
        .create_conference("7001", Policy::default())
        .wait()
        .unwrap();
    let (ok, trace) = sipp_through_tls_wrapper(&bridge, &pki.ca, "7001");
    assert!(ok, "{trace}");
    // It joined, and left by its own BYE (a refused or failed call ends otherwise).
    let roster = bridge.engine.roster("7001").wait().unwrap();
    assert_eq!(roster.len(), 1, "{roster:?}");
    assert_eq!(
        roster[0].state,
        State::Disconnected(confab::conference::DisconnectReason::Hangup),
        "{roster:?}"
    );

    // A wrapper that trusts another CA refuses the bridge: no call reaches it.
    let other = TestPki::new(&["127.0.0.1"]);
    let (ok, trace) = sipp_through_tls_wrapper(&bridge, &other.ca, "7001");
    assert!(!ok, "{trace}");
    assert_eq!(
        bridge.engine.roster("7001").wait().unwrap().len(),
        roster.len()
    );
}

/// A callee over TLS: a socat TLS front (with `cert`/`key`) for a SIPp UAS over TCP that rings
/// and answers 486, writing the messages it gets to `messages`. The front's port; both stop
/// with their guards.
fn busy_callee_over_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
    messages: &std::path::Path,
) -> (u16, Guarded, Guarded) {
    let uas = free_port();
    let front = free_port();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp/uas_busy.xml");
    let sipp = Guarded::spawn(
        std::process::Command::new("sipp")
            .args(["-sf", scenario, "-t", "t1", "-i", "127.0.0.1"])
            .args(["-p", &uas.to_string()])
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(messages)
            .args(["-mp", &free_port().to_string()])
            .args(["-cp", &free_port().to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "30s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let socat = Guarded::spawn(
        std::process::Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{front},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
                cert.display(),
                key.display()
            ))
            .arg(format!("TCP:127.0.0.1:{uas}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    // Both listen once they have started (SIPp's TCP port, socat's front).
    wait_for_listener(uas);
    wait_for_listener(front);
    (front, sipp, socat)
}

#[test]
fn dial_out_over_tls_checks_the_callee_and_hears_its_answer() {
    if !support::require(&["sipp", "socat"]) {
        return;
    }
    let _turn = support::shared();
    let pki = TestPki::new(&["127.0.0.1"]);
    let bridge = SipBridge::with_tls(&pki);
    bridge
        .engine
        .create_conference("7002", Policy::default())
        .wait()
        .unwrap();
    let joiner = || confab::engine::Joiner {
        display_name: "Busy".into(),
        uri: "sip:busy@127.0.0.1".into(),
        role: confab::conference::Role::Attendee,
        identity: None,
    };
    let sip = bridge.sip.as_ref().unwrap();

    // A callee whose certificate chains to our CA: the call goes over TLS, rings, is busy.
    let logs = tempfile::tempdir().unwrap();
    let messages = logs.path().join("callee-messages.log");
    let (front, _sipp, _socat) = busy_callee_over_tls(&pki.cert, &pki.key, &messages);
    let target = format!("sip:busy@127.0.0.1:{front};transport=tls");
    let p = bridge
        .runtime
        .block_on(sip.dial("7002", &target, joiner()))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let last = loop {
        let roster = bridge.engine.roster("7002").wait().unwrap();
        let me = roster.into_iter().find(|x| x.id == p).unwrap();
        if matches!(me.state, State::Disconnected(_)) || Instant::now() > deadline {
            break me;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(last.sip_status, Some(486), "{last:?}");
    assert_eq!(
        last.state,
        State::Disconnected(confab::conference::DisconnectReason::Busy),
        "{last:?}"
    );
    // Over TLS our offer carries SDES keys as best effort (media.srtp = optional): RTP/AVP
    // with one crypto line (SIPp behind socat cannot do SRTP, so the offer is what is checked).
    let seen = std::fs::read_to_string(&messages).unwrap_or_default();
    let invite = seen
        .split("INVITE sip:")
        .nth(1)
        .unwrap_or_else(|| panic!("no INVITE reached the callee: {seen}"));
    let audio = invite
        .lines()
        .find(|l| l.trim_start().starts_with("m=audio "));
    assert!(audio.is_some_and(|m| m.contains(" RTP/AVP ")), "{invite}");
    let crypto: Vec<&str> = invite
        .lines()
        .filter(|l| l.trim_start().starts_with("a=crypto:"))
        .collect();
    assert_eq!(crypto.len(), 1, "{invite}");
    assert!(
        crypto[0].contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{invite}"
    );

    // A callee with a certificate of another CA: refused before any participant exists.
    let impostor = TestPki::new(&["127.0.0.1"]);
    let ignored = logs.path().join("impostor-messages.log");
    let (front, _sipp, _socat) = busy_callee_over_tls(&impostor.cert, &impostor.key, &ignored);
    let target = format!("sip:busy@127.0.0.1:{front};transport=tls");
    let before = bridge.engine.roster("7002").wait().unwrap().len();
    let e = bridge
        .runtime
        .block_on(sip.dial("7002", &target, joiner()))
        .unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
    assert_eq!(bridge.engine.roster("7002").wait().unwrap().len(), before);
}

#[test]
fn a_dial_out_that_requires_srtp_goes_only_over_tls() {
    let _turn = support::shared();
    let pki = TestPki::new(&["127.0.0.1"]);
    let bridge = SipBridge::configured(20, |s| {
        s.srtp = confab::config::SrtpPolicy::Required;
        s.sdes_over_cleartext = false;
        let config = confab::tls::server_config(&pki.cert, &pki.key, &[]).unwrap();
        s.tls = Some(confab::sip::uas::TlsListener {
            listen: "127.0.0.1:0".parse().unwrap(),
            config,
            client: Some(confab::tls::client_config(Some(&pki.ca)).unwrap()),
        });
    });
    bridge
        .engine
        .create_conference("7003", Policy::default())
        .wait()
        .unwrap();
    let joiner = confab::engine::Joiner {
        display_name: "Plain".into(),
        uri: "sip:plain@127.0.0.1".into(),
        role: confab::conference::Role::Attendee,
        identity: None,
    };
    let sip = bridge.sip.as_ref().unwrap();
    // Over UDP the keys could not travel in secret: refused before any participant exists.
    let e = bridge
        .runtime
        .block_on(sip.dial("7003", "sip:plain@127.0.0.1:5999", joiner))
        .unwrap_err();
    assert!(e.to_string().contains("SRTP is required"), "{e}");
    assert!(e.to_string().contains("transport=tls"), "{e}");
    assert!(bridge.engine.roster("7003").wait().unwrap().is_empty());

    // A bridge that leaves SRTP optional, a conference that requires it (its `srtp`).
    let bridge = SipBridge::with_tls(&pki);
    bridge
        .engine
        .create_conference("7004", Policy::default())
        .wait()
        .unwrap();
    let sip = bridge.sip.as_ref().unwrap();
    sip.conference_srtp
        .set("7004", Some(confab::config::SrtpPolicy::Required));
    let joiner = confab::engine::Joiner {
        display_name: "Plain".into(),
        uri: "sip:plain@127.0.0.1".into(),
        role: confab::conference::Role::Attendee,
        identity: None,
    };
    let e = bridge
        .runtime
        .block_on(sip.dial("7004", "sip:plain@127.0.0.1:5999", joiner))
        .unwrap_err();
    assert!(e.to_string().contains("SRTP is required"), "{e}");
    assert!(bridge.engine.roster("7004").wait().unwrap().is_empty());
}

/// Waits (at most 5 s) until something accepts TCP connections on 127.0.0.1:`port`.
fn wait_for_listener(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
