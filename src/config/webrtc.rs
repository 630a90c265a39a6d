//! `[webrtc]`: the ICE-lite address, join tokens, handshake limits, and the STUN/TURN servers
//! the join page hands its browser.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

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
    /// WebRTC handshakes one meeting may have in progress at once (whoever joins it).
    pub max_handshakes_per_conference: usize,
    /// WebRTC handshakes the bridge may have in progress at once.
    pub max_handshakes: usize,
    /// Seconds without ICE consent (STUN from the peer) before it is disconnected.
    pub consent_timeout_secs: u64,
    /// STUN and TURN servers for the join page's `RTCPeerConnection` (none by default: the
    /// bridge is ICE-lite with an address of its own). Anyone who can open the join page can
    /// read them, TURN credentials included.
    pub ice_servers: IceServers,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            advertise: None,
            token_secret: None,
            max_handshakes_per_address: 32,
            max_handshakes_per_conference: 64,
            max_handshakes: 256,
            consent_timeout_secs: 30,
            ice_servers: IceServers::default(),
        }
    }
}

/// Most entries in `webrtc.ice_servers`: a browser tries every one while gathering, so a long
/// list only slows joining down.
const MAX_ICE_SERVERS: usize = 8;
/// Most URLs in one entry.
const MAX_URLS: usize = 8;
/// Longest URL, username or credential (TURN REST credentials are well under this).
const MAX_TEXT: usize = 512;

/// One STUN or TURN server as `RTCIceServer` takes it (and as the page is given it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// An entry as written in the file, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIceServer {
    urls: Vec<String>,
    username: Option<String>,
    credential: Option<String>,
}

/// `webrtc.ice_servers`: checked as a whole so that an error can say which entry is wrong.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, Serialize)]
#[serde(try_from = "Vec<RawIceServer>")]
pub struct IceServers(Vec<IceServer>);

impl IceServers {
    pub fn as_slice(&self) -> &[IceServer] {
        &self.0
    }

    /// The servers as WHIP's `Link` header values (RFC 9725 section 4.6), one per URL:
    /// `<turn:…>; rel="ice-server"; username="…"; credential="…"; credential-type="password"`.
    /// Visible ASCII only, whatever the entries hold: a URL's other bytes and `<>"\` are
    /// percent-encoded, a quoted value's `"` and `\` escaped, and a username or credential
    /// beyond ASCII given as `username*=UTF-8''…` (RFC 8187). Checked entries hold no spaces
    /// or control characters anyway.
    pub fn link_headers(&self) -> Vec<String> {
        let mut links = Vec::new();
        for server in &self.0 {
            for url in &server.urls {
                let mut link = format!("<{}>; rel=\"ice-server\"", percent_encoded(url, b"<>\"\\"));
                if let Some(u) = &server.username {
                    link.push_str(&link_param("username", u));
                }
                if let Some(c) = &server.credential {
                    link.push_str(&link_param("credential", c));
                    link.push_str("; credential-type=\"password\"");
                }
                links.push(link);
            }
        }
        links
    }
}

/// `; name="value"`, or `; name*=UTF-8''value` percent-encoded for a value beyond ASCII.
fn link_param(name: &str, value: &str) -> String {
    if value.is_ascii() && !value.bytes().any(|b| b.is_ascii_control()) {
        let quoted = value.replace('\\', "\\\\").replace('"', "\\\"");
        format!("; {name}=\"{quoted}\"")
    } else {
        // RFC 8187's attr-char: alphanumerics and `!#$&+-.^_`|~`; the rest percent-encoded.
        let encoded: String = value
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("; {name}*=UTF-8''{encoded}")
    }
}

