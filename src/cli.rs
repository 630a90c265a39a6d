//! The command line: `confab serve` and `confab check-config`. Every setting has a flag and a
//! `CONFAB_…` environment variable; flags win over the environment, both over the file.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use confab::config::{
    Config, ConfigError, LogFormat, MixerRealtime, Network, NoiseSuppression, SrtpPolicy,
};

/// Confab: a headless audio conferencing bridge.
#[derive(Debug, Parser)]
#[command(name = "confab", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the bridge (embedded defaults unless a config file or flags say otherwise).
    Serve(Box<ServeArgs>),
    /// Check a configuration file and say what is wrong with it (line and key).
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
}

/// Settings of `confab serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "CONFAB_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// SIP address (UDP and TCP).
    #[arg(long, env = "CONFAB_SIP_LISTEN")]
    sip_listen: Option<SocketAddr>,
    /// Networks allowed to send SIP requests (comma-separated CIDRs).
    #[arg(long, env = "CONFAB_SIP_TRUSTED", value_delimiter = ',')]
    sip_trusted: Option<Vec<Network>>,
    /// User part of the attendant's URI.
    #[arg(long, env = "CONFAB_SIP_ACCESS_USER")]
    sip_access_user: Option<String>,
    /// SIP URI dial-outs are sent to.
    #[arg(long, env = "CONFAB_SIP_OUTBOUND_PROXY")]
    sip_outbound_proxy: Option<String>,
    /// Codec preference (comma-separated: opus,G722,PCMU,PCMA).
    #[arg(long, env = "CONFAB_SIP_CODECS", value_delimiter = ',')]
    sip_codecs: Option<Vec<String>>,
    /// Concurrent SIP calls at most.
    #[arg(long, env = "CONFAB_SIP_MAX_CALLS")]
    sip_max_calls: Option<usize>,
    /// New INVITEs per source and second at most.
    #[arg(long, env = "CONFAB_SIP_INVITES_PER_SECOND")]
    sip_invites_per_second: Option<u32>,
    /// Folder of prompt languages.
    #[arg(long, env = "CONFAB_SIP_PROMPTS_DIR")]
    sip_prompts_dir: Option<PathBuf>,
    /// The attendant's language.
    #[arg(long, env = "CONFAB_SIP_LANGUAGE")]
    sip_language: Option<String>,
    /// Wrong entries per caller in ten minutes before it is locked out.
    #[arg(long, env = "CONFAB_SIP_MAX_FAILURES_PER_SOURCE")]
    sip_max_failures_per_source: Option<u32>,
    /// The SIP dispatcher (IP:port) that callers of other nodes' meetings are sent to.
    #[arg(long, env = "CONFAB_SIP_DISPATCHER")]
    sip_dispatcher: Option<SocketAddr>,
    /// Address put in Via and Contact (default: the listen address, or the interface towards
    /// each peer).
    #[arg(long, env = "CONFAB_SIP_ADVERTISE")]
    sip_advertise: Option<IpAddr>,
    /// Address for SIP over TLS (default with a certificate: the listen address, port 5061).
    #[arg(long, env = "CONFAB_SIP_TLS_LISTEN")]
    sip_tls_listen: Option<SocketAddr>,
    /// Certificate chain (PEM) for SIP over TLS.
    #[arg(long, env = "CONFAB_SIP_TLS_CERT")]
    sip_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `--sip-tls-cert`.
    #[arg(long, env = "CONFAB_SIP_TLS_KEY")]
    sip_tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that TLS peers we dial must chain to (default: the system's).
    #[arg(long, env = "CONFAB_SIP_TLS_CA")]
    sip_tls_ca: Option<PathBuf>,
    /// HTTP API address.
    #[arg(long, env = "CONFAB_API_LISTEN")]
    api_listen: Option<SocketAddr>,
    /// Bearer token of the HTTP API.
    #[arg(long, env = "CONFAB_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Seconds SIGTERM waits for calls to end.
    #[arg(long, env = "CONFAB_API_DRAIN_TIMEOUT_SECS")]
    api_drain_timeout_secs: Option<u64>,
    /// Certificate chain (PEM) for HTTPS; with `--api-tls-key` the API is HTTPS only.
    #[arg(long, env = "CONFAB_API_TLS_CERT")]
    api_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `--api-tls-cert`.
    #[arg(long, env = "CONFAB_API_TLS_KEY")]
    api_tls_key: Option<PathBuf>,
    /// Send Strict-Transport-Security on HTTPS responses (true or false).
    #[arg(long, env = "CONFAB_API_HSTS")]
    api_hsts: Option<bool>,
    /// Address RTP sockets bind to.
    #[arg(long, env = "CONFAB_MEDIA_BIND")]
    media_bind: Option<IpAddr>,
    /// Lowest RTP port.
    #[arg(long, env = "CONFAB_MEDIA_RTP_PORT_MIN")]
    media_rtp_port_min: Option<u16>,
    /// Highest RTP port.
    #[arg(long, env = "CONFAB_MEDIA_RTP_PORT_MAX")]
    media_rtp_port_max: Option<u16>,
    /// Seconds without media before a participant is disconnected.
    #[arg(long, env = "CONFAB_MEDIA_TIMEOUT_SECS")]
    media_timeout_secs: Option<u64>,
    /// Milliseconds of silence from the latched source before re-latching.
    #[arg(long, env = "CONFAB_MEDIA_RELATCH_AFTER_MS")]
    media_relatch_after_ms: Option<u64>,
    /// Latch every leg to the first source, not only to the host its offer names.
    #[arg(long, env = "CONFAB_MEDIA_LATCH_ANY_SOURCE")]
    media_latch_any_source: Option<bool>,
    /// Automatic gain control on participants' speech.
    #[arg(long, env = "CONFAB_MEDIA_AUTO_GAIN")]
    media_auto_gain: Option<bool>,
    /// Noise suppression (RNNoise) on every participant's input: off or on.
    #[arg(long, env = "CONFAB_MEDIA_NOISE_SUPPRESSION")]
    media_noise_suppression: Option<NoiseSuppression>,
    /// Address put in SDP (default: the bind address, or the interface towards each peer).
    #[arg(long, env = "CONFAB_MEDIA_ADVERTISE")]
    media_advertise: Option<IpAddr>,
    /// SDES-SRTP on SIP legs: off, optional or required.
    #[arg(long, env = "CONFAB_MEDIA_SRTP")]
    media_srtp: Option<SrtpPolicy>,
    /// Exchange SDES keys over SIP on UDP/TCP too (true or false; default false: TLS only).
    #[arg(long, env = "CONFAB_MEDIA_SDES_OVER_CLEARTEXT")]
    media_sdes_over_cleartext: Option<bool>,
    /// UDP address shared by every WebRTC peer.
    #[arg(long, env = "CONFAB_WEBRTC_LISTEN")]
    webrtc_listen: Option<SocketAddr>,
    /// Address advertised in WebRTC ICE candidates (`--webrtc-public-ip` is its older name).
    #[arg(long, alias = "webrtc-public-ip", env = "CONFAB_WEBRTC_ADVERTISE")]
    webrtc_advertise: Option<IpAddr>,
    /// The older environment name of `--webrtc-advertise`, still read.
    #[arg(long, hide = true, env = "CONFAB_WEBRTC_PUBLIC_IP")]
    webrtc_public_ip_env: Option<IpAddr>,
    /// Secret that signs join tokens.
    #[arg(long, env = "CONFAB_WEBRTC_TOKEN_SECRET", hide_env_values = true)]
    webrtc_token_secret: Option<String>,
    /// WebRTC handshakes one address may have in progress.
    #[arg(long, env = "CONFAB_WEBRTC_MAX_HANDSHAKES_PER_ADDRESS")]
    webrtc_max_handshakes_per_address: Option<usize>,
    /// Seconds without ICE consent before a WebRTC peer is disconnected.
    #[arg(long, env = "CONFAB_WEBRTC_CONSENT_TIMEOUT_SECS")]
    webrtc_consent_timeout_secs: Option<u64>,
    /// Mixer threads (0: one per core).
    #[arg(long, env = "CONFAB_MIXER_THREADS")]
    mixer_threads: Option<usize>,
    /// Talkers mixed per conference.
    #[arg(long, env = "CONFAB_MIXER_MAX_TALKERS")]
    mixer_max_talkers: Option<usize>,
    /// Real-time scheduling of the mixer threads: auto, off or required.
    #[arg(long, env = "CONFAB_MIXER_REALTIME")]
    mixer_realtime: Option<MixerRealtime>,
    /// Data directory (SQLite).
    #[arg(long, env = "CONFAB_STORAGE_DATA_DIR")]
    storage_data_dir: Option<PathBuf>,
    /// Days closed call records are kept (0: forever).
    #[arg(long, env = "CONFAB_STORAGE_RECORDS_RETENTION_DAYS")]
    storage_records_retention_days: Option<u32>,
    /// PostgreSQL shared by several nodes (`postgres://user:password@host/db`).
    #[arg(long, env = "CONFAB_STORAGE_URL", hide_env_values = true)]
    storage_url: Option<String>,
    /// This node's name in the shared database (default: the host name).
    #[arg(long, env = "CONFAB_STORAGE_NODE")]
    storage_node: Option<String>,
    /// Seconds a node's lease on a meeting lasts unrenewed (with --storage-url).
    #[arg(long, env = "CONFAB_STORAGE_LEASE_SECS")]
    storage_lease_secs: Option<u64>,
    /// Kamailio's dispatcher set this node lists itself in (with --storage-url; 0: none).
    #[arg(long, env = "CONFAB_STORAGE_DISPATCHER_SET")]
    storage_dispatcher_set: Option<u32>,
    /// This node's API URL as browsers and other nodes reach it (WHIP redirects).
    #[arg(long, env = "CONFAB_API_PUBLIC_URL")]
    api_public_url: Option<String>,
    /// Days conference recordings are kept (0: until deleted).
    #[arg(long, env = "CONFAB_RECORDING_RETENTION_DAYS")]
    recording_retention_days: Option<u32>,
    /// Bytes all recordings may take (0: no budget; the oldest are deleted past it).
    #[arg(long, env = "CONFAB_RECORDING_MAX_BYTES")]
    recording_max_bytes: Option<u64>,
    /// Presence server (IP:port, UDP) told who is in a conference; empty: none.
    #[arg(long, env = "CONFAB_PRESENCE_SERVER")]
    presence_server: Option<String>,
    /// Expires of each presence PUBLISH, seconds.
    #[arg(long, env = "CONFAB_PRESENCE_EXPIRES_SECS")]
    presence_expires_secs: Option<u32>,
    /// Log filter (`info`, `confab=debug`, …).
    #[arg(long, env = "CONFAB_LOG_LEVEL")]
    log_level: Option<String>,
    /// Log format.
    #[arg(long, env = "CONFAB_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Label per-conference metrics with meeting IDs (true or false).
    #[arg(long, env = "CONFAB_METRICS_CONFERENCE_LABELS")]
    metrics_conference_labels: Option<bool>,
}

