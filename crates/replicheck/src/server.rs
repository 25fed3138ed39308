//! The HTTP/1.1 server loop of everything a run listens with besides the balancer's own
//! front: the relays in front of instances that already run, the OTLP receiver, and the
//! side-effect sink.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Serves HTTP/1.1 with keep-alive on `listener` until the task is aborted, answering each
/// request with `handle(client, request)`. A client has `read_within` to send a request's
/// headers, when given, so a silent one costs a bounded time.
pub async fn serve_http1<H, F, B>(listener: TcpListener, read_within: Option<Duration>, handle: H)
where
    H: Fn(SocketAddr, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Connections live in this set, so aborting this task closes them.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, client)) = accepted else {
                    // Out of file descriptors, say: let connections end before the next accept.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let handle = handle.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| handle(client, request));
                    let mut builder = http1::Builder::new();
                    builder.keep_alive(true);
                    if let Some(within) = read_within {
                        builder.timer(TokioTimer::new()).header_read_timeout(within);
                    }
                    // A client that hangs up mid-request is the client's business.
                    // Upgrades stay possible: the handler decides whether to take one.
                    let _ = builder.serve_connection(TokioIo::new(stream), service).with_upgrades().await;
                });
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
