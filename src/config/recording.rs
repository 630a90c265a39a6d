//! `[recording]`: how long conference recordings (`<storage.data_dir>/recordings/`) are kept.

use serde::Deserialize;

/// `[recording]`
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Days a recording is kept (0: until deleted through the API).
    pub retention_days: u32,
    /// Bytes all recordings may take on disk (0: no budget); past it the oldest are deleted.
    pub max_bytes: u64,
}
