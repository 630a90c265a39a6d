//! README.md's quickstart, followed as written: the commands are read out of its section (so the
//! README cannot drift from what is tested) and run on two "hosts", network namespaces this test
//! makes and joins by a veth pair on 192.0.2.0/24 with the README's addresses: the bridge host
//! (192.0.2.10) and the caller's (192.0.2.20). On the bridge host: the README's `openssl` line,
//! then `confab serve` with the arguments it gives `scripts/run` (the test's own build, in a
//! temporary directory where the certificate and `./confab-data` land). On the caller's host:
//! the README's `curl` creating the conference; baresip with the README's account dialling the
//! README's target; headless Chromium opening the README's join page (trusting the certificate
//! the README made, as a person accepting the warning would) and then the console, whose roster
//! must show both connected; and the README's roster `curl`, which must say the same (one WebRTC
//! leg, one RTP leg). Every SIP message the bridge sent (it binds 0.0.0.0 here) and the answer
//! Chromium got are scanned for unspecified addresses (`support::wire_scan`).
//!
//! What the test adds to the README: baresip's headless audio (a tone file, no sound card) and
//! Chromium's fake microphone. Needs root (namespaces) and iproute2; without them it says so and
//! skips, unless `CONFAB_REQUIRE_NETNS=1` (then a skip is a failure). baresip, node with
//! playwright-core (tests/browser), Chromium, openssl, curl and sox are required like the other
//! tests' programs (`support::require`).

use crate::support;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::process::Guarded;
use support::wire_scan::{self, WireLog};

const BRIDGE_IP: &str = "192.0.2.10";
const CALLER_IP: &str = "192.0.2.20";

/// The commands of README.md's quickstart section.
struct Readme {
    /// The `openssl req` line making the certificate.
    openssl: String,
    /// What the README gives `scripts/run` (so `confab serve`).
    serve: Vec<String>,
    /// The `curl` creating the conference.
    create: String,
    /// baresip's account line and its `-e` command.
    account: String,
    dial: String,
    join_url: String,
    console_url: String,
    /// The `curl` reading the conference and its roster.
    roster: String,
}

/// The text between two single quotes after `after` in `line`.
fn quoted_after<'a>(line: &'a str, after: &str) -> Option<&'a str> {
    let rest = &line[line.find(after)? + after.len()..];
    let start = rest.find('\'')? + 1;
    let len = rest[start..].find('\'')?;
    Some(&rest[start..start + len])
}

fn readme() -> Readme {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = text
        .find("\n## Quickstart")
        .expect("README.md has a Quickstart section");
    let section = &text[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |e| e + 1)];
    // The shell commands of its `sh` blocks, continuation lines joined.
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        match line.trim().strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line.trim());
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    let find = |pred: &dyn Fn(&str) -> bool, what: &str| -> String {
        commands
            .iter()
            .find(|c| pred(c))
            .unwrap_or_else(|| panic!("the quickstart has no {what}: {commands:?}"))
            .clone()
    };
    let run = find(&|c| c.starts_with("scripts/run "), "scripts/run line");
    assert!(
        !run.contains(['\'', '"', '$']),
        "scripts/run's arguments are split on spaces here: {run}"
    );
    let accounts = find(&|c| c.contains(".baresip/accounts"), "baresip account");
    let baresip = find(&|c| c.starts_with("baresip "), "baresip line");
    // The pages are named in the prose, in backquotes.
    let url = |path: &str| -> String {
        section
            .split('`')
            .find(|s| s.starts_with("https://") && s.contains(path))
            .unwrap_or_else(|| panic!("the quickstart names no {path} page"))
            .to_owned()
    };
    Readme {
        openssl: find(&|c| c.starts_with("openssl req "), "openssl line"),
        serve: run.split_whitespace().skip(1).map(str::to_owned).collect(),
        create: find(
            &|c| c.starts_with("curl ") && c.contains(" -d "),
            "curl creating",
        ),
        account: quoted_after(&accounts, "echo ")
            .expect("account")
            .to_owned(),
        dial: quoted_after(&baresip, "-e ")
            .expect("baresip -e")
            .to_owned(),
        join_url: url("/join/"),
        console_url: url("/console"),
        roster: find(
            &|c| c.starts_with("curl ") && !c.contains(" -d "),
            "roster curl",
        ),
    }
}

fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (network namespaces need it)".into());
    }
    let found = Command::new("sh")
        .args(["-c", "command -v ip"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!found).then(|| "ip is missing (Debian package iproute2)".into())
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The two hosts; deleted on drop (pass or fail) with their interfaces.
struct Hosts {
    bridge: String,
    caller: String,
}

impl Hosts {
    fn new() -> Self {
        let id = std::process::id();
        // The guard exists before anything is made, so a failed set-up is cleaned up too.
        let hosts = Hosts {
            bridge: format!("cqb{id}"),
            caller: format!("cqc{id}"),
        };
        for name in [&hosts.bridge, &hosts.caller] {
            run(&["ip", "netns", "add", name]);
            run(&["ip", "-n", name, "link", "set", "lo", "up"]);
        }
        let (b, c) = (format!("qb{id}"), format!("qc{id}"));
        run(&[
            "ip",
            "link",
            "add",
            &b,
            "netns",
            &hosts.bridge,
            "type",
            "veth",
            "peer",
            "name",
            &c,
            "netns",
            &hosts.caller,
        ]);
        for (name, dev, addr) in [
            (&hosts.bridge, &b, BRIDGE_IP),
            (&hosts.caller, &c, CALLER_IP),
        ] {
            run(&[
                "ip",
                "-n",
                name,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                dev,
            ]);
            run(&["ip", "-n", name, "link", "set", dev, "up"]);
        }
        hosts
    }

    /// `program` run on a host.
    fn on(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for name in [&self.bridge, &self.caller] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// A README shell line run with `sh` on a host, in `dir`; its standard output.
fn shell(ns: &str, dir: &Path, line: &str) -> String {
    let out = Hosts::on(ns, "sh")
        .args(["-c", line])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{line}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn start_bridge(hosts: &Hosts, dir: &Path, args: &[String]) -> Guarded {
    let log = std::fs::File::create(dir.join("confab.log")).unwrap();
    let mut command = Hosts::on(&hosts.bridge, env!("CARGO_BIN_EXE_confab"));
    command.arg("serve").args(args).current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("CONFAB_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    // Not in the README: every SIP message it sends, for the scan.
    command.env("CONFAB_LOG_LEVEL", wire_scan::TRACE_FILTER);
    let bridge = Guarded::spawn(
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::fs::read_to_string(dir.join("confab.log"))
            .is_ok_and(|l| l.contains("confab started"))
        {
            return bridge;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the bridge did not start:\n{}",
        std::fs::read_to_string(dir.join("confab.log")).unwrap_or_default()
    );
}

/// baresip on the caller's host with the README's account and command; headless audio.
fn baresip(hosts: &Hosts, dir: &Path, account: &str, command: &str) -> Guarded {
    let home = dir.join("baresip");
    std::fs::create_dir_all(&home).unwrap();
    let wav = home.join("tone.wav");
    support::clients::tone_wav(&wav, 48000, 440.0, 60);
    let config = format!(
        "sip_listen {CALLER_IP}:5060\nnet_interface {CALLER_IP}\n\
         audio_source aufile,{wav}\nausrc_srate 48000\nausrc_channels 1\naudio_player aubridge,null\nrtp_ports 30000-30019\n\
         module_path /usr/lib/baresip/modules\n\
         module g711.so\nmodule aufile.so\nmodule aubridge.so\n\
         module_tmp account.so\nmodule_app menu.so\n",
        wav = wav.display(),
    );
    std::fs::write(home.join("config"), config).unwrap();
    std::fs::write(home.join("accounts"), format!("{account}\n")).unwrap();
    let log = std::fs::File::create(home.join("baresip.log")).unwrap();
    Guarded::spawn(
        Hosts::on(&hosts.caller, "baresip")
            .arg("-f")
            .arg(&home)
            .args(["-e", command, "-t", "60"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    )
}

#[test]
fn the_readme_quickstart_puts_a_softphone_and_a_browser_on_another_host_in_a_call() {
    if let Some(why) = missing_prerequisite() {
        assert!(
            std::env::var("CONFAB_REQUIRE_NETNS").is_err(),
            "CONFAB_REQUIRE_NETNS is set but: {why}"
        );
        eprintln!("SKIP: {why}");
        return;
    }
    if !support::require(&["baresip", "node", "chromium", "openssl", "curl", "sox"])
        || !support::require_path("tests/browser/node_modules/playwright-core")
    {
        return;
    }
    let readme = readme();
    let _turn = support::exclusive();
    let hosts = Hosts::new();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // The bridge host: the certificate, then the bridge as `scripts/run` would start it.
    shell(&hosts.bridge, dir, &readme.openssl);
    let bridge = start_bridge(&hosts, dir, &readme.serve);
    let token = readme
        .serve
        .iter()
        .skip_while(|a| *a != "--api-token")
        .nth(1)
        .expect("the README's bridge has an API token")
        .clone();
    let logs = || {
        // baresip's log without its running status line (one per 100 ms, no newline).
        let baresip = std::fs::read_to_string(dir.join("baresip/baresip.log")).unwrap_or_default();
        let baresip: String = baresip
            .lines()
            .map(|l| l.split("    [").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "bridge:\n{}\nbaresip:\n{baresip}",
            std::fs::read_to_string(dir.join("confab.log")).unwrap_or_default(),
        )
    };

    // The caller's host: the conference, the softphone, the browser.
    let created: serde_json::Value =
        serde_json::from_str(&shell(&hosts.caller, dir, &readme.create)).expect("JSON");
    let cid = readme
        .join_url
        .rsplit('/')
        .next()
        .expect("a meeting in the join URL")
        .to_owned();
    assert!(created.to_string().contains(&cid), "{created}");
    let phone = baresip(&hosts, dir, &readme.account, &readme.dial);
    let spki = shell(
        &hosts.bridge,
        dir,
        "openssl pkey -in key.pem -pubout -outform der | openssl dgst -sha256 -binary | base64",
    );
    let wav = dir.join("mic.wav");
    support::clients::tone_wav(&wav, 48000, 660.0, 60);
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/quickstart.mjs");
    let mut node = Guarded::spawn(
        Hosts::on(&hosts.caller, "node")
            .arg(script)
            .args([&readme.join_url, &readme.console_url, &token, &cid])
            .arg(&wav)
            .arg(&shots)
            .arg(spki.trim())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let to_node = node.0.stdin.take().unwrap();
    let stdout = node.0.stdout.take().unwrap();
    let (tx, said) = mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let joined = said
        .recv_timeout(Duration::from_secs(90))
        .unwrap_or_else(|_| panic!("the browser said nothing\n{}", logs()));
    assert_eq!(joined["step"], "joined", "{joined}\n{}", logs());
    assert_eq!(joined["secure"], true, "{joined}");
    let answer = joined["answer"].as_str().unwrap_or_default();
    assert!(wire_scan::scan_sdp(answer).is_empty(), "{answer}");
    assert!(
        answer.contains(BRIDGE_IP),
        "the browser is given {BRIDGE_IP}: {answer}"
    );
    let console = joined["roster"].to_string();
    assert!(
        console.contains("Browser"),
        "the console's roster: {console}"
    );

    // The README's roster call says the same: both connected, one by WebRTC, one by RTP.
    let v: serde_json::Value =
        serde_json::from_str(&shell(&hosts.caller, dir, &readme.roster)).expect("JSON");
    let connected: Vec<&serde_json::Value> = v["participants"]
        .as_array()
        .map(|a| a.iter().filter(|p| p["state"] == "connected").collect())
        .unwrap_or_default();
    let transports: Vec<&str> = connected
        .iter()
        .filter_map(|p| p["media"]["transport"].as_str())
        .collect();
    assert!(
        connected.len() == 2 && transports.contains(&"webrtc") && transports.contains(&"rtp/avp"),
        "{v}\n{}",
        logs()
    );
    drop(to_node);
    drop(node);
    drop(phone);
    drop(bridge);

    // Every SIP message the bridge sent on this real network named a real address.
    let log = WireLog::default();
    for line in std::fs::read_to_string(dir.join("confab.log"))
        .unwrap_or_default()
        .lines()
    {
        log.feed_line(line);
    }
    match log.verdict() {
        Ok(n) => assert!(n >= 2, "the bridge's SIP messages were not seen ({n})"),
        Err(problems) => panic!("the bridge wrote an unspecified address:\n{problems}"),
    }
}
