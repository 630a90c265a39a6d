//! The jitter buffer of one leg: a sans-I/O state machine fed with packets and the time they
//! arrived, and asked for the next packet once per frame the leg must play.
//!
//! - Packets are kept by sequence number in a fixed ring of slots whose payload buffers are
//!   reused, so steady state allocates nothing.
//! - Playout starts once the buffer holds the target delay. The target follows the measured
//!   interarrival jitter (RFC 3550, A.8) between one frame and a hard cap (default 200 ms).
//! - Duplicates and packets older than the playout point are dropped; a missing packet is
//!   reported as [`Playout::Lost`] so the caller conceals it (Opus FEC/PLC, dsp PLC).
//! - Sender clock drift shows as a depth that creeps. In silence ([`JitterBuffer::pop`]'s
//!   `silent`) the buffer corrects it itself: above the target it skips a packet, below it
//!   asks for one concealed frame. While audio plays it says what it needs
//!   ([`JitterBuffer::pressure`]) and the caller time-stretches the decoded audio by a pitch
//!   period ([`JitterBuffer::stretched_audio`] when done), which is not heard as a skip or a
//!   hold would be. Above the hard cap, or when a large excess stays for a second (audio that
//!   cannot be stretched: noise, a tone that is not periodic), it skips regardless.
//! - The depth it judges is what it holds plus what the caller decoded and has not played
//!   yet ([`JitterBuffer::set_held`]).
//! - A new SSRC or a jump in sequence or timestamp restarts the buffer.

use std::time::{Duration, Instant};

/// Settings of a jitter buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitterSettings {
    /// RTP clock rate of the payload (8000 for G.711 and G.722, 48000 for Opus).
    pub clock_rate: u32,
    /// Duration of one playout frame.
    pub frame: Duration,
    /// Largest delay the buffer may hold.
    pub max_delay: Duration,
}

impl JitterSettings {
    pub fn new(clock_rate: u32) -> Self {
        JitterSettings {
            clock_rate,
            frame: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        }
    }
}

/// One RTP packet as the jitter buffer sees it.
#[derive(Clone, Copy, Debug)]
pub struct Arrival<'a> {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
    pub payload: &'a [u8],
}

/// What became of an inserted packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// Stored for playout.
    Stored,
    /// Stored, after the buffer restarted (new SSRC or a jump).
    Restarted,
    /// Already there.
    Duplicate,
    /// Its playout time has passed.
    TooLate,
    /// Further ahead than the buffer holds; dropped.
    TooEarly,
}

/// What the leg plays next.
#[derive(Debug, PartialEq, Eq)]
pub enum Playout<'a> {
    /// Not started (empty or still filling to the target): play silence.
    Waiting,
    /// The next packet's payload (decode it).
    Packet { payload: &'a [u8], timestamp: u32 },
    /// The next packet is missing: conceal one packet's worth.
    Lost,
    /// Play one concealed frame without consuming a packet (the buffer was running dry).
    Stretch,
}

/// What the depth asks of audio that is playing (not silent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pressure {
    /// About right.
    Steady,
    /// Deeper than the target for a while: shorten what plays (a pitch period).
    Shed,
    /// Shallower than the target for a while: lengthen what plays.
    Build,
}

/// Counters of one buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub stored: u64,
    pub duplicates: u64,
    pub too_late: u64,
    pub too_early: u64,
    pub lost: u64,
    pub skipped: u64,
    pub stretched: u64,
    pub restarts: u64,
    /// Times the caller shortened playing audio by a pitch period instead of a skip.
    pub accelerated: u64,
    /// Times the caller lengthened playing audio by a pitch period instead of a hold.
    pub expanded: u64,
}

