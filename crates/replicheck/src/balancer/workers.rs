//! The balancer's event loops: one thread per core, each a single-threaded runtime that
//! accepts from the shared listener and serves its connections from start to end, as
//! nginx's workers do: a client connection never changes thread, and neither does a kept
//! connection to a replica (`pool`). Dropping the loops closes every connection they
//! hold.

use std::future::Future;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub struct Workers {
    stop: Option<watch::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` loops on `listener`, each handing every connection it accepts to
    /// `serve` on its own thread.
    pub fn start<S, F>(
        listener: std::net::TcpListener,
        count: usize,
        serve: S,
    ) -> std::io::Result<Self>
    where
        S: Fn(TcpStream, SocketAddr) -> F + Clone + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        listener.set_nonblocking(true)?;
        let (stop, stopped) = watch::channel(());
        let mut workers = Self {
            stop: Some(stop),
            threads: Vec::with_capacity(count),
        };
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let listener = listener.try_clone()?;
            let (serve, stopped) = (serve.clone(), stopped.clone());
            let thread = std::thread::Builder::new()
                .name(format!("replicheck-balancer-{index}"))
                .spawn(move || runtime.block_on(accept_until_stopped(listener, serve, stopped)))?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        drop(self.stop.take());
        for thread in self.threads.drain(..) {
            // A loop stops at once when told; it has nothing to finish.
            let _ = thread.join();
        }
    }
}

async fn accept_until_stopped<S, F>(
    listener: std::net::TcpListener,
    serve: S,
    mut stopped: watch::Receiver<()>,
) where
    S: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    // Connections live in this set, so leaving the loop closes them.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve(stream, client));
                }
                // Out of file descriptors, or a connection reset before it was accepted:
                // pause rather than spin on an error that repeats.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
