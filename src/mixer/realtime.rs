//! Real-time scheduling of the mixer threads and their helpers (`mixer.realtime`).
//!
//! A tick is due every 20 ms; under normal scheduling a busy host (a compile, a backup, another
//! bridge's threads) can start it milliseconds late, which the talkers hear as a late packet.
//! SCHED_RR at a modest priority puts the mixer threads ahead of ordinary work and behind the
//! kernel's own real-time threads. It is safe only because a mixer thread never spins: it sleeps
//! to absolute deadlines and does bounded work per tick; the helper blocks on its channel. A
//! thread with more work than a core can do would spin, though, and starve the SIP, API and
//! WebRTC threads (nobody could eject or end a call to relieve it): [`Overload`] hands real-time
//! scheduling back while the thread is overloaded and takes it again once it has been calm.
//!
//! The policy is process-wide, set once by `serve` before the engine starts. Unset (the library
//! used by tests, benchmarks, the load generator) it is `off`, so no thread of theirs runs at
//! real-time priority unless it is asked to.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::config::MixerRealtime;

/// The SCHED_RR priority asked for: above every normal thread, well below the kernel's
/// interrupt threads (50) and watchdogs (99). A service manager's `LimitRTPRIO` must allow it.
pub const PRIORITY: u8 = 10;

/// How a thread is scheduled after it asked (or not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheduling {
    /// SCHED_RR at [`PRIORITY`].
    Realtime,
    /// Normal scheduling, not asked for (`off`).
    NotAsked,
    /// Normal scheduling: the request was refused, for this reason.
    Refused(String),
}

impl Scheduling {
    pub fn is_realtime(&self) -> bool {
        *self == Scheduling::Realtime
    }

    /// Of a mixer thread and its helper, the one that did not get it (both must run at the
    /// same priority for the helper's half of the work to keep up).
    pub(crate) fn and(self, other: Scheduling) -> Scheduling {
        match self {
            Scheduling::Realtime => other,
            not => not,
        }
    }

    /// Under `required`, anything but real-time scheduling stops the start, with an error that
    /// says what grants it.
    pub(crate) fn check(&self, policy: MixerRealtime) -> Result<(), String> {
        match (policy, self) {
            (MixerRealtime::Required, Scheduling::Refused(why)) => Err(format!(
                "mixer.realtime is `required` and real-time scheduling (SCHED_RR priority \
                 {PRIORITY}) was refused: {why}; grant CAP_SYS_NICE or LimitRTPRIO={PRIORITY} \
                 (or set mixer.realtime to auto)"
            )),
            (MixerRealtime::Required, Scheduling::NotAsked) => {
                Err("mixer.realtime is `required` and was not asked for".to_owned())
            }
            _ => Ok(()),
        }
    }

    /// The start's log line.
    pub(crate) fn describe(&self) -> String {
        match self {
            Scheduling::Realtime => format!("mixer threads run SCHED_RR priority {PRIORITY}"),
            Scheduling::NotAsked => {
                "mixer threads run normal scheduling (mixer.realtime = off)".to_owned()
            }
            Scheduling::Refused(why) => format!(
                "mixer threads run normal scheduling: {why}; grant CAP_SYS_NICE or \
                 LimitRTPRIO={PRIORITY} for real-time scheduling"
            ),
        }
    }
}

/// Asks for real-time scheduling as `policy` says, through `request` (the system call for
/// the calling thread, [`request_current_thread`]; substituted in tests).
pub(crate) fn ask(
    policy: MixerRealtime,
    request: impl FnOnce() -> Result<(), String>,
) -> Scheduling {
    match policy {
        MixerRealtime::Off => Scheduling::NotAsked,
        MixerRealtime::Auto | MixerRealtime::Required => match request() {
            Ok(()) => Scheduling::Realtime,
            Err(why) => Scheduling::Refused(why),
        },
    }
}

/// Asks the kernel to run the calling thread under SCHED_RR at [`PRIORITY`].
pub(crate) fn request_current_thread() -> Result<(), String> {
    use thread_priority::{
        Error, RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue,
        ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id,
    };
    let value = ThreadPriorityValue::try_from(PRIORITY)?;
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::RoundRobin),
    )
    .map_err(|e| match e {
        // The crate gives the bare errno: say it in words ("Operation not permitted").
        Error::OS(code) => std::io::Error::from_raw_os_error(code).to_string(),
        other => other.to_string(),
    })
}

/// Asks the kernel to run the calling thread under normal scheduling (SCHED_OTHER, nice 0).
pub(crate) fn normal_current_thread() -> Result<(), String> {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Os(Default::default()),
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
    )
    .map_err(|e| e.to_string())
}