const SLOTS: usize = 128;
/// Payload bytes each slot holds in the buffer's one shared block (20 ms of G.711 is 160, of
/// G.722 160, of Opus usually far less); a longer payload goes to the slot's own overflow.
/// One block per leg instead of one buffer per slot: the soak's heap profile showed the 128
/// small buffers of every leg, made on whichever thread took the join and freed on the mixer
/// thread, as most of what the allocator kept after legs left (fragments in many arenas).
const SLOT_BYTES: usize = 320;
/// Sequence or timestamp jumps beyond these restart the buffer.
const MAX_SEQUENCE_JUMP: u64 = 100;
/// The longest packet a sender may send, in milliseconds (Opus's longest; G.711 phones send
/// 10-60 ms). Two consecutive packets whose timestamps are further apart are not one long
/// packet but a pause: silence suppression and DTX keep sequence numbers contiguous while the
/// timestamp jumps by the length of the silence. Learning such a gap as the packet duration
/// once made the target exceed its own cap (a panic in `clamp`).
const MAX_PACKET_MS: u64 = 120;
const MAX_TIMESTAMP_JUMP_SECONDS: u64 = 10;
/// Frames concealed after running dry before the buffer waits for the sender again.
const MAX_DRY_FRAMES: u32 = 5;
/// Frames of consistent surplus or deficit before drift is corrected.
const DRIFT_PATIENCE: u32 = 25;
/// Frames of surplus of more than two frames, in silence, before one is skipped. A stalled
/// node or network hands the buffer a burst it does not need; skipping silence is inaudible,
/// so the delay is given back in the next pause instead of at one frame a second (a 500 ms
/// stall left 80 ms of extra delay five seconds later).
const SILENT_EXCESS_PATIENCE: u32 = 3;
/// Frames above the target by more than [`EXCESS_FRAMES`] before a packet is skipped even
/// while audio plays: a burst (a stalled sender, a stalled network) must not leave a talker who
/// never pauses (music, a tone, a monologue) that much later for the rest of the call. One
/// 20 ms skip a second at most, as PJMEDIA's progressive discard does.
const EXCESS_PATIENCE: u32 = 50;
/// Frames of delay beyond the target that count as excess: one frame more than the target,
/// held for a second, is no jitter (the target has three times the jitter in it already).
/// With three, a talker who never pauses kept up to 60 ms more than it needed (load tests:
/// dial-in p99 57-143 ms against 37-46 ms with one).
const EXCESS_FRAMES: u64 = 1;

#[derive(Debug)]
struct Slot {
    /// Extended sequence number held, if any.
    sequence: Option<u64>,
    timestamp: u64,
    /// Payload length: up to [`SLOT_BYTES`] it is the slot's part of the shared block,
    /// beyond that in `overflow`.
    len: usize,
    /// Empty (no allocation) until a payload longer than [`SLOT_BYTES`] comes.
    overflow: Vec<u8>,
}

