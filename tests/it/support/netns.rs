//! Real hosts in network namespaces a test makes itself: a "client" namespace, a "nat" one that
//! routes between it and a "bridge" namespace (and masquerades the client, when asked), a
//! bridge started inside, and sockets or whole threads moved into a namespace. Every namespace
//! is named after the test process and deleted by a guard that exists before the set-up, so a
//! failed set-up is cleaned up too.
//!
//! Needs root, iproute2 and nftables; `skip` says what is missing (and fails instead when
//! `CONFAB_REQUIRE_NETNS=1`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::Guarded;

/// Whether to skip: not root, or a program missing (iproute2 and nftables always, and
/// `programs` as (program, Debian package)). Prints `SKIP: why`; with `CONFAB_REQUIRE_NETNS`
/// set, fails instead.
pub fn skip(programs: &[(&str, &str)]) -> bool {
    let why = missing(programs);
    if let Some(why) = &why {
        assert!(
            std::env::var("CONFAB_REQUIRE_NETNS").is_err(),
            "CONFAB_REQUIRE_NETNS is set but: {why}"
        );
        eprintln!("SKIP: {why}");
    }
    why.is_some()
}

fn missing(programs: &[(&str, &str)]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (network namespaces need it)".into());
    }
    for (program, package) in [("ip", "iproute2"), ("nft", "nftables")]
        .iter()
        .chain(programs)
    {
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

/// Runs a command that must succeed.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The addresses of a client - nat - bridge chain (with prefix lengths), and whether the nat
/// namespace masquerades the client (else it only routes, and the bridge has a route back).
pub struct Plan {
    /// Two letters in every name, distinct per test file.
    pub tag: &'static str,
    pub client: &'static str,
    pub nat_inside: &'static str,
    pub nat_outside: &'static str,
    pub bridge: &'static str,
    pub masquerade: bool,
}

impl Plan {
    /// An address without its prefix length.
    pub fn ip(cidr: &str) -> &str {
        cidr.split('/').next().unwrap_or(cidr)
    }
}

/// The network of an IPv4 address with its prefix length: `198.18.1.2/24` -> `198.18.1.0/24`.
fn network(cidr: &str) -> String {
    let (ip, len) = cidr.split_once('/').unwrap();
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    let len: u32 = len.parse().unwrap();
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    format!("{}/{len}", std::net::Ipv4Addr::from(u32::from(ip) & mask))
}

/// Three namespaces and their links; deleted on drop (pass or fail), which also removes their
/// interfaces and rules.
pub struct Namespaces {
    pub client: String,
    pub nat: String,
    pub bridge: String,
    /// The links' ends: client, nat inside, nat outside, bridge.
    ends: [String; 4],
}

/// IPv6 addresses for the same chain (with prefix lengths), routed (no NAT66), and the client's
/// network for the bridge's route back.
pub struct Plan6 {
    pub client: &'static str,
    pub client_network: &'static str,
    pub nat_inside: &'static str,
    pub nat_outside: &'static str,
    pub bridge: &'static str,
}

impl Namespaces {
    pub fn new(plan: &Plan) -> Self {
        let (id, t) = (std::process::id(), plan.tag);
        let ns = Namespaces {
            client: format!("{t}c{id}"),
            nat: format!("{t}n{id}"),
            bridge: format!("{t}b{id}"),
            ends: [
                format!("{t}vc{id}"),
                format!("{t}vi{id}"),
                format!("{t}vo{id}"),
                format!("{t}vb{id}"),
            ],
        };
        // `ns` exists before anything is made: a failed step below drops it, which deletes
        // whatever was made.
        for name in [&ns.client, &ns.nat, &ns.bridge] {
            run(&["ip", "netns", "add", name]);
            run(&["ip", "-n", name, "link", "set", "lo", "up"]);
        }
        let [a, b, c, d] = ns.ends.clone();
        run(&[
            "ip", "link", "add", &a, "netns", &ns.client, "type", "veth", "peer", "name", &b,
            "netns", &ns.nat,
        ]);
        run(&[
            "ip", "link", "add", &c, "netns", &ns.nat, "type", "veth", "peer", "name", &d, "netns",
            &ns.bridge,
        ]);
        for (name, dev, addr) in [
            (&ns.client, &a, plan.client),
            (&ns.nat, &b, plan.nat_inside),
            (&ns.nat, &c, plan.nat_outside),
            (&ns.bridge, &d, plan.bridge),
        ] {
            run(&["ip", "-n", name, "addr", "add", addr, "dev", dev]);
            run(&["ip", "-n", name, "link", "set", dev, "up"]);
        }
        let via_inside = Plan::ip(plan.nat_inside);
        run(&[
            "ip", "-n", &ns.client, "route", "add", "default", "via", via_inside,
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
        if plan.masquerade {
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
        } else {
            // Routed: the bridge reaches the client's network through the router.
            run(&[
                "ip",
                "-n",
                &ns.bridge,
                "route",
                "add",
                &network(plan.client),
                "via",
                Plan::ip(plan.nat_outside),
            ]);
        }
        ns
    }
}

impl Namespaces {
    /// IPv6 beside IPv4 on the same links: the nat namespace routes it (no NAT66), the client's
    /// default route and the bridge's route back go through it. Addresses skip duplicate
    /// address detection, so that they are usable at once.
    pub fn add_ipv6(&self, plan: &Plan6) {
        let [a, b, c, d] = &self.ends;
        for (name, dev, addr) in [
            (&self.client, a, plan.client),
            (&self.nat, b, plan.nat_inside),
            (&self.nat, c, plan.nat_outside),
            (&self.bridge, d, plan.bridge),
        ] {
            run(&["ip", "-n", name, "addr", "add", addr, "dev", dev, "nodad"]);
        }
        run(&[
            "ip",
            "-n",
            &self.client,
            "-6",
            "route",
            "add",
            "default",
            "via",
            Plan::ip(plan.nat_inside),
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            &self.nat,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.forwarding=1",
        ]);
        run(&[
            "ip",
            "-n",
            &self.bridge,
            "-6",
            "route",
            "add",
            plan.client_network,
            "via",
            Plan::ip(plan.nat_outside),
        ]);
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in [&self.client, &self.nat, &self.bridge] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Moves the calling thread into namespace `ns` (only this thread, and threads it starts).
fn enter(ns: &str) {
    let file = std::fs::File::open(PathBuf::from("/run/netns").join(ns)).unwrap();
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

/// Runs `f` on a thread of its own inside namespace `ns`: its sockets, and the threads it
/// starts, are that namespace's.
pub fn in_namespace<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
    .join()
    .unwrap()
}

/// Decoded packets with their arrival: (when, samples at 8 kHz).
pub type Arrivals = Vec<(Instant, Vec<i16>)>;

/// PCMU RTP arriving in a namespace for a range of ports, copied by a raw UDP socket (the
/// phone still gets every packet) and decoded by a G.711 decoder that is not ours: what a
/// phone behind the NAT was sent, with when it arrived. Stopped on drop or by `stop`.
pub struct Tap {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Arrivals>>,
}

impl Tap {
    pub fn start(ns: &str, ports: std::ops::Range<u16>) -> Tap {
        use nix::sys::socket::{
            AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, setsockopt, socket,
            sockopt,
        };
        use std::os::fd::AsRawFd;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ns, flag) = (ns.to_owned(), stop.clone());
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            enter(&ns);
            let fd = socket(
                AddressFamily::Inet,
                SockType::Raw,
                SockFlag::empty(),
                SockProtocol::Udp,
            )
            .unwrap();
            setsockopt(
                &fd,
                sockopt::ReceiveTimeout,
                &nix::sys::time::TimeVal::new(0, 100_000),
            )
            .unwrap();
            ready_tx.send(()).unwrap();
            let mut decoder = audio_codec::pcmu::PcmuDecoder::new();
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            // Bounded by the caller's stop (and the guard's drop); a minute at most.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
                    continue;
                };
                if let Some(payload) = pcmu_payload(&buf[..n], &ports) {
                    use audio_codec::Decoder as _;
                    let mut out = vec![0i16; payload.len()];
                    let k = decoder.decode_into(payload, &mut out).unwrap();
                    out.truncate(k);
                    got.push((Instant::now(), out));
                }
            }
            got
        });
        ready.recv_timeout(Duration::from_secs(5)).unwrap();
        Tap {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and gives what arrived: (arrival, decoded samples at 8 kHz) per packet.
    pub fn stop(mut self) -> Arrivals {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The PCMU payload of an IPv4 datagram (as a raw socket reads it) carrying RTP to one of
/// `ports`.
fn pcmu_payload<'a>(ip: &'a [u8], ports: &std::ops::Range<u16>) -> Option<&'a [u8]> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let udp = ip.get(ihl..)?;
    let port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let rtp = udp.get(8..)?;
    if !ports.contains(&port) || rtp.len() < 12 || rtp[0] >> 6 != 2 || rtp[1] & 0x7f != 0 {
        return None;
    }
    let mut at = 12 + 4 * usize::from(rtp[0] & 0x0f);
    if rtp[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*rtp.get(at + 2)?, *rtp.get(at + 3)?]);
        at += 4 + 4 * usize::from(words);
    }
    rtp.get(at..)
}

