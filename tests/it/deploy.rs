//! What deploy/ ships, run for real: two Confab nodes behind Kamailio (meetings stick to one
//! node and spread over both; a killed node's meetings fail over; a draining node answers
//! OPTIONS with 503, gets no new meetings and keeps its calls), Prometheus scraping both, the
//! alert rules checked and unit-tested by promtool, the Kubernetes manifests validated against
//! the Kubernetes schemas, the systemd unit verified, the sample configurations checked, and
//! the Grafana dashboard's, the alert rules' and the autoscaler's queries naming only metrics the
//! bridge exports.
//!
//! Needs kamailio, prometheus (promtool), sip-tester, systemd (systemd-analyze) and the
//! kubernetes-validate package from PyPI (scripts/prereqs installs them).

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::kamailio::{Group, Kamailio, calls, deploy, finished_ok, live, options, wait_total};
use support::server::{Server, free_port, http};

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn two_nodes_behind_kamailio() {
    if !support::require(&["kamailio", "sipp", "prometheus"]) {
        return;
    }
    let _turn = support::exclusive();
    let work = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (work.path().join("a"), work.path().join("b"));
    let sip_a: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let sip_b: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let a = Server::start_on(&data_a, None, sip_a, &[]);
    let b = Server::start_on(&data_b, None, sip_b, &[]);
    let ids: Vec<String> = (0..10).map(|i| format!("{}", 4100 + 7 * i)).collect();
    let meetings: Vec<&str> = ids.iter().map(String::as_str).collect();
    // Every node knows every meeting; the proxy decides which one holds it.
    for node in [&a, &b] {
        for m in &meetings {
            let (s, v) = node.call(
                "POST",
                "/v1/conferences",
                Some(&format!(r#"{{"id":"{m}"}}"#)),
            );
            assert_eq!(s, 201, "{v}");
        }
    }
    let kamailio = Kamailio::start(work.path(), &[sip_a, sip_b]);
    std::thread::sleep(Duration::from_secs(3)); // its first probes

    // 1. Two callers per meeting: each meeting's callers on one node, meetings on both.
    let twice: Vec<&str> = meetings.iter().flat_map(|m| [*m, *m]).collect();
    let sipp = calls(work.path(), kamailio.port, &twice, Duration::from_secs(6));
    let seen = wait_total(&[&a, &b], &meetings, 20);
    let mut owner = BTreeMap::new();
    for m in &meetings {
        let (on_a, on_b) = (seen[0][*m], seen[1][*m]);
        assert!(
            (on_a, on_b) == (2, 0) || (on_a, on_b) == (0, 2),
            "meeting {m} split: {on_a} on A, {on_b} on B"
        );
        owner.insert(m.to_string(), if on_a == 2 { 'A' } else { 'B' });
    }
    let on: BTreeSet<char> = owner.values().copied().collect();
    assert_eq!(on.len(), 2, "meetings all on one node: {owner:?}");
    finished_ok(sipp);
    wait_total(&[&a, &b], &meetings, 0);

    // 2. B dies: calls for its meetings reach A.
    drop(b);
    std::thread::sleep(Duration::from_secs(3));
    let b_meetings: Vec<&str> = meetings
        .iter()
        .copied()
        .filter(|m| owner[*m] == 'B')
        .collect();
    let sipp = calls(
        work.path(),
        kamailio.port,
        &b_meetings,
        Duration::from_secs(3),
    );
    let seen = wait_total(&[&a], &b_meetings, b_meetings.len());
    assert!(seen[0].values().all(|n| *n == 1), "{seen:?}");
    finished_ok(sipp);

    // 3. B comes back (its conferences were stored); A drains: A answers OPTIONS with 503, new
    //    callers of A's meetings go to B, A's call in progress goes on until it ends.
    let b = Server::start_on(&data_b, None, sip_b, &[]);
    std::thread::sleep(Duration::from_secs(3));
    let a_meetings: Vec<&str> = meetings
        .iter()
        .copied()
        .filter(|m| owner[*m] == 'A')
        .collect();
    let ongoing = calls(
        work.path(),
        kamailio.port,
        &a_meetings[..1],
        Duration::from_secs(10),
    );
    let seen = wait_total(&[&a], &a_meetings[..1], 1);
    assert_eq!(seen[0][a_meetings[0]], 1);
    assert_eq!(options(sip_a), 200);
    let (s, _) = a.call("POST", "/v1/admin/drain", None);
    assert_eq!(s, 202);
    assert_eq!(
        options(sip_a),
        503,
        "a draining node answers OPTIONS with 503"
    );
    std::thread::sleep(Duration::from_secs(3));
    let sipp = calls(
        work.path(),
        kamailio.port,
        &a_meetings,
        Duration::from_secs(3),
    );
    let seen = wait_total(&[&b], &a_meetings, a_meetings.len());
    assert!(seen[0].values().all(|n| *n == 1), "{seen:?}");
    assert_eq!(
        live(&a, &a_meetings[..1])[a_meetings[0]],
        1,
        "A's call in progress goes on while A drains"
    );
    finished_ok(sipp);
    finished_ok(ongoing);
    wait_total(&[&a], &a_meetings[..1], 0);
    let (_, v) = a.call(
        "GET",
        &format!("/v1/conferences/{}/participants", a_meetings[0]),
        None,
    );
    let last = v["participants"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["disconnect_reason"], "hangup", "{last}");

    // 4. Prometheus (deploy/prometheus/prometheus.yml, our two nodes as targets) scrapes both.
    let config = std::fs::read_to_string(deploy("prometheus/prometheus.yml"))
        .unwrap()
        .replace(
            r#"["confab-a.example.net:8080", "confab-b.example.net:8080"]"#,
            &format!(r#"["{}", "{}"]"#, a.api, b.api),
        )
        .replace(
            "  - confab-rules.yml",
            &format!("  - {}", deploy("prometheus/confab-rules.yml").display()),
        );
    assert!(
        config.contains(&a.api.to_string()),
        "the sample's targets moved"
    );
    let prom_yml = work.path().join("prometheus.yml");
    std::fs::write(&prom_yml, config).unwrap();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let prometheus = Command::new("prometheus")
        .process_group(0)
        .arg(format!("--config.file={}", prom_yml.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus)");
    let prometheus = Group(prometheus);
    let start = Instant::now();
    while std::net::TcpStream::connect(web).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "prometheus did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let up = loop {
        let (s, v) = http(
            web,
            "GET",
            "/api/v1/query?query=up%7Bjob%3D%22confab%22%7D%3D%3D1",
            None,
            None,
        );
        let n = v["data"]["result"].as_array().map_or(0, Vec::len);
        if s == 200 && n == 2 {
            break n;
        }
        if start.elapsed() > Duration::from_secs(40) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(prometheus);
    assert_eq!(up, 2, "Prometheus scrapes both nodes");
    drop(kamailio);
}

/// Whether Kamailio's TLS module is there (`/usr/lib/<arch>/kamailio/modules/tls.so`, from
/// Debian's kamailio-tls-modules), skipping the test with a message if not, failing in CI.
fn kamailio_tls_module() -> bool {
    let there = std::fs::read_dir("/usr/lib").is_ok_and(|dirs| {
        dirs.flatten()
            .any(|d| d.path().join("kamailio/modules/tls.so").exists())
    });
    if there {
        return true;
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(
        !in_ci,
        "Kamailio's tls.so is missing (kamailio-tls-modules)"
    );
    eprintln!("SKIP: Kamailio's tls.so is missing (Debian package kamailio-tls-modules)");
    false
}

/// The sample with `WITH_TLS` (deploy/README.md): a caller on UDP reaches a Confab node whose
/// only entry in the dispatcher list is its `sip.tls_listen` with `;transport=tls`. The node's
/// TLS port is the only way there, so a connected participant is a call Kamailio forwarded
/// over TLS, having checked the node's certificate against the test CA.
#[test]
fn a_call_through_kamailio_reaches_confab_over_tls() {
    if !support::require(&["kamailio", "sipp"]) || !kamailio_tls_module() {
        return;
    }
    let _turn = support::exclusive();
    let work = tempfile::tempdir().unwrap();
    let pki = support::pki::TestPki::new(&["127.0.0.1"]);
    let tls_port = free_port();
    let (cert, key) = (
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
    );
    let tls_listen = format!("127.0.0.1:{tls_port}");
    let node = Server::start(
        &work.path().join("node"),
        None,
        &[
            "--sip-tls-cert",
            &cert,
            "--sip-tls-key",
            &key,
            "--sip-tls-listen",
            &tls_listen,
        ],
    );
    let (s, v) = node.call("POST", "/v1/conferences", Some(r#"{"id":"4400"}"#));
    assert_eq!(s, 201, "{v}");
    let kamailio = Kamailio::start_with(
        work.path(),
        &format!("1 sip:{tls_listen};transport=tls 0 0\n"),
        &[
            "WITH_TLS".to_owned(),
            format!("TLS_LISTEN=tls:127.0.0.1:{}", free_port()),
            format!("TLS_CERT=\"{cert}\""),
            format!("TLS_KEY=\"{key}\""),
            format!("TLS_CA=\"{}\"", pki.ca.display()),
        ],
    );
    std::thread::sleep(Duration::from_secs(3)); // its first probes, over TLS
    let sipp = calls(
        work.path(),
        kamailio.port,
        &["4400"],
        Duration::from_secs(3),
    );
    let seen = wait_total(&[&node], &["4400"], 1);
    assert_eq!(seen[0]["4400"], 1);
    finished_ok(sipp);
    wait_total(&[&node], &["4400"], 0);
    let log = std::fs::read_to_string(work.path().join("kamailio.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("meeting 4400 -> sip:{tls_listen};transport=tls")),
        "{log}"
    );
}

#[test]
fn prometheus_config_and_alert_rules() {
    if !support::require(&["promtool"]) {
        return;
    }
    let _turn = support::shared();
    run_ok(
        Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(deploy("prometheus/confab-rules.yml")),
    );
    run_ok(
        Command::new("promtool")
            .arg("check")
            .arg("config")
            .arg(deploy("prometheus/prometheus.yml")),
    );
    // The overload alert fires on a synthetic series (and the others as their tests say).
    let out = run_ok(
        Command::new("promtool")
            .current_dir(deploy("prometheus"))
            .args(["test", "rules", "confab-rules.test.yml"]),
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn kubernetes_manifests_match_the_schemas() {
    if !support::require_python(&["kubernetes_validate"]) {
        return;
    }
    let _turn = support::shared();
    let dir = deploy("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let out = run_ok(
        Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict", "-k", "1.30.0"])
            .args(&files),
    );
    assert!(!out.to_lowercase().contains("error"), "{out}");
    // The kinds the issue asks for are all there.
    let all: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for kind in [
        "kind: StatefulSet",
        "kind: PodDisruptionBudget",
        "kind: HorizontalPodAutoscaler",
        "path: /readyz",
        "/v1/admin/drain",
        "terminationGracePeriodSeconds",
        "name: confab_mixer_load_ratio",
        "hostNetwork: true",
    ] {
        assert!(all.contains(kind), "{kind} missing");
    }
}

/// `confab check-config` on a sample; those that take the API token from the environment get
/// one added here, since check-config reads the file alone. A sample's placeholder secrets
/// (`change-me…`) are refused, naming the key, until they are replaced.
fn check_config(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("confab.toml");
    let text = if text.contains("token =") {
        text.to_owned()
    } else {
        text.replace("[api]\n", "[api]\ntoken = \"from-the-environment\"\n")
    };
    if text.contains("change-me") {
        std::fs::write(&file, &text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_confab"))
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a placeholder secret was accepted");
        assert!(err.contains("placeholder"), "{err}");
        assert!(err.contains("token"), "{err}");
    }
    let text = text
        .replace("change-me-to-a-long-random-string", "4c1f0e9a7b2d35e8")
        .replace("change-me-too", "9d3a6b0c2e8f1475");
    std::fs::write(&file, text).unwrap();
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_confab"))
            .arg("check-config")
            .arg(&file),
    );
}

#[test]
fn sample_configurations_and_the_systemd_unit_are_valid() {
    if !support::require(&["systemd-analyze"]) {
        return;
    }
    let _turn = support::shared();
    check_config(&std::fs::read_to_string(deploy("systemd/confab.toml")).unwrap());
    check_config(&std::fs::read_to_string(deploy("container/confab.toml")).unwrap());
    let k8s = std::fs::read_to_string(deploy("kubernetes/config.yaml")).unwrap();
    let toml: String = k8s
        .split("confab.toml: |\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    assert!(toml.contains("[webrtc]"), "{toml}");
    check_config(&toml);

    // systemd-analyze verify wants the binary where ExecStart says: point it at ours.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(deploy("systemd/confab.service"))
        .unwrap()
        .replace("/usr/local/bin/confab", env!("CARGO_BIN_EXE_confab"));
    let path = dir.path().join("confab.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    // Complaints about this machine's missing units (no running systemd) are not the unit's.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("confab.service"))
        .filter(|l| !l.contains("not found") && !l.contains("Failed to"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze: {text}");
    assert!(
        out.status.success() || !text.contains("confab.service:"),
        "{text}"
    );
}

#[test]
fn grafana_dashboard_queries_only_exported_metrics() {
    let _turn = support::exclusive();
    let text = std::fs::read_to_string(deploy("grafana/confab-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Conferences",
        "Participants by state",
        "load ratio",
        "tick time p99",
        "Late ticks",
        "loss",
        "Jitter",
        "MOS",
        "SIP responses",
        "API errors",
        "Meetings held per node",
        "lease losses",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(want)),
            "no panel for {want}: {titles:?}"
        );
    }
    let mut exprs: Vec<String> = Vec::new();
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    // The alert rules and the autoscaling configuration name metrics too.
    for file in [
        "prometheus/confab-rules.yml",
        "kubernetes/hpa.yaml",
        "kubernetes/prometheus-adapter.yaml",
    ] {
        exprs.push(std::fs::read_to_string(deploy(file)).unwrap());
    }
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(i) = rest.find("confab_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            used.insert(name);
        }
    }
    assert!(used.contains("confab_dropped_packets_total"), "{used:?}");
    // A bridge with some traffic's worth of series.
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]);
    let (s, _) = server.call("POST", "/v1/conferences", Some(r#"{"id":"9090"}"#));
    assert_eq!(s, 201);
    assert_eq!(options(server.sip), 200);
    let (_, _, metrics) = support::server::http_raw(server.api, "GET", "/metrics", None, None, &[]);
    for name in &used {
        let base = name.strip_suffix("_bucket").unwrap_or(name).to_owned();
        assert!(
            metrics.contains(&format!("# TYPE {base} "))
                || metrics.contains(&format!("# TYPE {} ", base.trim_end_matches("_total"))),
            "the dashboard, the alert rules or the autoscaler query {name}, which /metrics does \
             not export"
        );
    }
    server.stop();
}
