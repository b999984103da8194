//! A NATS subscription that is known to be in place on the server.
//!
//! `async_nats::Client::flush` only writes the client's buffer to the socket; it does not wait
//! for the server. A SUB written on one connection and a PUB written right after on another
//! race inside the server, and a message that wins is dropped: no subscriber yet. CI lost an
//! event that way once. A probe message published on the subscribing connection itself comes
//! back only after the server has processed the SUB before it, so waiting for the probe is
//! waiting for the subscription.

use std::time::Duration;

use async_nats::{Client, Subscriber};
use futures::StreamExt;

/// How long the probe may take to come back before the server is called unresponsive.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Subscribes `client` to `subject` and returns once the server delivers on it: publishes a
/// probe on `probe_subject` (which `subject` must match) and consumes it.
///
/// # Panics
/// When subscribing or publishing fails, or the probe does not come back in time.
pub async fn subscribe_confirmed(client: &Client, subject: &str, probe_subject: &str) -> Subscriber {
    let mut subscriber = client
        .subscribe(subject.to_owned())
        .await
        .unwrap_or_else(|error| panic!("cannot subscribe to {subject}: {error}"));
    let token = format!("subscription probe {}", std::process::id());
    client
        .publish(probe_subject.to_owned(), token.clone().into())
        .await
        .unwrap_or_else(|error| panic!("cannot publish the probe on {probe_subject}: {error}"));
    client.flush().await.unwrap_or_else(|error| panic!("cannot flush the probe: {error}"));
    let wait = async {
        while let Some(message) = subscriber.next().await {
            if message.subject.as_str() == probe_subject && message.payload == token.as_bytes() {
                return true;
            }
        }
        false
    };
    match tokio::time::timeout(PROBE_TIMEOUT, wait).await {
        Ok(true) => subscriber,
        Ok(false) => panic!("the subscription to {subject} ended before its probe came back"),
        Err(_) => panic!("the probe on {probe_subject} did not come back within {PROBE_TIMEOUT:?}"),
    }
}
