//! Conference recording: the mix as Ogg Opus (48 kHz mono, 32 kbit/s) with a JSON sidecar of
//! who joined, left and spoke when, in recording time.
//!
//! The mixer thread never waits on a disk: a recording conference's tick copies its mix frame
//! into one bounded queue, preallocated, shared by every recording ([`RecordingTap`]); a full
//! queue drops the frame and counts it (`confab_recording_dropped_frames_total`). One writer
//! thread for all recordings (`writer.rs`) resamples, encodes and writes Ogg pages, each a
//! second at most, so a `kill -9` leaves a file playable up to its last second. Files live in
//! `<storage.data_dir>/recordings/` as `{id}.opus` and `{id}.json` (`files.rs`).

mod files;
mod ogg;
mod recorder;
mod sidecar;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;

use crate::conference::{Event, State};

pub use files::{MAX_SCANNED, valid_id};
pub use recorder::{RecordError, Recorder, RecordingNotice, RecordingSettings};
pub use sidecar::{Interval, ParticipantTrack, RecordingMeta, RecordingState};

/// Largest mix frame: 20 ms at 48 kHz.
pub(crate) const FRAME_MAX: usize = 960;
/// Frames the queue holds (all recordings together): about 20 s of one recording, 2 MB,
/// allocated once when the writer starts.
pub(crate) const QUEUE_FRAMES: usize = 1024;

/// Frames dropped because the queue was full (the writer or the disk fell behind).
static DROPPED_FRAMES: AtomicU64 = AtomicU64::new(0);
/// Bytes of recordings on disk, as the last pruning pass found them.
static BYTES_KEPT: AtomicU64 = AtomicU64::new(0);

/// Recording frames dropped since the process started.
pub fn dropped_frames() -> u64 {
    DROPPED_FRAMES.load(Ordering::Relaxed)
}

/// Bytes the recordings directory held at the last pruning pass.
pub fn bytes_kept() -> u64 {
    BYTES_KEPT.load(Ordering::Relaxed)
}

/// One tick's mix, copied.
pub(crate) struct Frame {
    key: u64,
    /// The tick's index since the recording started (the writer fills gaps with silence).
    seq: u32,
    rate_hz: u32,
    len: u16,
    samples: [i16; FRAME_MAX],
}

/// What happened to a participant, for the sidecar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    Joined,
    Left,
    Talking(bool),
}

/// What the writer thread is sent. A frame travels by value: the queue's slots are allocated
/// once, and boxing it would allocate on the mixer thread every tick.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    Frame(Frame),
    Mark {
        key: u64,
        seq: u32,
        participant: u64,
        mark: Mark,
    },
    /// A recording whose files are open (sent before its tap is attached).
    Start(Box<writer::Session>),
    /// Participants present when the tap was attached, with their names.
    Present {
        key: u64,
        people: Vec<(u64, String, bool)>,
    },
    /// The tap is gone: close the files (`names` fills in names seen in the roster), or
    /// delete them (`discard`: the recording never began).
    Stop {
        key: u64,
        names: Vec<(u64, String)>,
        discard: bool,
    },
    Shutdown,
}

/// Whether a recording's tap is still in its conference (cleared when the tap is dropped: the
/// recording was stopped, or the conference ended).
#[derive(Debug, Default)]
pub(crate) struct Live {
    attached: AtomicBool,
}

impl Live {
    pub(crate) fn attached(&self) -> bool {
        self.attached.load(Ordering::Acquire)
    }
}

/// A conference's end of a recording, held by its mixer thread. Each tick it copies the mix
/// into the queue (never blocking, never allocating) and marks joins, leaves and speech.
pub struct RecordingTap {
    key: u64,
    queue: SyncSender<Msg>,
    live: Arc<Live>,
    seq: u32,
}

impl std::fmt::Debug for RecordingTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingTap")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl RecordingTap {
    pub(crate) fn new(key: u64, queue: SyncSender<Msg>, live: Arc<Live>) -> Self {
        live.attached.store(true, Ordering::Release);
        RecordingTap {
            key,
            queue,
            live,
            seq: 0,
        }
    }

    /// This tick's mix at `rate_hz` (20 ms of it).
    pub fn frame(&mut self, rate_hz: u32, samples: &[i16]) {
        let n = samples.len().min(FRAME_MAX);
        let mut frame = Frame {
            key: self.key,
            seq: self.seq,
            rate_hz,
            len: n as u16,
            samples: [0; FRAME_MAX],
        };
        frame.samples[..n].copy_from_slice(&samples[..n]);
        self.push(Msg::Frame(frame));
        self.seq = self.seq.wrapping_add(1);
    }

    /// A tick with nobody in the conference: 20 ms of silence.
    pub fn silence(&mut self) {
        self.frame(48_000, &[]);
    }

    /// Marks what the sidecar tells from a roster event (others are ignored).
    pub fn event(&mut self, event: &Event) {
        let (participant, mark) = match *event {
            Event::State {
                participant,
                state: State::Connected,
            } => (participant, Mark::Joined),
            Event::State {
                participant,
                state: State::Disconnected(_),
            } => (participant, Mark::Left),
            Event::Speaking {
                participant,
                speaking,
            } => (participant, Mark::Talking(speaking)),
            _ => return,
        };
        self.push(Msg::Mark {
            key: self.key,
            seq: self.seq,
            participant: participant.0,
            mark,
        });
    }

    /// A tap whose queue (`capacity` messages) no writer reads, for code that drives a
    /// conference itself (tests): [`TapQueue::frames`] counts what it was given.
    pub fn unwritten(capacity: usize) -> (RecordingTap, TapQueue) {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let tap = RecordingTap::new(0, tx, Arc::default());
        (tap, TapQueue(rx))
    }

    fn push(&self, msg: Msg) {
        if self.queue.try_send(msg).is_err() {
            DROPPED_FRAMES.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The far end of [`RecordingTap::unwritten`].
pub struct TapQueue(std::sync::mpsc::Receiver<Msg>);

impl TapQueue {
    /// Frames queued since the last call (taken off the queue).
    pub fn frames(&self) -> usize {
        self.0
            .try_iter()
            .filter(|m| matches!(m, Msg::Frame(_)))
            .count()
    }

    /// The samples of the frames queued since the last look, one after another (taken off the
    /// queue): what a test hears of the recording.
    pub fn samples(&self) -> Vec<i16> {
        self.0
            .try_iter()
            .filter_map(|m| match m {
                Msg::Frame(f) => Some(f.samples[..usize::from(f.len).min(FRAME_MAX)].to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

impl Drop for RecordingTap {
    fn drop(&mut self) {
        self.live.attached.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
