//! What a run is: the scenario, the bridge and how to reach it, and its bounds.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::leg::Codec;

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// R rooms of S participants, K of them talking.
    Meetings,
    /// One room: 2 talkers and N listeners.
    Townhall,
    /// Meetings whose participants dial in by SIP (G.711).
    Dialin,
    /// C conferences with nobody in them.
    Idle,
    /// Meetings added step by step until the bridge falls behind.
    Ramp,
    /// Hundreds of legs for half an hour with churn (SIP and API, plain and SRTP), the
    /// bridge's memory, descriptors, threads and late ticks sampled: a leak shows as drift.
    Soak,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Confab,
    Janus,
    /// A reflector inside the generator that moves the packets and does nothing else: what
    /// the machine's kernel alone costs, to compare a bridge with.
    Floor,
}

/// What talkers send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Signal {
    Tone,
    Speech,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub target: Target,
    pub scenario: Scenario,
    /// Confab's API: `http://` or `https://host:port`.
    pub api: String,
    /// The CA (PEM) an https:// API's certificate must chain to (none: the system's bundle).
    pub api_ca: Option<PathBuf>,
    pub token: Option<String>,
    pub sip: SocketAddr,
    pub janus: String,
    /// The generator's own address for its legs and SIP (none: the one that routes to the
    /// bridge's API host; loopback for a bridge on loopback).
    pub bind: Option<IpAddr>,
    /// The address our SDP offers name for our media (none: our own): the public address of
    /// a NAT in front of the generator, say.
    pub media_advertise: Option<IpAddr>,
    /// Send to this host instead of the one the bridge's answers name (the port stays): for
    /// a bridge whose answers name an address the generator cannot reach.
    pub bridge_media: Option<IpAddr>,
    /// The bridge process to measure (found by name when not given).
    pub pid: Option<u32>,
    pub codec: Codec,
    pub signal: Signal,
    pub rooms: usize,
    pub room_size: usize,
    pub talkers: usize,
    pub listeners: usize,
    pub conferences: usize,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    pub warmup: Duration,
    /// Hard cap on participants (ramp stops there too).
    pub max_participants: usize,
    /// Ramp: rooms added per step, and how long a step is measured.
    pub step_rooms: usize,
    pub step_time: Duration,
    /// Sender/receiver threads.
    pub threads: usize,
    /// Decode one listener in this many (Opus decoding is costly for the generator).
    pub decode_every: usize,
    /// A quality room scored with PESQ (see `quality`).
    pub pesq: bool,
    /// SDES-SRTP on every leg (Confab only: Janus' plain-RTP participants here are plain).
    pub srtp: bool,
    /// Soak: legs kept up, the share of them replaced every second (%), and how often the
    /// bridge is sampled.
    pub legs: usize,
    pub churn_percent: f64,
    pub sample_every: Duration,
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            target: Target::Confab,
            scenario: Scenario::Meetings,
            api: "http://127.0.0.1:8080".into(),
            api_ca: None,
            token: None,
            sip: SocketAddr::from(([127, 0, 0, 1], 5060)),
            janus: "http://127.0.0.1:8088/janus".into(),
            bind: None,
            media_advertise: None,
            bridge_media: None,
            pid: None,
            codec: Codec::Pcmu,
            signal: Signal::Tone,
            rooms: 10,
            room_size: 10,
            talkers: 3,
            listeners: 100,
            conferences: 1000,
            duration: Duration::from_secs(20),
            warmup: Duration::from_secs(3),
            max_participants: 5000,
            step_rooms: 10,
            step_time: Duration::from_secs(8),
            threads: 2,
            decode_every: 1,
            pesq: false,
            srtp: false,
            legs: 500,
            churn_percent: 1.5,
            sample_every: Duration::from_secs(5),
            progress: false,
        }
    }
}
