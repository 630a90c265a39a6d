//! The checks the types cannot make: ranges, pairs of keys, placeholders, addresses.

use super::{Config, ConfigError, placeholder};
use crate::media::codec::Codec;

/// The largest value of a `webrtc.max_handshakes*` key.
const MAX_HANDSHAKES: usize = 65_536;

impl Config {
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
        if let Err((key, why)) = super::webhooks::check(&self.webhooks) {
            return Err(err(&key, why));
        }
        if let Err(e) = self.keypad.key_map() {
            return Err(err(&format!("keypad.{}", e.action()), e.to_string()));
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
        for (key, value) in [
            (
                "webrtc.max_handshakes_per_address",
                self.webrtc.max_handshakes_per_address,
            ),
            (
                "webrtc.max_handshakes_per_conference",
                self.webrtc.max_handshakes_per_conference,
            ),
            ("webrtc.max_handshakes", self.webrtc.max_handshakes),
        ] {
            // Each handshake holds a str0m state and a mixer leg for up to 20 s: a cap in the
            // hundreds of thousands is no cap.
            if !(1..=MAX_HANDSHAKES).contains(&value) {
                return Err(err(
                    key,
                    format!("{value} is out of range 1..={MAX_HANDSHAKES}"),
                ));
            }
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
        if let Some(node) = &self.storage.node
            && !super::sections::valid_node_name(node)
        {
            return Err(err(
                "storage.node",
                format!("{node:?} is not 1 to 64 of A-Z a-z 0-9 . _ -"),
            ));
        }
        if self.storage.dispatcher_set > 0 && self.storage.url.is_none() {
            return Err(err(
                "storage.dispatcher_set",
                "needs storage.url: Kamailio reads the set from the nodes' PostgreSQL".into(),
            ));
        }
        if self.storage.dispatcher_set > i32::MAX as u32 {
            return Err(err(
                "storage.dispatcher_set",
                format!(
                    "{} is out of range 0..=2147483647",
                    self.storage.dispatcher_set
                ),
            ));
        }
        if !(3..=300).contains(&self.storage.lease_secs) {
            return Err(err(
                "storage.lease_secs",
                format!("{} is out of range 3..=300", self.storage.lease_secs),
            ));
        }
        if let Some(url) = &self.storage.url
            && !url.starts_with("postgres://")
            && !url.starts_with("postgresql://")
        {
            return Err(err(
                "storage.url",
                "must be a postgres:// or postgresql:// URL (unset for SQLite in data_dir)".into(),
            ));
        }
        if self.storage.url.is_some() && self.storage.node.is_none() {
            return Err(err(
                "storage.node",
                "with storage.url, each node must be named (two nodes of one name would both \
                 take every meeting as their own)"
                    .into(),
            ));
        }
        if self.storage.url.is_some()
            && let Err((key, why)) = self.node_address()
        {
            return Err(err(key, why));
        }
        if let Some(url) = &self.api.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(err(
                "api.public_url",
                "must be an http:// or https:// URL".into(),
            ));
        }
        if self.recording.retention_days > 36_500 {
            return Err(err(
                "recording.retention_days",
                format!(
                    "{} is out of range 0..=36500",
                    self.recording.retention_days
                ),
            ));
        }
        self.presence
            .check()
            .map_err(|(key, message)| err(key, message))?;
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
        self.validate_digest()
            .map_err(|(key, message)| err(key, message))?;
        self.sip
            .validate_languages()
            .map_err(|(key, message)| err(key, message))?;
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

    /// `sip.realm`, `[[sip.users]]` and `[[sip.credentials]]`: names that fit in a quoted
    /// string of a SIP header, passwords that are set and not a sample's placeholder.
    fn validate_digest(&self) -> Result<(), (&'static str, String)> {
        let header_safe = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars().all(|c| !c.is_control() && c != '"' && c != '\\')
        };
        if !header_safe(&self.sip.realm) {
            return Err((
                "sip.realm",
                "must be 1-128 characters without quotes, backslashes or control characters"
                    .to_owned(),
            ));
        }
        let password_ok = |p: &str| !p.is_empty() && p.len() <= 128 && !placeholder(p);
        for (i, user) in self.sip.users.iter().enumerate() {
            if !header_safe(&user.username) {
                return Err((
                    "sip.users",
                    format!(
                        "entry {}: username must be 1-128 characters without quotes, backslashes or control characters",
                        i + 1
                    ),
                ));
            }
            if !password_ok(&user.password) {
                return Err((
                    "sip.users",
                    format!(
                        "`{}`: the password must be 1-128 characters and not a sample's placeholder",
                        user.username
                    ),
                ));
            }
            if self.sip.users[..i]
                .iter()
                .any(|u| u.username == user.username)
            {
                return Err(("sip.users", format!("`{}` is listed twice", user.username)));
            }
        }
        for (i, c) in self.sip.credentials.iter().enumerate() {
            if !header_safe(&c.host)
                || !header_safe(&c.username)
                || c.realm.as_deref().is_some_and(|r| !header_safe(r))
            {
                return Err((
                    "sip.credentials",
                    format!(
                        "entry {}: host, username and realm must be 1-128 characters without quotes, backslashes or control characters",
                        i + 1
                    ),
                ));
            }
            if !password_ok(&c.password) {
                return Err((
                    "sip.credentials",
                    format!(
                        "`{}@{}`: the password must be 1-128 characters and not a sample's placeholder",
                        c.username, c.host
                    ),
                ));
            }
        }
        Ok(())
    }
}