/// `text` with every byte outside visible ASCII, and those in `also`, percent-encoded.
fn percent_encoded(text: &str, also: &[u8]) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_graphic() && !also.contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl TryFrom<Vec<RawIceServer>> for IceServers {
    type Error = String;

    fn try_from(raw: Vec<RawIceServer>) -> Result<Self, String> {
        if raw.len() > MAX_ICE_SERVERS {
            return Err(format!(
                "{} entries; at most {MAX_ICE_SERVERS} are allowed",
                raw.len()
            ));
        }
        raw.into_iter()
            .enumerate()
            .map(|(i, r)| {
                // Counted from 1, as a reader of the file counts them; the key comes first
                // (ConfigError names it from the line).
                check(&r).map_err(|e| format!("entry {}: {e}", i + 1))?;
                Ok(IceServer {
                    urls: r.urls,
                    username: r.username,
                    credential: r.credential,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map(IceServers)
    }
}

/// Text that goes to browsers as it is: bounded, and nothing that could break out of a header
/// or JSON string or hide in a log line.
fn text(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_TEXT {
        return Err(format!("{what} must be 1 to {MAX_TEXT} bytes"));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{what} must not contain spaces or control characters"
        ));
    }
    Ok(())
}

fn check(r: &RawIceServer) -> Result<(), String> {
    if r.urls.is_empty() || r.urls.len() > MAX_URLS {
        return Err(format!("urls must list 1 to {MAX_URLS} URLs"));
    }
    let mut turn = false;
    for url in &r.urls {
        text("a URL", url)?;
        let lower = url.to_ascii_lowercase();
        let Some((scheme, rest)) = lower.split_once(':') else {
            return Err(format!("`{url}` has no scheme"));
        };
        match scheme {
            "stun" | "stuns" => {}
            "turn" | "turns" => turn = true,
            _ => {
                return Err(format!(
                    "`{url}` is not a stun:, stuns:, turn: or turns: URL"
                ));
            }
        }
        if rest.is_empty() || rest.starts_with('?') || rest.starts_with(':') {
            return Err(format!("`{url}` names no host"));
        }
    }
    for (what, value) in [("username", &r.username), ("credential", &r.credential)] {
        match value {
            Some(v) => {
                text(what, v)?;
                if what == "credential" && super::placeholder(v) {
                    return Err(
                        "credential is still a sample's placeholder (`change-me…`)".to_owned()
                    );
                }
            }
            None if turn => {
                return Err(format!(
                    "a TURN server needs a username and a credential; {what} is missing"
                ));
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn error(toml: &str) -> crate::config::ConfigError {
        match Config::from_toml(toml) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn none_by_default_and_good_entries_parse() {
        assert!(Config::default().webrtc.ice_servers.as_slice().is_empty());
        let c = Config::from_toml(
            r#"
[webrtc]
ice_servers = [
  { urls = ["stun:stun.example.net:3478"] },
  { urls = ["turn:turn.example.net:3478?transport=udp", "turns:turn.example.net:5349"],
    username = "1733400000:confab", credential = "c2VjcmV0" },
]
"#,
        )
        .unwrap();
        let servers = c.webrtc.ice_servers.as_slice();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, ["stun:stun.example.net:3478"]);
        assert_eq!(servers[0].username, None);
        assert_eq!(servers[1].username.as_deref(), Some("1733400000:confab"));
        // As the page gets them: RTCIceServer's field names, nothing for what is unset.
        assert_eq!(
            serde_json::to_value(&c.webrtc.ice_servers).unwrap(),
            serde_json::json!([
                { "urls": ["stun:stun.example.net:3478"] },
                { "urls": ["turn:turn.example.net:3478?transport=udp", "turns:turn.example.net:5349"],
                  "username": "1733400000:confab", "credential": "c2VjcmV0" },
            ])
        );
        // The table-array spelling works too.
        let c = Config::from_toml(
            "[[webrtc.ice_servers]]\nurls = [\"STUN:stun.example.net\"]\n\
             [[webrtc.ice_servers]]\nurls = [\"stuns:stun.example.org:5349\"]\n",
        )
        .unwrap();
        assert_eq!(c.webrtc.ice_servers.as_slice().len(), 2);
    }

    #[test]
    fn link_headers_name_each_url_with_its_credentials_and_cannot_be_broken_out_of() {
        let c = Config::from_toml(
            r#"
[webrtc]
ice_servers = [
  { urls = ["stun:stun.example.net:3478"] },
  { urls = ["turn:turn.example.net:3478?transport=udp", "turns:t.example.net"],
    username = "1733400000:confab", credential = "c2VjcmV0" },
  { urls = ["turn:x.example.net>;rel=\"evil\"<é"], username = "a\"b\\c", credential = "pässword" },
]
"#,
        )
        .unwrap();
        let links = c.webrtc.ice_servers.link_headers();
        assert_eq!(
            links,
            [
                r#"<stun:stun.example.net:3478>; rel="ice-server""#,
                r#"<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; username="1733400000:confab"; credential="c2VjcmV0"; credential-type="password""#,
                r#"<turns:t.example.net>; rel="ice-server"; username="1733400000:confab"; credential="c2VjcmV0"; credential-type="password""#,
                r#"<turn:x.example.net%3E;rel=%22evil%22%3C%C3%A9>; rel="ice-server"; username="a\"b\\c"; credential*=UTF-8''p%C3%A4ssword; credential-type="password""#,
            ]
        );
        for link in &links {
            assert!(
                link.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
                "{link}"
            );
            assert!(axum::http::HeaderValue::from_str(link).is_ok(), "{link}");
        }
        assert!(
            Config::default()
                .webrtc
                .ice_servers
                .link_headers()
                .is_empty()
        );
    }

    #[test]
    fn handshake_caps_have_defaults_and_are_checked() {
        let c = Config::default().webrtc;
        assert_eq!(
            (
                c.max_handshakes,
                c.max_handshakes_per_conference,
                c.max_handshakes_per_address
            ),
            (256, 64, 32)
        );
        let c = Config::from_toml(
            "[webrtc]\nmax_handshakes = 1000\nmax_handshakes_per_conference = 100\n",
        )
        .unwrap();
        assert_eq!(
            (
                c.webrtc.max_handshakes,
                c.webrtc.max_handshakes_per_conference
            ),
            (1000, 100)
        );
        for (key, value) in [
            ("max_handshakes", "0"),
            ("max_handshakes", "65537"),
            ("max_handshakes_per_conference", "0"),
            ("max_handshakes_per_address", "0"),
        ] {
            let e = error(&format!("[webrtc]\n{key} = {value}\n")).to_string();
            assert!(e.starts_with(&format!("webrtc.{key}")), "{e}");
            assert!(e.contains("out of range 1..=65536"), "{e}");
        }
    }

    #[test]
    fn bad_entries_are_refused_naming_the_key_and_the_entry() {
        let long = "x".repeat(600);
        let cases = [
            (
                r#"ice_servers = [{ urls = ["stun:a"] }, { urls = ["http://turn.example.net"] }]"#.to_owned(),
                "webrtc.ice_servers: entry 2: `http://turn.example.net` is not a stun:, stuns:, turn: or turns: URL",
            ),
            (
                r#"ice_servers = [{ urls = ["turn:turn.example.net"] }]"#.to_owned(),
                "webrtc.ice_servers: entry 1: a TURN server needs a username and a credential; username is missing",
            ),
            (
                r#"ice_servers = [{ urls = ["turns:t.example.net"], username = "u" }]"#.to_owned(),
                "credential is missing",
            ),
            (r#"ice_servers = [{ urls = [] }]"#.to_owned(), "urls must list 1 to 8 URLs"),
            (r#"ice_servers = [{ urls = ["stun:"] }]"#.to_owned(), "names no host"),
            (r#"ice_servers = [{ urls = ["stun.example.net"] }]"#.to_owned(), "has no scheme"),
            (
                format!(r#"ice_servers = [{{ urls = ["stun:{long}"] }}]"#),
                "a URL must be 1 to 512 bytes",
            ),
            (
                r#"ice_servers = [{ urls = ["turn:t"], username = "u", credential = "a b" }]"#.to_owned(),
                "credential must not contain spaces or control characters",
            ),
            (
                r#"ice_servers = [{ urls = ["turn:t"], username = "u", credential = "change-me" }]"#.to_owned(),
                "placeholder",
            ),
            (
                r#"ice_servers = [{ urls = ["stun:a"], password = "x" }]"#.to_owned(),
                "unknown field `password`",
            ),
            (
                format!("ice_servers = [{}]", [r#"{ urls = ["stun:a"] }"#; 9].join(", ")),
                "webrtc.ice_servers: 9 entries; at most 8 are allowed",
            ),
        ];
        for (line, want) in cases {
            let e = error(&format!("[webrtc]\n{line}\n"));
            assert_eq!(e.line, Some(2), "names the line: {e}");
            let e = e.to_string();
            assert!(e.contains(want), "{line}\n  gave: {e}\n  want: {want}");
            assert!(e.starts_with("webrtc.ice_servers"), "names the key: {e}");
        }
        // The table-array spelling is named the same way.
        let e = error("[webrtc]\n[[webrtc.ice_servers]]\nurls = [\"turn:t\"]\n");
        assert!(
            e.to_string()
                .starts_with("webrtc.ice_servers: entry 1: a TURN server needs"),
            "{e}"
        );
    }
}
