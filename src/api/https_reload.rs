//! The HTTPS certificate, replaced without a restart: `api.tls_cert` and `api.tls_key` are read
//! again on SIGHUP, and when either file changes (its contents' SHA-256, looked at every
//! [`CHECK_EVERY`]: a copy that keeps the length and the modification time, as `cp -p` or a
//! configuration tool may make, is noticed too). Connections accepted from then on get the new pair; those open keep
//! theirs. A pair that cannot be used (unreadable, malformed, a key that is not the
//! certificate's: a rotation caught half-way) is refused with an error in the log and the old
//! one kept; the files are tried again when they change again, or on the next SIGHUP.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use super::https::ALPN;

/// How often the files are looked at.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The certificate chain and key files HTTPS serves (`api.tls_cert`, `api.tls_key`).
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate chain or key file is read up to this many bytes to tell whether it changed
/// (real ones are a few KiB; a change past the first MiB goes unnoticed until SIGHUP).
const MAX_FILE: u64 = 1 << 20;

/// What a file held: the SHA-256 of its first [`MAX_FILE`] bytes (`None`: it cannot be read).
type Stamp = Option<Vec<u8>>;

fn stamp(path: &std::path::Path) -> Stamp {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_FILE)
        .read_to_end(&mut bytes)
        .ok()?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    Some(digest.as_ref().to_vec())
}

/// What a check did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Checked {
    /// Neither file changed (and no SIGHUP): nothing was read.
    Unchanged,
    /// The new pair is served from now on.
    Replaced,
    /// The new pair cannot be used: the old one is still served.
    Refused,
}

/// Re-reads the pair when asked or when the files change, and hands the accept loop the
/// configuration to use for each new connection.
pub(super) struct Reloader {
    files: CertFiles,
    /// The files as they were at the last attempt (successful or not), so that a bad pair is
    /// reported once, not at every check.
    seen: [Stamp; 2],
    current: watch::Sender<Arc<rustls::ServerConfig>>,
}

impl Reloader {
    /// Starts from `first`, the configuration made from `files` at start.
    pub(super) fn new(
        files: CertFiles,
        first: Arc<rustls::ServerConfig>,
    ) -> (Self, watch::Receiver<Arc<rustls::ServerConfig>>) {
        let seen = [stamp(&files.cert), stamp(&files.key)];
        let (current, configs) = watch::channel(first);
        (
            Reloader {
                files,
                seen,
                current,
            },
            configs,
        )
    }

    /// Reads the pair again if either file changed since the last attempt, or in any case when
    /// `forced` (SIGHUP). Blocking file I/O: small, and at most once per check.
    pub(super) fn check(&mut self, forced: bool) -> Checked {
        let now = [stamp(&self.files.cert), stamp(&self.files.key)];
        if !forced && now == self.seen {
            return Checked::Unchanged;
        }
        self.seen = now;
        match crate::tls::server_config(&self.files.cert, &self.files.key, &ALPN) {
            Ok(config) => {
                self.current.send_replace(config);
                tracing::info!(cert = %self.files.cert.display(), "api: TLS certificate reloaded");
                Checked::Replaced
            }
            Err(e) => {
                tracing::error!(error = %e, "api: the new TLS certificate and key are refused; the previous ones are still served");
                Checked::Refused
            }
        }
    }

    /// Checks every `every` and at each of `hangups` (see [`hangups`]), until the task is
    /// aborted.
    pub(super) async fn run(mut self, every: Duration, mut hangups: Option<Signal>) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: the files were read just before.
        ticks.tick().await;
        loop {
            let forced = tokio::select! {
                _ = ticks.tick() => false,
                () = hangup(&mut hangups) => true,
            };
            self = match tokio::task::spawn_blocking(move || {
                self.check(forced);
                self
            })
            .await
            {
                Ok(reloader) => reloader,
                // Its thread panicked or the runtime is stopping: no more reloads.
                Err(_) => return,
            };
        }
    }
}

/// SIGHUP, from now on, for [`Reloader::run`]: taken before the task starts, so that no
/// SIGHUP finds the process without its handler (its default is to end the process).
/// `None` (logged) when it cannot be had; the files are still watched.
pub(super) fn hangups() -> Option<Signal> {
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "api: no SIGHUP handler; certificate files are still watched");
            None
        }
    }
}

/// The next SIGHUP (never, without a handler or once its stream has ended).
async fn hangup(hangups: &mut Option<Signal>) {
    match hangups {
        Some(s) => {
            if s.recv().await.is_none() {
                *hangups = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}
