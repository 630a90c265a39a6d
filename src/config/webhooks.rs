//! `[[webhooks]]`: receivers the bridge POSTs its events to (see `crate::webhooks`). None by
//! default. Each entry is checked as the file is read: its URL, its secret and its events.

use serde::Deserialize;

/// Most `[[webhooks]]` entries: each is a schedule of its own in the delivery queue and may
/// hold up to four connections at once; a bridge is not a message broker.
pub const MAX_WEBHOOKS: usize = 16;

/// Longest `url` taken (it travels in each request's first line).
const MAX_URL: usize = 2048;

/// Longest `secret` taken.
const MAX_SECRET: usize = 1024;
/// Shortest `secret` taken: every request carries a known body and its HMAC, so whoever sees
/// one (plain `http://` is allowed) could search a short key offline and then sign events.
const MIN_SECRET: usize = 32;

/// One `[[webhooks]]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` (verified against the system's CA bundle); redirects are not
    /// followed.
    pub url: String,
    /// The HMAC-SHA256 key of the `Confab-Signature` header.
    pub secret: String,
    /// Event names (`conference.started`, …): what this receiver is sent.
    pub events: Vec<String>,
}

impl WebhookConfig {
    /// The URL, parsed (checked when the configuration was read).
    pub fn parsed_url(&self) -> Result<WebhookUrl, String> {
        WebhookUrl::parse(&self.url)
    }
}

/// A webhook's URL in the parts a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl {
    /// `https`.
    pub tls: bool,
    /// The host as written (an IPv6 address without its brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, `/` at least.
    pub path: String,
}

impl WebhookUrl {
    /// Parses `http[s]://host[:port][/path][?query]`. Refused: other schemes, credentials in
    /// the URL (`user@`), fragments, spaces, control and non-ASCII characters.
    pub fn parse(url: &str) -> Result<WebhookUrl, String> {
        if url.len() > MAX_URL {
            return Err(format!("is longer than {MAX_URL} characters"));
        }
        if let Some(c) = url.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "holds {c:?}: spaces, control and non-ASCII characters must be percent-encoded"
            ));
        }
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err("must start with http:// or https://".into());
        };
        if url.contains('#') {
            return Err("has a fragment (`#…`), which is never sent: remove it".into());
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err("holds credentials (`user@`): put the secret in `secret`".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or("has an IPv6 address without its closing `]`")?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("[{host}] is not an IPv6 address"));
            }
            match after {
                "" => (host, None),
                p => (host, Some(p.strip_prefix(':').ok_or("has junk after `]`")?)),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("names no host".into());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err(format!("`{host}` is not a host name or an IP address"));
        }
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("`{p}` is not a port (1 to 65535)")),
            },
        };
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(WebhookUrl {
            tls,
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// The `Host` header's value: the host, bracketed if IPv6, with the port unless it is the
    /// scheme's.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.tls, self.port) {
            (true, 443) | (false, 80) => host,
            (_, port) => format!("{host}:{port}"),
        }
    }
}

