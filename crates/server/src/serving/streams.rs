//! When a connection is idle: the RPCs (HTTP/2 streams) it has in flight, counted by a
//! service wrapper.
//!
//! An RPC is in flight from the moment hyper hands its request to the service until its
//! response body is dropped: sent to the end (trailers included) or reset by the client. A
//! server-streaming RPC that stays open for an hour is an hour in flight, so only connections
//! that really carry nothing are idle. hyper does not say how many streams a connection has
//! open, hence [`CountStreams`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::watch;
use tower::{Layer, Service};

/// The RPCs one connection has in flight.
#[derive(Debug, Clone)]
pub(crate) struct Streams {
    in_flight: Arc<watch::Sender<usize>>,
}

impl Default for Streams {
    fn default() -> Self {
        Self { in_flight: Arc::new(watch::Sender::new(0)) }
    }
}

impl Streams {
    /// Counts one more RPC in flight until the returned guard is dropped.
    fn start(&self) -> InFlight {
        self.in_flight.send_modify(|count| *count += 1);
        InFlight { in_flight: Arc::clone(&self.in_flight) }
    }

    /// Resolves once no RPC has been in flight for `quiet`, counted from the end of the last
    /// one (from now, when none is in flight).
    pub(crate) async fn idle_for(&self, quiet: Duration) {
        let mut changes = self.in_flight.subscribe();
        loop {
            // `self` holds the sender, so neither wait can find it gone.
            if changes.wait_for(|count| *count == 0).await.is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(quiet) => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// One RPC in flight, until dropped.
#[derive(Debug)]
struct InFlight {
    in_flight: Arc<watch::Sender<usize>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.in_flight.send_modify(|count| *count = count.saturating_sub(1));
    }
}

/// Wraps a connection's service so that its [`Streams`] counts every RPC.
#[derive(Debug, Clone)]
pub(crate) struct CountStreamsLayer {
    streams: Streams,
}

impl CountStreamsLayer {
    pub(crate) fn new(streams: Streams) -> Self {
        Self { streams }
    }
}

impl<S> Layer<S> for CountStreamsLayer {
    type Service = CountStreams<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountStreams { inner, streams: self.streams.clone() }
    }
}

/// The service behind a [`CountStreamsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct CountStreams<S> {
    inner: S,
    streams: Streams,
}

impl<S, Request, B> Service<Request> for CountStreams<S>
where
    S: Service<Request, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Counted<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // Held by the future until the response exists (dropped with it when the client resets
        // the stream first), then by the response body.
        let in_flight = self.streams.start();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Counted { body, _in_flight: in_flight }))
        })
    }
}

/// A response body that keeps its RPC counted in flight until it is dropped.
#[derive(Debug)]
pub(crate) struct Counted<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Full;
    use tokio::time::Instant;
    use tower::ServiceExt;

    use super::*;

    const QUIET: Duration = Duration::from_secs(300);

    fn counted(
        streams: &Streams,
    ) -> impl Service<(), Response = http::Response<Counted<Full<Bytes>>>, Error = Infallible> + Clone {
        CountStreamsLayer::new(streams.clone()).layer(tower::service_fn(|()| async {
            Ok::<_, Infallible>(http::Response::new(Full::default()))
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_rpcs_is_idle_after_the_quiet_period() {
        let started = Instant::now();
        Streams::default().idle_for(QUIET).await;
        assert_eq!(started.elapsed(), QUIET);
    }

    #[tokio::test(start_paused = true)]
    async fn an_rpc_is_in_flight_until_its_response_body_is_dropped() {
        let streams = Streams::default();
        let response = counted(&streams).oneshot(()).await.unwrap();
        let started = Instant::now();
        let idle = streams.idle_for(QUIET);
        tokio::pin!(idle);
        // Ten quiet periods with the response still being sent: not idle.
        assert!(tokio::time::timeout(QUIET * 10, idle.as_mut()).await.is_err());
        drop(response);
        let ended = Instant::now();
        idle.await;
        assert_eq!(ended.elapsed(), QUIET, "idle counts from the end of the last RPC");
        assert_eq!(started.elapsed(), QUIET * 11);
    }

    #[tokio::test(start_paused = true)]
    async fn an_rpc_starting_and_ending_restarts_the_quiet_period() {
        let streams = Streams::default();
        let idle = streams.idle_for(QUIET);
        tokio::pin!(idle);
        assert!(tokio::time::timeout(QUIET / 2, idle.as_mut()).await.is_err());
        let response = counted(&streams).oneshot(()).await.unwrap();
        drop(response);
        let ended = Instant::now();
        idle.await;
        assert_eq!(ended.elapsed(), QUIET);
    }

    #[tokio::test]
    async fn an_rpc_abandoned_before_its_response_is_no_longer_in_flight() {
        let streams = Streams::default();
        let pending = CountStreamsLayer::new(streams.clone()).layer(tower::service_fn(|()| {
            std::future::pending::<Result<http::Response<Full<Bytes>>, Infallible>>()
        }));
        let mut call = Box::pin(pending.oneshot(()));
        assert!(futures::poll!(call.as_mut()).is_pending());
        assert_eq!(*streams.in_flight.borrow(), 1);
        drop(call);
        assert_eq!(*streams.in_flight.borrow(), 0);
    }
}
