//! Honest codes for requests that cannot be decoded.
//!
//! tonic answers a request it cannot decode (malformed protobuf, invalid UTF-8 in a string
//! field) with `INTERNAL`, and one larger than the limit with `OUT_OF_RANGE`. Both are the
//! client's doing: this layer rewrites them to `INVALID_ARGUMENT` and `RESOURCE_EXHAUSTED`
//! (with the limit), so clients neither retry nor page an operator for their own mistake.
//! Such errors are answered before any handler runs, as a trailers-only response, so the
//! status is in the response headers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderValue;
use tonic::Code;
use tower::{Layer, Service};

/// Rewrites the status of undecodable and oversize requests (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct RequestErrorsLayer {
    max_request_bytes: usize,
}

impl RequestErrorsLayer {
    pub fn new(max_request_bytes: usize) -> Self {
        Self { max_request_bytes }
    }
}

impl<S> Layer<S> for RequestErrorsLayer {
    type Service = RequestErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestErrors { inner, max_request_bytes: self.max_request_bytes }
    }
}

/// The service behind a [`RequestErrorsLayer`].
#[derive(Debug, Clone)]
pub struct RequestErrors<S> {
    inner: S,
    max_request_bytes: usize,
}

/// tonic's messages for the two cases, as prefixes.
const DECODE_FAILED: &str = "failed to decode Protobuf message";
const TOO_LARGE: &str = "Error, decoded message length too large";

/// The rewritten `(grpc-status, grpc-message)` for a response's, if it needs one.
fn rewrite(code: Code, message: &str, max_request_bytes: usize) -> Option<(Code, String)> {
    match code {
        Code::Internal if message.starts_with(DECODE_FAILED) => {
            let detail =
                message.strip_prefix(DECODE_FAILED).unwrap_or_default().trim_start_matches(':').trim();
            Some((
                Code::InvalidArgument,
                format!("malformed request: {}", orchestrator_domain::excerpt(detail, QUOTED_CHARS)),
            ))
        }
        Code::OutOfRange if message.starts_with(TOO_LARGE) => Some((
            Code::ResourceExhausted,
            format!("request too large: the limit is {max_request_bytes} bytes"),
        )),
        _ => None,
    }
}

/// How much of an undecodable request's text a message quotes.
const QUOTED_CHARS: usize = 200;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RequestErrors<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let limit = self.max_request_bytes;
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            let headers = response.headers();
            let code = headers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map(Code::from_i32);
            let message = headers
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .map(percent_decode)
                .unwrap_or_default();
            if let Some((code, message)) = code.and_then(|code| rewrite(code, &message, limit)) {
                let headers = response.headers_mut();
                headers.insert("grpc-status", HeaderValue::from(code as i32));
                if let Ok(value) = HeaderValue::from_str(&percent_encode(&message)) {
                    headers.insert("grpc-message", value);
                }
            }
            Ok(response)
        })
    }
}

/// gRPC's percent-decoding of `grpc-message`.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// gRPC's percent-encoding of `grpc-message`: printable ASCII but `%` as is, the rest escaped.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if (0x20..=0x7e).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_failures_become_invalid_argument() {
        let (code, message) =
            rewrite(Code::Internal, "failed to decode Protobuf message: invalid string value", 10).unwrap();
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(message, "malformed request: invalid string value");
    }

    #[test]
    fn oversize_requests_become_resource_exhausted_with_the_limit() {
        let message =
            "Error, decoded message length too large: found 2000000 bytes, the limit is: 1048576 bytes";
        let (code, message) = rewrite(Code::OutOfRange, message, 1_048_576).unwrap();
        assert_eq!(code, Code::ResourceExhausted);
        assert_eq!(message, "request too large: the limit is 1048576 bytes");
    }

    #[test]
    fn other_statuses_are_left_alone() {
        assert_eq!(rewrite(Code::Internal, "internal error; see the server log", 10), None);
        assert_eq!(rewrite(Code::OutOfRange, "page out of range", 10), None);
        assert_eq!(rewrite(Code::InvalidArgument, DECODE_FAILED, 10), None);
    }

    #[test]
    fn grpc_message_encoding_round_trips() {
        let text = "100% sure: naïve\n";
        assert_eq!(percent_decode(&percent_encode(text)), text);
        assert_eq!(percent_encode("a%b"), "a%25b");
    }
}
