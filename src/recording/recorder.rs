//! The recordings of a bridge: starting and stopping them in a conference, finding, reading
//! and deleting them. Made once at start (`serve`), shared by the API.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::ogg::OggOpusWriter;
use super::sidecar::RecordingMeta;
use super::writer::{self, PRE_SKIP, Retention, Session};
use super::{Live, Msg, QUEUE_FRAMES, RecordingTap, files};
use crate::engine::{Engine, EngineError};
use crate::mixer::CommandError;

/// Where recordings go and how long they stay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingSettings {
    /// `<storage.data_dir>/recordings`.
    pub dir: PathBuf,
    /// Days a recording is kept (0: until deleted).
    pub retention_days: u32,
    /// Bytes all recordings may take (0: no budget); the oldest go first.
    pub max_bytes: u64,
}

/// Why a recording operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("no such conference")]
    NoConference,
    #[error("the conference is being recorded already")]
    AlreadyRecording,
    #[error("the conference is not being recorded")]
    NotRecording,
    #[error("no such recording")]
    NoRecording,
    #[error("the recording is still being written")]
    InProgress,
    #[error("recording unavailable: {0}")]
    Unavailable(String),
}

impl From<EngineError> for RecordError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Command(CommandError::NoConference) => RecordError::NoConference,
            other => RecordError::Unavailable(other.to_string()),
        }
    }
}

/// A recording started, or closed (stopped, or its conference ended: the files are complete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingNotice {
    pub conference: String,
    pub id: String,
    /// `None` when it started; its length once closed.
    pub closed_ms: Option<u64>,
}

/// Told of each [`RecordingNotice`] (the API's event stream, webhooks), from API and writer
/// threads.
pub(crate) type Listener = Arc<std::sync::RwLock<Vec<Box<dyn Fn(RecordingNotice) + Send + Sync>>>>;

pub(crate) fn tell(listener: &Listener, notice: RecordingNotice) {
    if let Ok(listeners) = listener.read() {
        for f in listeners.iter() {
            f(notice.clone());
        }
    }
}

/// A recording in progress.
struct Active {
    id: String,
    key: u64,
    live: Arc<Live>,
}

/// The bridge's recordings.
pub struct Recorder {
    settings: RecordingSettings,
    queue: SyncSender<Msg>,
    /// Recordings in progress by conference. Held across the engine calls of a start or a stop
    /// (API threads only, never the mixer's), so two of them do not cross.
    active: Mutex<HashMap<String, Active>>,
    next_key: AtomicU64,
    writer: Mutex<Option<JoinHandle<()>>>,
    listener: Listener,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("dir", &self.settings.dir)
            .finish_non_exhaustive()
    }
}

