//! The writer thread, one for all recordings: takes mix frames off the queue, brings them to
//! 48 kHz, encodes them as Opus and writes Ogg pages (a page a second at most, so a killed
//! process loses at most the last second); keeps each recording's sidecar and writes it every
//! few seconds and at the end; prunes old recordings (`files::plan_prune`) once a minute.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use confab_dsp::opus::{OpusEncoder, OpusSettings};
use confab_dsp::resample::{Rate, Resampler};

use super::files;
use super::ogg::OggOpusWriter;
use super::recorder::{Listener, RecordingNotice, tell};
use super::sidecar::RecordingMeta;
use super::{FRAME_MAX, Live, Mark, Msg};

/// libopus' lookahead at 48 kHz (2.5 ms + 4 ms): the samples a player skips at the start.
pub(crate) const PRE_SKIP: u16 = 312;
/// Encoded bitrate (bits per second).
const BITRATE: u32 = 32_000;
/// Missing frames written as silence at most per gap (a longer gap is a stalled mixer: the
/// recording just goes on).
const MAX_GAP: u32 = 250;
/// How often sidecars of open recordings are written.
const SIDECAR_EVERY: Duration = Duration::from_secs(5);
/// How often old recordings are pruned.
pub(crate) const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// A recording whose files are open, handed to the writer.
pub(crate) struct Session {
    pub key: u64,
    pub meta: RecordingMeta,
    pub ogg: OggOpusWriter<File>,
    pub live: Arc<Live>,
}

/// Retention, for the pruning pass.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Retention {
    pub days: u32,
    pub max_bytes: u64,
}

struct Open {
    session: Session,
    encoder: OpusEncoder,
    /// To 48 kHz from the mix's rate, made when the rate is first seen.
    resampler: Option<(u32, Resampler)>,
    next_seq: u32,
    sidecar_at: Instant,
}

impl Open {
    fn now_ms(&self) -> u64 {
        u64::from(self.next_seq) * 20
    }
}

pub(crate) fn run(dir: PathBuf, queue: Receiver<Msg>, retention: Retention, listener: Listener) {
    let mut open: HashMap<u64, Open> = HashMap::new();
    let mut packet = [0u8; 1275];
    let mut pcm = [0i16; FRAME_MAX];
    let mut housekeeping = Instant::now();
    let mut pruned = Instant::now();
    prune(&dir, &open, retention);
    loop {
        match queue.recv_timeout(Duration::from_millis(250)) {
            Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(msg) => handle(&dir, msg, &mut open, &mut packet, &mut pcm, &listener),
            Err(RecvTimeoutError::Timeout) => {}
        }
        if housekeeping.elapsed() < Duration::from_secs(1) {
            continue;
        }
        housekeeping = Instant::now();
        // Taps gone (stopped, conference ended): what they sent is in the queue before the
        // flag was seen, so the queue is drained before their files are closed.
        let orphans: Vec<u64> = open
            .iter()
            .filter(|(_, o)| !o.session.live.attached())
            .map(|(k, _)| *k)
            .collect();
        if !orphans.is_empty() {
            loop {
                match queue.try_recv() {
                    Ok(Msg::Shutdown) | Err(TryRecvError::Disconnected) => break,
                    Ok(msg) => handle(&dir, msg, &mut open, &mut packet, &mut pcm, &listener),
                    Err(TryRecvError::Empty) => break,
                }
            }
            for key in orphans {
                if let Some(o) = open.remove(&key) {
                    close(&dir, o, &[], &listener);
                }
            }
        }
        for o in open.values_mut() {
            if o.sidecar_at.elapsed() >= SIDECAR_EVERY {
                o.sidecar_at = Instant::now();
                write_sidecar(&dir, o);
            }
        }
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = Instant::now();
            prune(&dir, &open, retention);
        }
    }
    for (_, o) in open.drain() {
        close(&dir, o, &[], &listener);
    }
}