/// Checks every entry: the key of the first problem (`webhooks[2].url`, counted from 1) and
/// what is wrong.
pub(super) fn check(webhooks: &[WebhookConfig]) -> Result<(), (String, String)> {
    if webhooks.len() > MAX_WEBHOOKS {
        return Err((
            "webhooks".into(),
            format!(
                "{} entries; at most {MAX_WEBHOOKS} are taken",
                webhooks.len()
            ),
        ));
    }
    for (i, w) in webhooks.iter().enumerate() {
        let key = |k: &str| format!("webhooks[{}].{k}", i + 1);
        WebhookUrl::parse(&w.url).map_err(|why| (key("url"), format!("`{}` {why}", w.url)))?;
        if webhooks[..i].iter().any(|o| o.url == w.url) {
            return Err((
                key("url"),
                format!(
                    "`{}` is listed twice: give one entry all of its events",
                    w.url
                ),
            ));
        }
        if w.secret.trim().is_empty() {
            return Err((
                key("secret"),
                "is empty: set a long random secret (e.g. `openssl rand -hex 32`)".into(),
            ));
        }
        if super::placeholder(&w.secret) {
            return Err((
                key("secret"),
                "is still the sample's placeholder (`change-me…`): set a long random secret \
                 (e.g. `openssl rand -hex 32`)"
                    .into(),
            ));
        }
        if w.secret.len() < MIN_SECRET {
            return Err((
                key("secret"),
                format!(
                    "is shorter than {MIN_SECRET} bytes: set a long random secret (e.g. \
                     `openssl rand -hex 32`)"
                ),
            ));
        }
        if w.secret.len() > MAX_SECRET {
            return Err((key("secret"), format!("is longer than {MAX_SECRET} bytes")));
        }
        if w.events.is_empty() {
            return Err((
                key("events"),
                format!(
                    "names no event; give some of {}",
                    crate::webhooks::EventKind::names()
                ),
            ));
        }
        if let Some(bad) = w
            .events
            .iter()
            .find(|e| crate::webhooks::EventKind::parse(e).is_none())
        {
            return Err((
                key("events"),
                format!(
                    "`{bad}` is not an event; known: {}",
                    crate::webhooks::EventKind::names()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str, secret: &str, events: &[&str]) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            secret: secret.into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
        }
    }

    #[test]
    fn urls_are_taken_apart() {
        let u = WebhookUrl::parse("https://hooks.example.com/confab?x=1").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "hooks.example.com", 443, "/confab?x=1")
        );
        assert_eq!(u.host_header(), "hooks.example.com");
        let u = WebhookUrl::parse("http://127.0.0.1:8099").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 8099, "/"));
        assert_eq!(u.host_header(), "127.0.0.1:8099");
        let u = WebhookUrl::parse("http://[::1]:81/h").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 81));
        assert_eq!(u.host_header(), "[::1]:81");
        assert_eq!(WebhookUrl::parse("http://h?q").unwrap().path, "/?q");
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for (url, why) in [
            ("ftp://x/", "http:// or https://"),
            ("http:///path", "no host"),
            ("http://user:pw@x/", "credentials"),
            ("http://x:0/", "not a port"),
            ("http://x:99999/", "not a port"),
            ("http://x/a b", "spaces"),
            ("http://x/#frag", "fragment"),
            ("http://[::1/", "closing"),
            ("http://[zz]/", "not an IPv6"),
            ("http://ex%41mple/", "not a host name"),
        ] {
            let e = WebhookUrl::parse(url).unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
    }

    #[test]
    fn a_file_with_webhooks_parses_and_errors_name_the_entry_and_its_line() {
        let good = r#"
[[webhooks]]
url = "https://a.example/hook"
secret = "0f1e2d3c4b5a69788796a5b4c3d2e1f0-one"
events = ["conference.started", "recording.ready"]

[[webhooks]]
url = "http://127.0.0.1:9000/"
secret = "0f1e2d3c4b5a69788796a5b4c3d2e1f0-two"
events = ["participant.left"]
"#;
        let c = crate::config::Config::from_toml(good).unwrap();
        assert_eq!(c.webhooks.len(), 2);
        assert_eq!(c.webhooks[1].events, ["participant.left"]);
        assert!(crate::config::Config::default().webhooks.is_empty());
        let bad = good.replace("participant.left", "participant.spoke");
        let e = crate::config::Config::from_toml(&bad).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("webhooks[2].events"));
        assert_eq!(e.line, Some(10), "{e}");
        assert!(e.message.contains("participant.spoke"), "{e}");
        let unknown = good.replace(
            "secret = \"0f1e2d3c4b5a69788796a5b4c3d2e1f0-two\"",
            "secret = \"0f1e2d3c4b5a69788796a5b4c3d2e1f0-two\"\nretries = 3",
        );
        assert!(crate::config::Config::from_toml(&unknown).is_err());
    }

    #[test]
    fn entries_are_checked_one_by_one() {
        const LONG: &str = "5b8e1c0a7d3f4e2b9a6c8d0e1f2a3b4c";
        let good = entry("http://h/", LONG, &["conference.started"]);
        assert!(check(std::slice::from_ref(&good)).is_ok());
        let cases = [
            (
                entry("http://h/", "", &["conference.started"]),
                "webhooks[2].secret",
            ),
            (
                entry("http://h/", "change-me-please", &["conference.started"]),
                "webhooks[2].secret",
            ),
            (
                entry("http://h/", "s3cret-value", &["conference.started"]),
                "webhooks[2].secret",
            ),
            (entry("http://h/", LONG, &[]), "webhooks[2].events"),
            (
                entry("http://h/", LONG, &["meeting.started"]),
                "webhooks[2].events",
            ),
            (
                entry("gopher://h/", LONG, &["conference.ended"]),
                "webhooks[2].url",
            ),
        ];
        for (bad, key) in cases {
            let other = entry("http://other/", LONG, &["recording.ready"]);
            let (k, why) = check(&[other, bad.clone()]).unwrap_err();
            assert_eq!(k, key, "{bad:?}: {why}");
        }
        let (k, why) = check(&[good.clone(), good]).unwrap_err();
        assert_eq!(k, "webhooks[2].url");
        assert!(why.contains("twice"), "{why}");
    }
}
