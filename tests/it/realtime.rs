//! `mixer.realtime` on the real binary: without the right to real-time scheduling (the
//! bridge started by root with CAP_SYS_NICE dropped and RLIMIT_RTPRIO at 0, as an ordinary
//! service user runs), `required` refuses to start and says what grants it, and `auto` starts
//! with normal scheduling and says why; `off` never asks, even as root.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::process::Guarded;
use support::server::{Server, free_port, http_raw};

/// `confab serve` on free ports without CAP_SYS_NICE and with RLIMIT_RTPRIO 0.
fn unprivileged(data: &std::path::Path, realtime: &str) -> Command {
    let mut cmd = Command::new("prlimit");
    cmd.args(["--rtprio=0", "--", "setpriv", "--bounding-set=-sys_nice"])
        .args(["--inh-caps=-sys_nice", "--"])
        .arg(env!("CARGO_BIN_EXE_confab"))
        .arg("serve")
        .args(["--api-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--sip-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--webrtc-listen", "127.0.0.1:0", "--mixer-threads", "1"])
        .args(["--mixer-realtime", realtime])
        .arg("--storage-data-dir")
        .arg(data)
        .env_remove("CONFAB_MIXER_REALTIME")
        .env("CONFAB_LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// The process's log lines until "confab started" (included) or its end.
fn lines_until_started(child: &mut Guarded) -> Vec<String> {
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let started = line.contains("confab started");
                seen.push(line);
                if started {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    seen
}

#[test]
fn without_the_right_required_refuses_and_auto_falls_back_saying_why() {
    let _turn = support::shared();
    if !support::require(&["prlimit", "setpriv"]) {
        return;
    }
    let data = tempfile::tempdir().unwrap();

    let mut required = Guarded::spawn(&mut unprivileged(data.path(), "required"));
    let lines = lines_until_started(&mut required);
    let all = lines.join("\n");
    assert!(!all.contains("confab started"), "{all}");
    let status = required.0.wait().unwrap();
    assert!(!status.success(), "{all}");
    assert!(all.contains("mixer.realtime is `required`"), "{all}");
    assert!(all.contains("Operation not permitted"), "{all}");
    assert!(all.contains("CAP_SYS_NICE"), "{all}");

    let mut auto = Guarded::spawn(&mut unprivileged(data.path(), "auto"));
    let lines = lines_until_started(&mut auto);
    let all = lines.join("\n");
    assert!(all.contains("confab started"), "{all}");
    let said = lines
        .iter()
        .filter(|l| l.contains("mixer threads run"))
        .collect::<Vec<_>>();
    assert_eq!(said.len(), 1, "once at start: {all}");
    assert!(
        said[0].contains("normal scheduling: Operation not permitted")
            && said[0].contains("grant CAP_SYS_NICE or LimitRTPRIO=10"),
        "{all}"
    );
}

#[test]
fn off_never_asks() {
    let _turn = support::shared();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &["--mixer-realtime", "off"]);
    let (status, _, body) = http_raw(server.api, "GET", "/metrics", None, None, &[]);
    assert_eq!(status, 200);
    assert!(body.contains("\nconfab_mixer_realtime 0\n"), "{body}");
    let policies = crate::api_metrics::mixer_thread_policies(server.pid());
    assert!(
        policies.len() >= 2 && policies.iter().all(|p| p.0 == 0),
        "{policies:?}"
    );
}
