//! Panics in the SIP task. One input of the call core that panics is lost on its own
//! ([`contained`]); a panic elsewhere in the shell ends the serving task, and [`supervise`]
//! starts it again on the same sockets, so one bug does not take SIP down for good.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::dial::Dials;
use super::metrics::SipMetrics;
use super::{AttendantConfig, ControlEvents, Listeners, SharedLimiter, serve};
use crate::engine::Engine;
use crate::sip::uas::UasSettings;

/// Runs one input of the call core with a panic in it contained: that input is lost (nobody
/// answers it), every call goes on, and the panic is counted.
pub(crate) fn contained(metrics: &SipMetrics, what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        metrics
            .panics
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(input = what, "sip: the call core panicked");
    }
}

/// Test-only: a datagram that panics the SIP task outside the call core's containment.
#[cfg(test)]
pub(crate) const PANIC_FOR_TEST: &[u8] = b"confab-test: panic the sip task";

/// Runs the SIP task, and runs it again on the same sockets if it panics outside the parts
/// that contain their own panics (a bug in the shell): the calls it knew are lost (their media
/// times out, their records close), new calls are taken at once, and the restart is counted.
/// `SipServer::running` stays true; a panic loop is slowed to one restart a second.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn supervise(
    settings: UasSettings,
    config: AttendantConfig,
    engine: Arc<Engine>,
    control: ControlEvents,
    listeners: Listeners,
    (dials, metrics, limiter): (Dials, Arc<SipMetrics>, SharedLimiter),
    (stop, draining): (watch::Receiver<bool>, watch::Receiver<bool>),
) {
    loop {
        let run = tokio::spawn(serve(
            settings.clone(),
            config.clone(),
            Arc::clone(&engine),
            Arc::clone(&control),
            listeners.clone(),
            (
                Arc::clone(&dials),
                Arc::clone(&metrics),
                Arc::clone(&limiter),
            ),
            (stop.clone(), draining.clone()),
        ));
        match run.await {
            Err(e) if e.is_panic() => {
                metrics
                    .panics
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics
                    .restarts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(
                    "sip: the SIP task panicked; starting it again (its calls are lost)"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => return,
        }
    }
}

/// Aborts a task when dropped (also while a panic unwinds the task that owns it).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
