//! The answer to an engine call. A mixer thread answers a command within a tick, so a call
//! puts the command on the thread's queue at once and hands back the reply to come: async code
//! awaits it (no blocking-pool thread per command, no runtime thread blocked), plain threads
//! and tests `wait` for it. Either way a caller gives up after [`REPLY_WAIT`], so a mixer
//! thread that stops answering cannot hold a request or a call forever.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::EngineError;
use crate::mixer::CommandError;

/// How long a caller waits for a mixer thread's reply.
pub(crate) const REPLY_WAIT: Duration = Duration::from_secs(5);

type Boxed<T> = Pin<Box<dyn Future<Output = Result<T, EngineError>> + Send + 'static>>;

/// An engine call whose command has been sent (or has failed to be): `.await` it in async
/// code, [`Pending::wait`] for it elsewhere. Dropping it drops only the reply; what was sent
/// is still done (calls made of several steps say so where they are made).
#[must_use = "the reply says whether the engine call worked"]
pub struct Pending<T>(Boxed<T>);

impl<T> std::fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

impl<T: Send + 'static> Pending<T> {
    /// A call that is answered when `answer` is.
    pub(crate) fn new(
        answer: impl Future<Output = Result<T, EngineError>> + Send + 'static,
    ) -> Self {
        Pending(Box::pin(answer))
    }

    /// A call that failed before its command was sent.
    pub(crate) fn failed(error: EngineError) -> Self {
        Pending(Box::pin(std::future::ready(Err(error))))
    }

    /// The mixer thread's reply on `rx`; a thread that ends without replying drops its end.
    pub(crate) fn reply(rx: tokio::sync::oneshot::Receiver<Result<T, CommandError>>) -> Self {
        Pending::new(async move {
            rx.await
                .map_err(|_| EngineError::Stopped)?
                .map_err(EngineError::from)
        })
    }

    /// This call's answer passed through `f`.
    pub fn map<U: Send + 'static>(self, f: impl FnOnce(T) -> U + Send + 'static) -> Pending<U> {
        Pending::new(async move { self.0.await.map(f) })
    }

    /// This call's answer, then the call `next` makes of it (a call of two steps: the second
    /// is sent only when this is awaited or waited for).
    pub(crate) fn and_then<U: Send + 'static>(
        self,
        next: impl FnOnce(T) -> Pending<U> + Send + 'static,
    ) -> Pending<U> {
        Pending::new(async move { next(self.0.await?).0.await })
    }

    /// What `check` makes of this call's answer.
    pub(crate) fn and_check<U: Send + 'static>(
        self,
        check: impl FnOnce(Result<T, EngineError>) -> Result<U, EngineError> + Send + 'static,
    ) -> Pending<U> {
        Pending::new(async move { check(self.0.await) })
    }

    /// The answers of several calls sent together, those that came (a thread that failed to
    /// answer is left out).
    pub(crate) fn answered(calls: Vec<Pending<T>>) -> Pending<Vec<T>> {
        Pending::new(async move {
            let mut answers = Vec::with_capacity(calls.len());
            for call in calls {
                if let Ok(a) = call.0.await {
                    answers.push(a);
                }
            }
            Ok(answers)
        })
    }

    /// Blocks this thread until the reply comes, [`REPLY_WAIT`] at most. For threads outside
    /// the async runtime (and tests); async code awaits instead.
    pub fn wait(self) -> Result<T, EngineError> {
        let deadline = Instant::now() + REPLY_WAIT;
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut context = Context::from_waker(&waker);
        let mut answer = self.0;
        loop {
            if let Poll::Ready(r) = answer.as_mut().poll(&mut context) {
                return r;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(EngineError::NoReply);
            }
            // A wake-up that comes before the park makes it return at once (the token).
            std::thread::park_timeout(deadline - now);
        }
    }
}

impl<T: Send + 'static> IntoFuture for Pending<T> {
    type Output = Result<T, EngineError>;
    type IntoFuture = Boxed<T>;

    fn into_future(self) -> Self::IntoFuture {
        self.within(REPLY_WAIT)
    }
}

impl<T: Send + 'static> Pending<T> {
    /// The reply, or [`EngineError::NoReply`] once `wait` has passed (async code only).
    fn within(self, wait: Duration) -> Boxed<T> {
        Box::pin(async move {
            tokio::time::timeout(wait, self.0)
                .await
                .unwrap_or(Err(EngineError::NoReply))
        })
    }
}

/// Wakes the thread that waits in [`Pending::wait`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_sent_from_another_thread_is_waited_for() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let _ = tx.send(Ok(7u32));
        });
        assert_eq!(Pending::reply(rx).map(|v| v * 2).wait().ok(), Some(14));
        let _ = sender.join();
    }

    #[test]
    fn a_thread_that_ends_without_replying_is_stopped_and_a_refusal_passes_through() {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<(), CommandError>>();
        drop(tx);
        assert!(matches!(
            Pending::reply(rx).wait(),
            Err(EngineError::Stopped)
        ));
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<(), CommandError>>();
        let _ = tx.send(Err(CommandError::NoConference));
        assert!(matches!(
            Pending::reply(rx).wait(),
            Err(EngineError::Command(CommandError::NoConference))
        ));
    }

    #[tokio::test]
    async fn a_reply_that_never_comes_is_given_up_after_the_wait() {
        let (_tx, rx) = tokio::sync::oneshot::channel::<Result<(), CommandError>>();
        let wait = Duration::from_millis(30);
        let started = std::time::Instant::now();
        let answer = Pending::reply(rx).within(wait).await;
        assert!(matches!(answer, Err(EngineError::NoReply)), "{answer:?}");
        assert!(started.elapsed() >= wait);
    }

    #[tokio::test]
    async fn an_awaited_reply_comes_without_a_blocking_thread() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            let _ = tx.send(Ok("answer"));
        });
        assert_eq!(Pending::reply(rx).await.ok(), Some("answer"));
    }
}
