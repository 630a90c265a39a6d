//! The recordings directory: `{id}.opus` and `{id}.json` side by side. Ids are checked before
//! any path is made of them; listing scans the directory, bounded.

use std::path::{Path, PathBuf};

use super::sidecar::RecordingMeta;

/// Longest recording id.
pub(crate) const MAX_ID: usize = 64;
/// Directory entries a listing or a pruning pass looks at, at most: a directory holding more
/// shows (and prunes) only the first this many the file system hands out.
pub const MAX_SCANNED: usize = 10_000;

/// Whether `id` may name a recording: 1 to 64 of `[A-Za-z0-9_-]` (so no path separator, no
/// dot, nothing to decode).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A new id: the conference, the start time (Unix ms) and 4 random bytes.
pub(crate) fn new_id(conference: &str, started_ms: u64) -> Option<String> {
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).ok()?;
    let id = format!(
        "{conference}-{started_ms}-{:08x}",
        u32::from_be_bytes(random)
    );
    valid_id(&id).then_some(id)
}

pub(crate) fn audio_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.opus"))
}

pub(crate) fn meta_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Writes the sidecar whole: to a temporary file, then renamed over the old one (a reader or
/// a crash never sees half of it).
pub(crate) fn write_meta(dir: &Path, meta: &RecordingMeta) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{}.json.tmp", meta.id));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, meta_path(dir, &meta.id))
}

/// A recording's sidecar with `bytes` from its audio file; `None` when either is missing or
/// the sidecar cannot be read.
pub(crate) fn read_meta(dir: &Path, id: &str) -> Option<RecordingMeta> {
    if !valid_id(id) {
        return None;
    }
    let text = std::fs::read(meta_path(dir, id)).ok()?;
    let mut meta: RecordingMeta = serde_json::from_slice(&text).ok()?;
    if meta.id != id {
        return None;
    }
    meta.bytes = std::fs::metadata(audio_path(dir, id)).ok()?.len();
    Some(meta)
}

/// Every recording in `dir` (the first [`MAX_SCANNED`] entries looked at), newest first.
pub(crate) fn scan(dir: &Path) -> Vec<RecordingMeta> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<RecordingMeta> = entries
        .take(MAX_SCANNED)
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let id = name.to_str()?.strip_suffix(".json")?.to_owned();
            read_meta(dir, &id)
        })
        .collect();
    found.sort_by(|a, b| {
        b.started_at_ms
            .cmp(&a.started_at_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    found
}

/// The granule position (48 kHz samples, pre-skip included) of the last Ogg page in `path`,
/// looked for in its last 64 kB.
pub(crate) fn last_granule(path: &Path) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    let from = size.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut tail = Vec::with_capacity((size - from) as usize);
    file.read_to_end(&mut tail).ok()?;
    let at = tail.windows(4).rposition(|w| w == b"OggS")?;
    let granule = tail.get(at + 6..at + 14)?;
    Some(u64::from_le_bytes(granule.try_into().ok()?))
}

/// Recordings a bridge left `recording` when it stopped without closing them (none is open
/// when this runs, at the writer's start): marked `interrupted`, with the length their audio
/// has. Answers how many.
pub(crate) fn recover(dir: &Path, pre_skip: u16) -> usize {
    let mut n = 0;
    for mut meta in scan(dir) {
        if meta.state != super::RecordingState::Recording {
            continue;
        }
        let samples = last_granule(&audio_path(dir, &meta.id)).unwrap_or(0);
        meta.duration_ms = samples.saturating_sub(u64::from(pre_skip)) / 48;
        meta.state = super::RecordingState::Interrupted;
        meta.bytes = 0;
        if write_meta(dir, &meta).is_ok() {
            n += 1;
        }
    }
    n
}

/// Deletes a recording's files; false when it had none.
pub(crate) fn delete(dir: &Path, id: &str) -> bool {
    if !valid_id(id) {
        return false;
    }
    let audio = std::fs::remove_file(audio_path(dir, id)).is_ok();
    let meta = std::fs::remove_file(meta_path(dir, id)).is_ok();
    audio || meta
}

/// What a pruning pass looks at of one recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Kept {
    pub id: String,
    pub started_at_ms: u64,
    pub bytes: u64,
    /// Being written: never pruned.
    pub active: bool,
}

/// Which recordings to delete: those started more than `retention_days` before `now_ms`
/// (0 keeps them), then the oldest until the rest fit in `max_bytes` (0: no budget). Ones
/// being written are never chosen (they still count against the budget).
pub(crate) fn plan_prune(
    kept: &[Kept],
    now_ms: u64,
    retention_days: u32,
    max_bytes: u64,
) -> Vec<String> {
    let mut by_age: Vec<&Kept> = kept.iter().collect();
    by_age.sort_by(|a, b| {
        a.started_at_ms
            .cmp(&b.started_at_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut total: u64 = kept.iter().map(|k| k.bytes).sum();
    let horizon =
        (retention_days > 0).then(|| now_ms.saturating_sub(u64::from(retention_days) * 86_400_000));
    let mut gone = Vec::new();
    for k in by_age {
        if k.active {
            continue;
        }
        let expired = horizon.is_some_and(|h| k.started_at_ms < h);
        let over = max_bytes > 0 && total > max_bytes;
        if expired || over {
            total = total.saturating_sub(k.bytes);
            gone.push(k.id.clone());
        }
    }
    gone
}
