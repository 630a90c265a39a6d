//! Kamailio in front of Confab nodes, and SIPp callers through it: the proxy started from
//! deploy/kamailio/kamailio.cfg in its own process group (stopped with its workers on drop),
//! calls placed by one SIPp process, and the live participants each node holds.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::server::{Server, free_port};

/// A file of deploy/.
pub fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

pub struct Kamailio {
    child: Child,
    pub port: u16,
}

impl Kamailio {
    pub fn start(dir: &Path, nodes: &[SocketAddr]) -> Kamailio {
        let lines: String = nodes.iter().map(|n| format!("1 sip:{n} 0 0\n")).collect();
        Kamailio::start_with(dir, &lines, &[])
    }

    /// Kamailio with `lines` as its dispatcher list and `defines` (`-A NAME=value`) added.
    pub fn start_with(dir: &Path, lines: &str, defines: &[String]) -> Kamailio {
        let list = dir.join("dispatcher.list");
        std::fs::write(&list, lines).unwrap();
        let port = free_port();
        let child = Command::new("kamailio")
            // Its own process group: stopping it stops its worker processes too.
            .process_group(0)
            .arg("-f")
            .arg(deploy("kamailio/kamailio.cfg"))
            .args(["-DD", "-E", "-m", "64", "-M", "8"])
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .arg("-w")
            .arg(dir)
            .arg("-A")
            .arg(format!("LISTEN=udp:127.0.0.1:{port}"))
            .arg("-A")
            .arg(format!("DISPATCHER_LIST=\"{}\"", list.display()))
            .args(["-A", "PING_INTERVAL=1", "-A", "PROBE_THRESHOLD=1"])
            .args(["-A", "INVITE_TIMEOUT_MS=1500"])
            .args(defines.iter().flat_map(|d| ["-A", d.as_str()]))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("kamailio.log")).unwrap(),
            ))
            .spawn()
            .expect("kamailio (Debian package kamailio)");
        Kamailio { child, port }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}

/// Stops a child started in its own process group, with the whole group (Kamailio's workers
/// outlive a kill of its main process): SIGTERM, a few seconds' grace, then SIGKILL.
pub fn stop_group(child: &mut Child) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let group = Pid::from_raw(child.id() as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Workers may still be there after the main process went: the group, not the child.
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait();
}

/// A process (and its group) stopped on drop, pass or fail.
pub struct Group(pub Child);

impl Drop for Group {
    fn drop(&mut self) {
        stop_group(&mut self.0);
    }
}

/// A SIPp process placing calls: killed on drop unless [`finished_ok`] waited for it.
pub struct Sipp(Option<Child>);

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIPp callers through the proxy: one call per entry of `meetings` (all at once), each held
/// `hold`.
pub fn calls(dir: &Path, proxy: u16, meetings: &[&str], hold: Duration) -> Sipp {
    let csv = dir.join(format!("calls-{}.csv", free_port()));
    let mut text = String::from("SEQUENTIAL\n");
    for m in meetings {
        text.push_str(&format!("{m}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp/uac_dispatched.xml");
    let limit = meetings.len().max(50).to_string();
    let timeout = format!("{}s", hold.as_secs() + 60);
    let child = Command::new("sipp")
        .arg(format!("127.0.0.1:{proxy}"))
        .args(["-sf", scenario, "-inf"])
        .arg(&csv)
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1", "-p"])
        .arg(free_port().to_string())
        .args(["-m", &meetings.len().to_string(), "-l", &limit, "-r", "20"])
        .args(["-d", &hold.as_millis().to_string()])
        .args(["-nostdin", "-timeout", &timeout, "-timeout_error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp (Debian package sip-tester)");
    Sipp(Some(child))
}

/// Waits for SIPp to end and fails unless every call succeeded.
pub fn finished_ok(mut sipp: Sipp) {
    let Some(mut child) = sipp.0.take() else {
        return;
    };
    let status = child.wait().unwrap();
    assert!(status.success(), "some SIPp calls failed: {status}");
}

/// Live (not disconnected) participants per meeting on a node.
pub fn live(node: &Server, meetings: &[&str]) -> BTreeMap<String, usize> {
    meetings
        .iter()
        .map(|m| {
            let (s, v) = node.call("GET", &format!("/v1/conferences/{m}/participants"), None);
            assert_eq!(s, 200, "{v}");
            let n = v["participants"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["state"] != "disconnected")
                .count();
            (m.to_string(), n)
        })
        .collect()
}

/// Waits until the nodes together hold `total` live participants in `meetings`.
pub fn wait_total(
    nodes: &[&Server],
    meetings: &[&str],
    total: usize,
) -> Vec<BTreeMap<String, usize>> {
    let start = Instant::now();
    loop {
        let seen: Vec<_> = nodes.iter().map(|n| live(n, meetings)).collect();
        let sum: usize = seen.iter().flat_map(|s| s.values()).sum();
        if sum == total {
            return seen;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "expected {total} participants, saw {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn options(to: SocketAddr) -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = s.local_addr().unwrap();
    let req = format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-probe-{}\r\nFrom: <sip:probe@{me}>;tag=p1\r\nTo: <sip:{to}>\r\nCall-ID: probe-{}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        me.port(),
        me.port()
    );
    s.send_to(req.as_bytes(), to).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = s.recv_from(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Whether Kamailio has module `name` (e.g. `db_postgres`, packaged apart); a skip outside CI
/// when it does not, a failure in CI.
pub fn require_module(name: &str) -> bool {
    let there = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .any(|arch| {
            arch.path()
                .join(format!("kamailio/modules/{name}.so"))
                .exists()
        });
    let missing = if there {
        Vec::new()
    } else {
        vec![format!("Kamailio's {name} module is not installed")]
    };
    super::skip_unless_empty(&missing)
}