impl ServeArgs {
    /// The configuration: defaults, then the file, then environment and flags; checked.
    pub(crate) fn load(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *target = v.clone();
            }
        }
        set(&mut c.sip.listen, &self.sip_listen);
        set(&mut c.sip.trusted, &self.sip_trusted);
        set(&mut c.sip.access_user, &self.sip_access_user);
        if self.sip_outbound_proxy.is_some() {
            c.sip.outbound_proxy = self.sip_outbound_proxy.clone();
        }
        set(&mut c.sip.codecs, &self.sip_codecs);
        set(&mut c.sip.max_calls, &self.sip_max_calls);
        set(&mut c.sip.invites_per_second, &self.sip_invites_per_second);
        if self.sip_prompts_dir.is_some() {
            c.sip.prompts_dir = self.sip_prompts_dir.clone();
        }
        set(&mut c.sip.language, &self.sip_language);
        if self.sip_dispatcher.is_some() {
            c.sip.dispatcher = self.sip_dispatcher;
        }
        set(
            &mut c.sip.max_failures_per_source,
            &self.sip_max_failures_per_source,
        );
        set(&mut c.api.listen, &self.api_listen);
        if self.api_token.is_some() {
            c.api.token = self.api_token.clone();
        }
        set(&mut c.api.drain_timeout_secs, &self.api_drain_timeout_secs);
        if self.api_tls_cert.is_some() {
            c.api.tls_cert = self.api_tls_cert.clone();
        }
        if self.api_tls_key.is_some() {
            c.api.tls_key = self.api_tls_key.clone();
        }
        set(&mut c.api.hsts, &self.api_hsts);
        set(&mut c.media.bind, &self.media_bind);
        set(&mut c.media.rtp_port_min, &self.media_rtp_port_min);
        set(&mut c.media.rtp_port_max, &self.media_rtp_port_max);
        set(&mut c.media.timeout_secs, &self.media_timeout_secs);
        set(&mut c.media.relatch_after_ms, &self.media_relatch_after_ms);
        set(&mut c.media.latch_any_source, &self.media_latch_any_source);
        set(&mut c.media.auto_gain, &self.media_auto_gain);
        set(
            &mut c.media.noise_suppression,
            &self.media_noise_suppression,
        );
        set(&mut c.webrtc.listen, &self.webrtc_listen);
        if let Some(ip) = self.webrtc_advertise.or(self.webrtc_public_ip_env) {
            c.webrtc.advertise = Some(ip);
        }
        if self.sip_advertise.is_some() {
            c.sip.advertise = self.sip_advertise;
        }
        if self.sip_tls_listen.is_some() {
            c.sip.tls_listen = self.sip_tls_listen;
        }
        for (flag, field) in [
            (&self.sip_tls_cert, &mut c.sip.tls_cert),
            (&self.sip_tls_key, &mut c.sip.tls_key),
            (&self.sip_tls_ca, &mut c.sip.tls_ca),
        ] {
            if flag.is_some() {
                field.clone_from(flag);
            }
        }
        set(&mut c.media.srtp, &self.media_srtp);
        set(
            &mut c.media.sdes_over_cleartext,
            &self.media_sdes_over_cleartext,
        );
        if self.media_advertise.is_some() {
            c.media.advertise = self.media_advertise;
        }
        if self.webrtc_token_secret.is_some() {
            c.webrtc.token_secret = self.webrtc_token_secret.clone();
        }
        set(
            &mut c.webrtc.max_handshakes_per_address,
            &self.webrtc_max_handshakes_per_address,
        );
        set(
            &mut c.webrtc.consent_timeout_secs,
            &self.webrtc_consent_timeout_secs,
        );
        set(&mut c.mixer.threads, &self.mixer_threads);
        set(&mut c.mixer.max_talkers, &self.mixer_max_talkers);
        set(&mut c.mixer.realtime, &self.mixer_realtime);
        set(&mut c.storage.data_dir, &self.storage_data_dir);
        set(
            &mut c.storage.records_retention_days,
            &self.storage_records_retention_days,
        );
        if self.storage_url.is_some() {
            c.storage.url = self.storage_url.clone();
        }
        if self.storage_node.is_some() {
            c.storage.node = self.storage_node.clone();
        }
        set(&mut c.storage.lease_secs, &self.storage_lease_secs);
        set(&mut c.storage.dispatcher_set, &self.storage_dispatcher_set);
        if self.api_public_url.is_some() {
            c.api.public_url = self.api_public_url.clone();
        }
        set(
            &mut c.recording.retention_days,
            &self.recording_retention_days,
        );
        set(&mut c.recording.max_bytes, &self.recording_max_bytes);
        set(&mut c.presence.server, &self.presence_server);
        set(&mut c.presence.expires_secs, &self.presence_expires_secs);
        set(&mut c.log.level, &self.log_level);
        set(&mut c.log.format, &self.log_format);
        set(
            &mut c.metrics.conference_labels,
            &self.metrics_conference_labels,
        );
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command, MixerRealtime};

    fn serve(args: &[&str]) -> Result<Box<super::ServeArgs>, clap::Error> {
        let cli = Cli::try_parse_from(["confab", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(args) => Ok(args),
            Command::CheckConfig { .. } => unreachable!("parsed as serve"),
        }
    }

    #[test]
    fn mixer_realtime_flag() {
        let c = serve(&["--mixer-realtime", "off"])
            .and_then(|a| {
                a.load()
                    .map_err(|e| clap::Error::raw(clap::error::ErrorKind::Io, e))
            })
            .map(|c| c.mixer.realtime);
        assert_eq!(c.ok(), Some(MixerRealtime::Off));
        let err = serve(&["--mixer-realtime", "fifo"])
            .map(|_| ())
            .expect_err("fifo is not a choice")
            .to_string();
        assert!(err.contains("auto, off, required"), "{err}");
    }
}