fn handle(
    dir: &std::path::Path,
    msg: Msg,
    open: &mut HashMap<u64, Open>,
    packet: &mut [u8; 1275],
    pcm: &mut [i16; FRAME_MAX],
    listener: &Listener,
) {
    match msg {
        Msg::Start(session) => {
            let encoder = OpusEncoder::new(OpusSettings {
                bitrate: BITRATE,
                ..OpusSettings::default()
            });
            match encoder {
                Ok(encoder) => {
                    let key = session.key;
                    let mut o = Open {
                        session: *session,
                        encoder,
                        resampler: None,
                        next_seq: 0,
                        sidecar_at: Instant::now(),
                    };
                    write_sidecar(dir, &mut o);
                    open.insert(key, o);
                }
                Err(e) => tracing::error!(error = %e, "recording not started: no Opus encoder"),
            }
        }
        Msg::Frame(frame) => {
            let Some(o) = open.get_mut(&frame.key) else {
                return;
            };
            if frame.seq < o.next_seq {
                return;
            }
            // Frames the queue dropped: silence in their place, so times stay true.
            let gap = (frame.seq - o.next_seq).min(MAX_GAP);
            if gap > 0 {
                o.session.meta.dropped_frames += u64::from(gap);
                pcm.fill(0);
                for _ in 0..gap {
                    encode(o, &pcm[..], packet);
                }
            }
            o.next_seq = frame.seq;
            let n = usize::from(frame.len).min(FRAME_MAX);
            to_48k(o, frame.rate_hz, &frame.samples[..n], pcm);
            encode(o, &pcm[..], packet);
            o.next_seq = frame.seq.wrapping_add(1);
        }
        Msg::Mark {
            key,
            seq,
            participant,
            mark,
        } => {
            let Some(o) = open.get_mut(&key) else {
                return;
            };
            let at = u64::from(seq) * 20;
            let meta = &mut o.session.meta;
            match mark {
                Mark::Joined => meta.joined(participant, at, None),
                Mark::Left => meta.left(participant, at),
                Mark::Talking(on) => meta.talking(participant, on, at),
            }
        }
        Msg::Present { key, people } => {
            if let Some(o) = open.get_mut(&key) {
                let at = o.now_ms();
                for (id, name, speaking) in people {
                    o.session.meta.joined(id, at, Some(name));
                    if speaking {
                        o.session.meta.talking(id, true, at);
                    }
                }
            }
        }
        Msg::Stop {
            key,
            names,
            discard,
        } => {
            // A recording that never began is not told of.
            let none = Listener::default();
            if let Some(o) = open.remove(&key) {
                let id = o.session.meta.id.clone();
                close(dir, o, &names, if discard { &none } else { listener });
                if discard {
                    files::delete(dir, &id);
                }
            }
        }
        Msg::Shutdown => {}
    }
}

/// The frame at 48 kHz into `out` (960 samples); a rate with no resampler is silence.
fn to_48k(o: &mut Open, rate_hz: u32, input: &[i16], out: &mut [i16; FRAME_MAX]) {
    out.fill(0);
    if rate_hz == 48_000 || input.is_empty() {
        out[..input.len()].copy_from_slice(input);
        return;
    }
    let from = match rate_hz {
        8_000 => Rate::Hz8000,
        16_000 => Rate::Hz16000,
        _ => return,
    };
    if o.resampler.as_ref().is_none_or(|(r, _)| *r != rate_hz) {
        o.resampler = Resampler::new(from, Rate::Hz48000)
            .ok()
            .map(|r| (rate_hz, r));
    }
    if let Some((_, r)) = o.resampler.as_mut()
        && r.process(input, out).is_err()
    {
        out.fill(0);
    }
}

fn encode(o: &mut Open, pcm: &[i16], packet: &mut [u8; 1275]) {
    match o.encoder.encode(pcm, packet) {
        Ok(n) => {
            if let Err(e) = o.session.ogg.packet(&packet[..n], 960) {
                tracing::warn!(error = %e, recording = %o.session.meta.id, "recording write failed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "recording encode failed"),
    }
}

fn write_sidecar(dir: &std::path::Path, o: &mut Open) {
    let snapshot = o.session.meta.snapshot(o.now_ms());
    if let Err(e) = files::write_meta(dir, &snapshot) {
        tracing::warn!(error = %e, recording = %snapshot.id, "recording sidecar not written");
    }
}

fn close(dir: &std::path::Path, mut o: Open, names: &[(u64, String)], listener: &Listener) {
    let at = o.now_ms();
    for (id, name) in names {
        o.session.meta.name(*id, name);
    }
    o.session.meta.finish(at);
    let Session { ogg, meta, .. } = o.session;
    if let Err(e) = ogg.finish() {
        tracing::warn!(error = %e, recording = %meta.id, "recording not closed cleanly");
    }
    if let Err(e) = files::write_meta(dir, &meta) {
        tracing::warn!(error = %e, recording = %meta.id, "recording sidecar not written");
    }
    tracing::info!(recording = %meta.id, conference = %meta.conference, duration_ms = at, "recording closed");
    tell(
        listener,
        RecordingNotice {
            conference: meta.conference,
            id: meta.id,
            closed_ms: Some(at),
        },
    );
}

fn prune(dir: &std::path::Path, open: &HashMap<u64, Open>, retention: Retention) {
    prune_dir(
        dir,
        |id| open.values().any(|o| o.session.meta.id == id),
        retention,
    );
}

/// Deletes what the retention says (never a recording `active` names) and sets the bytes
/// gauge to what is left.
pub(crate) fn prune_dir(
    dir: &std::path::Path,
    active: impl Fn(&str) -> bool,
    retention: Retention,
) -> Vec<String> {
    let kept: Vec<files::Kept> = files::scan(dir)
        .into_iter()
        .map(|m| files::Kept {
            active: active(&m.id),
            id: m.id,
            started_at_ms: m.started_at_ms,
            bytes: m.bytes,
        })
        .collect();
    let now_ms = super::recorder::unix_ms();
    let gone = files::plan_prune(&kept, now_ms, retention.days, retention.max_bytes);
    let mut total: u64 = kept.iter().map(|k| k.bytes).sum();
    for k in kept.iter().filter(|k| gone.contains(&k.id)) {
        if files::delete(dir, &k.id) {
            total = total.saturating_sub(k.bytes);
            tracing::info!(recording = %k.id, "recording deleted by retention");
        }
    }
    super::BYTES_KEPT.store(total, Ordering::Relaxed);
    gone
}
