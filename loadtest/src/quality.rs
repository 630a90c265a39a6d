//! The quality room: one talker playing recorded speech (confab-dsp's 10 s test file, looped)
//! and one listener, both recording while the run is measured, in a room of their own beside
//! the scenario's, so the audio crosses the bridge under the scenario's load. PESQ (ITU-T
//! P.862, python's `pesq` package) scores what the listener decoded against what the talker
//! sent: narrowband at 8 kHz for G.711, wideband at 16 kHz for G.722 and Opus (48 kHz audio is
//! brought down to 16 kHz first).

use std::process::Command;
use std::sync::{Arc, Mutex};

use confab_dsp::resample::Rate;

use crate::leg::{Clicks, Codec, Recording, SimLeg, Sockets, Voice, resample};

/// The two legs' recordings.
pub struct Room {
    codec: Codec,
    sent: Recording,
    heard: Recording,
    talker: Option<SimLeg>,
    listener: Option<SimLeg>,
}

impl Room {
    pub fn new(codec: Codec, sockets: &mut Sockets) -> anyhow::Result<Self> {
        let sent: Recording = Arc::new(Mutex::new(Vec::new()));
        let heard: Recording = Arc::new(Mutex::new(Vec::new()));
        let clicks = Arc::new(Clicks::default());
        let mut talker = SimLeg::new(
            codec,
            Voice::Recorded,
            false,
            clicks.clone(),
            false,
            0x0AB0_0001,
            sockets.take()?,
        )?;
        talker.recording = Some(sent.clone());
        let mut listener = SimLeg::new(
            codec,
            Voice::Silent,
            false,
            clicks,
            true,
            0x0AB0_0002,
            sockets.take()?,
        )?;
        listener.recording = Some(heard.clone());
        Ok(Room {
            codec,
            sent,
            heard,
            talker: Some(talker),
            listener: Some(listener),
        })
    }

    /// The talker and the listener, to join and run (once).
    pub fn legs(&mut self) -> anyhow::Result<[SimLeg; 2]> {
        match (self.talker.take(), self.listener.take()) {
            (Some(t), Some(l)) => Ok([t, l]),
            _ => Err(anyhow::anyhow!(
                "the quality room's legs were taken already"
            )),
        }
    }

    /// The PESQ score once the run is over; `None` (and why, on stderr) when python3 or its
    /// `pesq` package is missing or the recordings are too short.
    pub fn score(&self) -> Option<f64> {
        let take = |r: &Recording| r.lock().map(|v| v.clone()).unwrap_or_default();
        let (mut sent, mut heard) = (take(&self.sent), take(&self.heard));
        let (rate, mode) = match self.codec {
            Codec::Pcmu => (8000, "nb"),
            Codec::G722 => (16000, "wb"),
            Codec::Opus => {
                sent = resample(&sent, Rate::Hz48000, Rate::Hz16000);
                heard = resample(&heard, Rate::Hz48000, Rate::Hz16000);
                (16000, "wb")
            }
        };
        let n = sent.len().min(heard.len());
        if n < rate as usize * 3 {
            eprintln!("pesq: under 3 s recorded ({n} samples), no score");
            return None;
        }
        match pesq(rate, mode, &sent[..n], &heard[..n]) {
            Ok(score) => Some(score),
            Err(e) => {
                eprintln!("pesq: {e}");
                None
            }
        }
    }
}

const SCRIPT: &str = "
import sys, numpy as np
from pesq import pesq
ref = np.fromfile(sys.argv[1], dtype='<i2').astype(np.float32)
deg = np.fromfile(sys.argv[2], dtype='<i2').astype(np.float32)
print(pesq(int(sys.argv[3]), ref, deg, sys.argv[4]))
";

/// Scores `heard` against `sent` with python's `pesq`.
pub fn pesq(rate: u32, mode: &str, sent: &[i16], heard: &[i16]) -> anyhow::Result<f64> {
    let dir = std::env::temp_dir();
    let tag = format!("confab-pesq-{}-{rate}", std::process::id());
    let (ref_path, deg_path) = (
        dir.join(format!("{tag}-ref.s16")),
        dir.join(format!("{tag}-deg.s16")),
    );
    let bytes = |a: &[i16]| a.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(&ref_path, bytes(sent))?;
    std::fs::write(&deg_path, bytes(heard))?;
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&ref_path)
        .arg(&deg_path)
        .arg(rate.to_string())
        .arg(mode)
        .output();
    let _ = std::fs::remove_file(&ref_path);
    let _ = std::fs::remove_file(&deg_path);
    let out = out.map_err(|e| anyhow::anyhow!("cannot run python3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(anyhow::anyhow!(
            "python3 pesq failed (pip install pesq numpy?): {}",
            err.lines().last().unwrap_or("")
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("pesq printed {:?}", text.trim()))
}
