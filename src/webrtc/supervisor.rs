//! The driver thread's supervisor. A panic while routing a datagram or driving one peer is
//! contained by the driver (that peer goes); a panic anywhere else in its loop, or a runtime
//! or socket that cannot be set up, ends the driver. Then the supervisor lets every peer it
//! held go as internal-error, forgets their sessions (WHIP DELETE and roster tokens answer as
//! for ended ones), counts the death, and starts a new driver on the same UDP socket with a
//! new command channel, after a wait that doubles while drivers keep dying at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::driver::Ended;
use super::{Driver, DriverCommand, Sessions, WebRtcMetrics};
use crate::media::relay::Doorbell;

/// The first wait before a dead driver is started again.
pub(super) const FIRST_RESTART_WAIT: Duration = Duration::from_millis(100);
/// The longest wait: a driver that dies at once costs a restart every 5 s, not a spin.
pub(super) const MAX_RESTART_WAIT: Duration = Duration::from_secs(5);
/// A driver that ran this long was not dying at once: the next wait is the first again.
const STEADY_RUN: Duration = Duration::from_secs(60);

/// The wait before each restart.
#[derive(Debug)]
pub(super) struct RestartWait {
    first: Duration,
    next: Duration,
}

impl RestartWait {
    pub(super) fn new(first: Duration) -> Self {
        let first = first.min(MAX_RESTART_WAIT);
        RestartWait { first, next: first }
    }

    /// The wait after a driver that ran for `ran`.
    pub(super) fn after(&mut self, ran: Duration) -> Duration {
        if ran >= STEADY_RUN {
            self.next = self.first;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_RESTART_WAIT);
        wait
    }
}

/// How one driver's run ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ended(Ended),
    Panicked,
}

/// What the supervisor needs to start drivers (shared with the `WebRtc` handle).
pub(super) struct Supervisor {
    pub(super) socket: std::net::UdpSocket,
    /// Weak, so that dropping the handle closes the channel and stops the driver.
    pub(super) commands: Weak<Mutex<mpsc::Sender<DriverCommand>>>,
    pub(super) sessions: Sessions,
    pub(super) metrics: Arc<WebRtcMetrics>,
    pub(super) doorbell: Doorbell,
    pub(super) up: Arc<AtomicBool>,
    pub(super) consent_timeout: Duration,
    pub(super) handshake_timeout: Duration,
    pub(super) restart_wait: Duration,
}

impl Supervisor {
    /// Runs drivers until the handle is dropped; `first` is the first driver's channel.
    pub(super) fn run(self, first: mpsc::Receiver<DriverCommand>) {
        let mut waits = RestartWait::new(self.restart_wait);
        let mut commands = Some(first);
        loop {
            let Some(rx) = commands.take().or_else(|| self.new_channel()) else {
                return;
            };
            let mut driver = self.driver();
            let started = Instant::now();
            let outcome = self.drive(&mut driver, rx);
            self.up.store(false, Ordering::Release);
            if outcome == Outcome::Ended(Ended::Stopped) {
                return;
            }
            if outcome == Outcome::Panicked {
                self.metrics.panics_total.fetch_add(1, Ordering::Relaxed);
            }
            self.metrics
                .driver_restarts_total
                .fetch_add(1, Ordering::Relaxed);
            let peers = driver.peers.len();
            driver.abandon();
            self.forget_sessions();
            let wait = waits.after(started.elapsed());
            tracing::error!(
                ?outcome,
                peers,
                wait_ms = wait.as_millis() as u64,
                "webrtc: the driver died; its peers were let go, starting it again"
            );
            std::thread::sleep(wait);
        }
    }

    fn driver(&self) -> Driver {
        Driver {
            sessions: self.sessions.clone(),
            consent_timeout: self.consent_timeout,
            handshake_timeout: self.handshake_timeout,
            peers: Default::default(),
            routes: Default::default(),
            by_ufrag: Default::default(),
            metrics: self.metrics.clone(),
        }
    }

    /// One driver's run on its own runtime, on a clone of the socket.
    fn drive(&self, driver: &mut Driver, commands: mpsc::Receiver<DriverCommand>) -> Outcome {
        let socket = match self.socket.try_clone() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "webrtc socket");
                return Outcome::Ended(Ended::Failed);
            }
        };
        let doorbell = self.doorbell.clone();
        // The driver is borrowed, not moved, into the run: after a panic its peers are still
        // here to be let go. The runtime goes with the run (a panic drops it while unwinding).
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(r) => r.block_on(driver.run(socket, commands, doorbell, &self.up)),
                Err(e) => {
                    tracing::error!(error = %e, "webrtc driver runtime");
                    Ended::Failed
                }
            }
        }));
        run.map_or(Outcome::Panicked, Outcome::Ended)
    }

    /// Empties the session table under the channel's lock (see `WebRtc::add`).
    fn forget_sessions(&self) {
        let commands = self.commands.upgrade();
        let _held = commands.as_ref().map(|c| c.lock());
        if let Ok(mut s) = self.sessions.lock() {
            s.clear();
        }
    }

    /// A new channel for the next driver, its sender in the handle's place; `None` once the
    /// handle is gone (nobody left to serve).
    fn new_channel(&self) -> Option<mpsc::Receiver<DriverCommand>> {
        let commands = self.commands.upgrade()?;
        let (tx, rx) = mpsc::channel(super::COMMAND_QUEUE);
        *commands
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tx;
        Some(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_waits_double_to_a_cap_and_start_over_after_a_steady_run() {
        let mut w = RestartWait::new(FIRST_RESTART_WAIT);
        let at_once = Duration::ZERO;
        let waits: Vec<u64> = (0..8)
            .map(|_| w.after(at_once).as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(w.after(Duration::from_secs(59)), MAX_RESTART_WAIT);
        assert_eq!(w.after(STEADY_RUN), FIRST_RESTART_WAIT);
        assert_eq!(w.after(at_once), Duration::from_millis(200));
        // A first wait above the cap is the cap.
        assert_eq!(
            RestartWait::new(Duration::from_secs(60)).after(at_once),
            MAX_RESTART_WAIT
        );
    }
}
