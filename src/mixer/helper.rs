//! A mixer thread's helper: a second pair of hands for the per-leg work of a large conference.
//!
//! A conference has two phases per tick whose work is the same for every leg and touches that
//! leg alone: reading and decoding (`receive_leg`), and sending the shared packets to listeners
//! (`send_leg`). Most of their cost is the kernel's UDP path, one to three system calls per leg
//! and tick, so a town hall of thousands of listeners would be bound to one core. From
//! [`PARALLEL_LEGS`] legs on, the conference hands the second half of its legs to its mixer
//! thread's helper for each of the two phases, does the first half itself, and takes the half
//! back before it goes on.
//!
//! The legs travel by ownership: boxes moved into a `Vec` kept from tick to tick and sent over a
//! bounded channel of one slot, so nothing is locked and nothing allocated. The shared packets
//! travel as an `Arc` that the helper drops before it answers, so the conference can write the
//! next tick's packets in place. One helper per mixer thread, started with it: the thread count
//! follows the cores, never the legs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::media::leg::RtpLeg;
use crate::media::rtp::MAX_PACKET;

/// Legs from which a conference splits its per-leg work with the helper (below, waking the
/// helper twice a tick costs more than it saves).
pub const PARALLEL_LEGS: usize = 128;

/// Packets a group made this tick (10 ms packets give two per tick).
pub const MAX_GROUP_PACKETS: usize = 2;

/// In a leg's send plan: no shared packets this tick (it was served on its own, or not at all).
pub const NO_GROUP: usize = usize::MAX;

/// One group's encoded packets of this tick.
pub struct GroupPackets {
    pub packets: [([u8; MAX_PACKET], usize); MAX_GROUP_PACKETS],
    pub count: usize,
    /// RTP timestamp units per packet.
    pub ticks: u32,
}

impl GroupPackets {
    pub fn new(ticks: u32) -> Self {
        GroupPackets {
            packets: [([0; MAX_PACKET], 0); MAX_GROUP_PACKETS],
            count: 0,
            ticks,
        }
    }
}

/// What every listener of the shared mix is sent this tick: each group's packets and the
/// talkers to name in them (RFC 6465).
#[derive(Default)]
pub struct Outbound {
    /// By group index, as the conference numbers its groups.
    pub groups: Vec<GroupPackets>,
    pub csrcs: [u32; 16],
    pub levels: [u8; 16],
    pub csrc_count: usize,
}

/// One phase's per-leg work on `legs`, the same on either thread; `plan` is each leg's group
/// when sending (unused when receiving).
pub fn work(phase: Phase, legs: &mut [Box<RtpLeg>], plan: &[usize], now: Instant, out: &Outbound) {
    match phase {
        Phase::Receive => {
            for leg in legs {
                receive_leg(leg, now);
            }
        }
        Phase::Send => {
            for (leg, &group) in legs.iter_mut().zip(plan) {
                send_leg(leg, group, out);
            }
        }
    }
}

/// A leg's share of the first phase: read what arrived, run its timers, make this tick's frame.
fn receive_leg(leg: &mut RtpLeg, now: Instant) {
    leg.receive(now);
    leg.maintain(now);
    leg.produce_frame();
}

/// A listener's share of the second phase: its group's packets, under its own header.
fn send_leg(leg: &mut RtpLeg, group: usize, out: &Outbound) {
    let Some(g) = out.groups.get(group) else {
        return;
    };
    let count = out.csrc_count;
    for (buf, len) in &g.packets[..g.count] {
        leg.send_payload(
            &buf[..*len],
            g.ticks,
            &out.csrcs[..count],
            &out.levels[..count],
        );
    }
}

/// A phase of the tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Receive,
    Send,
}

/// Half a conference's legs, handed over for one phase.
#[allow(clippy::vec_box)] // boxes move between threads, not the legs' bytes
pub struct Job {
    pub phase: Phase,
    pub legs: Vec<Box<RtpLeg>>,
    /// Send: each leg's group (or [`NO_GROUP`]); kept for its capacity otherwise.
    pub groups: Vec<usize>,
    pub now: Instant,
    /// The packets to send (read when sending).
    pub outbound: Arc<Outbound>,
}

/// The legs of a job, handed back.
#[allow(clippy::vec_box)]
pub struct Done {
    pub legs: Vec<Box<RtpLeg>>,
    pub groups: Vec<usize>,
    /// The work panicked: the conference resumes the panic on its own thread (with its legs
    /// back), where the mixer thread contains it; the helper itself goes on.
    pub panic: Option<Box<dyn std::any::Any + Send>>,
}

