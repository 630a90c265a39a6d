//! The recording core without a mixer: ids, the retention plan, the sidecar's intervals, and
//! the writer thread fed by a tap as a conference would feed it (decoded back with ffmpeg).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::files::{self, Kept, plan_prune, valid_id};
use super::ogg::OggOpusWriter;
use super::sidecar::{Interval, RecordingMeta, RecordingState};
use super::writer::{self, PRE_SKIP, Retention, Session};
use super::{Live, Msg, RecordingTap};
use crate::conference::{DisconnectReason, Event, ParticipantId, State};

#[test]
fn ids_are_strict() {
    for ok in ["a", "1234-1700000000000-0a1b2c3d", "A_b-9", &"x".repeat(64)] {
        assert!(valid_id(ok), "{ok}");
    }
    for bad in [
        "",
        "..",
        "../x",
        "a/b",
        "a.b",
        "a\\b",
        "a%2Fb",
        "a b",
        "é",
        "a\0",
        &"x".repeat(65),
    ] {
        assert!(!valid_id(bad), "{bad:?}");
    }
    let id = files::new_id("1234", 1_700_000_000_000).unwrap();
    assert!(
        id.starts_with("1234-1700000000000-") && valid_id(&id),
        "{id}"
    );
}

fn kept(id: &str, started_at_ms: u64, bytes: u64, active: bool) -> Kept {
    Kept {
        id: id.into(),
        started_at_ms,
        bytes,
        active,
    }
}

#[test]
fn retention_deletes_the_expired_then_the_oldest_over_budget() {
    let day = 86_400_000;
    let now = 100 * day;
    let all = [
        kept("old", now - 10 * day, 100, false),
        kept("mid", now - 5 * day, 100, false),
        kept("new", now - day, 100, false),
        kept("live", now - 20 * day, 100, true),
    ];
    // Nothing set: nothing goes.
    assert!(plan_prune(&all, now, 0, 0).is_empty());
    // 7 days: the 10-day-old one (the active one stays, however old).
    assert_eq!(plan_prune(&all, now, 7, 0), ["old"]);
    // 250 bytes for 400: the oldest two that may go.
    assert_eq!(plan_prune(&all, now, 0, 250), ["old", "mid"]);
    // Both: expiry first, then the budget.
    assert_eq!(plan_prune(&all, now, 7, 300), ["old"]);
}

#[test]
fn speaking_intervals_close_on_leave_and_at_the_end() {
    let mut m = RecordingMeta::new("r".into(), "1234".into(), 0);
    m.joined(1, 0, Some("Ann".into()));
    m.talking(1, true, 100);
    m.talking(1, true, 200); // still the same interval
    m.talking(1, false, 500);
    m.talking(2, true, 600); // never seen joining: joined when first heard of
    m.left(2, 900);
    m.talking(1, true, 1000);
    let on_disk = m.snapshot(1200);
    assert_eq!(on_disk.participants[0].speaking.len(), 2);
    m.name(2, "Bob");
    m.finish(1500);
    assert_eq!(m.state, RecordingState::Complete);
    assert_eq!(m.duration_ms, 1500);
    let ann = &m.participants[0];
    assert_eq!(ann.name.as_deref(), Some("Ann"));
    assert_eq!(
        ann.speaking,
        [
            Interval {
                start_ms: 100,
                end_ms: 500
            },
            Interval {
                start_ms: 1000,
                end_ms: 1500
            }
        ]
    );
    let bob = &m.participants[1];
    assert_eq!((bob.joined_ms, bob.left_ms), (600, Some(900)));
    assert_eq!(bob.name.as_deref(), Some("Bob"));
    assert_eq!(
        bob.speaking,
        [Interval {
            start_ms: 600,
            end_ms: 900
        }]
    );
}

/// 48 kHz samples ffmpeg decodes from `path`.
fn decoded(path: &std::path::Path) -> Option<Vec<i16>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .ok()?;
    Some(
        out.stdout
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
    )
}

