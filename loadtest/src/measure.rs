//! What the generator measures about the bridge: its process's CPU and memory (from /proc), its
//! own metrics when it is Confab, and percentiles of what the legs saw.

use std::net::SocketAddr;

/// Clock ticks per second of /proc/PID/stat times (USER_HZ: 100 on Linux).
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) and resident memory of a process.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    pub cpu_seconds: f64,
    pub rss_mb: f64,
}

/// User + system CPU seconds from the text of a /proc/.../stat file.
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// CPU seconds one thread of this process has used (/proc/self/task/TID/stat), measured the
/// same way as a bridge process's.
pub fn thread_cpu_seconds(tid: u32) -> Option<f64> {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?)
}

/// The calling thread's id (from /proc/thread-self, which links to PID/task/TID).
pub fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Whose CPU time a run measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuOf {
    /// A bridge process (Confab, Janus).
    Process(u32),
    /// Threads of this process (the floor, which runs inside the generator): theirs alone,
    /// not the generator's own.
    Threads(Vec<u32>),
}

impl CpuOf {
    /// CPU seconds used so far; none if it cannot be read (a thread that has ended counts
    /// as unreadable, so a sum never silently drops one).
    pub fn seconds(&self) -> Option<f64> {
        match self {
            CpuOf::Process(pid) => proc_sample(*pid).map(|s| s.cpu_seconds),
            CpuOf::Threads(tids) if tids.is_empty() => None,
            CpuOf::Threads(tids) => tids.iter().map(|t| thread_cpu_seconds(*t)).sum(),
        }
    }
}

pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let cpu_seconds =
        stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Some(ProcSample {
        cpu_seconds,
        rss_mb: rss_kb / 1024.0,
    })
}

/// The first process whose command line contains all of `words` (e.g. a bridge started
/// elsewhere); none if there is no such process.
pub fn find_process(words: &[&str]) -> Option<u32> {
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if words.iter().all(|w| cmd.contains(w)) {
            return Some(pid);
        }
    }
    None
}

/// Threads of a process (/proc/PID/status), if it can be read.
pub fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Open file descriptors of a process (/proc/PID/fd), if they can be listed.
pub fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The process with a TCP socket listening on `addr`'s port (at `addr` or any address):
/// found from the socket's inode in /proc/net/tcp{,6} and the process's /proc/PID/fd links,
/// so it is the bridge we talk to even with other bridges running. None when it cannot be
/// told (another user's process, no /proc).
pub fn pid_listening_on(addr: SocketAddr) -> Option<u32> {
    let port = format!("{:04X}", addr.port());
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let Some((ip, p)) = local.split_once(':') else {
                continue;
            };
            let ip_ok = match addr.ip() {
                std::net::IpAddr::V4(v4) => {
                    u32::from_str_radix(ip, 16).is_ok_and(|raw| {
                        let bytes = raw.to_ne_bytes();
                        bytes == v4.octets() || bytes == [0; 4]
                    }) || ip.len() == 32
                }
                std::net::IpAddr::V6(_) => true,
            };
            // 0A: LISTEN.
            if p == port && *state == "0A" && ip_ok && *inode != "0" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| target.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// Confab's own figures from /metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct BridgeMetrics {
    pub late_ticks: f64,
    pub load_ratio: f64,
    /// The process's own figures (`process_*`), when the exposition has them.
    pub rss_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub cpu_seconds: Option<f64>,
}

pub fn confab_metrics(api: &crate::http::Endpoint, token: Option<&str>) -> Option<BridgeMetrics> {
    let (status, text) = crate::http::request(api, "GET", "/metrics", None, token).ok()?;
    if status != 200 {
        return None;
    }
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some(BridgeMetrics {
        late_ticks: value("confab_mixer_late_ticks_total ").unwrap_or(0.0),
        load_ratio: value("confab_mixer_load_ratio ").unwrap_or(0.0),
        rss_bytes: value("process_resident_memory_bytes "),
        open_fds: value("process_open_fds "),
        cpu_seconds: value("process_cpu_seconds_total "),
    })
}

/// The `p`-th percentile (0-100) of sorted `values`.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank.min(sorted.len() - 1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_list() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(51.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn the_process_listening_on_a_port_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Our own process is skipped (the generator is never the bridge): a child that holds
        // the listening socket would be found; here, only that we are not.
        assert_ne!(pid_listening_on(addr), Some(std::process::id()));
        drop(listener);
        assert_eq!(pid_listening_on(addr), None);
        assert!(threads(std::process::id()).unwrap() >= 1);
        assert!(open_fds(std::process::id()).unwrap() >= 3);
    }

    #[test]
    fn a_thread_of_ours_is_measured_alone() {
        let (tx, rx) = std::sync::mpsc::channel();
        let busy = std::thread::spawn(move || {
            let _ = tx.send(current_tid());
            // Half a second of work for this thread only.
            let end = std::time::Instant::now() + std::time::Duration::from_millis(500);
            let mut x = 0u64;
            while std::time::Instant::now() < end {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        });
        let tid = rx.recv().unwrap().unwrap();
        assert_ne!(tid, std::process::id(), "a thread's id, not the process's");
        std::thread::sleep(std::time::Duration::from_millis(600));
        let cpu = CpuOf::Threads(vec![tid]).seconds().unwrap();
        assert!((0.3..=0.7).contains(&cpu), "{cpu} s");
        busy.join().unwrap();
        // Gone: unreadable rather than zero. The kernel may list a joined thread's task for a
        // moment after `join` returns, so it is looked for again (up to 2 s).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while CpuOf::Threads(vec![tid]).seconds().is_some() && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(CpuOf::Threads(vec![tid]).seconds(), None);
        assert_eq!(CpuOf::Threads(Vec::new()).seconds(), None);
        assert_eq!(
            stat_cpu_seconds("1 (a) b) R 1 2 3 4 5 6 7 8 9 10 150 50 0"),
            Some(2.0)
        );
        assert_eq!(stat_cpu_seconds("garbage"), None);
    }

    #[test]
    fn our_own_process_is_measured() {
        let s = proc_sample(std::process::id()).unwrap();
        assert!(s.rss_mb > 0.5, "{s:?}");
        assert!(s.cpu_seconds >= 0.0);
    }
}
