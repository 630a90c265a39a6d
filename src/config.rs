//! Configuration: embedded defaults, then a TOML file, then `CONFAB_…` environment variables and
//! command-line flags (clap gives flags precedence over the environment).
//!
//! The file format rejects unknown keys; every error names the line and the key so an operator
//! can fix it without guessing.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::media::codec::Codec;

/// The whole configuration of a Confab node.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sip: SipConfig,
    pub api: ApiConfig,
    pub media: MediaConfig,
    pub webrtc: WebRtcConfig,
    pub mixer: MixerConfig,
    pub storage: StorageConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
}

/// `[metrics]`
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Label per-conference series (`confab_conference_participants`, `…_mix_rate_hz`) with
    /// the meeting ID. Off by default: `/metrics` is not authenticated, and meeting IDs are
    /// what callers dial.
    pub conference_labels: bool,
}

/// `[sip]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Address for SIP over UDP and TCP.
    pub listen: SocketAddr,
    /// Networks (CIDR) whose SIP requests are accepted; others get 403.
    pub trusted: Vec<Network>,
    /// The user part that reaches the attendant (`sip:conference@…`).
    pub access_user: String,
    /// Where dial-outs are sent (`sip:host:port`); none means dial-out is refused.
    pub outbound_proxy: Option<String>,
    /// Codecs offered and accepted, most preferred first (`opus`, `G722`, `PCMU`, `PCMA`).
    pub codecs: Vec<String>,
    /// Concurrent SIP calls at most; more get 503.
    pub max_calls: usize,
    /// New INVITEs accepted per source address and second; more get 503.
    pub invites_per_second: u32,
    /// A folder of prompt languages (`<dir>/<language>/<name>.wav`); none: the built-in English.
    pub prompts_dir: Option<PathBuf>,
    /// The attendant's language (a folder under `prompts_dir`).
    pub language: String,
    /// Wrong entries (meeting ID, passcode, leader PIN) of one caller in ten minutes before it
    /// is locked out (a caller: the identity a trusted gateway passes on; the address for WHIP).
    pub max_failures_per_source: u32,
    /// The SIP dispatcher in front of the nodes (`IP:port`): callers of a meeting this node
    /// does not have are sent there (302, or REFER from the attendant).
    pub dispatcher: Option<SocketAddr>,
    /// The address put in our Via and Contact headers (a public address in front of a NAT);
    /// unset: the listen address, or with a wildcard listen address the address of the
    /// interface that routes to each peer.
    pub advertise: Option<IpAddr>,
    /// Address for SIP over TLS; unset with `tls_cert` and `tls_key` given: the `listen`
    /// address on port 5061.
    pub tls_listen: Option<SocketAddr>,
    /// The certificate chain (PEM, leaf first) presented on SIP over TLS.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// The CA certificates (PEM) that TLS peers we dial must chain to; unset: the system's
    /// bundle (`/etc/ssl/certs/ca-certificates.crt`).
    pub tls_ca: Option<PathBuf>,
}

impl SipConfig {
    /// Where SIP over TLS listens, when it is on (a certificate and key are configured).
    pub fn tls_address(&self) -> Option<SocketAddr> {
        self.tls_cert.as_ref().and(self.tls_key.as_ref())?;
        Some(
            self.tls_listen
                .unwrap_or(SocketAddr::new(self.listen.ip(), 5061)),
        )
    }

    /// The codec preference, most preferred first (names checked by `validate`).
    pub fn codec_preference(&self) -> Vec<Codec> {
        self.codecs
            .iter()
            .filter_map(|c| Codec::from_name(c))
            .collect()
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            trusted: vec![Network::loopback_v4(), Network::loopback_v6()],
            access_user: "conference".to_owned(),
            outbound_proxy: None,
            codecs: ["opus", "G722", "PCMU", "PCMA"].map(String::from).to_vec(),
            max_calls: 10_000,
            invites_per_second: 100,
            prompts_dir: None,
            language: "en".to_owned(),
            max_failures_per_source: 10,
            dispatcher: None,
            advertise: None,
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
        }
    }
}

