//! Capturing what a test's code logs: every event at TRACE level on the test's thread, as the
//! text the `fmt` subscriber writes, for tests that check what is (and is not) logged.

use std::io::Write;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// A `MakeWriter` that keeps everything logged.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A second dispatcher, alive for the whole test process. While only one dispatcher is
/// registered, tracing-core works out a new callsite's interest from the default of whichever
/// thread hits it first: a test without a subscriber, running in parallel, could then silence
/// that callsite for the test capturing logs. With two, every live dispatcher is asked.
static SHARED_INTEREST: LazyLock<tracing::Dispatch> =
    LazyLock::new(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));

/// Captures every event at TRACE level on this thread until the guard is dropped (run the test
/// on a current-thread runtime, so the code under test logs on this thread).
pub fn capture_logs() -> (tracing::subscriber::DefaultGuard, Captured) {
    LazyLock::force(&SHARED_INTEREST);
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (tracing::subscriber::set_default(subscriber), captured)
}