fn tone(rate: u32, freq: f32, n: usize, at: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = (at + i) as f32 / rate as f32;
            (8000.0 * (2.0 * std::f32::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

/// A tap fed 1 s of an 8 kHz mix, a dropped stretch, 1 s at 48 kHz, marks; dropped (as when
/// its conference ends): the writer fills the gap, closes the files within about a second,
/// and ffmpeg decodes the whole length.
#[test]
fn the_writer_closes_a_recording_whose_tap_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, rx) = std::sync::mpsc::sync_channel(super::QUEUE_FRAMES);
    let path = dir.path().to_owned();
    let thread =
        std::thread::spawn(move || writer::run(path, rx, Retention::default(), Default::default()));
    let id = "1234-1-00000000";
    let file = std::fs::File::create(files::audio_path(dir.path(), id)).unwrap();
    let live = Arc::new(Live::default());
    let mut tap = RecordingTap::new(9, queue.clone(), Arc::clone(&live));
    let session = Session {
        key: 9,
        meta: RecordingMeta::new(id.into(), "1234".into(), 1),
        ogg: OggOpusWriter::new(file, 9, PRE_SKIP, "confab").unwrap(),
        live,
    };
    queue.send(Msg::Start(Box::new(session))).unwrap();
    let who = ParticipantId(7);
    tap.event(&Event::State {
        participant: who,
        state: State::Connected,
    });
    tap.event(&Event::Speaking {
        participant: who,
        speaking: true,
    });
    for f in 0..50 {
        tap.frame(8_000, &tone(8_000, 440.0, 160, f * 160));
    }
    // 25 frames the queue "dropped": the tap counts ticks, the writer sees the gap.
    tap.seq += 25;
    for f in 0..50 {
        tap.frame(48_000, &tone(48_000, 1000.0, 960, f * 960));
    }
    tap.event(&Event::State {
        participant: who,
        state: State::Disconnected(DisconnectReason::Hangup),
    });
    drop(tap);
    let deadline = Instant::now() + Duration::from_secs(10);
    let meta = loop {
        if let Some(m) = files::read_meta(dir.path(), id)
            && m.state == RecordingState::Complete
        {
            break m;
        }
        assert!(Instant::now() < deadline, "the recording was never closed");
        std::thread::sleep(Duration::from_millis(50));
    };
    queue.send(Msg::Shutdown).unwrap();
    thread.join().unwrap();
    assert_eq!(meta.duration_ms, 125 * 20);
    assert_eq!(meta.dropped_frames, 25);
    let p = &meta.participants[0];
    assert_eq!((p.id, p.joined_ms, p.left_ms), (7, 0, Some(2500)));
    assert_eq!(
        p.speaking,
        [Interval {
            start_ms: 0,
            end_ms: 2500
        }]
    );
    let Some(pcm) = decoded(&files::audio_path(dir.path(), id)) else {
        eprintln!("SKIP the decode: no ffmpeg");
        return;
    };
    let expected = 125 * 960 - usize::from(PRE_SKIP);
    assert!(
        pcm.len().abs_diff(expected) <= 960,
        "{} samples for {expected}",
        pcm.len()
    );
    // The first second is the 440 Hz tone, the gap silence, the last second 1 kHz.
    let level = |from: usize, to: usize, f: f32| {
        confab_dsp::signal::tone_level_dbov(&pcm[from..to], 48_000, f)
    };
    assert!(
        level(9_600, 43_200, 440.0) > -30.0,
        "{}",
        level(9_600, 43_200, 440.0)
    );
    assert!(level(52_800, 62_400, 440.0) < -60.0);
    assert!(level(76_800, 110_000, 1000.0) > -30.0);
}

/// A file left unfinished with its sidecar saying `recording` (a killed bridge): the next
/// writer marks it `interrupted` with the length of its whole pages.
#[test]
fn a_recording_left_open_is_found_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let id = "1234-2-00000000";
    let file = std::fs::File::create(files::audio_path(dir.path(), id)).unwrap();
    let mut ogg = OggOpusWriter::new(file, 1, PRE_SKIP, "confab").unwrap();
    let mut enc = confab_dsp::opus::OpusEncoder::new(Default::default()).unwrap();
    let mut packet = [0u8; 1275];
    // 130 packets: two whole pages (2 s), 30 packets never written.
    for f in 0..130 {
        let n = enc
            .encode(&tone(48_000, 440.0, 960, f * 960), &mut packet)
            .unwrap();
        ogg.packet(&packet[..n], 960).unwrap();
    }
    let meta = RecordingMeta::new(id.into(), "1234".into(), 2);
    files::write_meta(dir.path(), &meta).unwrap();
    let done = RecordingMeta {
        state: RecordingState::Complete,
        ..RecordingMeta::new("1234-3-00000000".into(), "1234".into(), 3)
    };
    std::fs::write(files::audio_path(dir.path(), &done.id), b"x").unwrap();
    files::write_meta(dir.path(), &done).unwrap();

    assert_eq!(files::recover(dir.path(), PRE_SKIP), 1);
    let found = files::read_meta(dir.path(), id).unwrap();
    assert_eq!(found.state, RecordingState::Interrupted);
    assert_eq!(found.duration_ms, (100 * 960 - u64::from(PRE_SKIP)) / 48);
    let untouched = files::read_meta(dir.path(), &done.id).unwrap();
    assert_eq!(untouched.state, RecordingState::Complete);
    assert_eq!(files::recover(dir.path(), PRE_SKIP), 0);
}

/// A pruning pass on a directory: over the budget the oldest that is not being written goes,
/// both its files. (The gauge it sets is the process's, shared with other tests: not read.)
#[test]
fn pruning_deletes_the_oldest_files_over_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    for (id, started, size) in [("c-1-0", 1, 400), ("c-2-0", 2, 300), ("c-3-0", 3, 200)] {
        let meta = RecordingMeta {
            state: RecordingState::Complete,
            ..RecordingMeta::new(id.into(), "c".into(), started)
        };
        std::fs::write(files::audio_path(dir.path(), id), vec![0u8; size]).unwrap();
        files::write_meta(dir.path(), &meta).unwrap();
    }
    let retention = Retention {
        days: 0,
        max_bytes: 600,
    };
    // The oldest is being written: the next one goes instead, and 600 bytes are left.
    let gone = writer::prune_dir(dir.path(), |id| id == "c-1-0", retention);
    assert_eq!(gone, ["c-2-0"]);
    assert!(!files::audio_path(dir.path(), "c-2-0").exists());
    assert!(!files::meta_path(dir.path(), "c-2-0").exists());
    let left: Vec<String> = files::scan(dir.path()).into_iter().map(|m| m.id).collect();
    assert_eq!(left, ["c-3-0", "c-1-0"]);
}
