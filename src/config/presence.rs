//! `[presence]`: the presence server the bridge tells that a participant is in a conference
//! (see `crate::sip::presence`). Off by default.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::sip::presence::{MAX_EXPIRES, MIN_EXPIRES};

/// `[presence]`
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// The presence server as `IP:port` (PUBLISH over UDP, e.g. Kamailio's presence module);
    /// empty: nothing is published.
    pub server: String,
    /// The Expires each PUBLISH asks for, seconds (refreshed before it runs out).
    pub expires_secs: u32,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            server: String::new(),
            expires_secs: 600,
        }
    }
}

impl PresenceConfig {
    /// The server, if one is set; an error names what is wrong.
    pub fn server_addr(&self) -> Result<Option<SocketAddr>, (&'static str, String)> {
        if self.server.is_empty() {
            return Ok(None);
        }
        self.server.parse::<SocketAddr>().map(Some).map_err(|_| {
            (
                "presence.server",
                format!(
                    "`{}` is not an IP:port address (names are not looked up)",
                    self.server
                ),
            )
        })
    }

    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        self.server_addr()?;
        if !(MIN_EXPIRES..=MAX_EXPIRES).contains(&self.expires_secs) {
            return Err((
                "presence.expires_secs",
                format!(
                    "{} is out of range {MIN_EXPIRES}..={MAX_EXPIRES}",
                    self.expires_secs
                ),
            ));
        }
        Ok(())
    }
}
