//! `[sip]`: listening, trust, dial-out, TLS.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use super::Network;
use crate::media::codec::Codec;

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
    /// New INVITEs accepted per second from one caller behind a trusted source (ten times
    /// that from the trusted source as a whole), or from one address outside; more get 503.
    pub invites_per_second: u32,
    /// A folder of prompt languages (`<dir>/<language>/<name>.wav`); none: the built-in English.
    pub prompts_dir: Option<PathBuf>,
    /// The attendant's language (a folder under `prompts_dir`), and the default one.
    pub language: String,
    /// Languages offered by a menu to callers of `access_user` before the attendant ("for
    /// English press 1, für Deutsch drücken Sie die 2, …"), the key being the position; fewer
    /// than two: no menu, the callers hear `language`.
    pub menu_languages: Vec<String>,
    /// More access numbers, each with the language its callers hear (no menu).
    pub access_users: Vec<AccessUser>,
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
    /// The realm of our digest challenges (`[[sip.users]]`).
    pub realm: String,
    /// Softclients that may call from outside `trusted` after a digest challenge (one, MD5
    /// with `qop=auth`, as baresip 1.x takes no other; SHA-256 answers (RFC 7616) are verified
    /// too); none: such callers get 403 as before.
    pub users: Vec<SipUser>,
    /// What a trunk's 401/407 challenge on our dial-outs is answered with, by the host the
    /// INVITE goes to (the outbound proxy's, or the target's when there is none).
    pub credentials: Vec<TrunkCredentials>,
}

/// `[[sip.access_users]]`: an access number in a language.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccessUser {
    pub user: String,
    pub language: String,
}

/// Languages at most: one key each on the menu.
pub(crate) const MAX_MENU_LANGUAGES: usize = 9;

impl SipConfig {
    /// Every language the bridge speaks, the default first, each once.
    pub fn prompt_languages(&self) -> Vec<String> {
        let mut all = vec![self.language.clone()];
        let more = self.menu_languages.iter();
        for l in more.chain(self.access_users.iter().map(|a| &a.language)) {
            if !all.contains(l) {
                all.push(l.clone());
            }
        }
        all
    }

    /// The languages and access users, checked: a language is a tag (`fr`, `pt-BR`), one of the
    /// built-in ones unless `prompts_dir` is set; a menu has at most nine and none twice; an
    /// access user is a SIP user, none twice nor the attendant's `access_user`.
    pub(super) fn validate_languages(&self) -> Result<(), (&'static str, String)> {
        let check = |key: &'static str, l: &str| {
            let tag = !l.is_empty()
                && l.len() <= 16
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !tag {
                return Err((
                    key,
                    format!("`{l}` is not a language tag (like `fr` or `pt-BR`)"),
                ));
            }
            let built_in = crate::sip::prompts::LANGUAGES;
            if self.prompts_dir.is_none() && !built_in.contains(&l) {
                return Err((
                    key,
                    format!(
                        "`{l}` has no built-in prompts (built in: {}); set sip.prompts_dir",
                        built_in.join(", ")
                    ),
                ));
            }
            Ok(())
        };
        check("sip.language", &self.language)?;
        if self.menu_languages.len() > MAX_MENU_LANGUAGES {
            return Err((
                "sip.menu_languages",
                format!(
                    "{} languages; a menu offers at most {MAX_MENU_LANGUAGES} (keys 1-9)",
                    self.menu_languages.len()
                ),
            ));
        }
        for (i, l) in self.menu_languages.iter().enumerate() {
            check("sip.menu_languages", l)?;
            if self.menu_languages[..i].contains(l) {
                return Err(("sip.menu_languages", format!("`{l}` is offered twice")));
            }
        }
        for (i, a) in self.access_users.iter().enumerate() {
            let user = !a.user.is_empty()
                && a.user.len() <= 64
                && a.user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !user {
                return Err((
                    "sip.access_users",
                    format!("entry {}: `{}` is not a valid SIP user", i + 1, a.user),
                ));
            }
            if a.user == self.access_user || self.access_users[..i].iter().any(|b| b.user == a.user)
            {
                return Err((
                    "sip.access_users",
                    format!("entry {}: `{}` is already an access user", i + 1, a.user),
                ));
            }
            check("sip.access_users", &a.language)?;
        }
        Ok(())
    }
}

/// `[[sip.users]]`: a softclient's digest account.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SipUser {
    pub username: String,
    pub password: String,
}

/// `[[sip.credentials]]`: our account on a trunk or proxy.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrunkCredentials {
    /// The host (name or address, as in the URI we dial) these credentials are for; they are
    /// never sent anywhere else.
    pub host: String,
    /// Only challenges of this realm are answered; unset: any realm of that host.
    pub realm: Option<String>,
    pub username: String,
    pub password: String,
}

// Passwords stay out of logs and `--check` output.
impl std::fmt::Debug for SipUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipUser")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl std::fmt::Debug for TrunkCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkCredentials")
            .field("host", &self.host)
            .field("realm", &self.realm)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
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
            menu_languages: Vec::new(),
            access_users: Vec::new(),
            max_failures_per_source: 10,
            dispatcher: None,
            advertise: None,
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            realm: "confab".to_owned(),
            users: Vec::new(),
            credentials: Vec::new(),
        }
    }
}
