//! Configuration: embedded defaults, then a TOML file, then `CONFAB_…` environment variables and
//! command-line flags (clap gives flags precedence over the environment).
//!
//! The file format rejects unknown keys; every error names the line and the key so an operator
//! can fix it without guessing.

mod api;
mod keypad;
mod media;
mod network;
mod node;
mod presence;
mod recording;
mod sections;
mod sip;
mod validate;
mod webhooks;
mod webrtc;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use api::ApiConfig;
pub use keypad::KeypadConfig;
pub use media::{MediaConfig, NoiseSuppression, SrtpPolicy};
pub use network::Network;
pub use presence::PresenceConfig;
pub use recording::RecordingConfig;
pub use sections::{
    LogConfig, LogFormat, MetricsConfig, MixerConfig, MixerRealtime, StorageConfig,
};
pub use sip::{SipConfig, SipUser, TrunkCredentials};
pub use webhooks::{MAX_WEBHOOKS, WebhookConfig, WebhookUrl};
pub use webrtc::WebRtcConfig;

/// The whole configuration of a Confab node.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sip: SipConfig,
    pub keypad: KeypadConfig,
    pub api: ApiConfig,
    pub media: MediaConfig,
    pub webrtc: WebRtcConfig,
    pub mixer: MixerConfig,
    pub storage: StorageConfig,
    pub recording: RecordingConfig,
    /// `[presence]`: "in a conference" published for participants (off by default).
    pub presence: PresenceConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    /// `[[webhooks]]`: receivers of the bridge's events (none by default).
    pub webhooks: Vec<WebhookConfig>,
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
    // `webhooks[2].url`: the second `[[webhooks]]` table (counted from 1).
    let (section, nth) = match section.strip_suffix(']').and_then(|s| s.split_once('[')) {
        Some((name, n)) => (name, n.parse::<usize>().ok()?),
        None => (section, 1),
    };
    let mut current = String::new();
    let mut seen = 0;
    let mut section_line = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            current = trimmed
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned();
            if current == section {
                seen += 1;
                if seen == nth {
                    section_line = Some(i + 1);
                }
            }
        } else if current == section
            && seen == nth
            && trimmed.split('=').next().map(str::trim) == Some(key)
        {
            return Some(i + 1);
        }
    }
    section_line
}

#[cfg(test)]
mod tests;
