//! `/metrics` of a running bridge: values after a scripted call (participants by state, RTP
//! packets, encodes by kind, SIP and API counters, the process), conference series that go
//! away with their conference, `promtool check metrics` on a scrape taken while calls are up,
//! and a real Prometheus scraping it.

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use confab::media::codec::Codec;
use serde_json::json;
use support::Endpoint;
use support::server::{Server, http_raw};

/// `name{labels} value` lines of the exposition, by series.
fn series(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// What Prometheus asks for.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn scrape(server: &Server) -> (String, HashMap<String, f64>) {
    let accept = [("Accept", PROMETHEUS_ACCEPT)];
    let (status, head, body) = http_raw(server.api, "GET", "/metrics", None, None, &accept);
    assert_eq!(status, 200);
    assert!(head.to_lowercase().contains("openmetrics"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    let s = series(&body);
    (body, s)
}

/// Two PCMU endpoints joined to conference `cid` through the API, with the bridge's media
/// address of each.
fn join_two(server: &Server, cid: &str) -> (Endpoint, Endpoint, Vec<std::net::SocketAddr>) {
    let a = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 1);
    let b = Endpoint::new(Codec::Pcmu, 660.0, -20.0, 2);
    let mut media = Vec::new();
    for e in [&a, &b] {
        let body = json!({ "sdp": offer(e) }).to_string();
        let path = format!("/v1/conferences/{cid}/participants");
        let (s, v) = server.call("POST", &path, Some(&body));
        assert_eq!(s, 201, "{v}");
        let answer = v["sdp"].as_str().unwrap();
        let port: u16 = answer
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap();
        media.push(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    (a, b, media)
}

/// `promtool check metrics` on `text`: what it printed (nothing when the exposition passes),
/// and whether it exited 0.
fn promtool_check(text: &str) -> (String, bool) {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("promtool.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut promtool = support::process::Guarded::spawn(
        std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out),
    );
    let mut stdin = promtool.0.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).unwrap();
    drop(stdin);
    let status = promtool.0.wait().unwrap();
    (
        std::fs::read_to_string(&out_path).unwrap(),
        status.success(),
    )
}

/// Scheduling policy (0 normal, 2 SCHED_RR) and real-time priority of each mixer thread and
/// helper of process `pid`, from /proc.
pub(crate) fn mixer_thread_policies(pid: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("confab-mixer-") {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // Fields after the name (which may hold spaces) start at field 3: rt_priority is
        // field 40, policy field 41.
        let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        out.push((fields[38].parse().unwrap(), fields[37].parse().unwrap()));
    }
    out
}

fn offer(e: &Endpoint) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtcp-mux\r\n",
        e.addr().port()
    )
}

#[test]
fn metrics_after_a_call_and_series_that_go_with_their_conference() {
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    assert_eq!(
        server
            .call("POST", "/v1/conferences", Some(r#"{"id":"3100"}"#))
            .0,
        201
    );
    let (mut a, mut b, media) = join_two(&server, "3100");
    support::run(
        &mut [(&mut a, media[0]), (&mut b, media[1])],
        Duration::from_secs(2),
        |_| {},
    );
    // A SIP request for the SIP counters.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let options = "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKm\r\nFrom: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: m1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    udp.send_to(options.as_bytes(), server.sip).unwrap();
    let mut buf = [0u8; 2048];
    udp.recv(&mut buf).unwrap();

    let (text, m) = scrape(&server);
    let get = |k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("no series {k} in\n{text}"))
    };
    assert_eq!(get("confab_participants{state=\"connected\"}"), 2.0);
    // Meeting IDs are not labels unless `metrics.conference_labels` says so (the endpoint is
    // not authenticated).
    assert!(!text.contains("conference=\""), "{text}");
    // 2 s of 20 ms packets from each of two endpoints.
    let rtp_in = get("confab_rtp_packets_total{direction=\"in\",codec=\"PCMU\"}");
    assert!((150.0..=210.0).contains(&rtp_in), "{rtp_in}");
    assert!(get("confab_rtp_packets_total{direction=\"out\",codec=\"PCMU\"}") > 150.0);
    // Two talkers, no other listener: each gets its own mix-minus.
    assert!(get("confab_encodes_total{codec=\"PCMU\",kind=\"own\"}") > 150.0);
    assert_eq!(get("confab_sip_requests_total{method=\"OPTIONS\"}"), 1.0);
    assert_eq!(
        get("confab_sip_responses_total{method=\"OPTIONS\",code=\"200\"}"),
        1.0
    );
    assert_eq!(
        get(
            "confab_api_requests_total{route=\"/v1/conferences/{cid}/participants\",status=\"201\"}"
        ),
        2.0
    );
    assert!(get("confab_mixer_tick_duration_seconds_count") > 50.0);
    // Every tick's start is measured; the gauge says what the kernel says of the mixer threads
    // (as root they get SCHED_RR; without the right, normal scheduling).
    assert!(get("confab_mixer_tick_start_delay_seconds_count") > 50.0);
    assert!(
        get("confab_mixer_tick_start_delay_seconds_bucket{le=\"+Inf\"}")
            >= get("confab_mixer_tick_start_delay_seconds_count")
    );
    let policies = mixer_thread_policies(server.pid());
    assert!(
        policies.len() >= 2,
        "mixer threads and helpers: {policies:?}"
    );
    let all_rr = policies.iter().all(|p| *p == (2, 10));
    assert!(all_rr || policies.iter().all(|p| p.0 == 0), "{policies:?}");
    assert_eq!(get("confab_mixer_realtime"), f64::from(u8::from(all_rr)));
    let load = get("confab_mixer_load_ratio");
    assert!((0.0..1.0).contains(&load), "{load}");
    assert_eq!(get("confab_draining"), 0.0);
    assert!(get("process_resident_memory_bytes") > 1e6);
    assert!(get("process_open_fds") > 5.0);
    assert!(m.contains_key("process_cpu_seconds_total"), "{text}");

    // A thousand conferences made and ended: nothing of them stays in the exposition.
    let (before, _) = scrape(&server);
    for i in 0..1000 {
        let id = format!("{}", 500_000 + i);
        assert_eq!(
            server
                .call(
                    "POST",
                    "/v1/conferences",
                    Some(&json!({ "id": id }).to_string())
                )
                .0,
            201
        );
    }
    let (during, _) = scrape(&server);
    assert_eq!(during.matches("conference=\"").count(), 0);
    for i in 0..1000 {
        let id = 500_000 + i;
        assert_eq!(
            server
                .call("DELETE", &format!("/v1/conferences/{id}"), None)
                .0,
            204
        );
    }
    // Ended conferences leave their mixer thread at its next tick.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = scrape(&server).0;
    while after.contains("conference=\"5") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = scrape(&server).0;
    }
    assert_eq!(after.matches("conference=\"5").count(), 0);
    // Only a few API counters (a new route and status) may have been added.
    let (b, a) = (before.lines().count(), after.lines().count());
    assert!(a <= b + 5, "the exposition grew from {b} to {a} lines");
    server.stop();
}

