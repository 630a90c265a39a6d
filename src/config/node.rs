//! How other nodes and clients reach this node, when several share a database.

use super::Config;
use crate::store::NodeAddress;

impl Config {
    /// This node's name, SIP address and API URL for placement leases: `sip.advertise` (else
    /// `sip.listen`) and `api.public_url` (else `http(s)://api.listen`). A wildcard or port 0
    /// cannot be given to another node: the key to set, and why.
    pub fn node_address(&self) -> Result<NodeAddress, (&'static str, String)> {
        let sip_ip = self.sip.advertise.unwrap_or(self.sip.listen.ip());
        if sip_ip.is_unspecified() || self.sip.listen.port() == 0 {
            return Err((
                "sip.advertise",
                format!(
                    "with storage.url, other nodes send callers here: sip.listen {} is not an \
                     address they can reach (set sip.advertise and a fixed port)",
                    self.sip.listen
                ),
            ));
        }
        let api = match &self.api.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if self.api.listen.ip().is_unspecified() || self.api.listen.port() == 0 => {
                return Err((
                    "api.public_url",
                    format!(
                        "with storage.url, other nodes send browsers here: api.listen {} is not \
                         an address they can reach (set api.public_url)",
                        self.api.listen
                    ),
                ));
            }
            None => {
                let scheme = if self.api.tls_cert.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", self.api.listen)
            }
        };
        Ok(NodeAddress {
            node: self.storage.node_name(),
            sip: std::net::SocketAddr::new(sip_ip, self.sip.listen.port()).to_string(),
            api,
        })
    }
}