/// Above this smoothed load (work over the tick period, over about a second) a real-time
/// mixer thread is about to have no idle time left: it gives real-time scheduling back.
pub const DEMOTE_ABOVE: f64 = 0.9;
/// It takes it again once the load has stayed below this for [`CALM_FOR`].
pub const PROMOTE_BELOW: f64 = 0.6;
pub const CALM_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// A change of scheduling an overloaded (or calm again) mixer thread makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shift {
    Demote,
    Promote,
}

/// When a real-time mixer thread gives its priority back and takes it again (sans-I/O: fed
/// each tick's smoothed load and the time).
#[derive(Debug, Default)]
pub(crate) struct Overload {
    demoted: bool,
    /// Since when the load has been below [`PROMOTE_BELOW`] while demoted.
    calm_since: Option<std::time::Instant>,
    /// After a change the kernel refused: no new try before this.
    hold_until: Option<std::time::Instant>,
}

impl Overload {
    #[cfg(test)]
    pub(crate) fn demoted(&self) -> bool {
        self.demoted
    }

    /// After a tick: the change to make, if any.
    pub(crate) fn after_tick(&mut self, now: std::time::Instant, load: f64) -> Option<Shift> {
        if self.hold_until.is_some_and(|t| now < t) {
            return None;
        }
        if !self.demoted {
            if load > DEMOTE_ABOVE {
                self.demoted = true;
                self.calm_since = None;
                return Some(Shift::Demote);
            }
            return None;
        }
        if load >= PROMOTE_BELOW {
            self.calm_since = None;
            return None;
        }
        let since = *self.calm_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= CALM_FOR {
            self.demoted = false;
            self.calm_since = None;
            return Some(Shift::Promote);
        }
        None
    }

    /// The change `after_tick` asked for was refused: the thread is as it was, and the next
    /// try waits [`CALM_FOR`] (not every tick).
    pub(crate) fn refused(&mut self, now: std::time::Instant) {
        self.demoted = !self.demoted;
        self.calm_since = None;
        self.hold_until = Some(now + CALM_FOR);
    }
}

/// Gives real-time scheduling back (overloaded: a spinning real-time thread would starve
/// signalling and the API) or takes it again, for the thread and its helper; whether the
/// kernel made the change (if not, nothing changed and the figures say so).
pub(crate) fn shift(
    index: usize,
    shift: Shift,
    load: f64,
    helper: Option<&super::helper::LegHelper>,
    counters: &super::MixerCounters,
) -> bool {
    let on = shift == Shift::Promote;
    let changed = if on {
        request_current_thread()
    } else {
        normal_current_thread()
    };
    // The helper follows only a change its thread made; the figures say what is so.
    if changed.is_ok() {
        if let Some(h) = helper {
            h.set_realtime(on);
        }
        if !on {
            counters
                .demotions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        counters
            .realtime
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
    let done = changed.is_ok();
    match (changed, on) {
        (Err(e), _) => {
            tracing::warn!(mixer = index, error = %e, ?shift, "mixer scheduling not changed; tried again in 30 s")
        }
        (Ok(()), false) => tracing::warn!(
            mixer = index,
            load,
            "mixer thread overloaded: real-time scheduling given back until it is calm"
        ),
        (Ok(()), true) => tracing::info!(mixer = index, "mixer thread calm: real-time again"),
    }
    done
}

/// The process's policy: `off` until set.
static POLICY: AtomicU8 = AtomicU8::new(0);

fn encode(p: MixerRealtime) -> u8 {
    match p {
        MixerRealtime::Off => 0,
        MixerRealtime::Auto => 1,
        MixerRealtime::Required => 2,
    }
}

/// Sets the policy of the mixer threads started from now on (by `serve`, from the
/// configuration).
pub fn set_policy(p: MixerRealtime) {
    POLICY.store(encode(p), Ordering::Relaxed);
}

/// The policy mixer threads started now follow.
pub fn policy() -> MixerRealtime {
    match POLICY.load(Ordering::Relaxed) {
        1 => MixerRealtime::Auto,
        2 => MixerRealtime::Required,
        _ => MixerRealtime::Off,
    }
}

/// Says how the mixer threads are scheduled: once per process for the first thread, and again
/// only for a thread that fared otherwise.
pub(crate) fn report(index: usize, s: &Scheduling) {
    static FIRST: OnceLock<bool> = OnceLock::new();
    let first = *FIRST.get_or_init(|| {
        log(None, s);
        s.is_realtime()
    });
    if first != s.is_realtime() {
        log(Some(index), s);
    }
}

fn log(index: Option<usize>, s: &Scheduling) {
    match (s, index) {
        (Scheduling::Refused(_), None) => tracing::warn!("{}", s.describe()),
        (Scheduling::Refused(_), Some(i)) => {
            tracing::warn!(mixer = i, "unlike the first, {}", s.describe())
        }
        (_, None) => tracing::info!("{}", s.describe()),
        (_, Some(i)) => tracing::info!(mixer = i, "unlike the first, {}", s.describe()),
    }
}

#[cfg(test)]
#[path = "realtime_tests.rs"]
mod tests;
