//! The small sections: `[metrics]`, `[mixer]`, `[storage]`, `[log]`.

use std::path::PathBuf;

use serde::Deserialize;

/// `[metrics]`
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Show the per-conference series (`confab_conference_participants`,
    /// `…_mix_rate_hertz`), labelled with the meeting ID. Off by default: they grow with the
    /// number of conferences, `/metrics` is not authenticated, and meeting IDs are what
    /// callers dial.
    pub conference_labels: bool,
}

/// `[mixer]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MixerConfig {
    /// Mixer threads; 0 means one per core.
    pub threads: usize,
    /// Talkers mixed per conference and tick (top-K).
    pub max_talkers: usize,
    /// Whether the mixer threads ask for real-time scheduling (SCHED_RR), so a busy host
    /// does not make ticks start late.
    pub realtime: MixerRealtime,
}

/// `mixer.realtime`: what the mixer threads do about real-time scheduling.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MixerRealtime {
    /// Ask; without the right to it, run with normal scheduling (and say so).
    #[default]
    Auto,
    /// Do not ask.
    Off,
    /// Ask, and refuse to start without it.
    Required,
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig {
            threads: 0,
            max_talkers: 3,
            realtime: MixerRealtime::Auto,
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
    /// `postgres://user:password@host:port/database`: PostgreSQL shared by several nodes in
    /// place of SQLite. Unset: SQLite in `data_dir`.
    pub url: Option<String>,
    /// This node's name in the shared database (its records; unset: the host name). Two nodes
    /// on one database must not share it.
    pub node: Option<String>,
    /// With `url`: seconds a node's lease on a meeting lasts unrenewed (it renews every third
    /// of it); a node that dies loses its meetings after this long.
    pub lease_secs: u64,
    /// With `url`: Kamailio's dispatcher set (1 or more) this node lists itself in, in the
    /// `dispatcher` table of the same database, while it takes calls; 0 (the default): none.
    pub dispatcher_set: u32,
}

impl StorageConfig {
    /// This node's name: `node`, else the host name, else `confab`.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| valid_node_name(h))
                .unwrap_or_else(|| "confab".to_owned())
        })
    }
}

/// A node name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub(crate) fn valid_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./confab-data"),
            records_retention_days: 365,
            url: None,
            node: None,
            lease_secs: 15,
            dispatcher_set: 0,
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

#[cfg(test)]
mod tests {
    use super::MixerRealtime;
    use crate::config::Config;

    #[test]
    fn mixer_realtime_is_auto_unless_told() {
        assert_eq!(Config::default().mixer.realtime, MixerRealtime::Auto);
        for (text, want) in [
            ("auto", MixerRealtime::Auto),
            ("off", MixerRealtime::Off),
            ("required", MixerRealtime::Required),
        ] {
            let c = Config::from_toml(&format!("[mixer]\nrealtime = \"{text}\"\n"));
            assert_eq!(c.map(|c| c.mixer.realtime), Ok(want), "{text}");
        }
    }

    #[test]
    fn a_bad_mixer_realtime_is_named_with_its_line_and_choices() {
        let err = Config::from_toml("[mixer]\nthreads = 2\nrealtime = \"fifo\"\n")
            .expect_err("fifo is not a choice");
        assert_eq!(err.key.as_deref(), Some("mixer.realtime"));
        assert_eq!(err.line, Some(3));
        for choice in ["auto", "off", "required"] {
            assert!(err.message.contains(choice), "{}", err.message);
        }
        let err = Config::from_toml("[mixer]\nrealtime = true\n").expect_err("not a string");
        assert_eq!(err.key.as_deref(), Some("mixer.realtime"));
    }
}
