//! Real hosts and a real NAT, in network namespaces this test makes itself: two baresip phones
//! in a "client" namespace (198.51.100.2) call a meeting on a bridge in a "bridge" namespace
//! (203.0.113.10) through a "nat" namespace that masquerades them as 203.0.113.1. The phones
//! name their private address everywhere (Via, Contact, SDP) and nothing rewrites it, as with a
//! home router. Each phone must hear the other (two-way audio through the NAT, measured on what
//! baresip decoded), one call ends by the bridge's BYE (eject) and the other by the phone's,
//! for each way of binding and advertising the bridge's addresses in `COMBINATIONS`.
//!
//! Needs root (namespaces), iproute2, nftables and baresip. Without them it says what is
//! missing and skips, unless `CONFAB_REQUIRE_NETNS=1` (then a skip is a failure).

use crate::support;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::process::Guarded;

const BRIDGE_IP: &str = "203.0.113.10";
const CLIENT_IP: &str = "198.51.100.2";
const MEETING: &str = "4455";
const TONES: [f32; 2] = [440.0, 880.0];

/// How the bridge binds and what it advertises: (name, sip.listen, media.bind, advertise).
const COMBINATIONS: [(&str, &str, &str, Option<&str>); 3] = [
    (
        "wildcard bind, nothing advertised",
        "0.0.0.0:5060",
        "0.0.0.0",
        None,
    ),
    (
        "bound to its address",
        "203.0.113.10:5060",
        "203.0.113.10",
        None,
    ),
    (
        "wildcard bind, advertised",
        "0.0.0.0:5060",
        "0.0.0.0",
        Some(BRIDGE_IP),
    ),
];

fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (network namespaces need it)".into());
    }
    for (program, package) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("baresip", "baresip-core"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{program} is missing (Debian package {package})"));
        }
    }
    None
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three namespaces and their links; deleted on drop (pass or fail), which also removes their
/// interfaces and rules.
struct Namespaces {
    client: String,
    nat: String,
    bridge: String,
}