/// `[api]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Bearer token; required when `listen` is not a loopback address.
    pub token: Option<String>,
    /// Seconds a SIGTERM waits for calls in progress to end before stopping.
    pub drain_timeout_secs: u64,
    /// The certificate chain (PEM, leaf first) for HTTPS; with `tls_key`, the API and pages
    /// are served over HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Send `Strict-Transport-Security` on HTTPS responses (off by default: once a browser
    /// has seen it, the host cannot go back to plain HTTP for its max-age).
    pub hsts: bool,
}

impl ApiConfig {
    pub fn drain_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.drain_timeout_secs)
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            drain_timeout_secs: 300,
            tls_cert: None,
            tls_key: None,
            hsts: false,
        }
    }
}

/// `[media]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Address RTP sockets bind to.
    pub bind: IpAddr,
    /// Lowest RTP port.
    pub rtp_port_min: u16,
    /// Highest RTP port.
    pub rtp_port_max: u16,
    /// Seconds without RTP or RTCP after which a participant is disconnected (`media-timeout`).
    pub timeout_secs: u64,
    /// Milliseconds the latched RTP source must be silent before another may take over.
    pub relatch_after_ms: u64,
    /// Latch every leg to whoever sends first, not only to the host its offer names (for a
    /// gateway whose media comes from another address than its SDP says).
    pub latch_any_source: bool,
    /// The address put in SDP (`o=`, `c=`); unset: the bind address, or with a wildcard bind
    /// the address of the interface that routes to each peer.
    pub advertise: Option<IpAddr>,
    /// SDES-SRTP on SIP legs: `off` (plain RTP only; an offer that insists on SRTP gets 488),
    /// `optional` (SRTP when the caller offers it) or `required` (an offer without it gets 488).
    pub srtp: SrtpPolicy,
    /// Offer and accept SDES keys over SIP on UDP or TCP, where anyone who can read the
    /// signalling reads the keys (off: only over TLS).
    pub sdes_over_cleartext: bool,
}

/// `media.srtp`: whether SIP legs use SDES-SRTP.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SrtpPolicy {
    Off,
    #[default]
    Optional,
    Required,
}

impl std::str::FromStr for SrtpPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(SrtpPolicy::Off),
            "optional" => Ok(SrtpPolicy::Optional),
            "required" => Ok(SrtpPolicy::Required),
            other => Err(format!("`{other}` is not one of off, optional, required")),
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            rtp_port_min: 20000,
            rtp_port_max: 29999,
            timeout_secs: 30,
            relatch_after_ms: 2000,
            latch_any_source: false,
            advertise: None,
            srtp: SrtpPolicy::Optional,
            sdes_over_cleartext: false,
        }
    }
}

/// `[webrtc]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcConfig {
    /// The one UDP address every WebRTC peer uses (ICE-lite); port 0 picks a free one.
    pub listen: SocketAddr,
    /// The address put in our ICE candidate; unset: the listen address, or with a wildcard
    /// listen address the address of the interface that routes to each browser. (`public_ip`
    /// is the older name of this key, still read.)
    #[serde(alias = "public_ip")]
    pub advertise: Option<IpAddr>,
    /// Secret that signs join tokens (hex or text); random per start when unset, so tokens
    /// do not survive a restart.
    pub token_secret: Option<String>,
    /// WebRTC handshakes one client address may have in progress at once.
    pub max_handshakes_per_address: usize,
    /// Seconds without ICE consent (STUN from the peer) before it is disconnected.
    pub consent_timeout_secs: u64,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            advertise: None,
            token_secret: None,
            max_handshakes_per_address: 32,
            consent_timeout_secs: 30,
        }
    }
}

/// `[mixer]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MixerConfig {
    /// Mixer threads; 0 means one per core.
    pub threads: usize,
    /// Talkers mixed per conference and tick (top-K).
    pub max_talkers: usize,
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig {
            threads: 0,
            max_talkers: 3,
        }
    }
}