/// Now, in Unix milliseconds.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Recorder {
    /// Makes the directory and starts the writer thread (which prunes at once, then every
    /// minute).
    pub fn start(settings: RecordingSettings) -> std::io::Result<Recorder> {
        std::fs::create_dir_all(&settings.dir)?;
        // Before any recording opens: what says `recording` now was left by a bridge that
        // stopped without closing it.
        let recovered = files::recover(&settings.dir, PRE_SKIP);
        if recovered > 0 {
            tracing::warn!(
                recordings = recovered,
                "recordings left open by a bridge that stopped without closing them: marked interrupted"
            );
        }
        let (queue, rx) = std::sync::mpsc::sync_channel(QUEUE_FRAMES);
        let dir = settings.dir.clone();
        let retention = retention(&settings);
        let listener: Listener = Arc::default();
        let told = Arc::clone(&listener);
        let writer = std::thread::Builder::new()
            .name("confab-recorder".into())
            .spawn(move || writer::run(dir, rx, retention, told))?;
        Ok(Recorder {
            settings,
            queue,
            active: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(1),
            writer: Mutex::new(Some(writer)),
            listener,
        })
    }

    /// Tells `f` (besides those told already) of every recording started and closed from
    /// now on.
    pub fn on_change(&self, f: impl Fn(RecordingNotice) + Send + Sync + 'static) {
        if let Ok(mut listeners) = self.listener.write() {
            listeners.push(Box::new(f));
        }
    }

    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }

    fn active(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Active>>, RecordError> {
        let mut map = self
            .active
            .lock()
            .map_err(|_| RecordError::Unavailable("poisoned".into()))?;
        // A conference that ended took its tap with it: that recording is over.
        map.retain(|_, a| a.live.attached());
        Ok(map)
    }

    /// Starts recording `conference`'s mix. This is the call for anything that records
    /// without the API (an `auto_record` setting, say). Blocking (it creates the files and
    /// waits for the mixer thread): for a blocking thread, never one of the runtime's.
    pub fn start_recording(
        &self,
        engine: &Engine,
        conference: &str,
    ) -> Result<RecordingMeta, RecordError> {
        let mut active = self.active()?;
        // Asked first: an unknown conference is told apart from one recorded already.
        engine.roster(conference).wait()?;
        if active.contains_key(conference) {
            return Err(RecordError::AlreadyRecording);
        }
        let started = unix_ms();
        let unavailable = |e: std::io::Error| RecordError::Unavailable(e.to_string());
        let id = files::new_id(conference, started)
            .ok_or_else(|| RecordError::Unavailable("no id".into()))?;
        std::fs::create_dir_all(&self.settings.dir).map_err(unavailable)?;
        let file = std::fs::File::create_new(files::audio_path(&self.settings.dir, &id))
            .map_err(unavailable)?;
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let ogg = OggOpusWriter::new(file, key as u32, PRE_SKIP, "confab").map_err(unavailable)?;
        let meta = RecordingMeta::new(id.clone(), conference.to_owned(), started);
        let live = Arc::new(Live::default());
        let tap = RecordingTap::new(key, self.queue.clone(), Arc::clone(&live));
        let session = Session {
            key,
            meta: meta.clone(),
            ogg,
            live: Arc::clone(&live),
        };
        self.queue
            .send(Msg::Start(Box::new(session)))
            .map_err(|_| RecordError::Unavailable("the recording writer is gone".into()))?;
        if let Err(e) = engine.set_recording(conference, Some(tap)).wait() {
            // The conference ended in between: no recording of it.
            let _ = self.queue.send(Msg::Stop {
                key,
                names: Vec::new(),
                discard: true,
            });
            return Err(e.into());
        }
        if let Ok(roster) = engine.roster(conference).wait() {
            let people = roster
                .into_iter()
                .filter(|p| p.state == crate::conference::State::Connected)
                .map(|p| (p.id.0, p.display_name, p.speaking))
                .collect();
            let _ = self.queue.send(Msg::Present { key, people });
        }
        tracing::info!(recording = %id, conference, "recording started");
        tell(
            &self.listener,
            RecordingNotice {
                conference: conference.to_owned(),
                id: id.clone(),
                closed_ms: None,
            },
        );
        active.insert(conference.to_owned(), Active { id, key, live });
        Ok(meta)
    }

    /// Stops recording `conference`; answers the recording's id. Blocking, like
    /// [`Recorder::start_recording`].
    pub fn stop_recording(&self, engine: &Engine, conference: &str) -> Result<String, RecordError> {
        let mut active = self.active()?;
        let roster = engine.roster(conference).wait()?;
        let Some(a) = active.remove(conference) else {
            return Err(RecordError::NotRecording);
        };
        // The tap comes back and is dropped here; the frames it sent are ahead of the stop.
        let _ = engine.set_recording(conference, None).wait();
        let names = roster
            .into_iter()
            .map(|p| (p.id.0, p.display_name))
            .collect();
        let _ = self.queue.send(Msg::Stop {
            key: a.key,
            names,
            discard: false,
        });
        tracing::info!(recording = %a.id, conference, "recording stopped");
        Ok(a.id)
    }

    /// The recording of `conference` in progress, if any.
    pub fn recording_of(&self, conference: &str) -> Option<String> {
        self.active().ok()?.get(conference).map(|a| a.id.clone())
    }

    /// Recordings, newest first, of one conference or all (at most [`files::MAX_SCANNED`]
    /// directory entries are looked at).
    pub fn list(&self, conference: Option<&str>) -> Vec<RecordingMeta> {
        let mut all = files::scan(&self.settings.dir);
        if let Some(c) = conference {
            all.retain(|m| m.conference == c);
        }
        all
    }

    pub fn get(&self, id: &str) -> Result<RecordingMeta, RecordError> {
        files::read_meta(&self.settings.dir, id).ok_or(RecordError::NoRecording)
    }

    /// The audio file of a recording that exists.
    pub fn audio(&self, id: &str) -> Result<PathBuf, RecordError> {
        if !files::valid_id(id) {
            return Err(RecordError::NoRecording);
        }
        let path = files::audio_path(&self.settings.dir, id);
        if path.is_file() {
            Ok(path)
        } else {
            Err(RecordError::NoRecording)
        }
    }

    /// Deletes a recording that is not being written.
    pub fn delete(&self, id: &str) -> Result<(), RecordError> {
        let active = self.active()?;
        if !files::valid_id(id) {
            return Err(RecordError::NoRecording);
        }
        if active.values().any(|a| a.id == id) {
            return Err(RecordError::InProgress);
        }
        if files::delete(&self.settings.dir, id) {
            Ok(())
        } else {
            Err(RecordError::NoRecording)
        }
    }

    /// A pruning pass now (the writer makes one a minute); answers the ids deleted.
    pub fn prune(&self) -> Vec<String> {
        let active: Vec<String> = self
            .active()
            .map(|m| m.values().map(|a| a.id.clone()).collect())
            .unwrap_or_default();
        writer::prune_dir(
            &self.settings.dir,
            |id| active.iter().any(|a| a == id),
            retention(&self.settings),
        )
    }

    /// Closes every recording and stops the writer.
    pub fn shutdown(&self) {
        let _ = self.queue.send(Msg::Shutdown);
        if let Some(t) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = t.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn retention(s: &RecordingSettings) -> Retention {
    Retention {
        days: s.retention_days,
        max_bytes: s.max_bytes,
    }
}
