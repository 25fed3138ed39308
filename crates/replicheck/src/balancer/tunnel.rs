//! A connection upgraded through the balancer (a WebSocket): once the replica has answered
//! 101, bytes are copied each way until either side closes, or neither has sent anything
//! for the idle bound. The tunnel stays with the replica that accepted it, as every L7
//! balancer's does, and ends when that replica closes it (when it stops, say).

use std::time::Duration;

use http::HeaderMap;
use http::header::{self, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a tunnel may carry nothing either way before the balancer closes it.
pub const IDLE: Duration = Duration::from_secs(60);

/// Bytes read from one side before they are written to the other.
const BUFFER: usize = 16 * 1024;

/// The protocol a request asks to switch to, when it asks (`Connection: upgrade`).
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    let mut tokens = headers.get_all(header::CONNECTION).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
    tokens.any(|token| token.trim().eq_ignore_ascii_case("upgrade")).then(|| upgrade.clone())
}

/// Puts back the headers that ask for a switch, or agree to one: they describe the
/// connection, so the hop-by-hop rewrite takes them away with the rest.
pub fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Joins the client's connection to the replica's once both have switched.
pub async fn run(client: OnUpgrade, replica: OnUpgrade, idle: Duration) {
    let Ok(replica) = replica.await else { return };
    join(client, TokioIo::new(replica), idle).await;
}

/// Joins the client's connection, once switched, to a replica's that already has.
pub async fn join<R: AsyncRead + AsyncWrite + Unpin>(client: OnUpgrade, replica: R, idle: Duration) {
    let Ok(client) = client.await else { return };
    // Either side closing, or failing, ends the tunnel; there is no one to tell.
    let _ = relay(TokioIo::new(client), replica, idle).await;
}

async fn relay<A, B>(a: A, b: B, idle: Duration) -> std::io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let (mut from_a, mut from_b) = (vec![0; BUFFER], vec![0; BUFFER]);
    loop {
        let next = tokio::time::timeout(idle, async {
            tokio::select! {
                read = a_read.read(&mut from_a) => (true, read),
                read = b_read.read(&mut from_b) => (false, read),
            }
        });
        let Ok((from_client, read)) = next.await else { break };
        match (from_client, read?) {
            (_, 0) => break,
            (true, n) => b_write.write_all(&from_a[..n]).await?,
            (false, n) => a_write.write_all(&from_b[..n]).await?,
        }
    }
    let _ = a_write.shutdown().await;
    let _ = b_write.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_that_asks_in_connection_is_an_upgrade() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(requested(&headers), None);
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert_eq!(requested(&headers), Some(HeaderValue::from_static("websocket")));
        headers.remove(header::UPGRADE);
        assert_eq!(requested(&headers), None);
    }

    #[tokio::test]
    async fn bytes_pass_each_way_and_a_silent_tunnel_is_closed_at_the_idle_bound() {
        let (client, mut client_end) = tokio::io::duplex(64);
        let (replica, mut replica_end) = tokio::io::duplex(64);
        let relayed = tokio::spawn(relay(client, replica, Duration::from_millis(200)));
        client_end.write_all(b"ping").await.unwrap();
        let mut got = [0; 4];
        replica_end.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        replica_end.write_all(b"pong").await.unwrap();
        client_end.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        // Nothing more either way: both ends are closed.
        relayed.await.unwrap().unwrap();
        assert_eq!(client_end.read(&mut got).await.unwrap(), 0);
        assert_eq!(replica_end.read(&mut got).await.unwrap(), 0);
    }
}