/// `[storage]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory of the SQLite database.
    pub data_dir: PathBuf,
    /// Days a closed call record is kept (every join attempt writes one); 0 keeps them all.
    pub records_retention_days: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./confab-data"),
            records_retention_days: 365,
        }
    }
}

/// `[log]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter (`info`, `confab=debug,rsipstack=warn`, …); `RUST_LOG` overrides it.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`; a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn loopback_v4() -> Self {
        Network {
            addr: IpAddr::from([127, 0, 0, 0]),
            prefix: 8,
        }
    }

    pub fn loopback_v6() -> Self {
        Network {
            addr: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            prefix: 128,
        }
    }

    /// Whether `ip` is inside this network.
    #[allow(dead_code, reason = "the SIP layer's trust check is its user")]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0..={max}"))?,
        };
        Ok(Network { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A configuration problem, located where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, if the problem is in one.
    pub file: Option<PathBuf>,
    /// 1-based line in the file.
    pub line: Option<usize>,
    /// The dotted key (`api.token`).
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and checks a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_owned()),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::from_toml(&text).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })
    }

    /// Parses and checks TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let key = e.span().and_then(|s| key_at(text, s.start));
            ConfigError {
                file: None,
                line,
                key,
                message: e.message().trim().to_owned(),
            }
        })?;
        config.validate().map_err(|mut e| {
            if let Some(key) = &e.key {
                e.line = find_key_line(text, key);
            }
            e
        })?;
        Ok(config)
    }

    /// Checks what the types cannot: ranges, that a non-loopback API has a token, and that no
    /// secret is still a sample's placeholder.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            file: None,
            line: None,
            key: Some(key.to_owned()),
            message,
        };
        for (key, value) in [
            ("api.token", &self.api.token),
            ("webrtc.token_secret", &self.webrtc.token_secret),
        ] {
            if value.as_deref().is_some_and(placeholder) {
                return Err(err(
                    key,
                    "is still the sample's placeholder (`change-me…`): set a long random secret \
                     (e.g. `openssl rand -hex 32`)"
                        .to_owned(),
                ));
            }
        }
        for (key, value) in [
            ("sip.advertise", self.sip.advertise),
            ("media.advertise", self.media.advertise),
            ("webrtc.advertise", self.webrtc.advertise),
        ] {
            if let Some(ip) = value.filter(|ip| !crate::addr::advertisable(*ip)) {
                return Err(err(
                    key,
                    format!(
                        "{ip} cannot be advertised: give the unicast address peers reach this \
                         node at (or leave it unset to use the interface towards each peer)"
                    ),
                ));
            }
        }
        for (key, cert, tls_key) in [
            ("sip.tls_cert", &self.sip.tls_cert, &self.sip.tls_key),
            ("api.tls_cert", &self.api.tls_cert, &self.api.tls_key),
        ] {
            if cert.is_some() != tls_key.is_some() {
                return Err(err(
                    key,
                    format!(
                        "{key} and {} go together: give both or neither",
                        key.replace("cert", "key")
                    ),
                ));
            }
        }
        if self.sip.tls_listen.is_some() && self.sip.tls_cert.is_none() {
            return Err(err(
                "sip.tls_listen",
                "needs sip.tls_cert and sip.tls_key".to_owned(),
            ));
        }
        if let Some(tls) = self.sip.tls_address()
            && tls.port() != 0
            && tls == self.sip.listen
        {
            return Err(err(
                "sip.tls_listen",
                format!("{tls} is also sip.listen: TLS needs a port of its own"),
            ));
        }
        if self.sip.max_failures_per_source == 0 {
            return Err(err(
                "sip.max_failures_per_source",
                "must be at least 1".to_owned(),
            ));
        }
        if self.media.rtp_port_min == 0 || self.media.rtp_port_min >= self.media.rtp_port_max {
            return Err(err(
                "media.rtp_port_min",
                format!(
                    "RTP port range {}-{} is empty: rtp_port_min must be above 0 and below rtp_port_max",
                    self.media.rtp_port_min, self.media.rtp_port_max
                ),
            ));
        }
        if self.sip.codecs.is_empty() {
            return Err(err("sip.codecs", "names no codec".to_owned()));
        }
        if let Some(bad) = self
            .sip
            .codecs
            .iter()
            .find(|c| Codec::from_name(c).is_none())
        {
            return Err(err(
                "sip.codecs",
                format!("`{bad}` is not one of opus, G722, PCMU, PCMA"),
            ));
        }
        if self.sip.max_calls == 0 || self.sip.invites_per_second == 0 {
            return Err(err(
                "sip.max_calls",
                "sip.max_calls and sip.invites_per_second must be above 0".to_owned(),
            ));
        }
        if self.media.timeout_secs == 0 || self.media.timeout_secs > 3600 {
            return Err(err(
                "media.timeout_secs",
                format!("{} is out of range 1..=3600", self.media.timeout_secs),
            ));
        }
        if self.webrtc.max_handshakes_per_address == 0 {
            return Err(err(
                "webrtc.max_handshakes_per_address",
                "must be at least 1".to_owned(),
            ));
        }
        if !(5..=600).contains(&self.webrtc.consent_timeout_secs) {
            return Err(err(
                "webrtc.consent_timeout_secs",
                format!(
                    "{} is out of range 5..=600",
                    self.webrtc.consent_timeout_secs
                ),
            ));
        }
        if self.storage.records_retention_days > 36_500 {
            return Err(err(
                "storage.records_retention_days",
                format!(
                    "{} is out of range 0..=36500",
                    self.storage.records_retention_days
                ),
            ));
        }
        if self.media.relatch_after_ms > 60_000 {
            return Err(err(
                "media.relatch_after_ms",
                format!("{} is out of range 0..=60000", self.media.relatch_after_ms),
            ));
        }
        if !self.api.listen.ip().is_loopback()
            && self.api.token.as_deref().is_none_or(str::is_empty)
        {
            return Err(err(
                "api.token",
                format!(
                    "required when the API listens on {}, which is not a loopback address",
                    self.api.listen
                ),
            ));
        }
        if self.mixer.max_talkers == 0 || self.mixer.max_talkers > 16 {
            return Err(err(
                "mixer.max_talkers",
                format!("{} is out of range 1..=16", self.mixer.max_talkers),
            ));
        }
        if self.sip.access_user.is_empty()
            || !self
                .sip
                .access_user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(err(
                "sip.access_user",
                format!("`{}` is not a valid SIP user", self.sip.access_user),
            ));
        }
        if let Some(proxy) = &self.sip.outbound_proxy
            && !(proxy.starts_with("sip:") || proxy.starts_with("sips:"))
        {
            return Err(err(
                "sip.outbound_proxy",
                format!("`{proxy}` is not a SIP URI (sip:host:port)"),
            ));
        }
        Ok(())
    }
}

/// Whether a secret is a placeholder from the samples (`change-me…`, `changeme`, `change_me`).
fn placeholder(secret: &str) -> bool {
    let s = secret.trim().to_ascii_lowercase();
    ["change-me", "changeme", "change_me"]
        .iter()
        .any(|p| s.contains(p))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key whose line contains `offset` (`[section]` plus the key on that line).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let line_no = line_of(text, offset);
    let mut section = String::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned();
        }
        if i + 1 == line_no {
            let key = trimmed.split('=').next()?.trim();
            if trimmed.starts_with('[') || key.is_empty() {
                return (!section.is_empty()).then_some(section);
            }
            return Some(if section.is_empty() {
                key.to_owned()
            } else {
                format!("{section}.{key}")
            });
        }
    }
    None
}

/// The line where `section.key` is set or, when it is missing, the line of its `[section]`
/// (where it should be added).
fn find_key_line(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = dotted.rsplit_once('.')?;
    let mut current = String::new();
    let mut section_line = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            current = trimmed
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned();
            if current == section {
                section_line = Some(i + 1);
            }
        } else if current == section && trimmed.split('=').next().map(str::trim) == Some(key) {
            return Some(i + 1);
        }
    }
    section_line
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
