//! `confab-loadtest`: see the crate documentation (lib.rs) and BENCHMARKS.md.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use confab_loadtest::leg::Codec;
use confab_loadtest::{Options, Scenario, Signal, Summary, Target, report, run, table};

/// Load generator for Confab and Janus AudioBridge: real encoded audio in, measured audio out.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// What to run.
    #[arg(long, value_enum, default_value = "meetings")]
    scenario: Scenario,
    /// The bridge(s) to run it against, in turn, comma-separated: confab, janus, or floor (a
    /// reflector inside the generator that only moves the packets, to compare a bridge with).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "confab")]
    target: Vec<Target>,
    /// Confab's API: http:// or https://, on this host or another.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// CA certificates (PEM) an https:// API's certificate must chain to (default: the
    /// system's bundle).
    #[arg(long, value_name = "FILE")]
    api_ca: Option<PathBuf>,
    /// Confab's API token.
    #[arg(long, env = "CONFAB_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Confab's SIP address (dial-in).
    #[arg(long, default_value = "127.0.0.1:5060")]
    sip: SocketAddr,
    /// Janus' HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8088/janus")]
    janus: String,
    /// The generator's own address for its legs and SIP (default: the one that routes to the
    /// bridge's API host, so loopback for a bridge on loopback). 0.0.0.0 binds every address.
    #[arg(long, value_name = "IP")]
    bind: Option<IpAddr>,
    /// The address our SDP offers name for our media (default: our own): a NAT's public
    /// address when the generator is behind one and joins through the API.
    #[arg(long, value_name = "IP")]
    media_advertise: Option<IpAddr>,
    /// Send media to this host instead of the one the bridge's answers name (their port is
    /// kept): for a bridge whose answers name an address this host cannot reach.
    #[arg(long, value_name = "IP")]
    bridge_media: Option<IpAddr>,
    /// PID of the bridge process to measure (otherwise, for a bridge on loopback, the process
    /// listening on the API's port, or one found by its command line; a bridge on another host
    /// is measured by its /metrics only).
    #[arg(long, alias = "bridge-pid")]
    pid: Option<u32>,
    #[arg(long, value_enum, default_value = "pcmu")]
    codec: Codec,
    /// What talkers send: tones, or a synthetic speech-like signal with talk spurts.
    #[arg(long, value_enum, default_value = "tone")]
    signal: Signal,
    /// Meetings: rooms, participants per room, talkers per room.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    #[arg(long, default_value_t = 10)]
    room_size: usize,
    #[arg(long, default_value_t = 3)]
    talkers: usize,
    /// Town hall listeners.
    #[arg(long, default_value_t = 100)]
    listeners: usize,
    /// Idle conferences.
    #[arg(long, default_value_t = 1000)]
    conferences: usize,
    /// Seconds measured (after the warm-up); 20 by default, 1800 for the soak.
    #[arg(long)]
    duration: Option<u64>,
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Never more participants than this.
    #[arg(long, default_value_t = 5000)]
    max_participants: usize,
    /// Ramp: rooms added per step, and seconds each step is measured.
    #[arg(long, default_value_t = 10)]
    step_rooms: usize,
    #[arg(long, default_value_t = 8)]
    step_secs: u64,
    /// Generator threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Decode one listener in N (all talkers always decode).
    #[arg(long, default_value_t = 1)]
    decode_every: usize,
    /// Add a quality room (a talker playing recorded speech, a listener recording what it
    /// hears) and score it with PESQ (python3 with the `pesq` package).
    #[arg(long)]
    pesq: bool,
    /// SDES-SRTP (AES_CM_128_HMAC_SHA1_80) on every leg: Confab only, by its API or SIP.
    /// (The soak makes half its legs SRTP without it, all with it.)
    #[arg(long)]
    srtp: bool,
    /// Soak: legs kept up (spread over --rooms conferences, --talkers of each talking).
    #[arg(long, default_value_t = 500)]
    legs: usize,
    /// Soak: % of the legs that leave every second, replaced by as many new ones.
    #[arg(long, default_value_t = 1.5)]
    churn: f64,
    /// Soak: seconds between looks at the bridge (RSS, fds, threads, late ticks).
    #[arg(long, default_value_t = 5)]
    sample_secs: u64,
    /// Write the figures as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an HTML report with SVG plots into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let duration = a.duration.unwrap_or(if a.scenario == Scenario::Soak {
        1800
    } else {
        20
    });
    if duration == 0 || duration > 3600 {
        anyhow::bail!("--duration must be 1 to 3600 seconds");
    }
    if a.scenario == Scenario::Soak && (a.legs == 0 || a.legs > a.max_participants) {
        anyhow::bail!("--legs must be 1 to --max-participants");
    }
    if !(0.0..=50.0).contains(&a.churn) {
        anyhow::bail!("--churn must be 0 to 50 (% of the legs a second)");
    }
    if a.max_participants == 0 || a.max_participants > 20_000 {
        anyhow::bail!("--max-participants must be 1 to 20000");
    }
    if a.room_size == 0 || a.talkers > a.room_size {
        anyhow::bail!("--talkers must not exceed --room-size (at least 1)");
    }
    let mut runs: Vec<Summary> = Vec::new();
    for target in &a.target {
        let o = Options {
            target: *target,
            scenario: a.scenario,
            api: a.api.clone(),
            api_ca: a.api_ca.clone(),
            token: a.token.clone(),
            sip: a.sip,
            janus: a.janus.clone(),
            bind: a.bind,
            media_advertise: a.media_advertise,
            bridge_media: a.bridge_media,
            // One PID names one bridge process (the floor has none of its own).
            pid: a
                .pid
                .filter(|_| a.target.iter().filter(|t| **t != Target::Floor).count() == 1),
            codec: a.codec,
            signal: a.signal,
            rooms: a.rooms,
            room_size: a.room_size,
            talkers: a.talkers,
            listeners: a.listeners,
            conferences: a.conferences,
            duration: Duration::from_secs(duration),
            warmup: Duration::from_secs(a.warmup),
            max_participants: a.max_participants,
            step_rooms: a.step_rooms.max(1),
            step_time: Duration::from_secs(a.step_secs.max(1)),
            threads: a.threads.clamp(1, 16),
            decode_every: a.decode_every.max(1),
            pesq: a.pesq,
            srtp: a.srtp,
            legs: a.legs,
            churn_percent: a.churn,
            sample_every: Duration::from_secs(a.sample_secs.clamp(1, 60)),
            progress: std::io::stderr().is_terminal(),
        };
        let s = run(&o)?;
        print!("{}", table(&s));
        println!();
        runs.push(s);
    }
    print!("{}", report::floor_comparison(&runs));
    if let Some(path) = &a.json {
        let value = if runs.len() == 1 {
            serde_json::to_value(&runs[0])?
        } else {
            serde_json::to_value(&runs)?
        };
        std::fs::write(path, serde_json::to_string_pretty(&value)?)?;
    }
    if let Some(dir) = &a.report {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("index.html"), report::html(&runs))?;
    }
    if runs
        .iter()
        .any(|s| s.soak.as_ref().is_some_and(|k| !k.pass))
    {
        anyhow::bail!("the soak failed its targets (see the verdict above)");
    }
    Ok(())
}
