//! The balancer's connections to the replicas, kept alive between requests.
//!
//! Each event loop keeps its own: lending one takes no lock, and a connection is driven by
//! the loop whose requests use it. A kept connection is checked before it is lent (still
//! open, idle less than `IDLE_FOR`), and a request that a kept connection closed under
//! before writing it goes out again on a new one: kept connections that were not checked
//! raced replicas closing idle connections as they stop (puma on SIGTERM), and turned
//! correct apps into dropped requests. Connections idle that long are closed, so a
//! replica that waits for its open connections before it exits is not held up by them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio::time::Instant;

/// How long a connection may sit unused and still be lent. Shorter than any common
/// server's keep-alive timeout (gunicorn's is 2s): a request written on a connection the
/// replica is closing as idle fails without the replica ever seeing it, and would be
/// blamed on the replica.
const IDLE_FOR: Duration = Duration::from_secs(1);

/// How long connecting to a replica may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(2);

/// Kept connections of this event loop, by replica address, the most recently used last.
type Kept = HashMap<SocketAddr, Vec<(SendRequest<Incoming>, Instant)>>;

thread_local! {
    static KEPT: RefCell<Kept> = RefCell::new(HashMap::new());
    /// Whether this loop runs `close_idle` yet.
    static CLOSING_IDLE: Cell<bool> = const { Cell::new(false) };
}

/// A connection lent for one request; `give_back` once its answer has passed whole.
pub struct Lent {
    sender: SendRequest<Incoming>,
    addr: SocketAddr,
}

impl Lent {
    /// Keeps it for the next request to its replica. Only on the loop it was lent on.
    pub fn give_back(self) {
        if self.sender.is_closed() {
            return;
        }
        KEPT.with_borrow_mut(|kept| kept.entry(self.addr).or_default().push((self.sender, Instant::now())));
        if !CLOSING_IDLE.replace(true) {
            // Not on a loop that is stopping: the kept connections go with it.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(close_idle());
            }
        }
    }
}

/// Why a replica gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum Failed {
    #[error("could not connect")]
    Connect(#[source] std::io::Error),
    #[error("the exchange failed")]
    Exchange(#[source] hyper::Error),
}

/// Sends `request` (origin-form, with a `Host`) to the replica at `addr`, on a kept
/// connection when one is fit, else on a new one from `from`.
pub async fn send(addr: SocketAddr, from: Option<IpAddr>, mut request: Request<Incoming>) -> Result<(Response<Incoming>, Lent), Failed> {
    while let Some(mut sender) = take(addr) {
        // Ready once it has taken in the end of its last answer; an error if it closed.
        if sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => return Ok((response, Lent { sender, addr })),
            Err(mut failed) => match failed.take_message() {
                // Closed before the request was written: the replica never saw it.
                Some(unsent) => request = unsent,
                None => return Err(Failed::Exchange(failed.into_error())),
            },
        }
    }
    let mut sender = connect(addr, from).await?;
    match sender.send_request(request).await {
        Ok(response) => Ok((response, Lent { sender, addr })),
        Err(err) => Err(Failed::Exchange(err)),
    }
}

/// The most recently used kept connection to `addr` that is open and not idle too long.
fn take(addr: SocketAddr) -> Option<SendRequest<Incoming>> {
    KEPT.with_borrow_mut(|kept| {
        let idle = kept.get_mut(&addr)?;
        while let Some((sender, since)) = idle.pop() {
            if since.elapsed() >= IDLE_FOR {
                // The rest were kept longer still.
                idle.clear();
                return None;
            }
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    })
}

/// Closes connections idle `IDLE_FOR`, twice as often, for as long as the loop runs.
async fn close_idle() {
    let mut every = tokio::time::interval(IDLE_FOR / 2);
    loop {
        every.tick().await;
        KEPT.with_borrow_mut(|kept| {
            kept.retain(|_, idle| {
                // The first ones were kept first; a connection whose last handle goes closes.
                let stale = idle.partition_point(|(_, since)| since.elapsed() >= IDLE_FOR);
                idle.drain(..stale);
                !idle.is_empty()
            })
        });
    }
}

async fn connect(addr: SocketAddr, from: Option<IpAddr>) -> Result<SendRequest<Incoming>, Failed> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(Failed::Connect)?;
    if let Some(from) = from {
        socket.bind(SocketAddr::new(from, 0)).map_err(Failed::Connect)?;
    }
    let stream = match tokio::time::timeout(CONNECT_WITHIN, socket.connect(addr)).await {
        Ok(connected) => connected.map_err(Failed::Connect)?,
        Err(_) => return Err(Failed::Connect(std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out"))),
    };
    stream.set_nodelay(true).map_err(Failed::Connect)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(Failed::Exchange)?;
    // Driven by this loop until either side closes it; a WebSocket takes it over.
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    Ok(sender)
}
