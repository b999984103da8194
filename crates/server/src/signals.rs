//! Stop signals: the first SIGTERM or Ctrl-C asks for a graceful shutdown, the second stops at
//! once.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Resolves on SIGTERM or ctrl-c (the first of [`shutdown_signals`]).
pub async fn shutdown_signal() {
    shutdown_signals().0.await;
}

/// The first and the second SIGTERM or Ctrl-C (SIGINT), in any mix: the first asks for a
/// graceful shutdown, the second to stop at once (see [`crate::Application::run_until_or_sooner`]).
/// Listening starts when this is called, so a signal that comes before anyone waits is kept,
/// never left to its default action. Must be called within a Tokio runtime.
pub fn shutdown_signals()
-> (impl Future<Output = ()> + Send + 'static, impl Future<Output = ()> + Send + 'static) {
    let (first, second) = (CancellationToken::new(), CancellationToken::new());
    let mut signals = StopSignals::listen();
    {
        let (first, second) = (first.clone(), second.clone());
        tokio::spawn(async move {
            signals.next().await;
            first.cancel();
            signals.next().await;
            second.cancel();
        });
    }
    (first.cancelled_owned(), second.cancelled_owned())
}

/// SIGINT and SIGTERM, each a stream that can be waited on again and again.
struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(stream) => Some(stream),
                Err(error) => {
                    warn!(%error, "cannot listen for {name}");
                    None
                }
            };
            Self {
                interrupt: listen(SignalKind::interrupt(), "ctrl-c"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Resolves on the next signal; never when none can be listened for.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(stream: &mut Option<tokio::signal::unix::Signal>) {
                let received = match stream {
                    Some(stream) => stream.recv().await.is_some(),
                    None => false,
                };
                if !received {
                    std::future::pending::<()>().await;
                }
            }
            tokio::select! {
                () = recv(&mut self.interrupt) => {}
                () = recv(&mut self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
