//! `[api]`: the HTTP API and pages.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

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
    /// This node's API as browsers and other nodes reach it (`https://node1.example:8443`),
    /// where WHIP joins for a meeting this node runs are redirected when several nodes share
    /// a database. Unset: `http(s)://listen`.
    pub public_url: Option<String>,
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
            public_url: None,
        }
    }
}