/// The helper of one mixer thread.
pub struct LegHelper {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    /// Gone (its thread ended): the conference works alone from then on.
    lost: bool,
    /// A job was handed over and not yet taken back.
    outstanding: bool,
    /// How its thread is scheduled (it asks as its mixer thread does).
    scheduling: super::realtime::Scheduling,
    /// Whether its mixer thread wants it under real-time scheduling now (see
    /// `realtime::Overload`); it follows before its next job.
    realtime_wanted: Arc<AtomicBool>,
}

impl std::fmt::Debug for LegHelper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegHelper")
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

impl LegHelper {
    /// Starts the helper of mixer thread `index`.
    pub fn spawn(index: usize) -> std::io::Result<Self> {
        let (jobs, job_rx) = std::sync::mpsc::sync_channel::<Job>(1);
        let (done_tx, done) = std::sync::mpsc::sync_channel::<Done>(1);
        let (asked_tx, asked) = std::sync::mpsc::sync_channel(1);
        let policy = super::realtime::policy();
        let realtime_wanted = Arc::new(AtomicBool::new(true));
        let wanted = realtime_wanted.clone();
        let thread = std::thread::Builder::new()
            .name(format!("confab-mixer-{index}-helper"))
            .spawn(move || {
                let asked = super::realtime::ask(policy, super::realtime::request_current_thread);
                let started_realtime = asked.is_realtime();
                let mut realtime = started_realtime;
                let _ = asked_tx.send(asked);
                while let Ok(job) = job_rx.recv() {
                    // Only a thread that got real-time scheduling gives it back or takes it
                    // again; a failure is logged once per change and not retried.
                    let want = wanted.load(Ordering::Relaxed);
                    if started_realtime && realtime != want {
                        let changed = if want {
                            super::realtime::request_current_thread()
                        } else {
                            super::realtime::normal_current_thread()
                        };
                        if let Err(e) = changed {
                            tracing::warn!(mixer = index, error = %e, "mixer helper: scheduling not changed");
                        }
                        realtime = want;
                    }
                    let Job {
                        phase,
                        mut legs,
                        groups,
                        now,
                        outbound,
                    } = job;
                    // A panic in a leg's work is handed back to the conference it came from,
                    // not allowed to end the helper of every conference on the thread.
                    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        work(phase, &mut legs, &groups, now, &outbound);
                    }))
                    .err();
                    // Let go of the packets before answering: the conference writes the next
                    // tick's into the same buffers once it is the only owner again.
                    drop(outbound);
                    if done_tx
                        .send(Done {
                            legs,
                            groups,
                            panic,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            })?;
        let scheduling = asked.recv().unwrap_or_else(|_| {
            super::realtime::Scheduling::Refused("the helper thread ended as it started".into())
        });
        Ok(LegHelper {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            lost: false,
            outstanding: false,
            scheduling,
            realtime_wanted,
        })
    }

    /// Asks the helper to run under real-time scheduling, or not, from its next job on (it
    /// must have got it at its start for this to matter).
    pub(crate) fn set_realtime(&self, on: bool) {
        self.realtime_wanted.store(on, Ordering::Relaxed);
    }

    /// How the helper's thread is scheduled.
    pub fn scheduling(&self) -> &super::realtime::Scheduling {
        &self.scheduling
    }

    /// Whether the helper can take work.
    pub fn available(&self) -> bool {
        !self.lost && self.jobs.is_some()
    }

    /// Hands `job` over; it comes back if the helper is gone.
    pub fn start(&mut self, job: Job) -> Result<(), Job> {
        let Some(jobs) = &self.jobs else {
            return Err(job);
        };
        jobs.send(job).map_err(|e| {
            self.lost = true;
            e.0
        })?;
        self.outstanding = true;
        Ok(())
    }

    /// Waits for the job handed over; `None` if the helper died with it (its legs are lost).
    pub fn finish(&mut self) -> Option<Done> {
        self.outstanding = false;
        match self.done.recv() {
            Ok(done) => Some(done),
            Err(_) => {
                self.lost = true;
                None
            }
        }
    }
}

impl LegHelper {
    /// After a conference's tick panicked: a job it handed over and never took back is taken
    /// now and dropped (its legs close), so the next conference does not receive it.
    pub fn settle(&mut self) {
        if self.outstanding {
            drop(self.finish());
        }
    }
}

impl Drop for LegHelper {
    fn drop(&mut self) {
        // Closing the job channel ends the helper's loop.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
