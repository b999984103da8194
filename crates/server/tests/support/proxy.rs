//! A TCP proxy the drills put between a server and PostgreSQL, to take the database away
//! (cut: every connection closed, new ones refused) or to freeze it (pause: bytes held, as
//! for a process stopped in a debugger or a partition) and give it back — without touching the
//! machine's PostgreSQL.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    Open,
    /// Bytes are held (connections stay open) until the link opens again.
    Paused,
    /// Every connection is closed; new ones are closed at once.
    Cut,
}

pub(crate) struct Proxy {
    /// `host:port` to put in a database URL instead of the real server's.
    pub(crate) addr: String,
    link: Arc<watch::Sender<Link>>,
}

impl Proxy {
    pub(crate) async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let link = Arc::new(watch::Sender::new(Link::Open));
        let accepting = Arc::clone(&link);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                if *accepting.borrow() == Link::Cut {
                    continue; // dropped: the connection is refused
                }
                let Ok(server) = TcpStream::connect(&upstream).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(forward(client_read, server_write, accepting.subscribe()));
                tokio::spawn(forward(server_read, client_write, accepting.subscribe()));
            }
        });
        Self { addr, link }
    }

    pub(crate) fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

/// Copies one direction, holding bytes while paused and stopping when cut.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: watch::Receiver<Link>,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            () = cut(&mut link) => return,
        };
        let Ok(n) = read else { return };
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        // Held while paused; dropped when cut.
        loop {
            let state = *link.borrow_and_update();
            match state {
                Link::Open => break,
                Link::Cut => return,
                Link::Paused => {
                    if link.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Resolves once the link is cut.
async fn cut(link: &mut watch::Receiver<Link>) {
    loop {
        if *link.borrow_and_update() == Link::Cut {
            return;
        }
        if link.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
