//! The small sections: `[metrics]`, `[mixer]`, `[storage]`, `[log]`.

use std::path::PathBuf;

use serde::Deserialize;

/// `[metrics]`
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Label per-conference series (`confab_conference_participants`, `…_mix_rate_hz`) with
    /// the meeting ID. Off by default: `/metrics` is not authenticated, and meeting IDs are
    /// what callers dial.
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
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig {
            threads: 0,
            max_talkers: 3,
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
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./confab-data"),
            records_retention_days: 365,
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
