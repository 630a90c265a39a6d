//! The soak, short: `confab-loadtest --scenario soak` for 75 s with 60 legs in 4 conferences
//! against a real `confab serve`, 2 legs replaced every second (SIP dial-in and API legs, plain
//! and SDES-SRTP). It must finish by itself, churn, and find the bridge flat: descriptors that
//! do not grow with the joins, memory that does not grow by megabytes, every leg's sockets
//! closed once the run has ended. The half-hour run is a benchmark (BENCHMARKS.md, "Soak").

use crate::support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use confab_loadtest::leg::Codec;
use confab_loadtest::{Options, Scenario, Target, report, run, table};
use support::server::{free_port, http};

/// `confab serve` as `support::server::Server` starts it, but with an RTP range of 1,000 ports
/// (that one's 80 hold 40 legs; this test keeps 60 up and churns them). Killed on drop.
struct Bridge {
    child: Child,
    api: SocketAddr,
    sip: SocketAddr,
}

impl Bridge {
    fn start(data: &std::path::Path) -> Bridge {
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        // Ports another process holds are skipped by the bridge's pool.
        let min = 40_000 + (std::process::id() % 20) as u16 * 1_000;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_confab"));
        for (key, _) in std::env::vars() {
            if key.starts_with("CONFAB_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        cmd.arg("serve")
            .args(["--api-listen", &api.to_string()])
            .args(["--sip-listen", &sip.to_string()])
            .arg("--storage-data-dir")
            .arg(data)
            .args(["--media-rtp-port-min", &min.to_string()])
            .args(["--media-rtp-port-max", &(min + 999).to_string()])
            .args(["--mixer-threads", "1"])
            .args(["--webrtc-listen", "127.0.0.1:0"])
            // The generator's SIP is cleartext on loopback: its SRTP joins need SDES there.
            .args(["--media-sdes-over-cleartext", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let bridge = Bridge { child, api, sip };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("no `confab started` within 20 s");
            if rx.recv_timeout(left).unwrap().contains("confab started") {
                break;
            }
        }
        // Keep draining the log so the bridge never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        bridge
    }

    /// A figure of the bridge's /metrics.
    fn metric(&self, name: &str) -> f64 {
        let (_, v) = http(self.api, "GET", "/metrics", None, None);
        let text = v.as_str().unwrap_or_default().to_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_short_soak_churns_and_leaves_the_bridge_flat() {
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(data.path());
    let idle_fds = bridge.metric("process_open_fds");

    let o = Options {
        target: Target::Confab,
        scenario: Scenario::Soak,
        api: format!("http://{}", bridge.api),
        sip: bridge.sip,
        // Found from the API's listening socket.
        pid: None,
        codec: Codec::Pcmu,
        rooms: 4,
        talkers: 2,
        legs: 60,
        churn_percent: 3.0,
        duration: Duration::from_secs(75),
        sample_every: Duration::from_secs(2),
        threads: 1,
        ..Options::default()
    };
    let started = Instant::now();
    let s = run(&o).unwrap();
    println!("{}", table(&s));
    assert!(
        started.elapsed() < Duration::from_secs(150),
        "it stops by itself"
    );
    assert_eq!(s.bridge_pid, Some(bridge.child.id()));
    let k = s.soak.as_ref().unwrap();

    // Churn: 2 legs a second, by both ways, half of them SRTP.
    assert_eq!(k.churn_per_second, 2);
    assert!(k.leaves >= 100, "{} leaves", k.leaves);
    assert!(k.joins >= 60 + 100, "{} joins", k.joins);
    assert!(
        k.sip_joins > 40 && k.api_joins > 40 && k.srtp_joins > 40,
        "{k:?}"
    );
    assert!(
        k.join_failures <= 1 && k.leave_failures <= 1,
        "{:?}",
        k.failure_examples
    );
    assert!(
        s.participants >= 59,
        "{} legs up at the end",
        s.participants
    );
    // Media flowed through the churn (what authenticated over SRTP, too).
    assert!(s.rx_ratio > 0.9, "received / expected {}", s.rx_ratio);

    // Flat. Descriptors: a leaked socket per join would be +160.
    let fds = k.open_fds.unwrap();
    assert!(fds.first >= idle_fds + 50.0, "legs hold sockets: {fds:?}");
    assert!(fds.last <= fds.first + 10.0, "fds {fds:?}");
    let threads = k.threads.unwrap();
    assert!(threads.last <= threads.first + 8.0, "threads {threads:?}");
    // Memory: a short run is noisy (a few MB of allocator and history warm-up may come), so
    // 20 MB; a leak of 1 MB per join would be ~160 MB.
    let (warm, end) = (k.rss_warm_mb.unwrap(), k.rss_end_mb.unwrap());
    assert!(
        warm > 1.0 && end - warm < 20.0,
        "RSS {warm:.1} -> {end:.1} MB"
    );
    assert_eq!(
        k.samples.len(),
        k.samples.iter().filter(|s| s.rss_mb.is_some()).count()
    );

    // The JSON carries the soak's figures.
    let json = serde_json::to_value(&s).unwrap();
    for key in [
        "rss_warm_mb",
        "rss_end_mb",
        "rss_drift_percent",
        "open_fds",
        "threads",
        "late_ticks_per_min_first_half",
        "late_ticks_per_min_second_half",
        "joins",
        "leaves",
        "join_failures",
        "pass",
    ] {
        assert!(json["soak"].get(key).is_some(), "{key} missing");
    }

    // The report plots memory and descriptors over the run.
    let html = report::html(std::slice::from_ref(&s));
    assert!(html.contains("Soak: bridge resident memory") && html.contains("open fds"));

    // Afterwards the conferences are gone and every leg's socket with them (a few files the
    // bridge opens on first use, its storage's, stay: 21 at start, 26 after a run here).
    let (_, v) = http(bridge.api, "GET", "/v1/conferences", None, None);
    assert_eq!(v["conferences"].as_array().map(Vec::len), Some(0), "{v}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut fds_after = bridge.metric("process_open_fds");
    while fds_after > idle_fds + 10.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        fds_after = bridge.metric("process_open_fds");
    }
    assert!(
        fds_after <= idle_fds + 10.0,
        "fds {idle_fds} before the run, {fds_after} after it ({} with the legs up)",
        fds.last
    );
}