/// A plain-HTTP request to `addr` inside namespace `ns` (the connection is made there; the
/// socket keeps its namespace).
pub fn http(ns: &str, addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = in_namespace(ns, move || TcpStream::connect(addr)).unwrap();
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

/// `confab serve` inside namespace `ns` with `args` (and its data in `data`, its log in
/// `data/confab.log`), once it says it has started. No `CONFAB_*` variable of ours reaches it.
pub fn start_bridge(ns: &str, data: &Path, args: &[&str]) -> Guarded {
    let log = std::fs::File::create(data.join("confab.log")).unwrap();
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_confab"), "serve"])
        .args(args)
        .arg("--storage-data-dir")
        .arg(data);
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

/// Another host on the client's link: a namespace of its own with an address of the client's
/// network, reaching the bridge through the same router as the client (masqueraded as the
/// same public address, when the router masquerades). Its namespace is deleted on drop.
pub struct Neighbour {
    pub ns: String,
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

impl Namespaces {
    /// Puts a host at `cidr` (in the client's network) beside the client: the router's inside
    /// interface becomes a port of a switch in the router's namespace, the router's address
    /// moves to the switch, and the new host's link is another port. Call it before the client
    /// sends anything (the client's neighbour cache would hold the router's old interface).
    pub fn neighbour(&self, plan: &Plan, cidr: &str) -> Neighbour {
        let (id, t) = (std::process::id(), plan.tag);
        let host = Neighbour {
            ns: format!("{t}h{id}"),
        };
        // `host` exists before its namespace: a failed step drops it, which deletes it.
        run(&["ip", "netns", "add", &host.ns]);
        run(&["ip", "-n", &host.ns, "link", "set", "lo", "up"]);
        let (inside, switch, port, link) = (
            format!("{t}vi{id}"),
            format!("{t}sw{id}"),
            format!("{t}vs{id}"),
            format!("{t}vh{id}"),
        );
        let nat = &self.nat;
        run(&["ip", "-n", nat, "link", "add", &switch, "type", "bridge"]);
        // A fixed address: a switch otherwise takes the lowest of its ports', which changes as
        // ports join.
        run(&[
            "ip",
            "-n",
            nat,
            "link",
            "set",
            &switch,
            "address",
            "02:00:00:00:5e:01",
        ]);
        run(&["ip", "-n", nat, "link", "set", &switch, "up"]);
        run(&[
            "ip",
            "-n",
            nat,
            "addr",
            "del",
            plan.nat_inside,
            "dev",
            &inside,
        ]);
        run(&["ip", "-n", nat, "link", "set", &inside, "master", &switch]);
        run(&[
            "ip",
            "-n",
            nat,
            "addr",
            "add",
            plan.nat_inside,
            "dev",
            &switch,
        ]);
        run(&[
            "ip", "link", "add", &link, "netns", &host.ns, "type", "veth", "peer", "name", &port,
            "netns", nat,
        ]);
        run(&["ip", "-n", nat, "link", "set", &port, "master", &switch]);
        run(&["ip", "-n", nat, "link", "set", &port, "up"]);
        run(&["ip", "-n", &host.ns, "addr", "add", cidr, "dev", &link]);
        run(&["ip", "-n", &host.ns, "link", "set", &link, "up"]);
        run(&[
            "ip",
            "-n",
            &host.ns,
            "route",
            "add",
            "default",
            "via",
            Plan::ip(plan.nat_inside),
        ]);
        host
    }
}

/// Counts the UDP datagrams from `from` that arrive in namespace `ns`, on any port (open or
/// not), with a raw socket: whether a host was sent anything at all. Stopped on drop or by
/// `stop`.
pub struct UdpCount {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u64)>>,
}

impl UdpCount {
    pub fn start(ns: &str, from: std::net::Ipv4Addr) -> UdpCount {
        use nix::sys::socket::{
            AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, setsockopt, socket,
            sockopt,
        };
        use std::os::fd::AsRawFd;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ns, flag) = (ns.to_owned(), stop.clone());
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            enter(&ns);
            let fd = socket(
                AddressFamily::Inet,
                SockType::Raw,
                SockFlag::empty(),
                SockProtocol::Udp,
            )
            .unwrap();
            setsockopt(
                &fd,
                sockopt::ReceiveTimeout,
                &nix::sys::time::TimeVal::new(0, 100_000),
            )
            .unwrap();
            ready_tx.send(()).unwrap();
            let (mut datagrams, mut bytes) = (0u64, 0u64);
            let mut buf = [0u8; 2048];
            // Bounded by the caller's stop (and the guard's drop); two minutes at most.
            let deadline = Instant::now() + Duration::from_secs(120);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
                    continue;
                };
                let ihl = usize::from(buf[0] & 0x0f) * 4;
                if n >= ihl + 8 && buf[12..16] == from.octets() {
                    datagrams += 1;
                    bytes += (n - ihl - 8) as u64;
                }
            }
            (datagrams, bytes)
        });
        ready.recv_timeout(Duration::from_secs(5)).unwrap();
        UdpCount {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and gives what arrived from the host: (datagrams, bytes of UDP payload).
    pub fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default()
    }
}

impl Drop for UdpCount {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
