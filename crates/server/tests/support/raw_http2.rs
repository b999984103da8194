//! A bare HTTP/2 client for the connection drills: it writes frames by hand and reads the
//! server's one by one, so a test sees what client libraries hide (GOAWAY, PING) and can
//! misbehave on purpose (never answer a PING).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What every HTTP/2 client sends first.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub(crate) const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
pub(crate) const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PING: u8 = 0x6;
pub(crate) const GOAWAY: u8 = 0x7;

/// END_STREAM on DATA and HEADERS; ACK on SETTINGS and PING.
pub(crate) const END_STREAM_OR_ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One frame as read.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    pub(crate) stream: u32,
    pub(crate) payload: Vec<u8>,
}

/// A frame as written.
pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut bytes = vec![length[1], length[2], length[3], kind, flags];
    bytes.extend(stream.to_be_bytes());
    bytes.extend(payload);
    bytes
}

/// The preface and empty SETTINGS: what a client sends on connecting.
pub(crate) fn hello() -> Vec<u8> {
    [PREFACE, &frame(SETTINGS, 0, 0, &[])].concat()
}

/// A gRPC call of `path` with the protobuf `message` on `stream`, headers in HPACK literals
/// (no indexing, no Huffman): HEADERS, then one DATA frame ending the request.
pub(crate) fn grpc_call(stream: u32, path: &str, message: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0x00);
        for text in [name, value] {
            block.push(u8::try_from(text.len()).unwrap());
            block.extend(text.as_bytes());
        }
    }
    let mut body = vec![0];
    body.extend(u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend(message);
    [frame(HEADERS, END_HEADERS, stream, &block), frame(DATA, END_STREAM_OR_ACK, stream, &body)].concat()
}

/// The next frame; `None` once the server has closed the connection (end of file, or a reset).
pub(crate) async fn read_frame(io: &mut (impl AsyncRead + Unpin)) -> Option<Frame> {
    let mut header = [0; 9];
    match io.read_exact(&mut header).await {
        Ok(_) => {}
        Err(error) if closed(&error) => return None,
        Err(error) => panic!("reading a frame: {error}"),
    }
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0; length];
    match io.read_exact(&mut payload).await {
        Ok(_) => {}
        Err(error) if closed(&error) => return None,
        Err(error) => panic!("reading a frame: {error}"),
    }
    let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
    Some(Frame { kind: header[3], flags: header[4], stream, payload })
}

/// Whether a read error means the peer closed the connection.
pub(crate) fn closed(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(error.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted)
}

/// Reads frames until one satisfies `wanted` (returned) or the server closes the connection
/// (`None`), acknowledging the server's SETTINGS, and its PINGs when `answer_pings` — the way
/// a live client does.
pub(crate) async fn next_frame(
    io: &mut (impl AsyncRead + AsyncWrite + Unpin),
    answer_pings: bool,
    mut wanted: impl FnMut(&Frame) -> bool,
) -> Option<Frame> {
    loop {
        let frame = read_frame(io).await?;
        let acked = frame.flags & END_STREAM_OR_ACK != 0;
        let answer = match frame.kind {
            SETTINGS if !acked => Some(self::frame(SETTINGS, END_STREAM_OR_ACK, 0, &[])),
            PING if !acked && answer_pings => Some(self::frame(PING, END_STREAM_OR_ACK, 0, &frame.payload)),
            _ => None,
        };
        if let Some(answer) = answer {
            // The server may have closed its side already; what it sends next tells.
            let _ = io.write_all(&answer).await;
        }
        if wanted(&frame) {
            return Some(frame);
        }
    }
}