impl Namespaces {
    fn new() -> Self {
        let id = std::process::id();
        let ns = Namespaces {
            client: format!("cfc{id}"),
            nat: format!("cfn{id}"),
            bridge: format!("cfb{id}"),
        };
        // The guard exists before anything is made, so a failed set-up is cleaned up too.
        for name in [&ns.client, &ns.nat, &ns.bridge] {
            run(&["ip", "netns", "add", name]);
            run(&["ip", "-n", name, "link", "set", "lo", "up"]);
        }
        let (a, b, c, d) = (
            format!("vc{id}"),
            format!("vi{id}"),
            format!("vo{id}"),
            format!("vb{id}"),
        );
        run(&[
            "ip", "link", "add", &a, "netns", &ns.client, "type", "veth", "peer", "name", &b,
            "netns", &ns.nat,
        ]);
        run(&[
            "ip", "link", "add", &c, "netns", &ns.nat, "type", "veth", "peer", "name", &d, "netns",
            &ns.bridge,
        ]);
        for (name, dev, addr) in [
            (&ns.client, &a, "198.51.100.2/24"),
            (&ns.nat, &b, "198.51.100.1/24"),
            (&ns.nat, &c, "203.0.113.1/24"),
            (&ns.bridge, &d, "203.0.113.10/24"),
        ] {
            run(&["ip", "-n", name, "addr", "add", addr, "dev", dev]);
            run(&["ip", "-n", name, "link", "set", dev, "up"]);
        }
        run(&[
            "ip",
            "-n",
            &ns.client,
            "route",
            "add",
            "default",
            "via",
            "198.51.100.1",
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            &ns.nat,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let nft = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &ns.nat, "nft"];
            all.extend_from_slice(args);
            run(&all);
        };
        nft(&["add", "table", "ip", "nat"]);
        nft(&[
            "add",
            "chain",
            "ip",
            "nat",
            "postrouting",
            "{ type nat hook postrouting priority srcnat; policy accept; }",
        ]);
        nft(&[
            "add",
            "rule",
            "ip",
            "nat",
            "postrouting",
            "oifname",
            &c,
            "masquerade",
        ]);
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in [&self.client, &self.nat, &self.bridge] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// An HTTP request to the bridge's API on 127.0.0.1:8080 inside its namespace: the connection
/// is made from a thread that entered the namespace (the socket keeps it).
fn api(ns: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let ns_file = PathBuf::from("/run/netns").join(ns);
    let stream = std::thread::spawn(move || {
        let file = std::fs::File::open(ns_file).unwrap();
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        TcpStream::connect("127.0.0.1:8080")
    })
    .join()
    .unwrap();
    let mut stream = stream.unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn start_bridge(
    ns: &Namespaces,
    data: &Path,
    sip: &str,
    media: &str,
    advertise: Option<&str>,
) -> Guarded {
    let log = std::fs::File::create(data.join("confab.log")).unwrap();
    let mut command = Command::new("ip");
    command
        .args([
            "netns",
            "exec",
            &ns.bridge,
            env!("CARGO_BIN_EXE_confab"),
            "serve",
        ])
        .args(["--sip-listen", sip, "--media-bind", media])
        .args(["--sip-trusted", "203.0.113.0/24"])
        .args([
            "--api-listen",
            "127.0.0.1:8080",
            "--webrtc-listen",
            "127.0.0.1:0",
        ])
        .args(["--mixer-threads", "1"])
        .arg("--storage-data-dir")
        .arg(data);
    if let Some(ip) = advertise {
        command.args(["--sip-advertise", ip, "--media-advertise", ip]);
    }
    for (key, _) in std::env::vars() {
        if key.starts_with("CONFAB_") {
            command.env_remove(key);
        }
    }
    let bridge = Guarded::spawn(
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::fs::read_to_string(data.join("confab.log"))
            .is_ok_and(|l| l.contains("confab started"))
        {
            return bridge;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the bridge did not start:\n{}",
        std::fs::read_to_string(data.join("confab.log")).unwrap_or_default()
    );
}

/// A tone file for baresip to send.
fn tone_wav(path: &Path, freq: f32) {
    let ok = Command::new("sox")
        .args(["-D", "-n", "-r", "48000", "-c", "1", "-b", "16"])
        .arg(path)
        .args(["synth", "30", "sine", &freq.to_string(), "vol", "0.3"])
        .status()
        .expect("sox (Debian package sox) is needed for this test")
        .success();
    assert!(ok);
}

/// baresip in the client namespace, dialling the meeting and quitting after `seconds`.
fn phone(ns: &Namespaces, dir: &Path, index: usize, target: &str, seconds: u32) -> Guarded {
    std::fs::create_dir_all(dir.join("rec")).unwrap();
    let wav = dir.join("tone.wav");
    tone_wav(&wav, TONES[index]);
    let sip_port = 5070 + 2 * index;
    let rtp = 30000 + 20 * index;
    let config = format!(
        "sip_listen {CLIENT_IP}:{sip_port}\nnet_interface {CLIENT_IP}\n\
         audio_source aufile,{wav}\nausrc_srate 48000\nausrc_channels 1\n\
         audio_player aubridge,null-p{index}\nrtp_ports {rtp}-{end}\n\
         snd_path {rec}\nmodule_path /usr/lib/baresip/modules\n\
         module g711.so\nmodule aufile.so\nmodule aubridge.so\nmodule sndfile.so\n\
         module_tmp account.so\nmodule_app menu.so\n",
        wav = wav.display(),
        end = rtp + 9,
        rec = dir.join("rec").display(),
    );
    std::fs::write(dir.join("config"), config).unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:p{index}@{CLIENT_IP}:{sip_port}>;regint=0;answermode=manual;audio_codecs=pcmu\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
    Guarded::spawn(
        Command::new("ip")
            .args(["netns", "exec", &ns.client, "baresip", "-f"])
            .arg(dir)
            .args(["-e", &format!("/dial {target}"), "-t", &seconds.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    )
}

/// What baresip decoded (its sndfile `*-dec.wav`), as 16-bit samples at its rate.
fn heard(dir: &Path) -> (u32, Vec<i16>) {
    let file = std::fs::read_dir(dir.join("rec"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| {
            panic!(
                "no recording; baresip said:\n{}",
                std::fs::read_to_string(dir.join("baresip.log")).unwrap_or_default()
            )
        });
    let bytes = std::fs::read(file).unwrap();
    // A canonical 44-byte WAV header from sndfile: rate at 24, data after "data" + size.
    let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    let data = bytes
        .windows(4)
        .position(|w| w == b"data")
        .map_or(44, |i| i + 8);
    let samples = bytes[data..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    (rate, samples)
}

fn participants(ns: &Namespaces) -> Vec<(String, String, String)> {
    let (status, body) = api(&ns.bridge, "GET", &format!("/v1/conferences/{MEETING}"), "");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["participants"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or_default().to_owned(),
                p["state"].as_str().unwrap_or_default().to_owned(),
                p["disconnect_reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

#[test]
fn phones_behind_a_nat_talk_through_the_bridge_for_every_bind_and_advertise_combination() {
    if let Some(why) = missing_prerequisite() {
        assert!(
            std::env::var("CONFAB_REQUIRE_NETNS").is_err(),
            "CONFAB_REQUIRE_NETNS is set but: {why}"
        );
        eprintln!("SKIP: {why}");
        return;
    }
    let _turn = support::exclusive();
    for (name, sip, media, advertise) in COMBINATIONS {
        let ns = Namespaces::new();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let _bridge = start_bridge(&ns, &data, sip, media, advertise);
        let (status, body) = api(
            &ns.bridge,
            "POST",
            "/v1/conferences",
            &format!("{{\"id\":\"{MEETING}\"}}"),
        );
        assert_eq!(status, 201, "{name}: {body}");
        let target = format!("sip:{MEETING}@{BRIDGE_IP}:5060");
        let dirs: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("p{i}"))).collect();
        // Phone 1 stays on until the bridge ejects it; phone 0 hangs up by itself first.
        let mut phones: Vec<Guarded> = vec![
            phone(&ns, &dirs[0], 0, &target, 8),
            phone(&ns, &dirs[1], 1, &target, 30),
        ];
        std::thread::sleep(Duration::from_secs(5));
        let roster = participants(&ns);
        let logs = || {
            format!(
                "bridge:\n{}\nphones:\n{}\n----\n{}",
                std::fs::read_to_string(data.join("confab.log")).unwrap_or_default(),
                std::fs::read_to_string(dirs[0].join("baresip.log")).unwrap_or_default(),
                std::fs::read_to_string(dirs[1].join("baresip.log")).unwrap_or_default()
            )
        };
        assert_eq!(
            roster.iter().filter(|p| p.1 == "connected").count(),
            2,
            "{name}: {roster:?}\n{}",
            logs()
        );
        // Phone 0 quits after 8 s with a BYE from behind the NAT.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !phones[0].exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        let roster = participants(&ns);
        assert_eq!(
            roster.iter().filter(|p| p.2 == "hangup").count(),
            1,
            "{name}: phone 0's BYE: {roster:?}\n{}",
            logs()
        );
        // The bridge ejects phone 1: its BYE must reach the phone through the NAT.
        let (id, ..) = roster
            .iter()
            .find(|p| p.1 == "connected")
            .cloned()
            .unwrap_or_else(|| panic!("{name}: {roster:?}"));
        let (status, body) = api(
            &ns.bridge,
            "DELETE",
            &format!("/v1/conferences/{MEETING}/participants/{id}"),
            "",
        );
        assert!(
            status == 200 || status == 204,
            "{name}: eject: {status} {body}"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let closed = loop {
            let log = std::fs::read_to_string(dirs[1].join("baresip.log")).unwrap_or_default();
            if log.contains("session closed") || log.contains("terminated") {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            closed,
            "{name}: the bridge's BYE did not reach phone 1\n{}",
            logs()
        );
        drop(phones.drain(..));
        // Two-way audio through the NAT: each heard the other's tone, measured on what baresip
        // decoded, over the seconds both were in the call.
        for (i, d) in dirs.iter().enumerate() {
            let (rate, samples) = heard(d);
            let from = rate as usize;
            let to = (6 * rate as usize).min(samples.len());
            assert!(
                to > from + rate as usize,
                "{name}: phone {i} recorded {} samples",
                samples.len()
            );
            let window = &samples[from..to];
            let other = confab_dsp::signal::tone_level_dbov(window, rate, TONES[1 - i]);
            let own = confab_dsp::signal::tone_level_dbov(window, rate, TONES[i]);
            assert!(
                other > -30.0 && own < other - 20.0,
                "{name}: phone {i} heard the other at {other:.1} dBov and itself at {own:.1}\n{}",
                logs()
            );
        }
    }
}
