//! The connections one client connection keeps open to the replicas.
//!
//! HTTP/1.1 serves a client connection's requests one at a time, so it needs at most one
//! connection per replica, and nobody else uses them: reuse takes no lock shared with
//! other connections (nginx's upstream keepalive shares one cache between them). The
//! connections close with the client connection that opened them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio::time::Instant;

use crate::cluster::replica::Incarnation;

/// How long an idle connection to a replica is kept. Shorter than any common server's
/// keep-alive timeout (gunicorn's is 2s): a request written on a connection the replica
/// is closing as idle fails without the replica ever seeing it, and would be blamed on it.
const IDLE_FOR: Duration = Duration::from_secs(1);

/// How long connecting to a replica may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(2);

/// The idle connections of one client connection, at most one per replica incarnation.
#[derive(Default)]
pub struct Pool {
    idle: Vec<Idle>,
}

struct Idle {
    replica: Incarnation,
    addr: SocketAddr,
    sender: SendRequest<Incoming>,
    since: Instant,
}

impl Pool {
    /// The kept connection to this incarnation, unless it closed or idled too long.
    pub fn take(
        &mut self,
        replica: Incarnation,
        addr: SocketAddr,
    ) -> Option<SendRequest<Incoming>> {
        let at = self
            .idle
            .iter()
            .position(|i| i.replica == replica && i.addr == addr)?;
        let idle = self.idle.swap_remove(at);
        (!idle.sender.is_closed() && idle.since.elapsed() < IDLE_FOR).then_some(idle.sender)
    }

    /// Keeps a connection for the next request to this incarnation. Its previous answer
    /// may still be streaming; the next request waits until the connection is ready.
    pub fn put(&mut self, replica: Incarnation, addr: SocketAddr, sender: SendRequest<Incoming>) {
        self.idle
            .retain(|i| !(i.replica == replica && i.addr == addr));
        self.idle.push(Idle {
            replica,
            addr,
            sender,
            since: Instant::now(),
        });
    }
}

/// Opens a connection to a replica from `from` (the proxy address apps trust). Its driver
/// runs on the current thread's runtime until the sender is dropped and it is idle.
pub async fn connect(
    addr: SocketAddr,
    from: Option<IpAddr>,
) -> std::io::Result<SendRequest<Incoming>> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.set_nodelay(true)?;
    let stream = tokio::time::timeout(CONNECT_WITHIN, socket.connect(addr))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {CONNECT_WITHIN:?}"),
            )
        })??;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        // The replica closing the connection is seen by the request that used it.
        let _ = connection.await;
    });
    Ok(sender)
}