/// A leg's jitter buffer.
#[derive(Debug)]
pub struct JitterBuffer {
    settings: JitterSettings,
    slots: Vec<Slot>,
    /// [`SLOTS`] × [`SLOT_BYTES`]: every slot's payload up to [`SLOT_BYTES`], allocated once.
    payloads: Box<[u8]>,
    ssrc: Option<u32>,
    /// Highest extended sequence number received.
    highest: Option<u64>,
    highest_timestamp: u64,
    /// Next extended sequence number to play, once playing.
    next: Option<u64>,
    /// Timestamp units of the last packet (its duration), for depth and gaps.
    packet_ticks: u64,
    /// RFC 3550 interarrival jitter, in timestamp units (scaled by 16 as in A.8).
    jitter16: u64,
    last_transit: Option<i64>,
    epoch: Option<Instant>,
    surplus_frames: u32,
    /// Frames in a row the depth has been more than `EXCESS_FRAMES` above the target.
    excess_frames: u32,
    deficit_frames: u32,
    dry_frames: u32,
    /// Decoded by the caller and not played yet, in timestamp units: part of the depth.
    held: u64,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(settings: JitterSettings) -> Self {
        let slots = (0..SLOTS)
            .map(|_| Slot {
                sequence: None,
                timestamp: 0,
                len: 0,
                overflow: Vec::new(),
            })
            .collect();
        JitterBuffer {
            settings,
            slots,
            payloads: vec![0; SLOTS * SLOT_BYTES].into_boxed_slice(),
            ssrc: None,
            highest: None,
            highest_timestamp: 0,
            next: None,
            packet_ticks: u64::from(settings.clock_rate) / 50,
            jitter16: 0,
            last_transit: None,
            epoch: None,
            surplus_frames: 0,
            excess_frames: 0,
            deficit_frames: 0,
            dry_frames: 0,
            held: 0,
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Interarrival jitter (RFC 3550) in timestamp units, as RTCP reports it.
    pub fn jitter_ticks(&self) -> u32 {
        (self.jitter16 >> 4).try_into().unwrap_or(u32::MAX)
    }

    fn ticks(&self, d: Duration) -> u64 {
        (d.as_micros() as u64 * u64::from(self.settings.clock_rate)) / 1_000_000
    }

    /// The delay the buffer aims for, in timestamp units: enough for three times the jitter,
    /// at least one frame (and one packet), at most the cap.
    pub fn target_ticks(&self) -> u64 {
        let frame = self.ticks(self.settings.frame).max(self.packet_ticks);
        let wanted = frame.saturating_add(3u64.saturating_mul(self.jitter16 >> 4));
        // The cap never falls below one frame, whatever the settings and the packets were.
        let cap = self.ticks(self.settings.max_delay).max(frame);
        wanted.clamp(frame, cap)
    }

    /// Audio buffered ahead of the playout point, in timestamp units.
    pub fn depth_ticks(&self) -> u64 {
        let Some(highest) = self.highest else {
            return 0;
        };
        let start = match self.next {
            Some(next) => match self.slot(next) {
                Some(slot) => slot.timestamp,
                // The next packet is missing: estimate where it would have been.
                None => self
                    .highest_timestamp
                    .saturating_sub(highest.saturating_sub(next) * self.packet_ticks),
            },
            // Not playing: only what is stored counts (nothing stored, nothing buffered).
            None => match self.oldest_timestamp() {
                Some(t) => t,
                None => return 0,
            },
        };
        (self.highest_timestamp + self.packet_ticks).saturating_sub(start)
    }

    /// Depth as a duration.
    pub fn depth(&self) -> Duration {
        Duration::from_micros(self.depth_ticks() * 1_000_000 / u64::from(self.settings.clock_rate))
    }

    fn slot(&self, sequence: u64) -> Option<&Slot> {
        let slot = &self.slots[(sequence % SLOTS as u64) as usize];
        (slot.sequence == Some(sequence)).then_some(slot)
    }

    /// The payload held in slot `index`.
    fn payload(&self, index: usize) -> &[u8] {
        let slot = &self.slots[index];
        if slot.len <= SLOT_BYTES {
            &self.payloads[index * SLOT_BYTES..][..slot.len]
        } else {
            &slot.overflow
        }
    }

    fn oldest_timestamp(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter(|s| s.sequence.is_some())
            .map(|s| s.timestamp)
            .min()
    }

    fn restart(&mut self) {
        for slot in &mut self.slots {
            slot.sequence = None;
        }
        self.highest = None;
        self.next = None;
        self.last_transit = None;
        self.jitter16 = 0;
        self.surplus_frames = 0;
        self.excess_frames = 0;
        self.deficit_frames = 0;
    }

    /// Extends a 16-bit sequence number (or 32-bit timestamp) next to a reference.
    fn extend(value: u64, bits: u32, reference: u64) -> u64 {
        let cycle = 1u64 << bits;
        let base = reference & !(cycle - 1);
        let candidates = [base.wrapping_sub(cycle), base, base + cycle];
        candidates
            .into_iter()
            .map(|b| b.wrapping_add(value))
            .filter(|c| *c < u64::MAX / 2)
            .min_by_key(|c| c.abs_diff(reference))
            .unwrap_or(value)
    }

    /// Takes a packet that arrived at `now`.
    pub fn insert(&mut self, now: Instant, packet: Arrival<'_>) -> Insert {
        let mut restarted = false;
        if self.ssrc != Some(packet.ssrc) {
            if self.ssrc.is_some() {
                restarted = true;
            }
            self.ssrc = Some(packet.ssrc);
            self.restart();
        }
        // Offsets of one cycle keep extended values away from zero.
        let (sequence, timestamp) = match self.highest {
            None => (
                (1 << 16) + u64::from(packet.sequence),
                (1 << 32) + u64::from(packet.timestamp),
            ),
            Some(highest) => (
                Self::extend(u64::from(packet.sequence), 16, highest),
                Self::extend(u64::from(packet.timestamp), 32, self.highest_timestamp),
            ),
        };
        if let Some(highest) = self.highest {
            let max_ts_jump = MAX_TIMESTAMP_JUMP_SECONDS * u64::from(self.settings.clock_rate);
            if sequence.abs_diff(highest) > MAX_SEQUENCE_JUMP
                || timestamp.abs_diff(self.highest_timestamp) > max_ts_jump
            {
                self.restart();
                restarted = true;
                return self.insert_fresh(now, packet, restarted);
            }
        }
        if self.highest.is_none() {
            return self.insert_fresh(now, packet, restarted);
        }
        self.update_jitter(now, timestamp);
        if let Some(next) = self.next
            && sequence < next
        {
            self.stats.too_late += 1;
            return Insert::TooLate;
        }
        let floor = self.next.unwrap_or_else(|| {
            self.highest
                .unwrap_or(sequence)
                .saturating_sub(SLOTS as u64 / 2)
        });
        if sequence >= floor + SLOTS as u64 {
            self.stats.too_early += 1;
            return Insert::TooEarly;
        }
        if self.slot(sequence).is_some() {
            self.stats.duplicates += 1;
            return Insert::Duplicate;
        }
        self.store(sequence, timestamp, packet.payload);
        if restarted {
            Insert::Restarted
        } else {
            Insert::Stored
        }
    }

    fn insert_fresh(&mut self, now: Instant, packet: Arrival<'_>, restarted: bool) -> Insert {
        if restarted {
            self.stats.restarts += 1;
        }
        let sequence = (1 << 16) + u64::from(packet.sequence);
        let timestamp = (1 << 32) + u64::from(packet.timestamp);
        self.highest = None;
        self.update_jitter(now, timestamp);
        self.store(sequence, timestamp, packet.payload);
        if restarted {
            Insert::Restarted
        } else {
            Insert::Stored
        }
    }

    fn store(&mut self, sequence: u64, timestamp: u64, payload: &[u8]) {
        match self.highest {
            Some(h) if sequence <= h => {}
            Some(h) => {
                // Learn the packet duration from consecutive packets.
                let longest = MAX_PACKET_MS * u64::from(self.settings.clock_rate) / 1000;
                if sequence == h + 1
                    && timestamp > self.highest_timestamp
                    && timestamp - self.highest_timestamp <= longest
                {
                    self.packet_ticks = timestamp - self.highest_timestamp;
                }
                self.highest = Some(sequence);
                self.highest_timestamp = timestamp;
            }
            None => {
                self.highest = Some(sequence);
                self.highest_timestamp = timestamp;
            }
        }
        let index = (sequence % SLOTS as u64) as usize;
        let slot = &mut self.slots[index];
        slot.sequence = Some(sequence);
        slot.timestamp = timestamp;
        slot.len = payload.len();
        if payload.len() <= SLOT_BYTES {
            self.payloads[index * SLOT_BYTES..][..payload.len()].copy_from_slice(payload);
        } else {
            slot.overflow.clear();
            slot.overflow.extend_from_slice(payload);
        }
        self.stats.stored += 1;
    }

    fn update_jitter(&mut self, now: Instant, timestamp: u64) {
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = self.ticks(now.saturating_duration_since(epoch)) as i64;
        let transit = arrival - timestamp as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs();
            // J += (|D| - J) / 16, kept scaled by 16 (saturating: D is the sender's word).
            self.jitter16 = self
                .jitter16
                .saturating_add(d)
                .saturating_sub((self.jitter16 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// Audio the caller decoded and has not played yet, in timestamp units (counted in the
    /// depth that drift corrections judge; capped at the hard cap, it is the caller's word).
    pub fn set_held(&mut self, ticks: u64) {
        self.held = ticks.min(self.ticks(self.settings.max_delay));
    }

    /// What the depth asks of the audio now playing, judged over the last frames: the caller
    /// shortens or lengthens it by a pitch period where it can and says so with
    /// [`JitterBuffer::stretched_audio`]. Only what lasts asks (jitter and reordering move the
    /// depth by a frame or two all the time): drift. An excess that a second of stretching
    /// could not shorten (audio that is not periodic) is still skipped ([`EXCESS_PATIENCE`]).
    pub fn pressure(&self) -> Pressure {
        if self.surplus_frames >= DRIFT_PATIENCE {
            Pressure::Shed
        } else if self.deficit_frames >= DRIFT_PATIENCE {
            Pressure::Build
        } else {
            Pressure::Steady
        }
    }

    /// The caller shortened (`shed`) or lengthened the audio playing, as [`Pressure`] asked.
    pub fn stretched_audio(&mut self, shed: bool) {
        if shed {
            self.surplus_frames = 0;
            self.excess_frames = 0;
            self.stats.accelerated += 1;
        } else {
            self.deficit_frames = 0;
            self.stats.expanded += 1;
        }
    }

    /// The next thing to play. `silent` says the audio just played was silence, so a packet
    /// may be skipped or a frame stretched without being heard.
    pub fn pop(&mut self, silent: bool) -> Playout<'_> {
        let Some(highest) = self.highest else {
            return Playout::Waiting;
        };
        let next = match self.next {
            Some(n) => n,
            None => {
                // Start once the target is buffered.
                if self.depth_ticks() < self.target_ticks() {
                    return Playout::Waiting;
                }
                let first = (highest.saturating_sub(SLOTS as u64 - 1)..=highest)
                    .find(|&s| self.slot(s).is_some())
                    .unwrap_or(highest);
                self.next = Some(first);
                first
            }
        };
        if next > highest {
            // Ran dry: everything was played and nothing new came. Conceal a few frames (a late
            // packet may still come); after that the sender has stopped (DTX, hold, hang-up):
            // wait, and fill to the target again when packets resume.
            self.dry_frames += 1;
            if self.dry_frames > MAX_DRY_FRAMES {
                self.next = None;
                return Playout::Waiting;
            }
            self.stats.stretched += 1;
            return Playout::Stretch;
        }
        self.dry_frames = 0;

        let depth = self.depth_ticks().saturating_add(self.held);
        let target = self.target_ticks();
        let frame = self.ticks(self.settings.frame).max(self.packet_ticks);
        let cap = self.ticks(self.settings.max_delay).saturating_add(frame);
        if depth > target + frame {
            self.surplus_frames += 1;
        } else {
            self.surplus_frames = 0;
        }
        if depth > target + EXCESS_FRAMES * frame {
            self.excess_frames += 1;
        } else {
            self.excess_frames = 0;
        }
        if depth + frame / 2 < target {
            self.deficit_frames += 1;
        } else {
            self.deficit_frames = 0;
        }
        let mut next = next;
        let silent_patience = if depth > target + 2 * frame {
            SILENT_EXCESS_PATIENCE
        } else {
            DRIFT_PATIENCE
        };
        if depth > cap
            || (silent && self.surplus_frames >= silent_patience)
            || self.excess_frames >= EXCESS_PATIENCE
        {
            // Skip one packet (the oldest) to bring the depth back.
            self.discard(next);
            next += 1;
            self.stats.skipped += 1;
            self.surplus_frames = 0;
            self.excess_frames = 0;
        } else if silent && self.deficit_frames >= DRIFT_PATIENCE {
            self.deficit_frames = 0;
            self.stats.stretched += 1;
            return Playout::Stretch;
        }
        self.next = Some(next + 1);
        let index = (next % SLOTS as u64) as usize;
        if self.slots[index].sequence == Some(next) {
            self.slots[index].sequence = None;
            Playout::Packet {
                payload: self.payload(index),
                timestamp: self.slots[index].timestamp as u32,
            }
        } else {
            self.stats.lost += 1;
            Playout::Lost
        }
    }

    /// The payload of the packet that will be played next, if it is here (after a
    /// [`Playout::Lost`], Opus rebuilds the lost frame from this packet's FEC data).
    pub fn peek_next(&self) -> Option<&[u8]> {
        let n = self.next?;
        self.slot(n)?;
        Some(self.payload((n % SLOTS as u64) as usize))
    }

    fn discard(&mut self, sequence: u64) {
        let index = (sequence % SLOTS as u64) as usize;
        if self.slots[index].sequence == Some(sequence) {
            self.slots[index].sequence = None;
        }
    }
}

#[cfg(test)]
#[path = "jitter_hostile_tests.rs"]
mod hostile_tests;

#[cfg(test)]
#[path = "jitter_tests.rs"]
mod tests;