#[test]
fn promtool_passes_a_scrape_taken_while_calls_are_up() {
    if !support::require(&["promtool"]) {
        return;
    }
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    // With the per-conference series, so that they are checked too.
    let server = Server::start(data.path(), None, &["--metrics-conference-labels", "true"]);
    for cid in ["3300", "3301"] {
        let body = json!({ "id": cid }).to_string();
        assert_eq!(server.call("POST", "/v1/conferences", Some(&body)).0, 201);
    }
    let (mut a, mut b, media_a) = join_two(&server, "3300");
    let (mut c, mut d, media_c) = join_two(&server, "3301");
    let mut scrapes = Vec::new();
    support::run(
        &mut [
            (&mut a, media_a[0]),
            (&mut b, media_a[1]),
            (&mut c, media_c[0]),
            (&mut d, media_c[1]),
        ],
        Duration::from_secs(3),
        |tick| {
            // Mid-call, after the legs' jitter was looked at: the format a client gets when it
            // does not ask for OpenMetrics (curl, promtool users), and Prometheus' own.
            if tick == 125 {
                scrapes.push(http_raw(server.api, "GET", "/metrics", None, None, &[]));
                let accept = [("Accept", PROMETHEUS_ACCEPT)];
                scrapes.push(http_raw(server.api, "GET", "/metrics", None, None, &accept));
            }
        },
    );
    let [(s, head, text), (om_status, om_head, om)] = <[_; 2]>::try_from(scrapes).unwrap();
    assert_eq!((s, om_status), (200, 200));
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(
        om_head.contains("application/openmetrics-text"),
        "{om_head}"
    );
    let (lint, passed) = promtool_check(&text);
    assert!(
        passed && lint.is_empty(),
        "promtool check metrics:\n{lint}\non\n{text}"
    );
    // The scrape was taken under load: four legs sending, both conferences labelled.
    let m = series(&text);
    let get = |k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("no series {k} in\n{text}"))
    };
    assert_eq!(get("confab_participants{state=\"connected\"}"), 4.0);
    assert!(get("confab_rtp_packets_total{direction=\"in\",codec=\"PCMU\"}") > 300.0);
    // Each of the four legs looked at about once a second for two seconds.
    let looks = get("confab_rtp_jitter_seconds_count");
    assert!((4.0..=16.0).contains(&looks), "{looks}");
    assert_eq!(
        get(&format!(
            "confab_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    for cid in ["3300", "3301"] {
        assert_eq!(
            get(&format!(
                "confab_conference_participants{{conference=\"{cid}\"}}"
            )),
            2.0
        );
    }
    // The two formats carry the same metrics (the second scrape counts the first among the
    // API requests: a series more).
    let names = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split([' ', '{']).next().map(str::to_owned))
            .collect()
    };
    assert_eq!(names(&text), names(&om));
    server.stop();
}

#[test]
fn a_real_prometheus_scrapes_the_bridge() {
    if !support::require(&["prometheus"]) {
        return;
    }
    let _turn = support::exclusive();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    assert_eq!(
        server
            .call("POST", "/v1/conferences", Some(r#"{"id":"3200"}"#))
            .0,
        201
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = data.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: confab\n    static_configs:\n      - targets: ['{}']\n",
            server.api
        ),
    )
    .unwrap();
    let mut prometheus = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            data.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus) is needed for this test");
    let prom: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let query = |q: &str| -> Option<f64> {
        let path = format!("/api/v1/query?query={q}");
        let (status, _, body) =
            std::panic::catch_unwind(|| http_raw(prom, "GET", &path, None, None, &[])).ok()?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut up = None;
    let mut conferences = None;
    while Instant::now() < deadline {
        up = query("up%7Bjob%3D%22confab%22%7D");
        conferences = query("confab_conferences");
        if up == Some(1.0) && conferences.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(up, Some(1.0), "Prometheus never saw the bridge up");
    // 3200 and the attendant's lobby.
    assert_eq!(conferences, Some(2.0));
    server.stop();
}
