//! A deadline on the HTTP/2 preface, the 24 bytes every gRPC client sends first.
//!
//! hyper waits for the preface as long as the client cares to wait, so a client that connects
//! and says nothing holds its connection (and a descriptor) for good. [`PrefaceDeadline`]
//! wraps the connection: until 24 bytes have been read, a read that would wait past the
//! deadline fails with `TimedOut` instead, which ends the connection. The bytes themselves are
//! left to hyper to check; after them the wrapper only passes reads and writes through.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const PREFACE_LEN: usize = 24;

/// A connection whose first [`PREFACE_LEN`] bytes must arrive before a deadline.
#[derive(Debug)]
pub(crate) struct PrefaceDeadline<IO> {
    io: IO,
    /// Bytes of the preface not read yet.
    awaited: usize,
    /// `None` once the preface has arrived.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<IO> PrefaceDeadline<IO> {
    pub(crate) fn new(io: IO, deadline: Instant) -> Self {
        Self { io, awaited: PREFACE_LEN, deadline: Some(Box::pin(tokio::time::sleep_until(deadline))) }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for PrefaceDeadline<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(deadline) = this.deadline.as_mut() else { return polled };
        match polled {
            Poll::Ready(Ok(())) => {
                this.awaited = this.awaited.saturating_sub(buf.filled().len() - before);
                if this.awaited == 0 {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            // Waiting for more: the deadline's timer wakes this task too.
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no HTTP/2 preface before the deadline",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for PrefaceDeadline<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const PREFACE: &[u8; PREFACE_LEN] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_nothing_fails_at_the_deadline() {
        let (server, _client) = tokio::io::duplex(64);
        let started = Instant::now();
        let mut server = PrefaceDeadline::new(server, started + Duration::from_secs(10));
        let error = server.read(&mut [0; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn half_a_preface_is_no_preface() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut server = PrefaceDeadline::new(server, Instant::now() + Duration::from_secs(10));
        client.write_all(&PREFACE[..12]).await.unwrap();
        let mut buf = [0; 64];
        assert_eq!(server.read(&mut buf).await.unwrap(), 12);
        assert_eq!(server.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_preface_the_connection_may_stay_quiet() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut server = PrefaceDeadline::new(server, Instant::now() + Duration::from_secs(10));
        client.write_all(PREFACE).await.unwrap();
        let mut buf = [0; 64];
        assert_eq!(server.read(&mut buf).await.unwrap(), PREFACE_LEN);
        tokio::time::advance(Duration::from_secs(60)).await;
        client.write_all(b"later").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 5);
    }
}
